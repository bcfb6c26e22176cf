// Renders compiled tables into nftables: a model of the table `inet skein` (its chains, the
// elements of its sets and maps, and the Maglev rings), the nft text of a delta between two
// models, and the ring operations between two models that go to the kernel as a netlink
// batch (agent/datapath/nfnl.ts). Pure.
//
// Shape, chosen so that the number of sets, maps and rules that look them up stays constant
// as services grow (the kernel finds a set by walking a list, and every element insert into a
// map costs in proportion to the rules referencing it):
//   svc4/svc6   verdict maps  daddr . l4proto . dport -> goto t_<target>
//   t_<target>  one chain per target: put the target id in skein's bits of the packet mark,
//               goto its ring chain
//   ring…_<bank>_<M>  one chain per (family, affinity, ring size): DNAT through the shared
//               map be4_<bank>/be6_<bank> keyed by (mark & skein's bits) . jhash(client) mod M
//   noep4/noep6 frontends whose target has no backend: rejected at once, never black-holed
//   t_<target>_m  the same for frontends that must be source-NATed (Cluster-policy NodePort,
//               external and load-balancer addresses): it also sets the masquerade bit in
//               the connection's ct mark, which postrouting masquerades on
//   hairpin4/6  backends as (addr . addr): a pod reaching itself through a service is
//               masqueraded, or its reply would bypass the translation (only this node's
//               pods, when the model is given their CIDRs: see model())
// The packet mark carries the target id for the ring lookup (the first packet only, NAT runs
// once per connection); a bit of the ct mark is the masquerade flag. Both only in the bit
// ranges marks.ts gives skein: every other bit of either mark passes through unchanged.
//
// The ring maps are fixed-size hashes (`size`: the kernel inserts into those ~3.5x faster
// than into its resizable default). A bank (0 or 1) names one generation of ring maps and
// ring chains: outgrowing a map's size builds the other bank beside the live one and switches
// the target chains over in one transaction.
import type { Ring, Tables, Target } from "../../compiler/reference/compile.ts";
import type { RingRule } from "./nfnl.ts";
import { addressText, compareKeys, KEY_BYTES, keyPort, sameKey, type AddressTest } from "../../compiler/keys.ts";
import { checkMarks, DEFAULT_MARKS, hex32 as hex, marksComment, markValue, masqBit, type Marks } from "./marks.ts";

export const TABLE = "skein";

const proto = (p: string) => p.toLowerCase();
const addr = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");
export const ringMap = (family: 4 | 6, bank: number) => `be${family}_${bank}`;
const ringChain = (t: Pick<Target, "family" | "affinity" | "ringSize">, bank: number) => `ring${t.family}${t.affinity ? "a" : ""}_${bank}_${t.ringSize}`;

/** The ring rule as nft text: what nfnl.ts encodes, for listings and the one-file form. */
function ringRuleText(r: RingRule): string {
  const a = addr(r.family);
  const client = r.affinity ? `${a} saddr` : `${a} saddr . th sport`;
  return `meta l4proto { tcp, udp, sctp } dnat ${a} to meta mark & ${hex(r.mark)} . jhash ${client} mod ${r.ringSize} seed 0x0 map @${r.map}`;
}

export interface Capacity {
  4: number;
  6: number;
}

/** Ring map sizes per family: room for 25% growth before a bank switch, never below 4096. */
export function ringCapacity(slots: Capacity): Capacity {
  const size = (n: number) => {
    let c = 4096;
    while (c < n * 1.25) c *= 2;
    return c;
  };
  return { 4: size(slots[4]), 6: size(slots[6]) };
}

/** Set and map declarations: fixed, whatever the services (the ring maps per bank). */
function sets(bank: number, cap: Capacity): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fam of [4, 6] as const) {
    const type = fam === 4 ? "ipv4_addr" : "ipv6_addr";
    out[`svc${fam}`] = `map svc${fam} { type ${type} . inet_proto . inet_service : verdict; }`;
    out[`noep${fam}`] = `set noep${fam} { type ${type} . inet_proto . inet_service; }`;
    out[`hairpin${fam}`] = `set hairpin${fam} { type ${type} . ${type}; }`;
    // the Service CIDRs: an address there that no frontend serves is refused (serviceCidrScript).
    // front4/6 hold every frontend's key: the reject rule cannot look up svc4/6 itself, as a
    // filter chain bound to that map would have to accept its verdicts' dnat chains
    out[`svcnet${fam}`] = `set svcnet${fam} { type ${type}; flags interval; }`;
    out[`front${fam}`] = `set front${fam} { type ${type} . inet_proto . inet_service; }`;
  }
  for (const fam of [4, 6] as const) out[ringMap(fam, bank)] = ringMapDecl(fam, bank, cap[fam]);
  return out;
}

// `typeof` gives the key the width of a mark and a hash; the syntax needs some transport-free
// expression for it.
const ringMapDecl = (fam: 4 | 6, bank: number, size: number) => `map ${ringMap(fam, bank)} { typeof meta mark . numgen inc mod 2 : ${addr(fam)} daddr . th dport; size ${size}; }`;
export const addRingMap = (fam: 4 | 6, bank: number, size: number) => `add ${ringMapDecl(fam, bank, size).replace(/^map /, `map inet ${TABLE} `)}`;

/** Base chains: fixed too. -100 is dstnat (nft 1.0.6 takes the name only in prerouting). */
function baseChains(marks: Marks): Map<string, string[]> {
  const c = new Map<string, string[]>();
  for (const hook of ["prerouting", "output"] as const) {
    c.set(`nat_${hook}`, [`type nat hook ${hook} priority -100; policy accept;`, `ip daddr . meta l4proto . th dport vmap @svc4`, `ip6 daddr . meta l4proto . th dport vmap @svc6`]);
    const rej = [`type filter hook ${hook} priority -110; policy accept;`];
    for (const fam of [4, 6] as const) {
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} meta l4proto tcp reject with tcp reset`);
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} reject`);
      // traffic to an address of the service CIDR on no frontend: refused at once, as
      // kube-proxy's nftables mode does, rather than sent out untranslated (which would also
      // leave a conntrack entry that keeps a retried SYN untranslated once the Service exists)
      rej.push(`${addr(fam)} daddr @svcnet${fam} ${addr(fam)} daddr . meta l4proto . th dport != @front${fam} meta l4proto tcp reject with tcp reset`);
      rej.push(`${addr(fam)} daddr @svcnet${fam} ${addr(fam)} daddr . meta l4proto . th dport != @front${fam} reject`);
    }
    c.set(`reject_${hook}`, rej);
  }
  c.set(`nat_postrouting`, [
    `type nat hook postrouting priority srcnat; policy accept;`,
    `ct mark & ${hex(masqBit(marks))} == ${hex(masqBit(marks))} masquerade`,
    `ct status dnat ip saddr . ip daddr @hairpin4 masquerade`,
    `ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`,
  ]);
  return c;
}

/** The base chains with the number of rules each holds: what a drift check expects. */
export const baseRuleCounts = (marks: Marks): Map<string, number> => new Map([...baseChains(marks)].map(([name, [, ...rules]]) => [name, rules.length]));

export interface RingModel {
  family: 4 | 6;
  /** the target's backends, as their keys (compiler/keys.ts): what nfnl.ts writes */
  keys: Uint8Array;
  /** slot -> index of a backend in keys */
  ring: Ring;
  /** a ring of ringBridge: its slots are not those its backends and size alone give */
  bridged?: boolean;
}

export interface Model {
  /** which generation of ring maps and ring chains the target chains use */
  bank: number;
  /** target chains with their rule (each has one) */
  chains: Map<string, string>;
  /** set/map name -> element key -> value ("" for a set); the rings and hairpins are kept apart */
  elements: Map<string, Map<string, string>>;
  /** backend addresses per family, each with the number of targets that use it (a count of
   * what is in force, or of the services a delta is about): the elements `addr . addr` of
   * hairpin4/6, loaded over netlink with the rings. A change of some services (planUnits)
   * removes an address only with its last user. */
  hairpins: { 4: Map<string, number>; 6: Map<string, number> };
  /** a target's mark value (its id in skein's bits of the packet mark: marks.ts) -> its ring:
   * the elements `mark . slot : backend` of the ring map, kept as arrays (millions of slots at
   * 10k services would not fit a Map of strings in time) */
  rings: Map<number, RingModel>;
  /** ring chains the targets use, with their rule */
  ringChains: Map<string, RingRule>;
  /** how many targets share each ring chain (by name): what a change of some services
   * (planUnits) may remove only with its last user */
  refs: Map<string, number>;
}

const ELEMENT_SETS = ["svc4", "noep4", "front4", "svc6", "noep6", "front6"];

export function emptyModel(bank: number): Model {
  return { bank, chains: new Map(), elements: new Map(ELEMENT_SETS.map((n) => [n, new Map()])), hairpins: { 4: new Map(), 6: new Map() }, rings: new Map(), ringChains: new Map(), refs: new Map() };
}

const count = (refs: Map<string, number>, k: string, by = 1) => {
  const n = (refs.get(k) ?? 0) + by;
  if (n) refs.set(k, n);
  else refs.delete(k);
};

/**
 * The model of `tables`. `hairpin` picks the backend addresses that go in hairpin4/6: a
 * connection from a pod to itself through a Service is translated on the pod's own node, so
 * only this node's pods ever need it (the agent passes its pod CIDRs); every address when
 * it is not given.
 */
export function model(tables: Pick<Tables, "frontends" | "targets">, bank = 0, hairpin?: AddressTest, marks: Marks = DEFAULT_MARKS): Model {
  checkMarks(marks);
  const md = emptyModel(bank);
  const el = (set: string, k: string, v = "") => md.elements.get(set)!.set(k, v);
  const byId = new Map(tables.targets.map((t) => [t.id, t]));
  for (const f of tables.frontends) {
    const k = `${f.ip} . ${proto(f.protocol)} . ${f.port}`;
    if ((byId.get(f.target)?.ringSize ?? 0) > 0) el(`svc${f.family}`, k, `goto t_${f.target}${f.masquerade ? "_m" : ""}`);
    else el(`noep${f.family}`, k);
    el(`front${f.family}`, k);
  }
  const masq = new Set(tables.frontends.filter((f) => f.masquerade).map((f) => f.target));
  for (const t of tables.targets) {
    // one element per address, counted per target: two ports of a pod are one element
    const ips = new Set<string>();
    for (let at = 0; at < t.keys.length; at += KEY_BYTES) if (!hairpin || hairpin(t.keys, at, t.family)) ips.add(addressText(t.keys, at, t.family));
    for (const ip of ips) count(md.hairpins[t.family], ip);
    if (!t.ringSize) continue;
    const mark = markValue(marks, t.id, `${t.service} ${t.scope}`);
    md.rings.set(mark, { family: t.family, keys: t.keys, ring: t.ring });
    const chain = ringChain(t, bank);
    count(md.refs, chain);
    md.ringChains.set(chain, { family: t.family, affinity: t.affinity, ringSize: t.ringSize, map: ringMap(t.family, bank), mark: marks.mark });
    // only skein's bits change: the mask keeps every other bit, the xor puts the id in
    const setMark = `meta mark set meta mark & ${hex(~marks.mark)} | ${hex(mark)}`;
    md.chains.set(`t_${t.id}`, `${setMark} goto ${chain} comment "${t.service} ${t.scope}"`);
    if (masq.has(t.id)) md.chains.set(`t_${t.id}_m`, `ct mark set ct mark | ${hex(masqBit(marks))} ${setMark} goto ${chain}`);
  }
  return md;
}

/** Ring slots per family: what the ring maps must hold (a target without backends has none). */
export function ringSlots(tables: Tables): Capacity {
  const n = { 4: 0, 6: 0 };
  for (const t of tables.targets) n[t.family] += t.ringSize;
  return n;
}

const elem = (k: string, v: string) => (v ? `${k} : ${v}` : k);
/** Elements per command line: nft parses one huge line slower than several. */
const CHUNK = 2000;

function elementLines(verb: "add" | "delete", set: string, items: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(`${verb} element inet ${TABLE} ${set} { ${items.slice(i, i + CHUNK).join(", ")} }`);
  return out;
}

const chainBlock = (name: string, rules: string[]) => [`add chain inet ${TABLE} ${name}`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`)];

/**
 * The table without targets: sets, ring maps of `bank`, base chains. Replaces whatever table
 * was there; what the targets need follows as ring batches and a delta from emptyModel.
 */
export function renderSkeleton(bank: number, cap: Capacity, marks: Marks = DEFAULT_MARKS): string {
  // the comment records the mark ranges the rings are keyed with: a table made with others
  // is not adopted (adopt.ts)
  checkMarks(marks);
  const out = [`add table inet ${TABLE}`, `delete table inet ${TABLE}`, `add table inet ${TABLE} { comment "${marksComment(marks)}"; }`];
  for (const decl of Object.values(sets(bank, cap))) out.push(`add ${decl.replace(/^(map|set) (\S+)/, `$1 inet ${TABLE} $2`)}`);
  for (const [name, [head, ...rules]] of baseChains(marks)) {
    out.push(`add chain inet ${TABLE} ${name} { ${head} }`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`));
  }
  return out.join("\n") + "\n";
}

/** A dormant table (it hooks nothing) holding skein's sets and base chains as renderSkeleton
 * makes them: the kernel's listing of it is what the base chains of `inet skein` must list
 * as (adopt.ts structureDrift), whatever nft's JSON makes of the text. `drop` removes it. */
export const REF_TABLE = "skein_ref";
export function renderReference(marks: Marks = DEFAULT_MARKS): { load: string; drop: string } {
  const skeleton = renderSkeleton(0, { 4: 4096, 6: 4096 }, marks).split("\n").slice(3);
  const load = [`add table inet ${REF_TABLE}`, `delete table inet ${REF_TABLE}`, `add table inet ${REF_TABLE} { flags dormant; }`, ...skeleton.map((l) => l.replace(` inet ${TABLE} `, ` inet ${REF_TABLE} `))].join("\n");
  return { load, drop: `delete table inet ${REF_TABLE}\n` };
}

/** The Service CIDRs of the node (flag --service-cidr) into svcnet4/6, in one transaction. */
export function serviceCidrScript(cidrs: string[]): string {
  const out = [`flush set inet ${TABLE} svcnet4`, `flush set inet ${TABLE} svcnet6`];
  for (const fam of [4, 6] as const) {
    const mine = cidrs.filter((c) => c.includes(":") === (fam === 6));
    if (mine.length) out.push(`add element inet ${TABLE} svcnet${fam} { ${mine.join(", ")} }`);
  }
  return out.join("\n") + "\n";
}

/**
 * The whole table as one nft transaction, rings included: what `skein tables --nft` prints
 * and what `nft -f` can load by itself. The agent loads the same content faster, as the
 * skeleton, a ring batch and a delta.
 */
export function renderFull(tables: Tables, bank = 0, marks: Marks = DEFAULT_MARKS): string {
  const md = model(tables, bank, undefined, marks);
  const skeleton = renderSkeleton(md.bank, ringCapacity(ringSlots(tables)), marks);
  const rings = renderRingOps(ringDiff(emptyModel(md.bank), md));
  return skeleton + rings + renderDelta(emptyModel(md.bank), md);
}

/**
 * The nft text from `prev` to `next` for everything but the rings: target chains that are
 * new or changed, element deletes and adds, and removed target chains. Ring chains and ring
 * slots a new target needs must be in place before it (ringDiff); empty when nothing changed.
 */
export function renderDelta(prev: Model, next: Model): string {
  const out: string[] = [];
  // 1. chains that are new, or whose rules changed (flush and refill: one chain, not a table)
  for (const [name, rule] of next.chains) {
    const before = prev.chains.get(name);
    if (before === undefined) out.push(...chainBlock(name, [rule]));
    else if (before !== rule) out.push(`flush chain inet ${TABLE} ${name}`, `add rule inet ${TABLE} ${name} ${rule}`);
  }
  // 2. elements: removed or changed ones out, new or changed ones in
  for (const [set, items] of next.elements) {
    const before = prev.elements.get(set) ?? new Map<string, string>();
    const del: string[] = [];
    const add: string[] = [];
    for (const [k, v] of before) {
      const now = items.get(k);
      if (now === undefined || now !== v) del.push(elem(k, v));
    }
    for (const [k, v] of items) if (before.get(k) !== v) add.push(elem(k, v));
    out.push(...elementLines("delete", set, del), ...elementLines("add", set, add));
  }
  // 3. target chains no longer wanted (the verdict map elements that jumped to them are gone)
  for (const name of prev.chains.keys()) if (!next.chains.has(name)) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return out.length ? out.join("\n") + "\n" : "";
}

/** Ring slots `from` to `to` (exclusive) of the target whose mark value is `mark`, to write
 * or remove; `r` holds the new values. A range, not one object per slot: a cold load writes a
 * million slots. */
export interface SlotOp {
  mark: number;
  from: number;
  to: number;
  r?: RingModel;
}

export const slotCount = (ops: SlotOp[]) => ops.reduce((n, op) => n + op.to - op.from, 0);

/**
 * A fill (ring operations that only add: a new table, the other bank) in parts of at most
 * `maxSlots` slots each, for maps nothing looks up yet. The first part carries the ring
 * chains and the hairpin changes; the rest, slots only.
 */
export function splitFill(o: RingOps, maxSlots: number): RingOps[] {
  if (o.del.size || o.delChains.length) throw new Error("splitFill: a fill removes no slots or chains");
  const parts: RingOps[] = [];
  let cur: RingOps = { ...noRingOps(), addChains: o.addChains, hairpinAdd: o.hairpinAdd, hairpinDel: o.hairpinDel };
  let n = 0;
  for (const [set, list] of o.add) {
    for (const op of list) {
      for (let from = op.from; from < op.to; ) {
        if (n === maxSlots) {
          parts.push(cur);
          cur = noRingOps();
          n = 0;
        }
        const to = Math.min(op.to, from + maxSlots - n);
        let l = cur.add.get(set);
        if (!l) cur.add.set(set, (l = []));
        l.push({ ...op, from, to });
        n += to - from;
        from = to;
      }
    }
  }
  parts.push(cur);
  return parts;
}

/** Adds slot `s` to `ops`, extending the last range when it continues it. */
function pushSlot(ops: SlotOp[], mark: number, s: number, r?: RingModel): void {
  const last = ops[ops.length - 1];
  if (last && last.mark === mark && last.to === s && last.r === r) last.to++;
  else ops.push({ mark, from: s, to: s + 1, r });
}

/** What goes over netlink: ring chains to make or remove, ring slots to remove (`del`) or
 * write (`add`), hairpin addresses to add or remove. */
export interface RingOps {
  addChains: Array<[string, RingRule]>;
  delChains: string[];
  /** map name -> slots */
  del: Map<string, SlotOp[]>;
  add: Map<string, SlotOp[]>;
  hairpinAdd: { 4: string[]; 6: string[] };
  hairpinDel: { 4: string[]; 6: string[] };
}

export const noRingOps = (): RingOps => ({ addChains: [], delChains: [], del: new Map(), add: new Map(), hairpinAdd: { 4: [], 6: [] }, hairpinDel: { 4: [], 6: [] } });

export const ringOpCount = (o: RingOps) =>
  o.addChains.length +
  o.delChains.length +
  [...o.del.values(), ...o.add.values()].reduce((n, x) => n + slotCount(x), 0) +
  [o.hairpinAdd[4], o.hairpinAdd[6], o.hairpinDel[4], o.hairpinDel[6]].reduce((n, x) => n + x.length, 0);

/** The part of a model that goes over netlink. */
export type NetlinkPart = Pick<Model, "rings" | "ringChains" | "hairpins" | "bank">;

/**
 * The ring operations from the rings of `a` to those of `b` (both of one bank): chains `b`
 * needs and `a` lacks, slots that differ (removed, then written: the kernel refuses to
 * overwrite an element's value), slots `a` had and `b` does not, chains only `a` used.
 */
export function ringDiff(a: NetlinkPart, b: NetlinkPart): RingOps {
  const ops = noRingOps();
  for (const fam of [4, 6] as const) {
    for (const ip of b.hairpins[fam].keys()) if (!a.hairpins[fam].has(ip)) ops.hairpinAdd[fam].push(ip);
    for (const ip of a.hairpins[fam].keys()) if (!b.hairpins[fam].has(ip)) ops.hairpinDel[fam].push(ip);
  }
  const list = (m: Map<string, SlotOp[]>, fam: 4 | 6, bank: number) => {
    const name = ringMap(fam, bank);
    let l = m.get(name);
    if (!l) m.set(name, (l = []));
    return l;
  };
  for (const [name, rule] of b.ringChains) if (!a.ringChains.has(name)) ops.addChains.push([name, rule]);
  for (const name of a.ringChains.keys()) if (!b.ringChains.has(name)) ops.delChains.push(name);
  if (a.bank !== b.bank) throw new Error(`ring diff across banks (${a.bank} -> ${b.bank}): a bank switch builds the new bank from empty`);
  const bank = b.bank;
  for (const [mark, ra] of a.rings) {
    const rb = b.rings.get(mark);
    if (rb && rb.family === ra.family) continue;
    list(ops.del, ra.family, bank).push({ mark, from: 0, to: ra.ring.length });
  }
  for (const [mark, rb] of b.rings) {
    const ra = a.rings.get(mark);
    const ad = list(ops.add, rb.family, bank);
    if (!ra || ra.family !== rb.family) {
      ad.push({ mark, from: 0, to: rb.ring.length, r: rb });
      continue;
    }
    // a ring is a function of its backends and its size: same both, same slots
    if (ra === rb || (!ra.bridged && !rb.bridged && ra.ring.length === rb.ring.length && compareKeys(ra.keys, rb.keys) === 0)) continue;
    const dl = list(ops.del, rb.family, bank);
    const n = Math.min(ra.ring.length, rb.ring.length);
    for (let s = 0; s < n; s++) {
      if (sameKey(ra.keys, ra.ring[s]!, rb.keys, rb.ring[s]!)) continue;
      pushSlot(dl, mark, s);
      pushSlot(ad, mark, s, rb);
    }
    if (rb.ring.length > n) ad.push({ mark, from: n, to: rb.ring.length, r: rb });
    if (ra.ring.length > n) dl.push({ mark, from: n, to: ra.ring.length });
  }
  for (const m of [ops.del, ops.add]) for (const [k, v] of m) if (!v.length) m.delete(k);
  return ops;
}

/**
 * The rings half-way from `a` to `b`, what the first batch of a delta leaves: every ring of
 * `b` in place, rings only `a` has still there (their target chains are still reachable until
 * the nft delta removes them), chains of both, and a shrinking ring keeping its old slots
 * beyond the new size, filled from the new ring, so that a lookup through the old modulus
 * finds a current backend until the target chain switches.
 */
export function ringBridge(a: Model, b: Model): NetlinkPart {
  const rings = new Map(a.rings);
  for (const [id, rb] of b.rings) {
    const ra = a.rings.get(id);
    if (!ra || ra.ring.length <= rb.ring.length || ra.family !== rb.family) {
      rings.set(id, rb);
      continue;
    }
    const ring = new Int32Array(ra.ring.length);
    for (let s = 0; s < ring.length; s++) ring[s] = rb.ring[s % rb.ring.length]!;
    rings.set(id, { ...rb, ring, bridged: true });
  }
  const hairpins = { 4: new Map([...a.hairpins[4], ...b.hairpins[4]]), 6: new Map([...a.hairpins[6], ...b.hairpins[6]]) };
  return { bank: b.bank, rings, ringChains: new Map([...a.ringChains, ...b.ringChains]), hairpins };
}

/** The three steps of a delta from `prev` to `next` (agent/datapath/datapath.ts). */
export interface DeltaPlan {
  /** step 1: new ring chains, new and changed slots */
  before: RingOps;
  /** step 2: nft text */
  text: string;
  /** step 3: slots and ring chains nothing reaches any more */
  after: RingOps;
  /** the rings between steps 1 and 3; undoing step 1 is ringDiff(bridge, prev) */
  bridge: NetlinkPart;
}

export function planDelta(prev: Model, next: Model): DeltaPlan {
  const bridge = ringBridge(prev, next);
  return { before: ringDiff(prev, bridge), text: renderDelta(prev, next), after: ringDiff(bridge, next), bridge };
}

/**
 * The delta for a change of some services: `before` and `after` are the models of just their
 * units (same bank as `current`, the model of everything in force). Elements and ring chains
 * other services share stay: `before` gains those `after` adds but others already hold, and
 * `after` those `before` drops but others still use. Mutates both; pass fresh ones.
 */
export function planUnits(current: Model, before: Model, after: Model): DeltaPlan {
  const users = (refs: (m: Model) => Map<string, number>, k: string) => (refs(current).get(k) ?? 0) - (refs(before).get(k) ?? 0) + (refs(after).get(k) ?? 0);
  const stays = (k: string) => users((m) => m.refs, k) > 0;
  // an address taken in on either side with no users of its own (0): the counts stay right
  for (const fam of [4, 6] as const) {
    const b = before.hairpins[fam];
    const a = after.hairpins[fam];
    for (const ip of b.keys()) if (!a.has(ip) && users((m) => m.hairpins[fam], ip) > 0) a.set(ip, 0);
    for (const ip of a.keys()) if (!b.has(ip) && current.hairpins[fam].has(ip)) b.set(ip, 0);
  }
  for (const [name, rule] of before.ringChains) if (!after.ringChains.has(name) && stays(name)) after.ringChains.set(name, rule);
  for (const [name, rule] of after.ringChains) if (!before.ringChains.has(name) && current.ringChains.has(name)) before.ringChains.set(name, rule);
  return planDelta(before, after);
}

/** `current` after a planUnits delta from `before` to `after` went in. */
export function patchModel(current: Model, before: Model, after: Model): void {
  for (const name of before.chains.keys()) if (!after.chains.has(name)) current.chains.delete(name);
  for (const [name, rule] of after.chains) current.chains.set(name, rule);
  for (const [set, items] of before.elements) {
    const cur = current.elements.get(set)!;
    const now = after.elements.get(set)!;
    for (const k of items.keys()) if (!now.has(k)) cur.delete(k);
    for (const [k, v] of now) cur.set(k, v);
  }
  for (const id of before.rings.keys()) if (!after.rings.has(id)) current.rings.delete(id);
  for (const [id, r] of after.rings) current.rings.set(id, r);
  for (const name of before.ringChains.keys()) if (!after.ringChains.has(name)) current.ringChains.delete(name);
  for (const [name, rule] of after.ringChains) current.ringChains.set(name, rule);
  // users added before users taken away: a count that stays above 0 never leaves its map
  for (const [k, n] of after.refs) count(current.refs, k, n);
  for (const [k, n] of before.refs) count(current.refs, k, -n);
  for (const fam of [4, 6] as const) {
    for (const [ip, n] of after.hairpins[fam]) count(current.hairpins[fam], ip, n);
    for (const [ip, n] of before.hairpins[fam]) count(current.hairpins[fam], ip, -n);
  }
}

/** A delta's steps as text, for people (`skein tables --nft --since`). */
export function renderPlan(p: DeltaPlan): string {
  return `# 1. ring batch (netlink)\n${renderRingOps(p.before)}# 2. nft\n${p.text}# 3. ring batch (netlink)\n${renderRingOps(p.after)}`;
}

/** Ring operations as nft text (for `skein tables --nft` and for people). */
export function renderRingOps(o: RingOps): string {
  const out: string[] = [];
  for (const [name, rule] of o.addChains) out.push(...chainBlock(name, [ringRuleText(rule)]));
  const slots = (ops: SlotOp[], value: (op: SlotOp, s: number) => string) => {
    const items: string[] = [];
    for (const op of ops) for (let s = op.from; s < op.to; s++) items.push(`${hex(op.mark)} . ${s}${value(op, s)}`);
    return items;
  };
  for (const [set, ops] of o.del) out.push(...elementLines("delete", set, slots(ops, () => "")));
  for (const [set, ops] of o.add) {
    out.push(...elementLines("add", set, slots(ops, (op, s) => {
      const at = op.r!.ring[s]! * KEY_BYTES;
      return ` : ${addressText(op.r!.keys, at, op.r!.family)} . ${keyPort(op.r!.keys, at)}`;
    })));
  }
  for (const fam of [4, 6] as const) {
    out.push(...elementLines("delete", `hairpin${fam}`, o.hairpinDel[fam].map((ip) => `${ip} . ${ip}`)));
    out.push(...elementLines("add", `hairpin${fam}`, o.hairpinAdd[fam].map((ip) => `${ip} . ${ip}`)));
  }
  for (const name of o.delChains) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return out.length ? out.join("\n") + "\n" : "";
}
