// Node health probes, as cilium-health does them: every agent asks every peer's health port
// (GET /healthz) at an address reached across the pod network, so that a broken tunnel, a
// missing route or a dead agent shows as that peer being unreachable, with the round trip
// when it answers. Probes run one round at a time, each bounded by a timeout; a peer that
// left is forgotten.

export interface ProbeTarget {
  name: string;
  /** the address probed (the peer's pod-network address, or its underlay address) */
  address: string;
}

export interface ProbeResult {
  address: string;
  ok: boolean;
  /** round trip of an answered probe */
  rttMs?: number;
  /** why the last probe failed */
  error?: string;
  /** when the last probe ended (Date.now()) */
  at: number;
  /** the node name the peer answered with, when it answered */
  answeredBy?: string;
}

export interface ProberOptions {
  port: number;
  intervalMs: number;
  timeoutMs: number;
  /** called after each round with every target's last result */
  onRound?: (results: Map<string, ProbeResult>) => void;
  fetch?: typeof fetch;
}

const hostOf = (a: string) => (a.includes(":") ? `[${a}]` : a);

export class HealthProber {
  private targets: ProbeTarget[] = [];
  private readonly results = new Map<string, ProbeResult>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;
  private stopped = false;
  private again = false;

  constructor(private readonly o: ProberOptions) {}

  /** The peers to probe from now on; new ones are probed at once. */
  setTargets(targets: ProbeTarget[]): void {
    const before = new Map(this.targets.map((t) => [t.name, t.address]));
    this.targets = targets;
    const names = new Set(targets.map((t) => t.name));
    for (const n of [...this.results.keys()]) if (!names.has(n)) this.results.delete(n);
    // a new peer, or one at a new address, is probed now rather than at the next round
    if (targets.some((t) => before.get(t.name) !== t.address)) this.soon(0);
  }

  start(): void {
    this.soon(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Every target's last result, by peer name (a target not probed yet has none). */
  last(): Map<string, ProbeResult> {
    return new Map(this.results);
  }

  private soon(ms: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.round(), ms);
    this.timer.unref?.();
  }

  private async round(): Promise<void> {
    this.running = true;
    try {
      await Promise.all(this.targets.map((t) => this.probe(t)));
      this.o.onRound?.(this.last());
    } finally {
      this.running = false;
    }
    const again = this.again;
    this.again = false;
    this.soon(again ? 0 : this.o.intervalMs);
  }

  private async probe(t: ProbeTarget): Promise<void> {
    const f = this.o.fetch ?? fetch;
    const t0 = performance.now();
    let r: ProbeResult;
    try {
      // a fresh connection each time: a pooled one would hide a path that broke meanwhile
      const res = await f(`http://${hostOf(t.address)}:${this.o.port}/healthz`, { signal: AbortSignal.timeout(this.o.timeoutMs), keepalive: false, headers: { Connection: "close" } });
      const body = (await res.text()).slice(0, 512);
      const rttMs = Math.round((performance.now() - t0) * 100) / 100;
      let node: string | undefined;
      try {
        const j = JSON.parse(body) as { node?: unknown };
        if (typeof j.node === "string") node = j.node.slice(0, 253);
      } catch {}
      if (!res.ok) r = { address: t.address, ok: false, error: `answered ${res.status}`, at: Date.now(), rttMs };
      // an address that now belongs to another node answers for that node, not this peer
      else if (node !== t.name) r = { address: t.address, ok: false, error: `answered as ${JSON.stringify(node ?? "?")}, not ${t.name}`, at: Date.now(), rttMs };
      else r = { address: t.address, ok: true, rttMs, at: Date.now(), answeredBy: node };
    } catch (e) {
      const err = e as Error;
      r = { address: t.address, ok: false, error: err.name === "TimeoutError" ? `no answer within ${this.o.timeoutMs} ms` : err.message.slice(0, 200), at: Date.now() };
    }
    if (this.targets.some((x) => x.name === t.name && x.address === t.address)) this.results.set(t.name, r);
  }
}
