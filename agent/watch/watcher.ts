// The agent's view of the Kubernetes API: one @kubernetes/client-node ListWatch (informer) per
// resource, each listing in pages and then watching from the list's resourceVersion. A
// watch that ends with 410 Gone relists (ListWatch does that itself and reports what the
// relist removed as deletions, so nothing is missed or seen twice); a failed connection is
// retried with a growing delay, which ListWatch leaves to its owner. Every add, update and
// delete is handed on as a WatchEvent; nothing here interprets the objects.
import { ListWatch, type KubernetesObject } from "@kubernetes/client-node";
import { KubeClient, listAll } from "./kube.ts";

export type Kind = "Namespace" | "Node" | "Pod" | "Service" | "EndpointSlice" | "NetworkPolicy";

export interface WatchEvent {
  kind: Kind;
  op: "set" | "delete";
  object: KubernetesObject & Record<string, unknown>;
}

interface Resource {
  kind: Kind;
  path: string;
  fieldSelector?: string;
}

/** What the agent watches. Pods of every node: a policy names pods wherever they run, and a
 * connection from a pod elsewhere is judged by that pod's labels. */
export function resources(_nodeName: string): Resource[] {
  return [
    { kind: "Namespace", path: "/api/v1/namespaces" },
    { kind: "Node", path: "/api/v1/nodes" },
    { kind: "Pod", path: "/api/v1/pods" },
    { kind: "Service", path: "/api/v1/services" },
    { kind: "EndpointSlice", path: "/apis/discovery.k8s.io/v1/endpointslices" },
    { kind: "NetworkPolicy", path: "/apis/networking.k8s.io/v1/networkpolicies" },
  ];
}

export interface WatcherOptions {
  nodeName: string;
  onEvent: (e: WatchEvent) => void;
  /** every resource has been listed once: the state is complete */
  onSynced?: () => void;
  /** a list or watch failed (it is retried) */
  onError?: (kind: Kind, err: unknown) => void;
  pageSize?: number;
  retryMs?: { min: number; max: number };
  /** called after each page of a list has been read and trimmed (keep), with how many
   * objects it held: where the agent collects the page's garbage */
  onPage?: (items: number) => void;
  /** what to keep of each object listed or watched (the informers cache what this returns):
   * by default the object as the API server sent it */
  keep?: (kind: Kind, o: Record<string, unknown>) => KubernetesObject & Record<string, unknown>;
}

type ListOf = { metadata?: { resourceVersion?: string; continue?: string }; items: Array<KubernetesObject & Record<string, unknown>> };

export class Watcher {
  private readonly informers: Array<{ r: Resource; lw: ListWatch<KubernetesObject & Record<string, unknown>>; failures: number; timer?: ReturnType<typeof setTimeout> }> = [];
  private readonly synced = new Set<Kind>();
  private stopped = false;

  constructor(
    private readonly client: KubeClient,
    private readonly o: WatcherOptions,
  ) {
    for (const r of resources(o.nodeName)) {
      const keep = o.keep ? (x: Record<string, unknown>) => o.keep!(r.kind, x) : undefined;
      const lw = new ListWatch<KubernetesObject & Record<string, unknown>>(r.path, client.watcher(keep), () => this.list(r) as never, false, undefined, r.fieldSelector);
      const inf = { r, lw, failures: 0, timer: undefined as ReturnType<typeof setTimeout> | undefined };
      const emit = (op: WatchEvent["op"]) => (object: KubernetesObject & Record<string, unknown>) => {
        inf.failures = 0;
        o.onEvent({ kind: r.kind, op, object });
      };
      lw.on("add", emit("set"));
      lw.on("update", emit("set"));
      lw.on("delete", emit("delete"));
      lw.on("error", (err: unknown) => {
        o.onError?.(r.kind, err);
        this.retry(inf);
      });
      this.informers.push(inf);
    }
  }

  /** Pages of a list (a continue token that expired starts the list again). */
  private async list(r: Resource): Promise<ListOf> {
    const l = await listAll<KubernetesObject & Record<string, unknown>>(this.client, r.path, { fieldSelector: r.fieldSelector, pageSize: this.o.pageSize ?? 500 }, (items) => {
      const kept = this.o.keep ? items.map((it) => this.o.keep!(r.kind, it)) : (items as Array<KubernetesObject & Record<string, unknown>>);
      this.o.onPage?.(items.length);
      return kept;
    });
    // ListWatch handles the items right after this resolves; the resource counts as synced
    // once it has
    setTimeout(() => this.markSynced(r.kind), 0);
    return l;
  }

  private markSynced(kind: Kind): void {
    if (this.synced.has(kind)) return;
    this.synced.add(kind);
    if (this.synced.size === this.informers.length) this.o.onSynced?.();
  }

  isSynced(): boolean {
    return this.synced.size === this.informers.length;
  }

  private retry(inf: (typeof this.informers)[number]): void {
    if (this.stopped) return;
    const { min, max } = this.o.retryMs ?? { min: 200, max: 5000 };
    const delay = Math.min(max, min * 2 ** inf.failures++);
    clearTimeout(inf.timer);
    inf.timer = setTimeout(() => void inf.lw.start(), delay);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await Promise.all(this.informers.map((i) => i.lw.start()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const i of this.informers) clearTimeout(i.timer);
    await Promise.all(this.informers.map((i) => i.lw.stop()));
  }
}
