// NetworkPolicy in `inet skein` as nft text: the fixed sets, maps and chains (part of the
// skeleton, nft-text.ts), the identity chains and elements of compiled PolicyTables
// (compiler/policy/types.ts), the delta between two of them, and the atomic replacement of
// whatever policy an adopted table holds. Pure.
//
// A new connection forwarded by the node walks pol_forward once (replies and later packets are
// accepted as established): the source address finds its identity through a verdict map whose
// element jumps to pols_<id>, which puts the id in skein's bits of the packet mark (the range
// the service path uses only from its target chains to the ring lookup, in nat prerouting);
// the destination address the same way through pold_<id> into the conntrack mark's bits below
// the masquerade flag (marks.ts identityBits). An address in no map is WORLD (0). Then, when
// the source's egress is isolated on this node, (src . dst . protocol . port) must be in
// pol_allow_out; when the destination's ingress is, in pol_allow_in (or, for a connection a
// Service's DNAT brought, with VIA_SERVICE as its source). The cost per connection is a fixed
// number of lookups whatever the policies; a pod whose labels change moves its address between
// identity chains (an element per map), never a rule.
//
// Traffic between the node and its pods (input, output) is not policed: kubelet probes and
// the node's own services always reach the pods.
//
// Anti-spoofing (pol_spoof, prerouting before conntrack): a packet whose source is one of this
// node's pods must come in on the interface that address is routed through, and every packet
// sent to skein's host-side veth MAC must pass the same reverse-path check: by address and
// route, never by interface name, so pods wired by another CNI are covered by the first rule.
import { VIA_SERVICE, type AllowElement, type PolicyTables } from "../../compiler/policy/types.ts";
import { HOST_MAC } from "../cni/plan.ts";
import { hex32 as hex, identityBits, markShift, maxIdentity, type Marks } from "./marks.ts";
import { TABLE } from "./model.ts";

/** The policy sets and maps of the skeleton, declared (names without the table). */
export function policyDeclarations(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const dir of ["in", "out"] as const) {
    out[`pol_iso_${dir}`] = `set pol_iso_${dir} { type mark; }`;
    // the same elements as pol_iso_*, looked up only by the drop rule: their counters count
    // drops per identity (policy-counters.ts)
    out[`pol_drop_${dir}`] = `set pol_drop_${dir} { type mark; counter; }`;
    out[`pol_allow_${dir}`] = `set pol_allow_${dir} { type mark . mark . inet_proto . inet_service; flags interval; counter; }`;
  }
  // destination identities a viaService policy isolates, on any node (via-service.ts)
  out.pol_viasvc = "set pol_viasvc { type mark; }";
  for (const fam of [4, 6] as const) {
    const type = fam === 4 ? "ipv4_addr" : "ipv6_addr";
    out[`pol_spod${fam}`] = `map pol_spod${fam} { type ${type} : verdict; }`;
    out[`pol_dpod${fam}`] = `map pol_dpod${fam} { type ${type} : verdict; }`;
    out[`pol_srange${fam}`] = `map pol_srange${fam} { type ${type} : verdict; flags interval; }`;
    out[`pol_drange${fam}`] = `map pol_drange${fam} { type ${type} : verdict; flags interval; }`;
    out[`pol_local${fam}`] = `set pol_local${fam} { type ${type}; }`;
    // every node's Service source addresses (via-service.ts)
    out[`pol_svcaddr${fam}`] = `set pol_svcaddr${fam} { type ${type}; }`;
  }
  return out;
}

export const POLICY_SETS = Object.keys(policyDeclarations());

/** The fixed chain whose rules follow the tables (this node's Service source addresses): its
 * rules are compared with the tables, not with the reference table (adopt.ts, drift.ts). */
export const SERVICE_SOURCE_CHAIN = "pol_svcsrc";

/** Chains whose names say they hold one identity: pols_<id> (source), pold_<id> (destination). */
export const IDENTITY_CHAIN = /^pol[sd]_\d+$/;

const ip = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");

/**
 * The fixed policy chains: name → [head, ...rules], head empty for a regular chain. Regular
 * chains come first: a base chain's jump needs its target to exist.
 */
export function policyChains(marks: Marks): Map<string, string[]> {
  const R = marks.mark >>> 0;
  const I = identityBits(marks);
  const key = `meta mark & ${hex(R)} . ct mark & ${hex(I)} . meta l4proto . th dport`;
  const c = new Map<string, string[]>();
  // each vmap's verdict is a goto: the first address found sets the identity and returns
  // from here; pods before ranges (a pod address inside an ipBlock range is the pod's)
  for (const [chain, dir, which] of [["pol_ids", "saddr", "s"], ["pol_idd", "daddr", "d"]] as const) {
    const rules: string[] = [];
    for (const kind of ["pod", "range"]) for (const fam of [4, 6] as const) rules.push(`${ip(fam)} ${dir} vmap @pol_${which}${kind}${fam}`);
    c.set(chain, ["", ...rules]);
  }
  c.set("pol_egress", ["", `${key} @pol_allow_out return`, `meta mark & ${hex(R)} @pol_drop_out drop`, "drop"]);
  c.set("pol_ingress", [
    "",
    `${key} @pol_allow_in return`,
    // a connection a Service's DNAT brought: also allowed when its policy admits VIA_SERVICE
    `ct status dnat meta mark set meta mark & ${hex(~R)} | ${hex(VIA_SERVICE << markShift(R))}`,
    `ct status dnat ${key} @pol_allow_in return`,
    `ct mark & ${hex(I)} @pol_drop_in drop`,
    "drop",
  ]);
  c.set("pol_forward", [
    "type filter hook forward priority 0; policy accept;",
    "ct state established,related accept",
    // no conntrack entry: the destination identity cannot be kept in its mark, so the ingress
    // check could not run; such a packet would pass it unchecked (fail closed instead)
    "ct state invalid,untracked drop",
    // a pod reaching itself through a Service: not a connection between identities
    ...([4, 6] as const).map((f) => `ct status dnat ${ip(f)} saddr . ${ip(f)} daddr @hairpin${f} accept`),
    // WORLD both ways until an address says otherwise; every other bit stays
    `meta mark set meta mark & ${hex(~R)} ct mark set ct mark & ${hex(~I)}`,
    "jump pol_ids",
    "jump pol_idd",
    `meta mark & ${hex(R)} @pol_iso_out jump pol_egress`,
    `ct mark & ${hex(I)} @pol_iso_in jump pol_ingress`,
  ]);
  // a connection a Service's DNAT sends to another node's pod of an identity that admits
  // connections through a Service leaves with this node's Service source address, which the
  // other node reads as VIA_SERVICE; the rules (this node's addresses) are the tables'
  // (SERVICE_SOURCE_CHAIN). Before nat_postrouting (100), whose masquerade would take it.
  c.set(SERVICE_SOURCE_CHAIN, [""]);
  // the destination's identity looked up here too: a connection from the node itself
  // (output) went through no pol_forward
  c.set("pol_snat", ["type nat hook postrouting priority 99; policy accept;", "ct status dnat jump pol_idd", `ct status dnat jump ${SERVICE_SOURCE_CHAIN}`]);
  c.set("pol_spoof", [
    "type filter hook prerouting priority -300; policy accept;",
    ...([4, 6] as const).map((f) => `${ip(f)} saddr @pol_local${f} fib saddr . iif oif missing drop`),
    // a node's Service source address arrives only from where that node is reached
    ...([4, 6] as const).map((f) => `${ip(f)} saddr @pol_svcaddr${f} fib saddr . iif oif missing drop`),
    `ether daddr ${HOST_MAC} fib saddr . iif oif missing drop`,
  ]);
  return c;
}

/** Elements per command line: nft parses one huge line slower than several. */
const CHUNK = 2000;
/** The allow sets' elements per command line. nft 1.0.6 splits the elements of one command
 * into netlink messages of 1,260 elements of a concatenated interval set, and the first
 * element of every message after the first reaches the kernel with its marks' bytes swapped:
 * it allows what it should not, and a later delete of it fails (ENOENT), failing the whole
 * delta (measured, docs/measurements.md; test/policy-chunks.e2e.test.ts). */
export const ALLOW_CHUNK = 1000;
const elementLines = (verb: "add" | "delete", set: string, items: string[]) => {
  const out: string[] = [];
  const n = set.startsWith("pol_allow_") ? ALLOW_CHUNK : CHUNK;
  for (let i = 0; i < items.length; i += n) out.push(`${verb} element inet ${TABLE} ${set} { ${items.slice(i, i + n).join(", ")} }`);
  return out;
};

const span = (a: string | number, b: string | number) => (a === b ? String(a) : `${a}-${b}`);

/**
 * An allow element's key: identities shifted into their mark bits, then protocol and port.
 * The port is always written as a range, one port as `p-p`: nft 1.0.6 cannot delete an
 * element of a concatenated interval set written with single values only (ENOENT, however
 * it was added), and one range in the key is enough for it to find the element.
 */
export function allowKey(e: AllowElement, marks: Marks): string {
  const sR = markShift(marks.mark);
  const sI = markShift(identityBits(marks));
  const m = (id: number, s: number) => hex(id << s);
  return `${span(m(e.src, sR), m(e.srcLast, sR))} . ${span(m(e.dst, sI), m(e.dstLast, sI))} . ${span(e.proto, e.protoLast)} . ${e.port}-${e.portLast}`;
}

export const identityChains = (id: number, marks: Marks): Array<[string, string]> => {
  const R = marks.mark >>> 0;
  const I = identityBits(marks);
  return [
    [`pols_${id}`, `meta mark set meta mark & ${hex(~R)} | ${hex(id << markShift(R))}`],
    [`pold_${id}`, `ct mark set ct mark & ${hex(~I)} | ${hex(id << markShift(I))}`],
  ];
};

/** What the kernel holds of `t`: identity chains with their rule, and each set's elements
 * (key → verdict, "" in a set). */
export interface PolicyContent {
  chains: Map<string, string>;
  elements: Map<string, Map<string, string>>;
  /** the rules of SERVICE_SOURCE_CHAIN */
  sourceRules: string[];
}

export function policyContent(t: PolicyTables, marks: Marks): PolicyContent {
  const top = maxIdentity(marks);
  const ids = new Set<number>();
  const fits = (id: number, what: string) => {
    if (!Number.isInteger(id) || id < 0 || id > top) throw new Error(`identity ${id} (${what}) does not fit the mark ranges, which hold identities up to ${top}`);
    return id;
  };
  const elements = new Map(POLICY_SETS.map((s) => [s, new Map<string, string>()]));
  const el = (set: string, k: string, v = "") => elements.get(set)!.set(k, v);
  for (const p of t.pods) {
    ids.add(fits(p.id, `pod address ${p.ip}`));
    el(`pol_spod${p.family}`, p.ip, `goto pols_${p.id}`);
    el(`pol_dpod${p.family}`, p.ip, `goto pold_${p.id}`);
  }
  for (const r of t.ranges) {
    ids.add(fits(r.id, `range ${r.first}-${r.last}`));
    el(`pol_srange${r.family}`, span(r.first, r.last), `goto pols_${r.id}`);
    el(`pol_drange${r.family}`, span(r.first, r.last), `goto pold_${r.id}`);
  }
  for (const a of t.localAddresses) el(`pol_local${a.includes(":") ? 6 : 4}`, a);
  // other nodes' (and this node's) Service source addresses are VIA_SERVICE as sources
  for (const x of t.serviceSources ?? []) {
    ids.add(VIA_SERVICE);
    el(`pol_spod${x.family}`, x.ip, `goto pols_${VIA_SERVICE}`);
    el(`pol_svcaddr${x.family}`, x.ip);
  }
  const sR = markShift(marks.mark);
  const sI = markShift(identityBits(marks));
  for (const id of t.isolatedIngress) {
    const v = hex(fits(id, "isolated ingress") << sI);
    el("pol_iso_in", v);
    el("pol_drop_in", v);
  }
  for (const id of t.viaService ?? []) el("pol_viasvc", hex(fits(id, "reached through a Service") << sI));
  for (const id of t.isolatedEgress) {
    const v = hex(fits(id, "isolated egress") << sR);
    el("pol_iso_out", v);
    el("pol_drop_out", v);
  }
  for (const [set, list] of [["pol_allow_in", t.allowIngress], ["pol_allow_out", t.allowEgress]] as const) {
    for (const e of list) {
      for (const id of [e.src, e.srcLast, e.dst, e.dstLast]) fits(id, `an allow element of ${set}`);
      el(set, allowKey(e, marks));
    }
  }
  const chains = new Map<string, string>();
  for (const id of [...ids].sort((a, b) => a - b)) for (const [name, rule] of identityChains(id, marks)) chains.set(name, rule);
  const I = hex(identityBits(marks));
  const sourceRules = ([4, 6] as const).flatMap((f) => {
    const a = t.serviceSource?.[f];
    return a ? [`ct mark & ${I} @pol_viasvc ${ip(f)} daddr != @pol_local${f} snat ${ip(f)} to ${a}`] : [];
  });
  return { chains, elements, sourceRules };
}

const addChain = (name: string, rule: string) => [`add chain inet ${TABLE} ${name}`, `add rule inet ${TABLE} ${name} ${rule}`];
const elemText = (k: string, v: string) => (v ? `${k} : ${v}` : k);

/** The identity chains and the elements of `c`, as added to a table that has none. */
function addAll(c: PolicyContent): { chains: string[]; elements: string[] } {
  const chains = [...c.chains].flatMap(([n, r]) => addChain(n, r));
  const elements = [...[...c.elements].flatMap(([set, items]) => elementLines("add", set, [...items].map(([k, v]) => elemText(k, v)))), ...sourceRuleLines(c.sourceRules)];
  return { chains, elements };
}

const sourceRuleLines = (rules: string[]) => rules.map((r) => `add rule inet ${TABLE} ${SERVICE_SOURCE_CHAIN} ${r}`);

/**
 * The identity chains and the elements of `tables` in two parts, for one transaction that also
 * makes the table: nft 1.0.6 refuses (ENOENT) an interval map's `goto` element when the
 * chain was added after the map's declaration in the same transaction, so `chains` goes
 * before the skeleton's declarations and `elements` after them (nft-text.ts renderSkeleton).
 */
export function policyParts(tables: PolicyTables, marks: Marks): { chains: string[]; elements: string[] } {
  return addAll(policyContent(tables, marks));
}

/** The policy of `tables` for a table that has the skeleton and no policy elements yet. */
export function renderPolicy(tables: PolicyTables, marks: Marks): string {
  const p = policyParts(tables, marks);
  return lines([...p.chains, ...p.elements]);
}

const lines = (xs: string[]) => (xs.length ? xs.join("\n") + "\n" : "");

/**
 * From `prev` to `next`: identity chains added before the elements that go to them, element
 * deletes then adds (a key whose verdict changes is deleted and added: an address moving to
 * another identity is two lines per map it is in), chains no element goes to any more removed
 * last. Empty when nothing changed.
 */
export function renderPolicyDelta(prev: PolicyTables, next: PolicyTables, marks: Marks): string {
  const a = policyContent(prev, marks);
  const b = policyContent(next, marks);
  const out: string[] = [];
  for (const [name, rule] of b.chains) if (!a.chains.has(name)) out.push(...addChain(name, rule));
  for (const [set, items] of b.elements) {
    const before = a.elements.get(set)!;
    const del: string[] = [];
    const add: string[] = [];
    for (const [k, v] of before) if (items.get(k) !== v) del.push(k);
    for (const [k, v] of items) if (before.get(k) !== v) add.push(elemText(k, v));
    out.push(...elementLines("delete", set, del), ...elementLines("add", set, add));
  }
  if (a.sourceRules.join("\n") !== b.sourceRules.join("\n")) out.push(`flush chain inet ${TABLE} ${SERVICE_SOURCE_CHAIN}`, ...sourceRuleLines(b.sourceRules));
  for (const name of a.chains.keys()) if (!b.chains.has(name)) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return lines(out);
}

/**
 * The policy of an adopted table whose content is not known replaced by `next`, in one
 * transaction (no moment where the sets are empty, which would allow everything): every policy
 * set and map flushed, the identity chains among `chainsInKernel` that `next` does not use
 * deleted (the others flushed and refilled), then next's chains and elements. The sets in
 * `known` (what the kernel was read to hold: policy-adopt.ts) get only the difference instead:
 * an allow set switches a moment after the maps in the transaction, and on kernels before
 * 6.17 an element deleted and added again is missing then (policy-adopt.ts says more).
 */
export function renderPolicyReplace(next: PolicyTables, marks: Marks, chainsInKernel: string[], known: ReadonlyMap<string, ReadonlySet<string>> = new Map()): string {
  const b = policyContent(next, marks);
  const have = new Set(chainsInKernel.filter((n) => IDENTITY_CHAIN.test(n)));
  const out: string[] = Object.entries(policyDeclarations()).flatMap(([s, decl]) => (known.has(s) ? [] : [`flush ${decl.split(" ")[0]} inet ${TABLE} ${s}`]));
  for (const [name, rule] of b.chains) {
    if (have.has(name)) out.push(`flush chain inet ${TABLE} ${name}`, `add rule inet ${TABLE} ${name} ${rule}`);
    else out.push(...addChain(name, rule));
  }
  for (const name of have) if (!b.chains.has(name)) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  const elements = new Map<string, Map<string, string>>();
  for (const [set, items] of b.elements) {
    const inKernel = known.get(set);
    if (!inKernel) {
      elements.set(set, items);
      continue;
    }
    out.push(...elementLines("delete", set, [...inKernel].filter((k) => !items.has(k))));
    elements.set(set, new Map([...items].filter(([k]) => !inKernel.has(k))));
  }
  out.push(`flush chain inet ${TABLE} ${SERVICE_SOURCE_CHAIN}`, ...addAll({ chains: new Map(), elements, sourceRules: b.sourceRules }).elements);
  return lines(out);
}

const ALLOW_ADD = /^add element inet \S+ (pol_allow_(?:in|out)) \{ (.*) \}$/;

/**
 * `text` (a delta or a replace of `next`) in two transactions: first the allow elements it adds
 * that no packet can match yet, then the rest. An element is inert when the identities on one
 * of its sides are all unused (`used`: the ids the kernel's maps and chains hold now, WORLD and
 * the reserved ones always): no address goes to them until the rest is in. The allow sets
 * switch a moment after the maps within a transaction (policy-adopt.ts), so a pod moved to a
 * new identity would meet the old allow elements, none of them its own; written first, its own
 * are there. `first` is empty when nothing is inert or `text` flushes an allow set (a replace
 * of unknown content writes them all again anyway).
 */
export function inertAllowAddsFirst(text: string, next: PolicyTables, marks: Marks, used: Iterable<number>): { first: string; then: string } {
  if (/^flush set inet \S+ pol_allow_/m.test(text)) return { first: "", then: text };
  const ids = [...new Set([0, 1, 2, ...used])].sort((a, b) => a - b);
  // whether any used id lies in lo..hi
  const anyUsed = (lo: number, hi: number) => {
    let [a, b] = [0, ids.length];
    while (a < b) {
      const m = (a + b) >> 1;
      if (ids[m]! < lo) a = m + 1;
      else b = m;
    }
    return a < ids.length && ids[a]! <= hi;
  };
  const inert = new Set<string>();
  for (const e of [...next.allowIngress, ...next.allowEgress]) if (!anyUsed(e.src, e.srcLast) || !anyUsed(e.dst, e.dstLast)) inert.add(allowKey(e, marks));
  if (!inert.size) return { first: "", then: text };
  const first: string[] = [];
  const then: string[] = [];
  for (const l of text.split("\n")) {
    if (!l) continue;
    const m = ALLOW_ADD.exec(l);
    if (!m) {
      then.push(l);
      continue;
    }
    const keys = m[2]!.split(", ");
    const early = keys.filter((k) => inert.has(k));
    const late = keys.filter((k) => !inert.has(k));
    if (early.length) first.push(`add element inet ${TABLE} ${m[1]} { ${early.join(", ")} }`);
    if (late.length) then.push(`add element inet ${TABLE} ${m[1]} { ${late.join(", ")} }`);
  }
  return { first: lines(first), then: lines(then) };
}
