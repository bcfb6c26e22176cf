// A model of the table `inet skein` as compiled tables make it: its target chains, the
// elements of its sets and maps, the Maglev rings and the ring chains that look them up. What
// the other parts of the datapath read or write (ring-ops.ts: ring operations between two
// models; nft-text.ts: nft text of a model or a delta; plan.ts: the steps of a delta; nfnl.ts:
// the ring operations as netlink batches; adopt.ts: a model read back from the kernel). Pure.
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
// The ring maps are fixed-size hashes (`size`: the kernel inserts into those several times
// faster than into its resizable default, docs/measurements.md). A bank (0 or 1) names one
// generation of ring maps and ring chains: outgrowing a map's size builds the other bank
// beside the live one and switches the target chains over in one transaction.
import type { Ring, Tables, Target } from "../../compiler/tables.ts";
import { addressText, KEY_BYTES, type AddressTest } from "../../compiler/keys.ts";
import { checkMarks, DEFAULT_MARKS, hex32 as hex, markValue, masqBit, type Marks } from "./marks.ts";

export const TABLE = "skein";

export const ringMap = (family: 4 | 6, bank: number) => `be${family}_${bank}`;
const ringChain = (t: Pick<Target, "family" | "affinity" | "ringSize">, bank: number) => `ring${t.family}${t.affinity ? "a" : ""}_${bank}_${t.ringSize}`;

/** The one rule of a ring chain: DNAT through a ring map (nft-text.ts prints it, nfnl.ts
 * encodes it). */
export interface RingRule {
  family: 4 | 6;
  /** hash the client address only (sessionAffinity ClientIP) */
  affinity: boolean;
  ringSize: number;
  /** the ring map the rule looks up */
  map: string;
  /** skein's bits of the packet mark (marks.ts): only they select the ring */
  mark: number;
}

export interface Capacity {
  4: number;
  6: number;
}

/** Whether ring slots `slots` fit maps of sizes `cap` (else the rings need a bank switch). */
export const fits = (slots: Capacity, cap: Capacity): boolean => slots[4] <= cap[4] && slots[6] <= cap[6];

/** Ring map sizes per family: room for 25% growth before a bank switch, never below 4096. */
export function ringCapacity(slots: Capacity): Capacity {
  const size = (n: number) => {
    let c = 4096;
    while (c < n * 1.25) c *= 2;
    return c;
  };
  return { 4: size(slots[4]), 6: size(slots[6]) };
}

export interface RingModel {
  family: 4 | 6;
  /** the target's backends, as their keys (compiler/keys.ts): what nfnl.ts writes */
  keys: Uint8Array;
  /** slot -> index of a backend in keys */
  ring: Ring;
  /** a ring of ringBridge (ring-ops.ts): its slots are not those its backends and size alone give */
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

const proto = (p: string) => p.toLowerCase();

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
export function ringSlots(tables: Pick<Tables, "targets">): Capacity {
  const n = { 4: 0, 6: 0 };
  for (const t of tables.targets) n[t.family] += t.ringSize;
  return n;
}

/** `current` after a planUnits delta (plan.ts) from `before` to `after` went in. */
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
