// The TypeScript reference of the policy compile (POLICY.md "The compile", steps 1-11): what
// compiler.wasm must produce, byte for byte. Plain and direct rather than clever, but grouped
// so that it scales: pods are grouped into identities before any selector runs, selectors run
// per identity of one namespace, and peers are resolved only for policies that select a pod
// of this node.
//
// Where the plan leaves room, the choices made here (the wasm compile makes the same):
//   - excepts of a block are sorted by address, then by prefix length, and repeats dropped;
//     the cidr and excepts are canonical network text (state.ts clears host bits).
//   - An address held by two pods whose keys differ (a stale pod, a watcher behind) is
//     BLOCKED, with a problem `address <ip>: held by pods <a>, <b>; blocked`: which pod is
//     right cannot be known, and an address in the pods list has one id. Pods whose keys are
//     equal share it without a problem. Such an address is in localAddresses when one of its
//     pods is on this node, and makes no identity local.
//   - App isolation (step 1) counts every pod of the state, with an address or not yet.
//   - The identity limit: N is the number of keys (identities needed), M the number of ids
//     the marks hold, maxIdentity - FIRST_ID + 1 (0 when negative). An identity whose id is
//     past maxIdentity is not listed in `identities` (it has no chain or mark: its addresses
//     are BLOCKED), so identityIds() does not keep its id.
//   - A pod identity's name is `pod <ns> <labels>` exactly as the template (a pod without
//     labels leaves a trailing space), then ` in <block texts joined by " + ">` when blocks
//     hold it.
//   - Runs merged in step 9 are runs of consecutive ids each having a pair with the same
//     piece list; WORLD (0) and VIA_SERVICE (1) can make such a run.
//   - Named port problems (step 11) look at every pod of the state, with or without an
//     address yet (its named ports are known); a name matches on name and protocol. Ingress:
//     pods of the policy's namespace its podSelector selects; egress: pods its pods peers
//     match and pods holding an address of its cidr peers' blocks, or every pod when the rule
//     has no peers. Only for directions the policy has (ingress / egress not null).
//   - `previous` entries with an id below FIRST_ID, or an id taken already by a key earlier
//     in string order, are ignored (the key takes a free id as a new one would).
//   - A key without an id takes none that `previous` holds, while one within maxIdentity is
//     free (ids.ts says why).
//   - Ids for keys without one go to local keys (some pod of this node holds an address of
//     them) before the others, each in string order; and when a local key's id is past
//     maxIdentity, it swaps ids with the remote key last in string order among those within
//     it (again for the next local key, and so on): when the mark bits run out, the pods
//     blocked are other nodes' (as sources, fail closed), never this node's because another
//     tenant made many distinct pods.
import { addressBytes, addressFromBytes, parseCidr, type Family } from "../address.ts";
import { assignIds } from "./ids.ts";
import type { Protocol } from "../state.ts";
import {
  BLOCKED,
  FIRST_ID,
  IP_PROTOCOL,
  VIA_SERVICE,
  WORLD,
  type AddressRange,
  type AllowElement,
  type ContainerPort,
  type Identity,
  type PodInfo,
  type PodAddress,
  type Policy,
  type PolicyOptions,
  type PolicyPeer,
  type PolicyRule,
  type PolicyState,
  type PolicyTables,
  type Selector,
} from "./types.ts";

export const APP_LABEL = "skein.io/app";
const NAME_LABEL = "kubernetes.io/metadata.name";

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const byPolicy = (a: Policy, b: Policy) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
const policyName = (p: Policy) => `${p.namespace}/${p.name}`;

/** Step 1: the generated policies of the isolation modes, sorted. */
export function generatedPolicies(state: PolicyState): Policy[] {
  const out: Policy[] = [];
  for (const ns of state.namespaces) {
    if (!ns.isolation) continue;
    out.push({
      namespace: ns.name,
      name: "skein:isolation",
      podSelector: { requirements: [{ key: APP_LABEL, operator: "DoesNotExist", values: [] }] },
      ingress: [{ peers: [{ kind: "pods", pods: { requirements: [] } }], ports: [] }],
      egress: null,
      generated: "namespace-isolation",
      viaService: true,
    });
  }
  const apps = new Set<string>();
  for (const p of state.pods) {
    const a = p.labels[APP_LABEL];
    if (a === undefined) continue;
    const k = `${p.namespace}\0${a}`;
    if (apps.has(k)) continue;
    apps.add(k);
    const sel: Selector = { requirements: [{ key: APP_LABEL, operator: "In", values: [a] }] };
    out.push({
      namespace: p.namespace,
      name: `skein:app=${a}`,
      podSelector: sel,
      ingress: [{ peers: [{ kind: "pods", pods: { requirements: [{ key: APP_LABEL, operator: "In", values: [a] }] } }], ports: [] }],
      egress: null,
      generated: "app-isolation",
      viaService: true,
    });
  }
  return out.sort(byPolicy);
}

/** Step 6: every requirement holds. */
export function selectorMatches(s: Selector, labels: Record<string, string>): boolean {
  for (const r of s.requirements) {
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case "In":
        if (!has || !r.values.includes(labels[r.key]!)) return false;
        break;
      case "NotIn":
        if (has && r.values.includes(labels[r.key]!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}

const BITS = { 4: 32n, 6: 128n } as const;

function toBig(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function fromBig(v: bigint, family: Family): string {
  const n = family === 4 ? 4 : 16;
  const b = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return addressFromBytes(b, 0, family);
}

interface Span {
  family: Family;
  lo: bigint;
  hi: bigint;
}

function span(cidr: string): Span {
  const c = parseCidr(cidr);
  const lo = toBig(c.bytes);
  return { family: c.family, lo, hi: lo + (1n << (BITS[c.family] - BigInt(c.prefix))) - 1n };
}

interface Block {
  text: string;
  cidr: Span;
  except: Span[];
}

/** Step 2: a block's text (excepts sorted by address, then prefix; no repeats). */
function blockOf(peer: Extract<PolicyPeer, { kind: "cidr" }>): Block {
  const cidr = span(peer.cidr);
  const ex = [...new Set(peer.except)].map((t) => ({ t, s: span(t) }));
  ex.sort((a, b) => (a.s.lo < b.s.lo ? -1 : a.s.lo > b.s.lo ? 1 : a.s.hi > b.s.hi ? -1 : a.s.hi < b.s.hi ? 1 : 0));
  const text = ex.length ? `${peer.cidr} except ${ex.map((e) => e.t).join(",")}` : peer.cidr;
  return { text, cidr, except: ex.map((e) => e.s) };
}

/** One family's address space cut into elementary intervals: interval i is
 * points[i]..points[i+1]-1 (the last one ends at the family's last address). */
interface Cut {
  family: Family;
  points: bigint[];
  /** per interval: the texts of the blocks holding it, sorted */
  blocks: string[][];
  /** per interval: inside one of this node's pod CIDRs (only cut when blockUnknown) */
  podCidr: boolean[];
}

function indexOf(points: bigint[], v: bigint): number {
  // the interval holding v: the last point <= v
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (points[mid]! <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function cut(family: Family, blocks: Block[], podCidrs: Span[]): Cut {
  const end = 1n << BITS[family];
  const set = new Set<bigint>([0n]);
  const add = (s: Span) => {
    set.add(s.lo);
    if (s.hi + 1n < end) set.add(s.hi + 1n);
  };
  for (const b of blocks) {
    add(b.cidr);
    b.except.forEach(add);
  }
  podCidrs.forEach(add);
  const points = [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const held: string[][] = points.map(() => []);
  const range = (s: Span) => [indexOf(points, s.lo), indexOf(points, s.hi) + 1] as const;
  for (const b of blocks) {
    const [from, to] = range(b.cidr);
    const out = new Uint8Array(to - from);
    for (const e of b.except) {
      const [ef, et] = range(e);
      out.fill(1, ef - from, et - from);
    }
    for (let i = from; i < to; i++) if (!out[i - from]) held[i]!.push(b.text);
  }
  for (const h of held) h.sort(cmp);
  const podCidr = points.map(() => false);
  for (const s of podCidrs) {
    const [from, to] = range(s);
    for (let i = from; i < to; i++) podCidr[i] = true;
  }
  return { family, points, blocks: held, podCidr };
}

/** A group of addresses sharing one key: a pod identity or a range identity. */
interface Ident {
  key: string;
  id: number;
  /** for pods: namespace, labels, named ports */
  pod?: { namespace: string; labels: Record<string, string>; labelText: string; ports: ContainerPort[] };
  blocks: string[];
  local: boolean;
  ingressBy: string[];
  egressBy: string[];
}

const labelText = (l: Record<string, string>) =>
  Object.keys(l)
    .sort(cmp)
    .map((k) => `${k}=${l[k]}`)
    .join(",");
const portText = (ps: ContainerPort[]) =>
  ps
    .map((p) => `${p.name}/${p.protocol}/${p.port}`)
    .sort(cmp)
    .join(",");

type Box = [protoLo: number, protoHi: number, portLo: number, portHi: number, policy: string];
interface Piece {
  proto: number;
  protoLast: number;
  port: number;
  portLast: number;
  policies: string[];
}

/** Step 9, one pair: its boxes cut into disjoint pieces, merged where equal. */
export function pieces(boxes: Box[]): Piece[] {
  if (boxes.length === 1) {
    const [a, b, c, d, p] = boxes[0]!;
    return [{ proto: a, protoLast: b, port: c, portLast: d, policies: [p] }];
  }
  const uniq = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
  const protoCuts = uniq(boxes.flatMap((b) => [b[0], b[1] + 1]));
  const out: Piece[] = [];
  let prev: { lo: number; hi: number; list: Piece[]; sig: string } | undefined;
  const flush = () => {
    if (prev) for (const p of prev.list) out.push({ ...p, proto: prev.lo, protoLast: prev.hi });
    prev = undefined;
  };
  for (let i = 0; i + 1 < protoCuts.length; i++) {
    const lo = protoCuts[i]!;
    const hi = protoCuts[i + 1]! - 1;
    const cover = boxes.filter((b) => b[0] <= lo && b[1] >= lo);
    const list: Piece[] = [];
    if (cover.length) {
      const portCuts = uniq(cover.flatMap((b) => [b[2], b[3] + 1]));
      for (let j = 0; j + 1 < portCuts.length; j++) {
        const plo = portCuts[j]!;
        const phi = portCuts[j + 1]! - 1;
        const pols = [...new Set(cover.filter((b) => b[2] <= plo && b[3] >= plo).map((b) => b[4]))].sort(cmp);
        if (!pols.length) continue;
        const last = list[list.length - 1];
        if (last && last.portLast + 1 === plo && last.policies.join("\n") === pols.join("\n")) last.portLast = phi;
        else list.push({ proto: lo, protoLast: hi, port: plo, portLast: phi, policies: pols });
      }
    }
    if (!list.length) {
      flush();
      continue;
    }
    const sig = list.map((p) => `${p.port}-${p.portLast}:${p.policies.join(",")}`).join(";");
    if (prev && prev.hi + 1 === lo && prev.sig === sig) prev.hi = hi;
    else {
      flush();
      prev = { lo, hi, list, sig };
    }
  }
  flush();
  return out;
}

const sameList = (a: string[], b: string[]) => a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
const samePieces = (a: Piece[], b: Piece[]) =>
  a.length === b.length &&
  a.every((p, i) => {
    const q = b[i]!;
    return p.proto === q.proto && p.protoLast === q.protoLast && p.port === q.port && p.portLast === q.portLast && sameList(p.policies, q.policies);
  });

/**
 * Step 9 for one direction: `pairs` maps the fixed end (ingress: dst; egress: src) to the
 * other end's boxes; runs of consecutive ids of the other end with equal pieces merge.
 */
function elements(pairs: Map<number, Map<number, Box[]>>, fixedIsDst: boolean): AllowElement[] {
  const out: AllowElement[] = [];
  // many pairs have the same boxes (every source a rule admits, for one destination)
  const memo = new Map<string, Piece[]>();
  const piecesOf = (boxes: Box[]): Piece[] => {
    if (boxes.length === 1) return pieces(boxes);
    const k = boxes.map((b) => b.join(",")).join(";");
    let ps = memo.get(k);
    if (!ps) memo.set(k, (ps = pieces(boxes)));
    return ps;
  };
  for (const [fixed, others] of pairs) {
    const ids = [...others.keys()].sort((a, b) => a - b);
    let run: { first: number; last: number; ps: Piece[] } | undefined;
    const emit = () => {
      if (!run) return;
      for (const p of run.ps) {
        const [src, srcLast, dst, dstLast] = fixedIsDst ? [run.first, run.last, fixed, fixed] : [fixed, fixed, run.first, run.last];
        out.push({ src, srcLast, dst, dstLast, proto: p.proto, protoLast: p.protoLast, port: p.port, portLast: p.portLast, policies: p.policies });
      }
    };
    for (const id of ids) {
      const ps = piecesOf(others.get(id)!);
      if (run && run.last + 1 === id && samePieces(run.ps, ps)) run.last = id;
      else {
        emit();
        run = { first: id, last: id, ps };
      }
    }
    emit();
  }
  return out.sort((a, b) => a.src - b.src || a.dst - b.dst || a.proto - b.proto || a.port - b.port);
}

/** Step 7: the (proto, port) boxes of one rule for destination `x` (undefined: not a pod). */
function portBoxes(rule: PolicyRule, x: Ident | undefined, policy: string): Box[] {
  if (!rule.ports.length) return [[0, 255, 0, 65535, policy]];
  const out: Box[] = [];
  for (const p of rule.ports) {
    const n = IP_PROTOCOL[p.protocol];
    if (p.port === undefined) out.push([n, n, 0, 65535, policy]);
    else if (typeof p.port === "number") out.push([n, n, p.port, p.endPort ?? p.port, policy]);
    else if (x?.pod) for (const c of x.pod.ports) if (c.name === p.port && c.protocol === p.protocol) out.push([n, n, c.port, c.port, policy]);
  }
  return out;
}

function addBoxes(pairs: Map<number, Map<number, Box[]>>, fixed: number, other: number, boxes: Box[]): void {
  if (!boxes.length) return;
  let m = pairs.get(fixed);
  if (!m) pairs.set(fixed, (m = new Map()));
  const l = m.get(other);
  if (l) l.push(...boxes);
  else m.set(other, [...boxes]);
}

interface Holder {
  pod: PodInfo;
  key: string;
}

export function compilePolicy(state: PolicyState, opts: PolicyOptions, previous: Map<string, number> = new Map()): PolicyTables {
  // 1. policies in force
  const generated = generatedPolicies(state);
  const policies = [...state.policies, ...generated].sort(byPolicy);
  const byName = new Map(policies.map((p) => [policyName(p), p]));
  const blockUnknown = policies.length > 0;

  // 2. blocks
  const blocks = new Map<string, Block>();
  const peerBlock = new Map<PolicyPeer, string>();
  for (const p of policies) {
    for (const rules of [p.ingress, p.egress]) {
      for (const r of rules ?? []) {
        for (const peer of r.peers) {
          if (peer.kind !== "cidr") continue;
          const b = blockOf(peer);
          if (!blocks.has(b.text)) blocks.set(b.text, b);
          peerBlock.set(peer, b.text);
        }
      }
    }
  }

  // 3. keys: the address space cut per family, then pod addresses
  const podSpans = blockUnknown ? opts.podCIDRs.map(span) : [];
  const cuts = new Map<Family, Cut>();
  for (const f of [4, 6] as const) {
    cuts.set(
      f,
      cut(
        f,
        [...blocks.values()].filter((b) => b.cidr.family === f),
        podSpans.filter((s) => s.family === f),
      ),
    );
  }
  const idents = new Map<string, Ident>();
  const identOf = (key: string, make: () => Omit<Ident, "key" | "id" | "local" | "ingressBy" | "egressBy">): Ident => {
    let i = idents.get(key);
    if (!i) idents.set(key, (i = { key, id: 0, local: false, ingressBy: [], egressBy: [], ...make() }));
    return i;
  };
  const holders = new Map<string, Holder[]>();
  const addrInfo = new Map<string, { family: Family; value: bigint; interval: number }>();
  const podGroupText = new Map<PodInfo, { labels: string; ports: string }>();
  for (const pod of state.pods) {
    const g = { labels: labelText(pod.labels), ports: portText(pod.ports) };
    podGroupText.set(pod, g);
    if (!pod.ips.length) continue;
    for (const ip of pod.ips) {
      let info = addrInfo.get(ip);
      if (!info) {
        const bytes = ip.includes(":") ? addressBytes(ip) : ip.split(".").map(Number);
        const family: Family = bytes.length === 4 ? 4 : 6;
        const value = toBig(bytes);
        info = { family, value, interval: indexOf(cuts.get(family)!.points, value) };
        addrInfo.set(ip, info);
      }
      const held = cuts.get(info.family)!.blocks[info.interval]!;
      const key = `pod|${pod.namespace}|${g.labels}|${g.ports}|${held.join("+")}`;
      const h = holders.get(ip);
      if (h) h.push({ pod, key });
      else holders.set(ip, [{ pod, key }]);
    }
  }
  const problems = new Set<string>();
  const addrIdent = new Map<string, Ident>();
  for (const [ip, hs] of holders) {
    if (hs.some((h) => h.key !== hs[0]!.key)) {
      const names = hs.map((h) => `${h.pod.namespace}/${h.pod.name}`).sort(cmp);
      problems.add(`address ${ip}: held by pods ${names.join(", ")}; blocked`);
      continue;
    }
    const pod = hs[0]!.pod;
    const info = addrInfo.get(ip)!;
    const ident = identOf(hs[0]!.key, () => ({
      pod: { namespace: pod.namespace, labels: pod.labels, labelText: podGroupText.get(pod)!.labels, ports: pod.ports },
      blocks: cuts.get(info.family)!.blocks[info.interval]!,
    }));
    if (hs.some((h) => h.pod.nodeName === opts.nodeName)) ident.local = true;
    addrIdent.set(ip, ident);
  }
  for (const c of cuts.values()) {
    c.blocks.forEach((held, i) => {
      if ((blockUnknown && c.podCidr[i]) || !held.length) return;
      identOf(`cidr|${held.join("+")}`, () => ({ blocks: held }));
    });
  }

  // 4. ids
  const keys = [...idents.keys()].sort(cmp);
  const limit = assignIds(
    keys.map((k) => [k, idents.get(k)!]),
    previous,
    opts.maxIdentity,
  );
  if (limit) problems.add(limit);
  const inUse = (i: Ident) => i.id <= opts.maxIdentity;
  const idOf = (i: Ident) => (inUse(i) ? i.id : BLOCKED);
  const used = [...idents.values()].filter(inUse).sort((a, b) => a.id - b.id);

  // 10. addresses and ranges (here: whether BLOCKED is used decides isolation below)
  let blockedUsed = false;
  const pods: (PodAddress & { value: bigint })[] = [];
  const localSet = new Set<string>();
  for (const [ip, hs] of holders) {
    const info = addrInfo.get(ip)!;
    const ident = addrIdent.get(ip);
    const id = ident ? idOf(ident) : BLOCKED;
    const local = hs.some((h) => h.pod.nodeName === opts.nodeName);
    if (local) localSet.add(ip);
    // past the limit: this node's pods are blocked (fail closed); another node's address is
    // left to the ranges, judged by the ipBlocks holding it alone (which can only take away
    // what its labels gave it, never give more), so this node's pods still reach it
    if (id === BLOCKED && ident && !local) continue;
    if (id === BLOCKED) blockedUsed = true;
    pods.push({ family: info.family, ip, id, value: info.value });
  }
  const byAddress = (a: { family: Family; value: bigint }, b: { family: Family; value: bigint }) => a.family - b.family || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);
  pods.sort(byAddress);
  const ranges: AddressRange[] = [];
  for (const f of [4, 6] as const) {
    const c = cuts.get(f)!;
    const end = (1n << BITS[f]) - 1n;
    let cur: { first: bigint; last: bigint; id: number } | undefined;
    const emit = () => {
      if (cur && cur.id !== WORLD) ranges.push({ family: f, first: fromBig(cur.first, f), last: fromBig(cur.last, f), id: cur.id });
    };
    c.points.forEach((p, i) => {
      const last = i + 1 < c.points.length ? c.points[i + 1]! - 1n : end;
      const held = c.blocks[i]!;
      // a range whose identity is past the limit is WORLD (its ipBlocks' rights lost, never more)
      const rid = () => idents.get(`cidr|${held.join("+")}`)!.id;
      const id = blockUnknown && c.podCidr[i] ? BLOCKED : !held.length || rid() > opts.maxIdentity ? WORLD : rid();
      if (id === BLOCKED) blockedUsed = true;
      if (cur && cur.id === id) cur.last = last;
      else {
        emit();
        cur = { first: p, last, id };
      }
    });
    emit();
  }

  // 5. local identities and the policies selecting them
  const localByNs = new Map<string, Ident[]>();
  const podIdentsByNs = new Map<string, Ident[]>();
  for (const i of used) {
    if (!i.pod) continue;
    const l = podIdentsByNs.get(i.pod.namespace);
    if (l) l.push(i);
    else podIdentsByNs.set(i.pod.namespace, [i]);
    if (!i.local) continue;
    const m = localByNs.get(i.pod.namespace);
    if (m) m.push(i);
    else localByNs.set(i.pod.namespace, [i]);
  }
  for (const p of policies) {
    if (!p.ingress && !p.egress) continue;
    for (const i of localByNs.get(p.namespace) ?? []) {
      if (!selectorMatches(p.podSelector, i.pod!.labels)) continue;
      if (p.ingress) i.ingressBy.push(policyName(p));
      if (p.egress) i.egressBy.push(policyName(p));
    }
  }
  const local = used.filter((i) => i.local);
  const isolatedIngress = local.filter((i) => i.ingressBy.length).map((i) => i.id);
  const isolatedEgress = local.filter((i) => i.egressBy.length).map((i) => i.id);
  if (blockedUsed) {
    isolatedIngress.push(BLOCKED);
    isolatedEgress.push(BLOCKED);
  }
  isolatedIngress.sort((a, b) => a - b);
  isolatedEgress.sort((a, b) => a - b);

  // 6. peers: the identities a rule's peers match (undefined stands for WORLD)
  const nsLabels = new Map<string, Record<string, string>>();
  for (const n of state.namespaces) nsLabels.set(n.name, n.labels);
  for (const ns of podIdentsByNs.keys()) if (!nsLabels.has(ns)) nsLabels.set(ns, { [NAME_LABEL]: ns });
  const byBlock = new Map<string, Ident[]>();
  for (const i of used) {
    for (const b of i.blocks) {
      const l = byBlock.get(b);
      if (l) l.push(i);
      else byBlock.set(b, [i]);
    }
  }
  const everyone: (Ident | undefined)[] = [undefined, ...used];
  const peerCache = new Map<PolicyRule, (Ident | undefined)[]>();
  const matched = (p: Policy, rule: PolicyRule): (Ident | undefined)[] => {
    if (!rule.peers.length) return everyone;
    const hit = peerCache.get(rule);
    if (hit) return hit;
    const out = new Set<Ident>();
    for (const peer of rule.peers) {
      if (peer.kind === "cidr") {
        for (const i of byBlock.get(peerBlock.get(peer)!) ?? []) out.add(i);
        continue;
      }
      const nss = peer.namespaces ? [...nsLabels].filter(([, l]) => selectorMatches(peer.namespaces!, l)).map(([n]) => n) : [p.namespace];
      for (const ns of nss) for (const i of podIdentsByNs.get(ns) ?? []) if (!peer.pods || selectorMatches(peer.pods, i.pod!.labels)) out.add(i);
    }
    const l = [...out];
    peerCache.set(rule, l);
    return l;
  };

  // 7, 8. pairs
  const ingressPairs = new Map<number, Map<number, Box[]>>();
  const egressPairs = new Map<number, Map<number, Box[]>>();
  for (const d of local) {
    for (const name of d.ingressBy) {
      const p = byName.get(name)!;
      for (const rule of p.ingress!) {
        const boxes = portBoxes(rule, d, name);
        if (!boxes.length) continue;
        for (const s of matched(p, rule)) addBoxes(ingressPairs, d.id, s ? s.id : WORLD, boxes);
      }
      if (p.viaService) addBoxes(ingressPairs, d.id, VIA_SERVICE, [[0, 255, 0, 65535, name]]);
    }
  }
  for (const s of local) {
    for (const name of s.egressBy) {
      const p = byName.get(name)!;
      for (const rule of p.egress!) {
        const fixed = rule.ports.some((x) => typeof x.port === "string") ? undefined : portBoxes(rule, undefined, name);
        for (const d of matched(p, rule)) addBoxes(egressPairs, s.id, d ? d.id : WORLD, fixed ?? portBoxes(rule, d, name));
      }
    }
  }

  // 11. problems: named ports no pod they could apply to has
  namedPortProblems(state, podGroupText, policies, nsLabels, peerBlock, cuts, addrInfo, problems);

  return {
    identities: used.map(
      (i): Identity => ({
        id: i.id,
        key: i.key,
        name: i.pod
          ? `pod ${i.pod.namespace} ${i.pod.labelText}${i.blocks.length ? ` in ${i.blocks.join(" + ")}` : ""}`
          : `cidr ${i.blocks.join(" + ")}`,
        local: i.local,
        ingressBy: i.ingressBy,
        egressBy: i.egressBy,
      }),
    ),
    pods: pods.map(({ family, ip, id }) => ({ family, ip, id })),
    ranges,
    isolatedIngress,
    isolatedEgress,
    allowIngress: elements(ingressPairs, true),
    allowEgress: elements(egressPairs, false),
    localAddresses: pods.filter((p) => localSet.has(p.ip)).map((p) => p.ip),
    generated,
    problems: [...problems].sort(cmp),
  };
}

function namedPortProblems(
  state: PolicyState,
  texts: Map<PodInfo, { labels: string; ports: string }>,
  policies: Policy[],
  nsLabels: Map<string, Record<string, string>>,
  peerBlock: Map<PolicyPeer, string>,
  cuts: Map<Family, Cut>,
  addrInfo: Map<string, { family: Family; interval: number }>,
  problems: Set<string>,
): void {
  // pods alike in namespace, labels and named ports answer alike: one of each is looked at
  const podsByNs = new Map<string, PodInfo[]>();
  const seen = new Set<string>();
  for (const pod of state.pods) {
    const t = texts.get(pod)!;
    const k = `${pod.namespace}|${t.labels}|${t.ports}`;
    if (seen.has(k)) continue;
    seen.add(k);
    const l = podsByNs.get(pod.namespace);
    if (l) l.push(pod);
    else podsByNs.set(pod.namespace, [pod]);
  }
  const distinct = [...podsByNs.values()].flat();
  // namespaces of pods only: a Namespace object without pods has none to look at
  const labelsOf = (ns: string) => nsLabels.get(ns) ?? { [NAME_LABEL]: ns };
  const has = (pods: Iterable<PodInfo>, name: string, proto: Protocol) => {
    for (const pod of pods) if (pod.ports.some((c) => c.name === name && c.protocol === proto)) return true;
    return false;
  };
  let inBlock: Map<string, PodInfo[]> | undefined;
  const podsIn = (text: string): PodInfo[] => {
    if (!inBlock) {
      inBlock = new Map();
      for (const pod of state.pods) {
        const held = new Set(pod.ips.flatMap((ip) => {
          const info = addrInfo.get(ip);
          return info ? cuts.get(info.family)!.blocks[info.interval]! : [];
        }));
        for (const b of held) {
          const l = inBlock.get(b);
          if (l) l.push(pod);
          else inBlock.set(b, [pod]);
        }
      }
    }
    return inBlock.get(text) ?? [];
  };
  for (const p of policies) {
    const named = (rules: PolicyRule[] | null) => (rules ?? []).some((r) => r.ports.some((x) => typeof x.port === "string"));
    if (named(p.ingress)) {
      const selected = (podsByNs.get(p.namespace) ?? []).filter((pod) => selectorMatches(p.podSelector, pod.labels));
      p.ingress!.forEach((r, i) =>
        r.ports.forEach((x, j) => {
          if (typeof x.port === "string" && !has(selected, x.port, x.protocol)) {
            problems.add(`NetworkPolicy ${policyName(p)}: spec.ingress[${i}].ports[${j}].port: no pod the policy selects has a ${x.protocol} port named "${x.port}"`);
          }
        }),
      );
    }
    if (named(p.egress)) {
      p.egress!.forEach((r, i) => {
        if (!r.ports.some((x) => typeof x.port === "string")) return;
        let targets: PodInfo[];
        if (!r.peers.length) targets = distinct;
        else {
          const out = new Set<PodInfo>();
          for (const peer of r.peers) {
            if (peer.kind === "cidr") {
              const text = peerBlock.get(peer)!;
              for (const pod of podsIn(text)) out.add(pod);
              continue;
            }
            const nss = peer.namespaces ? [...podsByNs.keys()].filter((n) => selectorMatches(peer.namespaces!, labelsOf(n))) : [p.namespace];
            for (const ns of nss) for (const pod of podsByNs.get(ns) ?? []) if (!peer.pods || selectorMatches(peer.pods, pod.labels)) out.add(pod);
          }
          targets = [...out];
        }
        r.ports.forEach((x, j) => {
          if (typeof x.port === "string" && !has(targets, x.port, x.protocol)) {
            problems.add(`NetworkPolicy ${policyName(p)}: spec.egress[${i}].ports[${j}].port: no pod the rule's peers match has a ${x.protocol} port named "${x.port}"`);
          }
        });
      });
    }
  }
}

/** The ids of a compile, to pass as `previous` to the next one. */
export function identityIds(tables: PolicyTables): Map<string, number> {
  return new Map(tables.identities.map((i) => [i.key, i.id]));
}
