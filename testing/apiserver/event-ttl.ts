// What kube-apiserver's event registry does beyond storing: a stored core Event gets the
// fields Go always writes for it, and expires --event-ttl after its last write.
import type { KubeObject } from "./resources.ts";
import type { Store } from "./store.ts";
import { completeCoreEvent } from "./events.ts";

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** kube-apiserver's --event-ttl default: an Event goes an hour after its last write */
export const DEFAULT_EVENT_TTL_S = 3600;

/** When an Event was last written, by its own times (an Event loaded at start has no other). */
function lastWritten(o: KubeObject): number {
  const times = [o.lastTimestamp, o.eventTime, isObj(o.series) ? o.series.lastObservedTime : undefined, o.metadata.creationTimestamp].map((t) => (typeof t === "string" ? Date.parse(t) : NaN)).filter((t) => !Number.isNaN(t));
  return times.length ? Math.max(...times) : 0;
}

/**
 * Core Events in `store` get the fields Go always writes for them, and expire `ttlSeconds`
 * after their last write (kube-apiserver's --event-ttl, an etcd lease renewed by each write;
 * 0 keeps them). Returns the sweep that deletes the expired ones (the caller runs it).
 */
export function attachEvents(store: Store, ttlSeconds = DEFAULT_EVENT_TTL_S, now = () => Date.now()): () => number {
  const t = store.type("", "events");
  if (!t) return () => 0;
  // the time of each Event's last write through this server (a restart falls back to the Event's own times)
  const written = new Map<string, number>();
  const key = (o: KubeObject) => `${o.metadata.namespace}/${o.metadata.name}`;
  const wrote = (o: KubeObject, dryRun: boolean) => {
    completeCoreEvent(o);
    if (!dryRun) written.set(key(o), now());
  };
  store.setHooks(t, { create: wrote, update: (next, _cur, dryRun) => wrote(next, dryRun), deleted: (o) => written.delete(key(o)) });
  return () => {
    if (!ttlSeconds) return 0;
    const limit = now() - ttlSeconds * 1000;
    let n = 0;
    for (const o of store.list(t).items) {
      if ((written.get(key(o)) ?? lastWritten(o)) > limit) continue;
      try {
        store.delete(t, o.metadata.namespace, o.metadata.name!);
        n++;
      } catch {
        // gone meanwhile, or the write refused (the journal): the next sweep tries again
      }
    }
    return n;
  };
}
