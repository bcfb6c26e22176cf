// The agent's Prometheus metrics (prom-client), in one registry of the agent's own: the parts
// record into it through the methods below, and `/metrics` renders it. prom-client's default
// process metrics are not used: under Bun some of them print `Nan` (not a Prometheus number)
// and the event-loop ones stay empty, so the few that mean something here are read directly.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Latency buckets (seconds) for API requests and CNI commands: 1 ms to 30 s. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Compile and apply durations: 100 µs to 30 s. */
const WORK_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What an API request was, from its method, path and query (kube-apiserver's verbs). */
export function apiRequestKind(method: string, path: string, watch: boolean): { resource: string; verb: string } {
  // /api/v1/namespaces/ns/pods/name/status, /apis/group/version/resource/name
  const p = path.split("?")[0]!.split("/").filter(Boolean);
  let rest = p[0] === "api" ? p.slice(2) : p[0] === "apis" ? p.slice(3) : [];
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const resource = (rest[0] ?? "other").slice(0, 63) + (rest[2] ? `/${rest[2].slice(0, 31)}` : "");
  const item = rest.length >= 2;
  const m = method.toUpperCase();
  const verb = m === "GET" ? (watch ? "watch" : item ? "get" : "list") : m === "POST" ? "create" : m === "PUT" ? "update" : m === "PATCH" ? "patch" : m === "DELETE" ? (item ? "delete" : "deletecollection") : m.toLowerCase().slice(0, 16);
  return { resource, verb };
}

export class Metrics {
  readonly registry = new Registry();
  private readonly apiRequests: Counter<"resource" | "verb" | "code">;
  private readonly apiLatency: Histogram<"resource" | "verb">;
  private readonly watchEvents: Counter<"resource" | "type">;
  private readonly compileSeconds: Histogram<"part">;
  private readonly applySeconds: Histogram<"part" | "kind">;
  private readonly tableSize: Gauge<"table">;
  private readonly generation: Gauge;
  private readonly txErrors: Counter<"part">;
  private readonly repairs: Counter<"what">;
  private readonly peers: Gauge<"state">;
  private readonly peerReachable: Gauge<"peer">;
  private readonly peerLatency: Gauge<"peer">;
  private readonly policyPackets: Counter<"policy" | "verdict">;
  private readonly cniRequests: Counter<"command" | "result">;
  private readonly cniSeconds: Histogram<"command">;
  private readonly ready: Gauge;
  private readonly httpRequests: Counter<"code">;
  private readonly events: Counter<"outcome">;
  /** filled at scrape time (the kernel's counters, the process) */
  private readonly collectors: Array<() => void> = [];

  constructor(o: { version: string; node: string }) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({});
    new Gauge({ name: "skein_build_info", help: "skein's version (value 1)", labelNames: ["version", "node"], registers }).set({ version: o.version, node: o.node }, 1);
    this.apiRequests = new Counter({ name: "skein_api_requests_total", help: "Kubernetes API requests by resource, verb and HTTP status code (code \"error\": no answer)", labelNames: ["resource", "verb", "code"], registers });
    this.apiLatency = new Histogram({ name: "skein_api_request_duration_seconds", help: "Kubernetes API request latency to the response headers", labelNames: ["resource", "verb"], buckets: REQUEST_BUCKETS, registers });
    this.watchEvents = new Counter({ name: "skein_watch_events_total", help: "objects listed or watched, by resource and event type", labelNames: ["resource", "type"], registers });
    this.compileSeconds = new Histogram({ name: "skein_compile_duration_seconds", help: "time compiling the tables (part: services, policy)", labelNames: ["part"], buckets: WORK_BUCKETS, registers });
    this.applySeconds = new Histogram({ name: "skein_apply_duration_seconds", help: "time loading the tables into the kernel (part: services, policy; kind: full, rebuild, delta, replace)", labelNames: ["part", "kind"], buckets: WORK_BUCKETS, registers });
    this.tableSize = new Gauge({ name: "skein_table_entries", help: "entries of the compiled tables in force (frontends, targets, backends, ring_slots, identities, pod_addresses, allow_ingress, allow_egress)", labelNames: ["table"], registers });
    this.generation = new Gauge({ name: "skein_table_generation", help: "the sync generation whose tables are in force", registers });
    this.txErrors = new Counter({ name: "skein_kernel_transaction_errors_total", help: "kernel transactions refused or failed (part: services, policy, overlay)", labelNames: ["part"], registers });
    this.repairs = new Counter({ name: "skein_drift_repairs_total", help: "repairs of what others changed in skein's kernel state (what: table, masquerade, overlay: routes, device, FDB and neighbour entries put back)", labelNames: ["what"], registers });
    this.peers = new Gauge({ name: "skein_peers", help: "peers by state (up: the health probe answers; down: it does not; unprobed: not probed yet)", labelNames: ["state"], registers });
    this.peerReachable = new Gauge({ name: "skein_peer_reachable", help: "1 when the peer's health endpoint answered the last probe across the pod network", labelNames: ["peer"], registers });
    this.peerLatency = new Gauge({ name: "skein_peer_probe_latency_seconds", help: "round trip of the last answered health probe of the peer", labelNames: ["peer"], registers });
    this.policyPackets = new Counter({ name: "skein_policy_packets_total", help: "packets allowed or dropped per NetworkPolicy, from the kernel's counters (an element of the allow sets made anew starts again from 0, which Prometheus reads as a counter reset)", labelNames: ["policy", "verdict"], registers });
    this.cniRequests = new Counter({ name: "skein_cni_requests_total", help: "CNI commands the plugin reported, by command and result (ok or the CNI error code)", labelNames: ["command", "result"], registers });
    this.cniSeconds = new Histogram({ name: "skein_cni_request_duration_seconds", help: "CNI command durations as the plugin measured them", labelNames: ["command"], buckets: REQUEST_BUCKETS, registers });
    this.ready = new Gauge({ name: "skein_ready", help: "1 when /readyz answers ready", registers });
    this.httpRequests = new Counter({ name: "skein_http_requests_total", help: "requests to the agent's HTTP API by status code", labelNames: ["code"], registers });
    this.events = new Counter({ name: "skein_events_total", help: "Kubernetes Events on objects skein cannot honour (outcome: written, refused by the API server, dropped by the rate limit)", labelNames: ["outcome"], registers });
    const rss = new Gauge({ name: "process_resident_memory_bytes", help: "resident memory", registers });
    const heap = new Gauge({ name: "skein_heap_bytes", help: "JavaScript heap in use", registers });
    const cpu = new Counter({ name: "process_cpu_seconds_total", help: "user and system CPU time", registers });
    new Gauge({ name: "process_start_time_seconds", help: "when the process started (Unix time)", registers }).set(Math.round(Date.now() / 1000 - process.uptime()));
    this.collectors.push(() => {
      const m = process.memoryUsage();
      rss.set(m.rss);
      heap.set(m.heapUsed);
      const c = process.cpuUsage();
      cpu.reset();
      cpu.inc((c.user + c.system) / 1e6);
    });
  }

  apiRequest(method: string, path: string, watch: boolean, code: number | "error", seconds: number): void {
    const k = apiRequestKind(method, path, watch);
    this.apiRequests.inc({ ...k, code: String(code) });
    this.apiLatency.observe(k, seconds);
  }
  watchEvent(resource: string, type: string): void {
    this.watchEvents.inc({ resource, type });
  }
  compiled(part: "services" | "policy", seconds: number): void {
    this.compileSeconds.observe({ part }, seconds);
  }
  applied(part: "services" | "policy", kind: string, seconds: number): void {
    this.applySeconds.observe({ part, kind }, seconds);
  }
  /** The tables in force, read when scraped (undefined: none applied yet). */
  tables(read: () => { generation: number; sizes: Record<string, number> } | undefined): void {
    this.collectors.push(() => {
      const t = read();
      if (!t) return;
      this.generation.set(t.generation);
      for (const [table, n] of Object.entries(t.sizes)) this.tableSize.set({ table }, n);
    });
  }
  transactionError(part: "services" | "policy" | "overlay"): void {
    this.txErrors.inc({ part });
  }
  repaired(what: "table" | "masquerade" | "overlay"): void {
    this.repairs.inc({ what });
  }
  setReady(ready: boolean): void {
    this.ready.set(ready ? 1 : 0);
  }
  httpRequest(code: number): void {
    this.httpRequests.inc({ code: String(code) });
  }
  /** Every peer's last probe: up, down or not yet probed. Peers that left are removed. */
  probes(peers: Array<{ name: string; ok?: boolean; rttMs?: number }>): void {
    this.peerReachable.reset();
    this.peerLatency.reset();
    const n = { up: 0, down: 0, unprobed: 0 };
    for (const p of peers) {
      if (p.ok === undefined) n.unprobed++;
      else {
        n[p.ok ? "up" : "down"]++;
        this.peerReachable.set({ peer: p.name }, p.ok ? 1 : 0);
        if (p.ok && p.rttMs !== undefined) this.peerLatency.set({ peer: p.name }, p.rttMs / 1000);
      }
    }
    for (const [state, v] of Object.entries(n)) this.peers.set({ state }, v);
  }
  cni(command: string, result: string, seconds: number): void {
    this.cniRequests.inc({ command, result });
    this.cniSeconds.observe({ command }, seconds);
  }
  /** Counts another part keeps itself (the overlay's repairs and failed applies), added to
   * the counters at each scrape by what they grew since the last. */
  follow(what: { repairs: () => number; failures: () => number }, part: "overlay"): void {
    this.track(this.repairs, { what: part }, what.repairs);
    this.track(this.txErrors, { part }, what.failures);
  }

  /** The Event recorder's own counts (agent/report/events.ts), added at each scrape. */
  followEvents(r: { writes: number; failed: number; dropped: number }): void {
    this.track(this.events, { outcome: "written" }, () => r.writes);
    this.track(this.events, { outcome: "refused" }, () => r.failed);
    this.track(this.events, { outcome: "dropped" }, () => r.dropped);
  }

  /** A count another part keeps, added to `counter` at each scrape by what it grew since the
   * last (a count that went down was started anew: nothing is added for it). */
  private track<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string>>, read: () => number): void {
    let last = 0;
    this.collectors.push(() => {
      const now = read();
      if (now > last) counter.inc(labels, now - last);
      last = now;
    });
  }

  /** The policy counters, read when scraped (`read` may throw: the last values stay). */
  policyCounters(read: () => Map<string, { allowedPackets: number; droppedPackets: number }>): void {
    this.collectors.push(() => {
      const m = read();
      this.policyPackets.reset();
      for (const [policy, c] of m) {
        this.policyPackets.inc({ policy, verdict: "allowed" }, c.allowedPackets);
        this.policyPackets.inc({ policy, verdict: "dropped" }, c.droppedPackets);
      }
    });
  }

  async render(): Promise<string> {
    for (const c of this.collectors) {
      try {
        c();
      } catch {
        // a reading that failed leaves the last values; the agent logs such failures where it reads them itself
      }
    }
    return this.registry.metrics();
  }
}
