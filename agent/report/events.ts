// Kubernetes Events on objects skein cannot honour (an invalid Service address, a NetworkPolicy
// it cannot apply as written), so that `kubectl describe` on the object says why it does not
// work, as client-go's event recorder does for kube-proxy and the controllers: core v1 Events,
// type Warning, one per (object, reason, message), whose count and lastTimestamp go up when it
// repeats within 10 minutes rather than a new Event each time.
//
// Anyone who can write objects can make the agent write Events (one per bad object), and every
// agent of the cluster writes its own: the writes are rate-limited per agent (a token bucket,
// 25 a minute with a burst of 10); what goes over is counted and dropped, never queued without
// bound, and the sync loop never waits for any of it.
import type { Logger } from "pino";
import { KubeError, type KubeClient } from "../watch/kube.ts";
import { clip, within, type ObjectRef, type Outcome } from "./types.ts";
import { TokenBucket } from "../sys/token-bucket.ts";

export const COMPONENT = "skein-agent";
export const REPORTING_COMPONENT = "skein.io/agent";
/** kube-apiserver's bound on an Event's message (events.k8s.io's note) */
export const MAX_MESSAGE = 1024;

/** The API version of each kind skein reads (an involvedObject names it). */
const API_VERSION: Record<string, string> = { Service: "v1", Pod: "v1", Namespace: "v1", Node: "v1", EndpointSlice: "discovery.k8s.io/v1", NetworkPolicy: "networking.k8s.io/v1" };

/** The Event reason for an object refused or applied closed; undefined: not reported with an
 * Event (a Pod's or Namespace's problems are other components' to explain). */
export function reasonFor(kind: string, outcome: Outcome): string | undefined {
  switch (kind) {
    case "Service":
      return "InvalidService";
    case "EndpointSlice":
      return "InvalidEndpointSlice";
    case "NetworkPolicy":
      return outcome === "closed" ? "PolicyClosed" : "UnsupportedPolicy";
    case "Node":
      return "InvalidNode";
  }
  return undefined;
}

/** The Event message: the refusal (without the object's name, which the Event carries) and
 * what skein does instead. */
export function messageFor(ref: ObjectRef, message: string, outcome: Outcome): string {
  const id = `${ref.kind} ${ref.namespace ?? "default"}/${ref.name}: `;
  const why = message.startsWith(id) ? message.slice(id.length) : message;
  const then =
    outcome === "kept"
      ? "the earlier version stays in force"
      : outcome === "closed"
        ? "skein cannot apply it as written: the pods it selects are isolated with nothing allowed until it can (fail closed)"
        : "left out: nothing of it is programmed";
  return clip(`${why}; ${then}`, MAX_MESSAGE);
}

export interface RecorderOptions {
  kube: Pick<KubeClient, "request">;
  nodeName: string;
  log: Logger;
  /** Event writes a minute, and the most at once */
  perMinute?: number;
  burst?: number;
  /** repeats within this window bump the Event rather than make a new one */
  dedupMs?: number;
  now?: () => number;
}

interface Pending {
  key: string;
  ref: ObjectRef;
  reason: string;
  message: string;
  /** occurrences since it was queued */
  times: number;
}

/** An Event written, as its repeats find it. */
interface Sent {
  name: string;
  namespace: string;
  count: number;
  lastMs: number;
}

/** Events not yet written: more are dropped (the bucket would drop most of them anyway). */
const MAX_QUEUE = 64;
/** Events remembered for their repeats: the oldest are forgotten first. */
const MAX_SENT = 1024;

const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export class EventRecorder {
  private readonly perMinute: number;
  private readonly burst: number;
  private readonly dedupMs: number;
  private readonly now: () => number;
  private readonly bucket: TokenBucket;
  private readonly queue: Pending[] = [];
  private readonly sent = new Map<string, Sent>();
  /** the version of each object last reported, by Event key */
  private readonly versions = new Map<string, string>();
  private running: Promise<void> | undefined;
  private stopped = false;
  private seq = 0;
  /** Events not written because of the rate limit or a full queue */
  dropped = 0;
  /** Event writes made (creates and updates) */
  writes = 0;
  /** writes the API server refused */
  failed = 0;

  constructor(private readonly o: RecorderOptions) {
    this.perMinute = o.perMinute ?? 25;
    this.burst = o.burst ?? 10;
    this.dedupMs = o.dedupMs ?? 600_000;
    this.now = o.now ?? Date.now;
    this.bucket = new TokenBucket(this.perMinute, 60_000, this.burst, this.now);
  }

  /** A Warning Event on `ref`; returns at once. */
  warn(ref: ObjectRef, reason: string, message: string): void {
    if (this.stopped) return;
    const msg = clip(message, MAX_MESSAGE);
    const key = JSON.stringify([ref.kind, ref.namespace ?? "", ref.name, ref.uid ?? "", reason, msg]);
    // the same version again is the informer listing anew (after a 410, a restarted API
    // server), not another occurrence
    if (ref.resourceVersion !== undefined) {
      if (this.versions.get(key) === ref.resourceVersion) return;
      this.versions.delete(key);
      if (this.versions.size >= MAX_SENT) this.versions.delete(this.versions.keys().next().value!);
      this.versions.set(key, ref.resourceVersion);
    }
    const q = this.queue.find((p) => p.key === key);
    if (q) {
      q.times++;
      return;
    }
    if (this.queue.length >= MAX_QUEUE) {
      this.drop();
      return;
    }
    this.queue.push({ key, ref, reason, message: msg, times: 1 });
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await within(this.running, 2000);
  }

  private drop(): void {
    // logged at the first drop and every 100th after: a flood logs a few lines, not one each
    if (this.dropped++ % 100 === 0) this.o.log.warn({ dropped: this.dropped }, `more than ${this.perMinute} Events a minute: Events dropped`);
  }

  private async drain(): Promise<void> {
    for (let p = this.queue.shift(); p && !this.stopped; p = this.queue.shift()) {
      try {
        await this.send(p);
      } catch (e) {
        this.failed++;
        this.o.log.warn({ object: `${p.ref.kind} ${p.ref.namespace ?? ""}/${p.ref.name}`, reason: p.reason, err: (e as Error).message }, "cannot write an Event");
      }
    }
  }

  private async send(p: Pending): Promise<void> {
    const now = this.now();
    for (const [k, s] of this.sent) if (now - s.lastMs >= this.dedupMs) this.sent.delete(k);
    const seen = this.sent.get(p.key);
    if (!this.bucket.take(now)) {
      // the Event of a repeat counts it when it is next written
      if (seen) seen.count += p.times;
      this.drop();
      return;
    }
    const ts = rfc3339(now);
    if (seen) {
      try {
        await this.o.kube.request("PATCH", `/api/v1/namespaces/${encodeURIComponent(seen.namespace)}/events/${encodeURIComponent(seen.name)}`, {
          body: { count: seen.count + p.times, lastTimestamp: ts },
          contentType: "application/merge-patch+json",
        });
        seen.count += p.times;
        seen.lastMs = now;
        this.writes++;
        return;
      } catch (e) {
        // the Event is gone (expired, deleted): a new one
        if (!(e instanceof KubeError) || e.statusCode !== 404) throw e;
        this.sent.delete(p.key);
      }
    }
    // cluster-scoped objects' Events go to "default", as kube-apiserver wants them
    const namespace = p.ref.namespace ?? "default";
    // as client-go names them: the object's name and a time in hex (unique per agent with the sequence)
    const name = `${p.ref.name.slice(0, 200).replace(/[.-]+$/, "")}.${(now * 1000 + (this.seq++ % 1000)).toString(16)}${this.o.nodeName.length ? `.${hash(this.o.nodeName)}` : ""}`;
    const involvedObject: Record<string, string> = { kind: p.ref.kind, name: p.ref.name, apiVersion: API_VERSION[p.ref.kind] ?? "v1" };
    if (p.ref.namespace) involvedObject.namespace = p.ref.namespace;
    if (p.ref.uid) involvedObject.uid = p.ref.uid;
    if (p.ref.resourceVersion) involvedObject.resourceVersion = p.ref.resourceVersion;
    await this.o.kube.request("POST", `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, {
      body: {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name, namespace },
        involvedObject,
        reason: p.reason,
        message: p.message,
        type: "Warning",
        source: { component: COMPONENT, host: this.o.nodeName },
        reportingComponent: REPORTING_COMPONENT,
        reportingInstance: this.o.nodeName,
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: p.times,
      },
    });
    this.writes++;
    if (this.sent.size >= MAX_SENT) this.sent.delete(this.sent.keys().next().value!);
    this.sent.set(p.key, { name, namespace, count: p.times, lastMs: now });
  }
}

/** 8 hex digits of the node's name: two agents reporting the same object in the same
 * millisecond make two Events, not a conflict. */
function hash(s: string): string {
  return (Bun.hash.crc32(s) >>> 0).toString(16).padStart(8, "0");
}
