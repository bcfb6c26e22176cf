// The node's SkeinNode (deploy/crds/skeinnode.yaml): one cluster-scoped object per node, named
// after it and owned by its Node (so it goes when the Node does), whose status says what the
// agent's /readyz says and what `kubectl get skeinnodes` shows. The agent only writes status,
// through the status subresource.
//
// Writing it is never the agent's business in the way programming the kernel is: it happens
// off the sync loop, at most once a second, only when something changed or as a heartbeat a
// minute after the last write (readers tell a stale object by its lastUpdate), and a cluster
// without the CRD, or an API server that refuses, costs a log line and a retry, never a sync.
import type { Logger } from "pino";
import { KubeError, type KubeClient } from "../watch/kube.ts";
import { clip, within, type NodeReport, type NodeSource } from "./types.ts";

export const GROUP = "skein.io";
export const VERSION = "v1alpha1";
export const PLURAL = "skeinnodes";
export const KIND = "SkeinNode";
export const RESOURCE_PATH = `/apis/${GROUP}/${VERSION}/${PLURAL}`;

/** The bounds of what is written (OPERATE.md, and the CRD's schema: a Node has at most two
 * pod CIDRs, one per family): hostile or runaway state never makes an object the API server
 * refuses or one too big to list. */
export const BOUNDS = { reasons: 10, reason: 256, unreachable: 20, name: 253, lastError: 1024, message: 1024, podCIDRs: 2, short: 64 };

export interface WriterOptions {
  kube: Pick<KubeClient, "request">;
  nodeName: string;
  log: Logger;
  /** a write at least this long after the last one even when nothing changed */
  heartbeatMs?: number;
  /** the least time between two writes */
  minIntervalMs?: number;
  /** how often the source is looked at for changes no one announced (peers, the heartbeat) */
  checkMs?: number;
  /** the retry while the CRD is not installed */
  crdRetryMs?: number;
  /** the first retry after another failure (doubling up to maxBackoffMs) */
  backoffMs?: number;
  maxBackoffMs?: number;
  now?: () => number;
}

export interface ReadyCondition {
  type: "Ready";
  status: "True" | "False";
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface SkeinNodeStatus {
  ready: boolean;
  reasons: string[];
  mode: string;
  version: string;
  addresses: { underlay: string | null; public: string | null; podCIDRs: string[] };
  peers: { total: number; reachable: number; unreachable: string[] };
  peersSummary: string;
  tableGeneration: number;
  /** null: a merge patch removes what an earlier write left */
  lastError: string | null;
  lastUpdate: string;
  conditions: ReadyCondition[];
}

const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const count = (n: unknown) => (typeof n === "number" && Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0);

/** The status fields of a report, bounded; lastUpdate and the condition are added by the writer. */
export function boundedStatus(r: NodeReport): Omit<SkeinNodeStatus, "lastUpdate" | "conditions"> {
  const reasons = r.ready ? [] : r.reasons.slice(0, BOUNDS.reasons).map((s) => clip(s, BOUNDS.reason));
  if (!r.ready && r.reasons.length > BOUNDS.reasons) reasons[BOUNDS.reasons - 1] = clip(`${r.reasons.length - BOUNDS.reasons + 1} more reasons`, BOUNDS.reason);
  const total = count(r.peers.total);
  const reachable = Math.min(total, count(r.peers.reachable));
  return {
    ready: r.ready,
    reasons,
    mode: clip(r.mode, BOUNDS.short),
    version: clip(r.version, BOUNDS.short),
    addresses: {
      underlay: r.addresses.underlay ? clip(r.addresses.underlay, BOUNDS.short) : null,
      public: r.addresses.public ? clip(r.addresses.public, BOUNDS.short) : null,
      podCIDRs: r.addresses.podCIDRs.slice(0, BOUNDS.podCIDRs).map((c) => clip(c, BOUNDS.short)),
    },
    peers: { total, reachable, unreachable: r.peers.unreachable.slice(0, BOUNDS.unreachable).map((n) => clip(n, BOUNDS.name)) },
    peersSummary: `${reachable}/${total}`,
    tableGeneration: count(r.tableGeneration),
    lastError: r.lastError ? clip(r.lastError, BOUNDS.lastError) : null,
  };
}

/** Keeps the node's SkeinNode; see the top of this file. */
/** Whether the object (as the API server answered) names the Node with `uid` among its owners. */
const ownedBy = (o: unknown, uid: string) => !!(o as { metadata?: { ownerReferences?: Array<{ uid?: string }> } } | undefined)?.metadata?.ownerReferences?.some((r) => r?.uid === uid);

export class SkeinNodeWriter {
  private readonly o: Required<Omit<WriterOptions, "kube" | "log" | "nodeName">>;
  private source: NodeSource | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private interval: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** the object is known to exist with this node's owner reference (else it is read first) */
  private exists = false;
  /** what was last written (without lastUpdate), and when */
  private written = "";
  private writtenAt = -Infinity;
  /** when the last request was made: the next comes minIntervalMs later at the soonest */
  private lastAttemptAt = -Infinity;
  /** no attempt before this (a retry's backoff, or the CRD's absence) */
  private retryAt = -Infinity;
  private failures = 0;
  private crdMissing = false;
  private condition: ReadyCondition | undefined;
  /** writes made (tests and metrics read it) */
  writes = 0;

  constructor(private readonly w: WriterOptions) {
    this.o = {
      heartbeatMs: w.heartbeatMs ?? 60_000,
      minIntervalMs: w.minIntervalMs ?? 1000,
      checkMs: w.checkMs ?? 5000,
      crdRetryMs: w.crdRetryMs ?? 60_000,
      backoffMs: w.backoffMs ?? 1000,
      maxBackoffMs: w.maxBackoffMs ?? 60_000,
      now: w.now ?? Date.now,
    };
  }

  start(source: NodeSource): void {
    if (this.stopped) return;
    this.source = source;
    this.interval = setInterval(() => this.changed(), this.o.checkMs);
    this.interval.unref?.();
    this.changed();
  }

  /** Something may have changed: a look at the source as soon as the limits allow. */
  changed(): void {
    if (this.stopped || !this.source) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(this.lastAttemptAt + this.o.minIntervalMs, this.retryAt) - this.o.now();
    // a long wait is looked at again every checkMs: the clock may have jumped
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (Math.max(this.lastAttemptAt + this.o.minIntervalMs, this.retryAt) > this.o.now()) return this.changed();
        this.running = this.attempt().finally(() => {
          this.running = undefined;
          if (this.again) {
            this.again = false;
            this.changed();
          }
        });
      },
      Math.max(0, Math.min(wait, this.o.checkMs)),
    );
    this.timer.unref?.();
  }

  /** Stops; a write under way is given a moment to finish. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.interval);
    await within(this.running, 2000);
  }

  private get path(): string {
    return `${RESOURCE_PATH}/${encodeURIComponent(this.w.nodeName)}`;
  }

  private async attempt(): Promise<void> {
    const src = this.source!;
    const now = this.o.now();
    try {
      const uid = src.nodeUid();
      // no owner yet: an object without one would outlive its Node
      if (!uid) return;
      const status = boundedStatus(src.report());
      const key = JSON.stringify([uid, status]);
      if (key === this.written && now < this.writtenAt + this.o.heartbeatMs) return;
      this.lastAttemptAt = now;
      // a conflict or an object gone meanwhile: read again and write once more
      for (let i = 0; ; i++) {
        try {
          if (!this.exists) await this.ensure(uid);
          const written = await this.writeStatus(status, now);
          // an owner changed by someone else since (by hand, a tool) shows in what the write returns
          if (!ownedBy(written, uid)) await this.setOwner(uid);
          break;
        } catch (e) {
          if (i > 0 || !(e instanceof KubeError) || (e.statusCode !== 404 && e.statusCode !== 409)) throw e;
          this.exists = false;
        }
      }
      this.written = key;
      this.writtenAt = now;
      this.writes++;
      if (this.crdMissing || this.failures) this.w.log.info({ skeinnode: this.w.nodeName }, "SkeinNode written");
      this.crdMissing = false;
      this.failures = 0;
    } catch (e) {
      this.exists = false;
      if (e instanceof CrdMissing) {
        if (!this.crdMissing) this.w.log.warn({ resource: `${PLURAL}.${GROUP}` }, `the SkeinNode CRD is not installed (deploy/crds/skeinnode.yaml): this node's state is not written to the API; trying again every ${Math.round(this.o.crdRetryMs / 1000)} s`);
        this.crdMissing = true;
        this.retryAt = this.o.now() + this.o.crdRetryMs;
      } else {
        const wait = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** Math.min(30, this.failures++));
        this.retryAt = this.o.now() + wait;
        this.w.log.warn({ skeinnode: this.w.nodeName, err: (e as Error).message, retryMs: wait }, "cannot write the SkeinNode; trying again");
      }
      // the retry needs no other change to happen
      this.again = true;
    }
  }

  /** Makes sure the object exists, owned by the Node with `uid`. */
  private async ensure(uid: string, again = false): Promise<void> {
    const owner = { apiVersion: "v1", kind: "Node", name: this.w.nodeName, uid };
    let found: { metadata?: { ownerReferences?: Array<{ uid?: string }> }; status?: { conditions?: unknown } } | undefined;
    try {
      found = await this.w.kube.request("GET", this.path);
    } catch (e) {
      if (!(e instanceof KubeError) || e.statusCode !== 404) throw e;
    }
    if (!found) {
      try {
        found = await this.w.kube.request("POST", RESOURCE_PATH, { body: { apiVersion: `${GROUP}/${VERSION}`, kind: KIND, metadata: { name: this.w.nodeName, ownerReferences: [owner] }, spec: {} } });
      } catch (e) {
        // the object was missing and its kind is too: kube-apiserver answers 404 for a
        // resource it does not serve, and 409 for an object made meanwhile
        if (e instanceof KubeError && e.statusCode === 404) throw new CrdMissing(e.message);
        if (again || !(e instanceof KubeError) || e.statusCode !== 409) throw e;
        return this.ensure(uid, true);
      }
    } else if (!ownedBy(found, uid)) {
      // made for a Node of this name that is gone, or by hand
      await this.setOwner(uid);
    }
    // a restarted agent keeps the time the condition last flipped
    const conds = found?.status?.conditions;
    const ready = Array.isArray(conds) ? conds.find((c) => c && c.type === "Ready") : undefined;
    if (!this.condition && ready && (ready.status === "True" || ready.status === "False") && typeof ready.lastTransitionTime === "string") this.condition = { type: "Ready", status: ready.status, reason: "", message: "", lastTransitionTime: ready.lastTransitionTime };
    this.exists = true;
  }

  private async setOwner(uid: string): Promise<void> {
    const owner = { apiVersion: "v1", kind: "Node", name: this.w.nodeName, uid };
    await this.w.kube.request("PATCH", this.path, { body: { metadata: { ownerReferences: [owner] } }, contentType: "application/merge-patch+json" });
  }

  /** The object as the API server answered the write. */
  private async writeStatus(s: ReturnType<typeof boundedStatus>, now: number): Promise<unknown> {
    const status: SkeinNodeStatus = { ...s, lastUpdate: rfc3339(now), conditions: [this.readyCondition(s, now)] };
    return await this.w.kube.request("PATCH", `${this.path}/status`, { body: { status }, contentType: "application/merge-patch+json" });
  }

  private readyCondition(s: ReturnType<typeof boundedStatus>, now: number): ReadyCondition {
    const status = s.ready ? "True" : "False";
    const was = this.condition;
    const c: ReadyCondition = {
      type: "Ready",
      status,
      reason: s.ready ? "AgentReady" : "AgentNotReady",
      message: s.ready ? "the cluster is listed, the tables are applied and the peers are known" : clip(s.reasons.join("; "), BOUNDS.message),
      lastTransitionTime: was && was.status === status ? was.lastTransitionTime : rfc3339(now),
    };
    this.condition = c;
    return c;
  }
}

class CrdMissing extends Error {}
