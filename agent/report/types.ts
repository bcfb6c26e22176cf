// What the agent hands the reporters (agent/report/skeinnode.ts, events.ts): plain snapshots
// and object references, so agent/loop depends on agent/report and never the other way round.

/** The agent's state as /readyz and the SkeinNode's status tell it. */
export interface NodeReport {
  ready: boolean;
  /** why not ready (empty when ready) */
  reasons: string[];
  /** how peers are reached; none: --no-overlay */
  mode: "auto" | "vxlan" | "direct" | "none";
  version: string;
  addresses: { underlay?: string; public?: string; podCIDRs: string[] };
  peers: { total: number; reachable: number; unreachable: string[] };
  /** the generation of the tables in force (0: none applied yet) */
  tableGeneration: number;
  lastError?: string;
}

/** An object skein read, as an Event's involvedObject names it. */
export interface ObjectRef {
  kind: string;
  /** absent for cluster-scoped kinds (Node, Namespace) */
  namespace?: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

/** What becomes of an object skein cannot honour: refused with an earlier version kept in
 * force, refused with none (left out), or applied closed (a NetworkPolicy past skein's bounds). */
export type Outcome = "kept" | "left-out" | "closed";

/** Where the SkeinNode writer reads the node's state from, whenever it looks. */
export interface NodeSource {
  report(): NodeReport;
  /** the Node's uid (the SkeinNode's owner); undefined until the Node has been read */
  nodeUid(): string | undefined;
}

/** The agent's side of both reporters. Every method returns at once: the writes happen in
 * the background and never hold up the sync loop. */
export interface Reporter {
  start(source: NodeSource): void;
  /** the state may have changed (a sync ran): the SkeinNode is looked at soon */
  changed(): void;
  /** an object skein cannot honour as written */
  refused(ref: ObjectRef, message: string, outcome: Outcome): void;
  stop(): Promise<void>;
}

/** `s` cut to at most `max` characters, marked when cut. */
export function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** Waits for `p` (when there is one), `ms` at most; the timer does not outlive the wait. */
export async function within(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!p) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
