// Keeps the kernel's table `inet skein` in step with compiled tables. The rings go to the
// kernel as netlink batches (nfnl.ts), everything else as nft text through libnftables, in an
// order that never lets traffic see a half-made state:
//   delta:   1. ring batch: new ring chains, new and changed ring slots (a shrinking ring
//               keeps its old slots, pointing at current backends, see ringBridge)
//            2. nft text: target chains, verdict-map and set elements, removed target chains
//            3. ring batch: slots and ring chains nothing reaches any more
//   rebuild: the other bank's ring maps and chains are made and filled beside the live ones,
//            then one nft transaction switches every target chain to them, then the old bank
//            goes. Needed when the rings outgrow their maps' size. With no table of ours
//            known yet (the first sync), the table is made new: skeleton, rings, targets.
// Each step is one kernel transaction, but for the filling of ring maps nothing looks up yet
// (a new table's, the other bank's), which goes in batches of 64k slots. A rejected step 1
// or 2 leaves the previous tables in force (step 2 undoes step 1) and is reported with what
// was refused; the next sync starts again from what is in force.
import type { Tables, UnitChange } from "../../compiler/tables.ts";
import { BatchBuilder, encodeRingOps, type Batch, type BatchBuffer } from "./nfnl.ts";
import type { Nft } from "./nft.ts";
import { structureDrift, type Listing } from "./adopt.ts";
import { tableDrift } from "./drift.ts";
import { inCidrs, type AddressTest } from "../../compiler/keys.ts";
import { DEFAULT_MARKS, type Marks } from "./marks.ts";
import { emptyModel, fits, model, patchModel, ringCapacity, ringMap, ringSlots, TABLE, type Capacity, type Model } from "./model.ts";
import { addRingMap, renderDelta, renderSkeleton, serviceCidrScript } from "./nft-text.ts";
import { planDelta, planUnits, type DeltaPlan } from "./plan.ts";
import { noRingOps, ringBridge, ringDiff, ringOpCount, splitFill, type RingOps } from "./ring-ops.ts";
import { IDENTITY_CHAIN, inertAllowAddsFirst, policyContent, renderPolicyDelta, renderPolicyReplace } from "./policy-text.ts";
import type { PolicyTables } from "../../compiler/policy/types.ts";
import { addressBytes } from "../../compiler/address.ts";

/** Where ring batches go: agent/sys/netlink.ts's sendBatch in the agent. */
export interface BatchSink {
  send(batch: Batch): void;
}

export interface SyncResult {
  kind: "full" | "rebuild" | "delta" | "none";
  /** lines of nft text applied */
  lines: number;
  /** ring slots written or removed, and ring chains made or removed, over netlink */
  ringOps: number;
  ms: number;
}

const lines = (s: string) => (s ? s.split("\n").length - 1 : 0);

interface PodMove {
  family: 4 | 6;
  ip: string;
  to: number;
}

/**
 * The pod addresses that moved from `cur` to `next`, when nothing else changed (every other
 * part the same object, as the policy compiler hands over a label change it did not compile
 * for) and every identity involved has its chains before and after; else undefined.
 */
function podMoves(cur: PolicyTables, next: PolicyTables): PodMove[] | undefined {
  const same = (k: keyof PolicyTables) => cur[k] === next[k];
  if (!(["identities", "ranges", "isolatedIngress", "isolatedEgress", "allowIngress", "allowEgress", "localAddresses"] as const).every(same)) return undefined;
  if (cur.pods.length !== next.pods.length) return undefined;
  const used = (t: PolicyTables) => {
    const n = new Map<number, number>();
    for (const x of t.pods) n.set(x.id, (n.get(x.id) ?? 0) + 1);
    for (const x of t.ranges) n.set(x.id, (n.get(x.id) ?? 0) + 1);
    return n;
  };
  const moves: PodMove[] = [];
  const from = new Set<number>();
  for (let i = 0; i < cur.pods.length; i++) {
    const a = cur.pods[i]!;
    const b = next.pods[i]!;
    if (a.ip !== b.ip || a.family !== b.family) return undefined;
    if (a.id !== b.id) {
      moves.push({ family: b.family, ip: b.ip, to: b.id });
      from.add(a.id);
    }
  }
  if (!moves.length) return moves;
  const before = used(cur);
  const after = used(next);
  // the chains an address goes to exist, and none is left without an address
  if (moves.some((m) => !before.has(m.to))) return undefined;
  if ([...from].some((id) => !after.has(id))) return undefined;
  return moves;
}


/** Ring slots per batch of a fill: about 2.3 MB of netlink messages. */
const FILL_SLOTS = 1 << 16;

export class Datapath {
  private current: Model | undefined;
  private capacity: Capacity = { 4: 0, 6: 0 };
  /** ring slots in force, per family */
  private slots: Capacity = { 4: 0, 6: 0 };
  /** step 3 of a delta that failed: retried before the next sync */
  private pending: RingOps | undefined;
  /** this node's pod CIDRs: the hairpin addresses (model.ts); none known: every backend */
  private localCIDRs: string[] = [];
  private hairpin: AddressTest | undefined;
  /** the hairpin addresses in force were picked with other CIDRs: the next sync is whole */
  private hairpinStale = false;
  /** the policy tables wanted (policy()), and those the kernel holds: undefined when what it
   * holds is not known (an adopted table, a failed load), which a replace then puts right */
  private policyNext: PolicyTables | undefined;
  private policyCurrent: PolicyTables | undefined;
  /** identity chains the kernel holds when policyCurrent is not known (from the listing of
   * an adopted table, or of the last tables that went in) */
  private policyChains: string[] = [];
  /** the policy sets the kernel was read to hold, element by element, while policyCurrent
   * is not known (an adopted table: policy-adopt.ts); a replace writes only their difference */
  private policyKnown: ReadonlyMap<string, ReadonlySet<string>> = new Map();

  /** `serviceCIDRs`: the node's Service CIDRs, whose unserved addresses are refused; written
   * with every new table and every bank switch (so an adopted table takes the current ones) */
  constructor(
    private readonly nft: Nft,
    private readonly sink: BatchSink,
    private readonly serviceCIDRs: string[] = [],
    /** ring slots per batch when filling maps nothing looks up yet */
    private readonly fillSlots = FILL_SLOTS,
    private readonly marks: Marks = DEFAULT_MARKS, // skein's bits of the packet and conntrack marks
  ) {}

  /** This node's pod CIDRs, whose addresses are the only ones a pod can hairpin from (empty:
   * every backend's). A change takes effect with the next sync, which is then a whole one. */
  setLocalCIDRs(cidrs: string[]): void {
    if (cidrs.join() === this.localCIDRs.join()) return;
    this.localCIDRs = [...cidrs];
    this.hairpin = cidrs.length ? inCidrs(cidrs) : undefined;
    this.hairpinStale = true;
  }

  /**
   * The kernel holds a table an earlier agent made (adopt.ts read it): take it as what is in
   * force, and drop a half-made bank it left. With no ring capacity known, the first sync is
   * a bank switch: the other bank is filled beside the live one and one nft transaction moves
   * every target chain to it, so traffic sees the old tables until the new ones are whole.
   */
  adopt(md: Model, stale?: { bank: number; chains: string[] }, policyChains: string[] = [], policySets: ReadonlyMap<string, ReadonlySet<string>> = new Map()): void {
    if (stale) this.dropBank(stale.bank, stale.chains);
    // the policy in the kernel stays in force until the first policy() replaces it whole
    this.policyCurrent = undefined;
    this.policyChains = [...policyChains];
    this.policyKnown = policySets;
    this.current = md;
    this.capacity = { 4: 0, 6: 0 };
    this.slots = { 4: 0, 6: 0 };
  }

  /** The kernel holds `tables` (loaded by an earlier sync of the same shape); take it as the
   * base, in the bank and with the ring map sizes the kernel lists when given (a delta or a
   * bank switch may have left bank 1 live, or maps sized for other tables). */
  assume(tables: Tables, kernel?: { bank: number; capacity: Capacity; policyChains?: string[] }): void {
    // the policy the kernel holds is not known: the next policy() replaces it whole
    this.policyCurrent = undefined;
    this.policyChains = [...(kernel?.policyChains ?? [])];
    this.policyKnown = new Map();
    this.current = model(tables, kernel?.bank ?? 0, this.hairpin, this.marks);
    this.slots = ringSlots(tables);
    this.capacity = kernel?.capacity ?? ringCapacity(this.slots);
  }

  /**
   * The policy tables from now on. With a table in force they go in at once, as one nft
   * transaction: the delta from those in force, or, when what the kernel holds is not known,
   * a replace of every policy set and identity chain (nothing is open in between either way).
   * With no table yet (or `now` false: the next sync makes the table new) they wait for the
   * sync, which loads them with the skeleton. `rewrite`: replaced whole even when known.
   */
  policy(next: PolicyTables, now = true, rewrite = false): SyncResult {
    const t0 = performance.now();
    this.policyNext = next;
    if (!this.current || !now) return { kind: "none", lines: 0, ringOps: 0, ms: 0 };
    if (rewrite && this.policyCurrent) {
      // what the kernel holds may not be what was loaded (a change went unheard): written anew
      this.policyChains = [...policyContent(this.policyCurrent, this.marks).chains.keys()];
      this.policyCurrent = undefined;
    }
    // nor what was read of it
    if (rewrite) this.policyKnown = new Map();
    const moves = this.policyCurrent && podMoves(this.policyCurrent, next);
    if (moves) {
      // only pod addresses moved between identities in use: their map elements, over netlink
      this.movePods(moves, next);
      return { kind: moves.length ? "delta" : "none", lines: 0, ringOps: moves.length, ms: performance.now() - t0 };
    }
    const text = this.policyText(next);
    const ran = text ? this.runPolicy(text, next) : "";
    return { kind: text ? "delta" : "none", lines: lines(ran), ringOps: 0, ms: performance.now() - t0 };
  }

  private movePods(moves: PodMove[], next: PolicyTables): void {
    if (!moves.length) {
      this.policyCurrent = next;
      return;
    }
    const b = new BatchBuilder(TABLE);
    for (const verb of ["delete", "add"] as const) {
      for (const fam of [4, 6] as const) {
        for (const [dir, chain] of [["s", "pols"], ["d", "pold"]] as const) {
          const items = moves.filter((m) => m.family === fam).map((m) => ({ key: Uint8Array.from(addressBytes(m.ip)), chain: `${chain}_${m.to}` }));
          b.verdictElements(verb, `pol_${dir}pod${fam}`, items);
        }
      }
    }
    try {
      this.sink.send(b.build());
    } catch (e) {
      // refused whole: the kernel holds what it held
      this.policyChains = [...policyContent(this.policyCurrent!, this.marks).chains.keys()];
      this.policyCurrent = undefined;
      throw e;
    }
    this.policyCurrent = next;
  }

  /** The policy tables the kernel holds, as far as known. */
  policyInForce(): PolicyTables | undefined {
    return this.policyCurrent;
  }

  private policyText(next: PolicyTables): string {
    const cur = this.policyCurrent;
    if (cur === next) return "";
    return cur ? renderPolicyDelta(cur, next, this.marks) : renderPolicyReplace(next, this.marks, this.policyChains, this.policyKnown);
  }

  /** Runs `text` (the policy's delta or replace): the allow elements no packet can match yet
   * first, in a transaction of their own (policy-text.ts inertAllowAddsFirst), then the rest;
   * returns what went in. */
  private runPolicy(text: string, next: PolicyTables): string {
    // the ids addresses go to now: those of the tables in force (their pods' and ranges'; the
    // reserved ones count as used always), else of the chains listed
    const cur = this.policyCurrent;
    const used = cur ? [...cur.pods.map((p) => p.id), ...cur.ranges.map((r) => r.id)] : this.policyChains.flatMap((n) => (IDENTITY_CHAIN.test(n) ? [Number(n.slice(5))] : []));
    const { first, then } = inertAllowAddsFirst(text, next, this.marks, used);
    try {
      if (first) this.nft.run(first);
      try {
        this.nft.run(then);
      } catch (e) {
        // inert, but not the policy's: taken out again (a failure leaves them to the next replace)
        if (first) this.tryRun(first.replace(/^add element/gm, "delete element"));
        throw e;
      }
    } catch (e) {
      // the transaction was refused whole: the kernel holds what it held, whose chains are
      // those of the tables in force (or the adopted ones)
      if (this.policyCurrent) this.policyChains = [...policyContent(this.policyCurrent, this.marks).chains.keys()];
      this.policyCurrent = undefined;
      if (!this.policyKnown.size) throw e;
      // a replace writing the difference from what was read: the sets changed since (an
      // element it deletes is gone). Whole, then, as when nothing was read
      this.policyKnown = new Map();
      const whole = renderPolicyReplace(next, this.marks, this.policyChains);
      this.nft.run(whole);
      this.policyCurrent = next;
      return whole;
    }
    this.policyCurrent = next;
    this.policyKnown = new Map();
    return text;
  }

  private tryRun(text: string): void {
    try {
      this.nft.run(text);
    } catch {
      // what could not be taken out is replaced with the rest by the next write
    }
  }

  /**
   * Applies what one incremental compile changed (compiler/incremental.ts): the delta is
   * planned from the changed services' units alone, so its cost follows the change, not the
   * cluster. `all` gives the whole tables, for the first sync and for a bank switch.
   */
  apply(changes: UnitChange[], all: () => Tables): SyncResult {
    const t0 = performance.now();
    const cur = this.current;
    const slots = { ...this.slots };
    for (const c of changes) {
      for (const t of c.before.targets) slots[t.family] -= t.ringSize;
      for (const t of c.after.targets) slots[t.family] += t.ringSize;
    }
    if (!cur || this.hairpinStale || !fits(slots, this.capacity)) return this.sync(all());
    if (!changes.length) return { kind: "none", lines: 0, ringOps: 0, ms: performance.now() - t0 };
    this.flushPending();
    const unit = (side: "before" | "after") => model({ frontends: changes.flatMap((c) => c[side].frontends), targets: changes.flatMap((c) => c[side].targets) }, cur.bank, this.hairpin, this.marks);
    const before = unit("before");
    const after = unit("after");
    const plan = planUnits(cur, before, after);
    const r = this.run(plan, before, () => {
      patchModel(cur, before, after);
      this.slots = slots;
    });
    return { ...r, ms: performance.now() - t0 };
  }

  /** Step 3 of an earlier delta, which failed: tried once more. Failing again, it is dropped
   * and the error goes up, so that the next sync is a whole new table (the agent asks for
   * one after any failure) rather than the same cleanup failing before every later sync. */
  private flushPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.batch(p);
  }

  /** Where the table in the kernel (`kernel`, as listed) differs from the model in force
   * (drift.ts), and, given the kernel's listing of skein's own base chains (`reference`),
   * anything in it a bank switch would not put right (adopt.ts): empty when they agree, or
   * when no table is in force yet. */
  drift(kernel: Listing | undefined, reference?: Listing): string[] {
    if (!this.current) return [];
    const d = tableDrift(this.current, kernel, this.marks);
    return kernel && reference ? [...d, ...structureDrift(kernel, reference)] : d;
  }

  /**
   * `full`: a new table, whatever the kernel holds (the table in force was changed by someone
   * else, or a step failed and what is in force is not known for sure). The ring cleanup left
   * by a failed delta is dropped then: the new table replaces it. `rebuild`: the whole tables in
   * a bank switch even when the rings fit their maps (every ring written anew, and the tables
   * in force kept if a step is refused).
   */
  sync(tables: Tables, opts: { full?: boolean; rebuild?: boolean } = {}): SyncResult {
    const t0 = performance.now();
    if (opts.full) this.pending = undefined;
    else this.flushPending();
    const prev = this.current;
    const slots = ringSlots(tables);
    // a bank switch when the rings outgrow their maps: the model names the other bank
    const switchBank = !!prev && !opts.full && (!fits(slots, this.capacity) || !!opts.rebuild);
    const next = model(tables, switchBank ? 1 - prev!.bank : (prev?.bank ?? 0), this.hairpin, this.marks);
    const commit = () => {
      this.current = next;
      this.slots = slots;
      this.hairpinStale = false;
    };
    let r: Omit<SyncResult, "ms">;
    if (!prev || opts.full) r = this.cold(next, slots);
    else if (switchBank) r = this.rebuild(prev, next, slots);
    else r = this.run(planDelta(prev, next), prev, commit);
    commit();
    return { ...r, ms: performance.now() - t0 };
  }

  /**
   * Ring operations that fill maps nothing looks up yet (a new table, the other bank), as
   * batches of at most FILL_SLOTS slots built in one buffer: a million slots in one batch is
   * 37 MB of netlink messages in a buffer that doubles as it grows, which set the agent's
   * peak RSS while loading (docs/measurements.md). On a refused batch `undo` is told whether
   * the first one (the ring chains, the hairpins) went in, and the error is thrown on.
   */
  private fill(ops: RingOps, undo: (chainsMade: boolean) => void): number {
    let n = 0;
    const buffer: BatchBuffer = { buf: new Uint8Array(1 << 16) };
    for (const [i, part] of splitFill(ops, this.fillSlots).entries()) {
      try {
        n += this.batch(part, undefined, buffer);
      } catch (e) {
        undo(i > 0);
        throw e;
      }
    }
    return n;
  }

  private batch(ops: RingOps, extra?: (b: BatchBuilder) => void, buffer?: BatchBuffer): number {
    const n = ringOpCount(ops);
    if (!n && !extra) return 0;
    const b = new BatchBuilder(TABLE, 1, buffer);
    encodeRingOps(b, ops);
    extra?.(b);
    if (b.messages) this.sink.send(b.build());
    return n;
  }

  /** A new table: skeleton, then every ring, then every target. */
  private cold(next: Model, slots: Capacity): Omit<SyncResult, "ms"> {
    const cap = ringCapacity(slots);
    // the policy goes in with the skeleton: a new table never has a moment without it
    const pol = this.policyNext;
    const skeleton = renderSkeleton(next.bank, cap, this.marks, pol) + serviceCidrScript(this.serviceCIDRs);
    this.policyCurrent = undefined;
    this.nft.run(skeleton);
    this.policyCurrent = pol;
    this.policyChains = [];
    this.policyKnown = new Map();
    this.capacity = cap;
    const empty = emptyModel(next.bank);
    // a half-filled new table is made new again by the next try
    const ringOps = this.fill(ringDiff(empty, next), () => {});
    const text = renderDelta(empty, next);
    if (text) this.nft.run(text);
    return { kind: "full", lines: lines(skeleton) + lines(text), ringOps };
  }

  /** The other bank beside the live one, then one switch, then the old bank goes. */
  private rebuild(prev: Model, next: Model, slots: Capacity): Omit<SyncResult, "ms"> {
    const cap = ringCapacity(slots);
    const maps = [`${addRingMap(4, next.bank, cap[4])}`, `${addRingMap(6, next.bank, cap[6])}`].join("\n") + "\n" + serviceCidrScript(this.serviceCIDRs);
    this.nft.run(maps);
    // hairpins belong to no bank: the new ones go in with the new bank's rings, the gone ones
    // out with the old bank
    const only = (bank: number, hairpins: Model["hairpins"]) => ({ ...emptyModel(bank), hairpins });
    const both = ringBridge(prev, next).hairpins;
    const undo = () => this.dropBank(next.bank, [...next.ringChains.keys()], ringDiff(only(next.bank, both), only(next.bank, prev.hairpins)));
    const ringOps = this.fill(ringDiff(only(next.bank, prev.hairpins), { ...next, hairpins: both }), (chainsMade) => (chainsMade ? undo() : this.dropBank(next.bank, [])));
    const text = renderDelta(prev, next);
    try {
      if (text) this.nft.run(text);
    } catch (e) {
      undo();
      throw e;
    }
    this.capacity = cap;
    this.dropBank(prev.bank, [...prev.ringChains.keys()], ringDiff(only(prev.bank, both), only(prev.bank, next.hairpins)));
    return { kind: "rebuild", lines: lines(maps) + lines(text), ringOps: ringOps + prev.ringChains.size };
  }

  private dropBank(bank: number, chains: string[], also = noRingOps()): void {
    this.batch({ ...also, delChains: chains }, (b) => {
      b.deleteSet(ringMap(4, bank));
      b.deleteSet(ringMap(6, bank));
    });
  }

  /**
   * A delta's three steps. `prev` is what step 1 is undone to if step 2 is refused; `commit`
   * makes the delta's result the model in force, once step 2 went in.
   */
  private run(plan: DeltaPlan, prev: Model, commit: () => void): Omit<SyncResult, "ms"> {
    const { before, text, after, bridge } = plan;
    if (!ringOpCount(before) && !text && !ringOpCount(after)) return { kind: "none", lines: 0, ringOps: 0 };
    let ringOps = this.batch(before);
    try {
      if (text) this.nft.run(text);
    } catch (e) {
      if (ringOps) this.batch(ringDiff(bridge, prev)); // undo step 1: the previous tables stay in force
      throw e;
    }
    commit();
    try {
      ringOps += this.batch(after);
    } catch (e) {
      // what is in force is the new model, with some unreachable slots or chains left over
      this.pending = after;
      throw e;
    }
    return { kind: "delta", lines: lines(text), ringOps };
  }
}
