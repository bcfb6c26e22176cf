// The ring operations between two models (model.ts): ring chains to make or remove, ring
// slots to write or remove, hairpin addresses to add or remove. They go to the kernel as
// netlink batches (nfnl.ts), never as nft text: nft parses map elements far slower than the
// kernel takes them over netlink (docs/measurements.md). Pure.
import { compareKeys, sameKey } from "../../compiler/keys.ts";
import { ringMap, type Model, type RingModel, type RingRule } from "./model.ts";

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

/** Adds slot `s` to `ops`, extending the last range when it continues it. */
function pushSlot(ops: SlotOp[], mark: number, s: number, r?: RingModel): void {
  const last = ops[ops.length - 1];
  if (last && last.mark === mark && last.to === s && last.r === r) last.to++;
  else ops.push({ mark, from: s, to: s + 1, r });
}

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

/**
 * A fill (ring operations that only add: a new table, the other bank) in parts of at most
 * `maxSlots` slots each, for maps nothing looks up yet: one netlink batch a part. The first
 * part carries the ring chains and the hairpin changes; the rest, slots only.
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
