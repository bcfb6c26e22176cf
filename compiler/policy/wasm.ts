// The NetworkPolicy compile (POLICY.md "The compile") with its heavy part in compiler.wasm
// (assembly/policy.ts): the same PolicyTables as compiler/policy/reference.ts, which the tests
// hold it equal to (step 1, the generated policies, is the reference's own). Here: the
// policies in force, blocks, pods grouped by (namespace, labels, ports), identity keys, ids
// and names (per object, and text); there: the address space cut by the blocks and each pod
// address's place in it, selection, peers, pairs, the allow elements and the named-port
// problems (what grows with pods × policies). Pods and policies are packed when first
// compiled and kept beside their objects, as the services compile keeps Services; addresses
// of pods are read back as the input's own text, by index.
import type { CompilerExports } from "../wasm.ts";
import { generatedPolicies } from "./reference.ts";
import { addrText, Interner, packPod, packPolicy, Words, writeBounds, writeLabels, type Block, type PodPack, type PolicyPack } from "./pack.ts";
import { parseCidr } from "../address.ts";
import { assignIds } from "./ids.ts";
import { BLOCKED, FIRST_ID, WORLD, type AddressRange, type AllowElement, type Identity, type PodAddress, type PodInfo, type Policy, type PolicyOptions, type PolicyState, type PolicyTables } from "./types.ts";

export type PolicyCompile = (state: PolicyState, opts: PolicyOptions, previous?: ReadonlyMap<string, number>) => PolicyTables;

const PROTO_NAME: Record<number, string> = { 6: "TCP", 17: "UDP", 132: "SCTP" };

interface Group {
  index: number;
  ns: string;
  labelsText: string;
  key: string;
  pod: PodInfo;
  ids: number[];
}

interface Key {
  key: string;
  kind: 1 | 2;
  group: number;
  blocks: number[];
  local: boolean;
  id: number;
}

/** Copies words into the module's memory; returns their address. */
function put(c: CompilerExports, w: Uint32Array): number {
  const at = c.reserve(w.length * 4 + 8);
  new Uint32Array(c.memory.buffer, at, w.length).set(w);
  return at;
}

/** Interned strings kept past this many start afresh (with the policies packed with them):
 * label values come and go (pod-template-hash), and the interner would only grow. */
const MAX_STRINGS = 1 << 20;

/**
 * The compile, keeping what it packed of pods and policies between calls: a pod or policy that
 * changes must come as a new object (as the state readers make them), never changed in place.
 * `maxStrings`: MAX_STRINGS, smaller in tests.
 */
export function wasmPolicyCompiler(c: CompilerExports, o: { maxStrings?: number } = {}): { compile: PolicyCompile } {
  const maxStrings = o.maxStrings ?? MAX_STRINGS;
  // packed once per object and kept beside it, as the services compile does (compiler/wasm.ts)
  let strings = new Interner();
  let policyPacks = new WeakMap<Policy, PolicyPack>();
  // generated policies are made anew by each compile: packed by name (the name says it all)
  let generatedPacks = new Map<string, PolicyPack>();
  const podPacks = new WeakMap<PodInfo, PodPack>();
  const podPack = (pod: PodInfo) => {
    let k = podPacks.get(pod);
    if (!k) podPacks.set(pod, (k = packPod(pod)));
    return k;
  };

  // the input words of the two calls, kept from one compile to the next
  const words = [new Words(1 << 16), new Words(1 << 16)];
  let lastPacks: PolicyPack[] = [];
  let section: { rank: number[]; polNs: number[]; blocks: string[]; words: Uint32Array } | undefined;
  let lastRank: number[] = [];

  function compile(state: PolicyState, opts: PolicyOptions, previous: ReadonlyMap<string, number> = new Map()): PolicyTables {
    if (strings.size > maxStrings) {
      strings = new Interner();
      policyPacks = new WeakMap();
      generatedPacks = new Map();
      lastPacks = [];
      section = undefined;
    }
    const generated = generatedPolicies(state);
    // in no particular order: they are numbered by name below
    const policies = [...state.policies, ...generated];
    const blockUnknown = policies.length > 0;
    const seenGenerated = new Map<string, PolicyPack>();
    const packs = policies.map((pol) => {
      if (pol.generated) {
        const name = `${pol.namespace}/${pol.name}`;
        let k = generatedPacks.get(name);
        if (!k) k = packPolicy(pol, strings);
        seenGenerated.set(name, k);
        return k;
      }
      let k = policyPacks.get(pol);
      if (!k) policyPacks.set(pol, (k = packPolicy(pol, strings)));
      return k;
    });
    generatedPacks = seenGenerated;

    // blocks numbered in the string order of their text
    const byText = new Map<string, Block>();
    for (const k of packs) for (const b of k.blocks) if (!byText.has(b.text)) byText.set(b.text, b);
    const blocks = [...byText.values()].sort((x, y) => (x.text < y.text ? -1 : x.text > y.text ? 1 : 0));
    const blockIndex = new Map(blocks.map((b, i) => [b.text, i]));

    // policies numbered in the string order of their names
    // (the same policies as last time, as in most compiles: the same order)
    let rank = lastRank;
    if (packs.length !== lastPacks.length || packs.some((k, i) => k !== lastPacks[i])) {
      rank = packs.map((_, i) => i).sort((x, y) => (packs[x]!.name < packs[y]!.name ? -1 : packs[x]!.name > packs[y]!.name ? 1 : 0));
      lastPacks = packs;
      lastRank = rank;
    }
    const sortedNames = rank.map((i) => packs[i]!.name);

    // the address space: cut, and each pod address placed in it and sorted
    const a = words[0]!;
    a.n = 0;
    const podCIDRs = blockUnknown ? opts.podCIDRs.map((t) => parseCidr(t)) : [];
    a.push(blocks.length);
    a.push(podCIDRs.length);
    a.push(0);
    for (const b of blocks) {
      a.push(b.excepts.length);
      writeBounds(a, b.cidr);
      for (const e of b.excepts) writeBounds(a, e);
    }
    for (const cidr of podCIDRs) writeBounds(a, cidr);
    const podPacks = state.pods.map(podPack);
    // every (pod, address), in pod order
    const entryPod: number[] = [];
    const entryIp: string[] = [];
    for (let pi = 0; pi < state.pods.length; pi++) {
      const pod = state.pods[pi]!;
      const pk = podPacks[pi]!;
      for (let j = 0; j < pod.ips.length; j++) {
        entryPod.push(pi);
        entryIp.push(pod.ips[j]!);
        for (let k = j * 5; k < j * 5 + 5; k++) a.push(pk.addrs[k]!);
      }
    }
    a.buf[2] = entryIp.length;
    const ain = put(c, a.words);
    const aout = c.policyAddresses(ain, a.n);
    let u32 = new Uint32Array(c.memory.buffer);
    let p = aout >> 2;
    const nIntervals = u32[p++]!;
    const intervalAt: number[] = [];
    const intervalInPod: boolean[] = [];
    const intervalBlocks: number[][] = [];
    for (let i = 0; i < nIntervals; i++) {
      intervalAt.push(p);
      intervalInPod.push(u32[p + 10] === 1);
      const n = u32[p + 11]!;
      intervalBlocks.push(Array.from(u32.subarray(p + 12, p + 12 + n)));
      p += 12 + n;
    }
    const intervalWords = u32.slice(intervalAt[0] ?? 0, p);
    const base = intervalAt[0] ?? 0;
    const entryInterval = u32.slice(p, p + entryIp.length);
    p += entryIp.length;
    const entryOrder = u32.slice(p, p + entryIp.length);
    // the addresses in order, each once: an address held by several pods (a stale pod, a
    // watcher behind) is next to itself in the sorted entries
    const addrIps: string[] = [];
    const addrInterval: number[] = [];
    // per address, the pods holding it: entries addrFirst[i] to addrFirst[i + 1] - 1 of the
    // sorted order, whose pods are the holders (indexes in state.pods, in holders)
    const addrFirst: number[] = [];
    const holders = new Array<number>(entryOrder.length);
    /** per address, whether a pod of this node holds it */
    const addrLocal: boolean[] = [];
    for (let j = 0; j < entryOrder.length; j++) {
      const e = entryOrder[j]!;
      const ip = entryIp[e]!;
      const pod = entryPod[e]!;
      holders[j] = pod;
      const local = state.pods[pod]!.nodeName === opts.nodeName;
      if (addrIps.length && addrIps[addrIps.length - 1] === ip) {
        if (local) addrLocal[addrLocal.length - 1] = true;
        continue;
      }
      addrFirst.push(j);
      addrIps.push(ip);
      addrInterval.push(entryInterval[e]!);
      addrLocal.push(local);
    }
    addrFirst.push(entryOrder.length);
    const blocksText = new Map<number, string>();
    const keyBlocks = (i: number) => {
      let t = blocksText.get(i);
      if (t === undefined) blocksText.set(i, (t = intervalBlocks[i]!.map((b) => blocks[b]!.text).join("+")));
      return t;
    };

    // pods grouped by what policy sees of them; one identity key per address
    const groups = new Map<string, Group>();
    const groupList: Group[] = [];
    // a pod's group in this compile is kept on its pack (every pod of the state gets one here)
    for (let pi = 0; pi < state.pods.length; pi++) {
      const pod = state.pods[pi]!;
      const pk = podPacks[pi]!;
      let g = groups.get(pk.groupKey);
      if (!g) {
        g = { index: groupList.length, ns: pod.namespace, labelsText: pk.labelsText, key: pk.groupKey, pod, ids: [] };
        groups.set(pk.groupKey, g);
        groupList.push(g);
      }
      pk.group = g.index;
    }
    const keys = new Map<string, Key>();
    const problems: string[] = [];
    // undefined: held by pods whose keys differ, which cannot be told apart: BLOCKED
    const addrKey: Array<Key | undefined> = [];
    const keyOf = new Map<number, Key>();
    const blockGroups: Array<Set<number>> = blocks.map(() => new Set());
    for (let i = 0; i < addrIps.length; i++) {
      const from = addrFirst[i]!;
      const to = addrFirst[i + 1]!;
      const g = groupList[podPacks[holders[from]!]!.group]!;
      const iv = addrInterval[i]!;
      if (intervalBlocks[iv]!.length) for (let h = from; h < to; h++) for (const b of intervalBlocks[iv]!) blockGroups[b]!.add(podPacks[holders[h]!]!.group);
      let alike = true;
      for (let h = from + 1; h < to; h++) if (podPacks[holders[h]!]!.group !== g.index) alike = false;
      if (!alike) {
        const names = holders
          .slice(from, to)
          .map((h) => `${state.pods[h]!.namespace}/${state.pods[h]!.name}`).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
        problems.push(`address ${addrIps[i]}: held by pods ${names.join(", ")}; blocked`);
        addrKey.push(undefined);
        continue;
      }
      // the key's text is made once per group and interval
      let key = keyOf.get(g.index * nIntervals + iv);
      if (!key) {
        const k = `pod|${g.key}|${keyBlocks(iv)}`;
        key = keys.get(k);
        if (!key) keys.set(k, (key = { key: k, kind: 1, group: g.index, blocks: intervalBlocks[iv]!, local: false, id: 0 }));
        keyOf.set(g.index * nIntervals + iv, key);
      }
      if (addrLocal[i]) key.local = true;
      addrKey.push(key);
    }
    const intervalKey: Array<Key | undefined> = [];
    for (let i = 0; i < nIntervals; i++) {
      if ((blockUnknown && intervalInPod[i]) || intervalBlocks[i]!.length === 0) {
        intervalKey.push(undefined);
        continue;
      }
      const k = `cidr|${keyBlocks(i)}`;
      let key = keys.get(k);
      if (!key) keys.set(k, (key = { key: k, kind: 2, group: 0, blocks: intervalBlocks[i]!, local: false, id: 0 }));
      intervalKey.push(key);
    }

    // ids: kept where the key was there before, else the lowest free and not held before, in
    // key order (a previous id taken already by a key earlier in string order is not kept)
    const sortedKeys = [...keys.values()].sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    const limit = assignIds(
      sortedKeys.map((k) => [k.key, k]),
      previous,
      opts.maxIdentity,
    );
    if (limit) problems.push(limit);
    const given = [...keys.values()].filter((k) => k.id <= opts.maxIdentity).sort((x, y) => x.id - y.id);
    const idOf = (k: Key) => (k.id <= opts.maxIdentity ? k.id : BLOCKED);
    const nIds = Math.max(FIRST_ID, (given.at(-1)?.id ?? 0) + 1);

    // the rules' input
    const nsIndex = new Map<string, number>();
    const nsLabels: Array<Record<string, string>> = [];
    const nsOf = (name: string) => {
      let i = nsIndex.get(name);
      if (i === undefined) {
        nsIndex.set(name, (i = nsLabels.length));
        nsLabels.push({ "kubernetes.io/metadata.name": name });
      }
      return i;
    };
    for (const ns of state.namespaces) nsLabels[nsOf(ns.name)] = ns.labels;
    for (const g of groupList) nsOf(g.ns);
    for (const pol of policies) nsOf(pol.namespace);
    // this compile's namespace and block numbers, where the packed policies leave them
    const polNs = rank.map((i) => nsIndex.get(policies[i]!.namespace)!);
    for (const k of given) if (k.kind === 1) groupList[k.group]!.ids.push(k.id);
    const blockIds: number[][] = blocks.map(() => []);
    for (const k of given) for (const b of k.blocks) blockIds[b]!.push(k.id);

    const w = words[1]!;
    w.n = 0;
    w.push(nsLabels.length);
    w.push(groupList.length);
    w.push(nIds);
    w.push(blocks.length);
    w.push(policies.length);
    for (const labels of nsLabels) writeLabels(w, labels, strings);
    for (const g of groupList) {
      w.push(nsIndex.get(g.ns)!);
      writeLabels(w, g.pod.labels, strings);
      w.push(g.pod.ports.length);
      for (const x of g.pod.ports) {
        w.push(strings.id(x.name));
        w.push(x.protocol === "TCP" ? 6 : x.protocol === "UDP" ? 17 : 132);
        w.push(x.port);
      }
      w.push(g.ids.length);
      w.pushAll(g.ids);
    }
    const slots = new Uint32Array(nIds * 3);
    for (const k of given) {
      slots[k.id * 3] = k.kind;
      slots[k.id * 3 + 1] = k.group;
      slots[k.id * 3 + 2] = k.local ? 1 : 0;
    }
    w.pushAll(slots);
    blockIds.forEach((ids, b) => {
      w.push(ids.length);
      w.pushAll(ids);
      w.push(blockGroups[b]!.size);
      for (const g of blockGroups[b]!) w.push(g);
    });
    // the policies' words as last time when neither they nor the namespace and block
    // numbers changed
    const same = (x: ArrayLike<unknown>, y: ArrayLike<unknown>) => {
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
      return true;
    };
    const blockTexts = blocks.map((b) => b.text);
    if (section && section.rank === rank && same(section.polNs, polNs) && same(section.blocks, blockTexts)) w.pushAll(section.words);
    else {
      const from = w.n;
      rank.forEach((i, r) => {
        const k = packs[i]!;
        const at = w.n;
        w.pushAll(k.words);
        w.buf[at] = polNs[r]!;
        for (let b = 0; b < k.blocks.length; b++) w.buf[at + k.blockAt[b]!] = blockIndex.get(k.blocks[b]!.text)!;
      });
      section = { rank, polNs, blocks: blockTexts, words: w.buf.slice(from, w.n) };
    }
    const rin = put(c, w.words);
    const rout = c.policyRules(rin, w.n);
    u32 = new Uint32Array(c.memory.buffer);
    p = rout >> 2;

    const ingressBy: string[][] = [];
    const egressBy: string[][] = [];
    for (let id = 0; id < nIds; id++) {
      for (const by of [ingressBy, egressBy]) {
        const n = u32[p++]!;
        const names: string[] = [];
        for (let j = 0; j < n; j++) names.push(sortedNames[u32[p + j]!]!);
        p += n;
        by.push(names);
      }
    }
    const elementsAt: number[] = [];
    for (let dir = 0; dir < 2; dir++) {
      elementsAt.push(p);
      p += 1 + u32[p]! * 9;
    }
    const nSets = u32[p++]!;
    const sets: string[][] = [];
    for (let s = 0; s < nSets; s++) {
      const n = u32[p++]!;
      const names: string[] = [];
      for (let j = 0; j < n; j++) names.push(sortedNames[u32[p + j]!]!);
      p += n;
      // one list shared by the elements allowed by the same policies (not copied per
      // element: freezing or copying thousands of them costs more than the rest of the read)
      sets.push(names);
    }
    const elements = (at: number): AllowElement[] => {
      const n = u32[at]!;
      const out: AllowElement[] = new Array(n);
      for (let i = 0, e = at + 1; i < n; i++, e += 9) {
        out[i] = { src: u32[e]!, srcLast: u32[e + 4]!, dst: u32[e + 1]!, dstLast: u32[e + 5]!, proto: u32[e + 2]!, protoLast: u32[e + 6]!, port: u32[e + 3]!, portLast: u32[e + 7]!, policies: sets[u32[e + 8]!]! };
      }
      return out;
    };
    const allowIngress = elements(elementsAt[0]!);
    const allowEgress = elements(elementsAt[1]!);
    const nProblems = u32[p++]!;
    for (let i = 0; i < nProblems; i++, p += 4) {
      const pol = policies[rank[u32[p]!]!]!;
      const dir = u32[p + 1] === 0 ? "ingress" : "egress";
      const rule = (dir === "ingress" ? pol.ingress : pol.egress)![u32[p + 2]!]!;
      const port = rule.ports[u32[p + 3]!]!;
      const who = dir === "ingress" ? "no pod the policy selects" : "no pod the rule's peers match";
      problems.push(`NetworkPolicy ${pol.namespace}/${pol.name}: spec.${dir}[${u32[p + 2]}].ports[${u32[p + 3]}].port: ${who} has a ${port.protocol} port named ${JSON.stringify(port.port)}`);
    }

    // addresses and ranges
    let anyBlocked = false;
    const pods: PodAddress[] = [];
    const localAddresses: string[] = [];
    for (let i = 0; i < addrIps.length; i++) {
      const ip = addrIps[i]!;
      const key = addrKey[i];
      const id = key ? idOf(key) : BLOCKED;
      if (addrLocal[i]) localAddresses.push(ip);
      // past the limit, another node's address is left to the ranges (the reference's step 10)
      if (id === BLOCKED && key && !addrLocal[i]) continue;
      if (id === BLOCKED) anyBlocked = true;
      pods.push({ family: intervalWords[intervalAt[addrInterval[i]!]! - base] as 4 | 6, ip, id });
    }
    const ranges: AddressRange[] = [];
    let last: { range: AddressRange; interval: number } | undefined;
    for (let i = 0; i < nIntervals; i++) {
      const key = intervalKey[i];
      const id = key ? (key.id <= opts.maxIdentity ? key.id : WORLD) : blockUnknown && intervalInPod[i] ? BLOCKED : WORLD;
      if (id === WORLD) {
        last = undefined;
        continue;
      }
      if (id === BLOCKED) anyBlocked = true;
      const at = intervalAt[i]! - base;
      const family = intervalWords[at] as 4 | 6;
      if (last && last.interval === i - 1 && last.range.id === id && last.range.family === family) {
        last.range.last = addrText(intervalWords, at + 5);
        last.interval = i;
        continue;
      }
      const range: AddressRange = { family, first: addrText(intervalWords, at), last: addrText(intervalWords, at + 5), id };
      ranges.push(range);
      last = { range, interval: i };
    }

    const identities: Identity[] = given.map((k) => {
      const local = k.local;
      const g = groupList[k.group]!;
      const name = k.kind === 1 ? `pod ${g.ns} ${g.labelsText}${k.blocks.length ? ` in ${k.blocks.map((b) => blocks[b]!.text).join(" + ")}` : ""}` : `cidr ${k.blocks.map((b) => blocks[b]!.text).join(" + ")}`;
      return { id: k.id, key: k.key, name, local, ingressBy: local ? ingressBy[k.id]! : [], egressBy: local ? egressBy[k.id]! : [] };
    });
    const isolated = (by: string[][]) => {
      const ids = given.filter((k) => k.local && by[k.id]!.length > 0).map((k) => k.id);
      if (anyBlocked) ids.push(BLOCKED);
      return ids.sort((x, y) => x - y);
    };
    return {
      identities,
      pods,
      ranges,
      isolatedIngress: isolated(ingressBy),
      isolatedEgress: isolated(egressBy),
      allowIngress,
      allowEgress,
      localAddresses,
      generated,
      problems: [...new Set(problems)].sort(),
    };
  }
  return { compile };
}
