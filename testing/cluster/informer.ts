// One cached, watched resource for the demo cluster's controllers (scheduler.ts,
// endpointslices.ts): @kubernetes/client-node's ListWatch over KubeClient's Bun watch, as the
// agent's watcher.ts uses it, listing in pages; a failed list or watch is retried with a
// growing delay (ListWatch leaves that to its owner), a 410 relists (ListWatch does that).
import { ListWatch, type KubernetesObject } from "@kubernetes/client-node";
import { listAll, type KubeClient } from "../../agent/watch/kube.ts";

export type Obj = KubernetesObject & Record<string, any>;

const PAGE = 500;
export const RETRY_MS = { min: 200, max: 5000 };

export class Informer {
  private readonly lw: ListWatch<Obj>;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private synced!: () => void;
  /** resolves once the first list has been read into the cache */
  readonly ready = new Promise<void>((r) => (this.synced = r));

  constructor(
    private readonly client: KubeClient,
    readonly path: string,
    /** told of every add, update and delete (after the cache has it) */
    onChange: (o: Obj, op: "add" | "update" | "delete") => void,
    log: (msg: string) => void,
    /** only the objects with these labels (a label selector) */
    private readonly labelSelector?: string,
    /** only the objects with these fields (a field selector: a node's pods) */
    private readonly fieldSelector?: string,
  ) {
    this.lw = new ListWatch<Obj>(path, client.watcher(), () => this.list() as never, false, labelSelector, fieldSelector);
    this.lw.on("add", (o) => ((this.failures = 0), onChange(o, "add")));
    this.lw.on("update", (o) => ((this.failures = 0), onChange(o, "update")));
    this.lw.on("delete", (o) => onChange(o, "delete"));
    this.lw.on("error", (err: unknown) => {
      if (this.stopped) return;
      const delay = Math.min(RETRY_MS.max, RETRY_MS.min * 2 ** this.failures++);
      log(`${path}: ${(err as Error)?.message ?? String(err)}; again in ${delay} ms`);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.lw.start(), delay);
    });
  }

  private async list(): Promise<{ metadata: { resourceVersion: string }; items: Obj[] }> {
    const l = await listAll<Obj>(this.client, this.path, { labelSelector: this.labelSelector, fieldSelector: this.fieldSelector, pageSize: PAGE });
    // ListWatch puts the items in its cache right after this resolves
    setTimeout(() => this.synced(), 0);
    return l;
  }

  async start(): Promise<void> {
    this.stopped = false;
    void this.lw.start();
    await this.ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.lw.stop();
  }

  /** the cached objects (of one namespace) */
  items(namespace?: string): Obj[] {
    return [...this.lw.list(namespace)];
  }

  get(name: string, namespace?: string): Obj | undefined {
    return this.lw.get(name, namespace);
  }
}

/** Calls `run` soon after `poke`, once for a burst of pokes, never two at a time; `at`
 * asks for a run at a later time (a retry), the earliest one asked for winning. */
export class Coalescer {
  private running = false;
  private again = false;
  private soon: ReturnType<typeof setTimeout> | undefined;
  private later: ReturnType<typeof setTimeout> | undefined;
  private laterAt = Infinity;
  private stopped = false;

  constructor(
    private readonly run: () => Promise<void>,
    private readonly log: (msg: string) => void,
    private readonly delayMs = 10,
  ) {}

  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.soon ??= setTimeout(() => void this.go(), this.delayMs);
  }

  at(when: number): void {
    if (this.stopped || when >= this.laterAt) return;
    clearTimeout(this.later);
    this.laterAt = when;
    this.later = setTimeout(() => {
      this.laterAt = Infinity;
      this.later = undefined;
      this.poke();
    }, Math.max(0, when - Date.now()));
  }

  private async go(): Promise<void> {
    this.soon = undefined;
    this.running = true;
    try {
      await this.run();
    } catch (e) {
      this.log(`sync failed: ${(e as Error).message}`);
      this.at(Date.now() + RETRY_MS.max);
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      this.poke();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.soon);
    clearTimeout(this.later);
  }
}

/**
 * What the demo's controllers share: informers whose every change pokes one Coalescer running
 * the controller's pass, listed before the first pass, stopped together. After stop() a pass
 * under way writes no more (`stopped`).
 */
export abstract class Controller {
  protected readonly sync: Coalescer;
  protected stopped = false;
  private readonly informers: Informer[] = [];

  constructor(
    protected readonly client: KubeClient,
    protected readonly log: (msg: string) => void,
  ) {
    this.sync = new Coalescer(() => this.pass(), log);
  }

  /** An informer of `path` (only the objects with `labelSelector`) that pokes the pass. */
  protected watch(path: string, labelSelector?: string): Informer {
    const i = new Informer(this.client, path, () => this.sync.poke(), this.log, labelSelector);
    this.informers.push(i);
    return i;
  }

  protected abstract pass(): Promise<void>;

  /** Resolves once every informer has listed (the first pass is under way). */
  async start(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.start()));
    this.sync.poke();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sync.stop();
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
