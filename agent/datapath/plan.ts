// The steps of a delta between two models (model.ts), in the order that never lets traffic
// see a half-made state (datapath.ts): ring operations that make room (netlink), the nft text
// of everything else, ring operations that clear what nothing reaches any more. Pure.
import type { Model } from "./model.ts";
import { renderDelta, renderRingOps } from "./nft-text.ts";
import { ringBridge, ringDiff, type NetlinkPart, type RingOps } from "./ring-ops.ts";

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
 * `after` those `before` drops but others still use. Mutates both; pass fresh ones. Once it
 * went in, patchModel (model.ts) brings `current` along.
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

/** A delta's steps as text, for people (`skein tables --nft --since`). */
export function renderPlan(p: DeltaPlan): string {
  return `# 1. ring batch (netlink)\n${renderRingOps(p.before)}# 2. nft\n${p.text}# 3. ring batch (netlink)\n${renderRingOps(p.after)}`;
}
