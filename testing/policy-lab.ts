// The NetworkPolicy truth-table lab: three namespaces (x, y, z) of three pods (a, b, c) on two
// nodes, every pod serving TCP, UDP and SCTP on ports 80 and 81 through one long-lived prober
// (testing/policy-prober.ts), and the two nodes' host namespaces probing too. A scene (policies,
// namespace and pod labels, isolation modes, Services) is turned both into Kubernetes objects,
// which an applier gets into the datapath (offline through `skein tables --state … --nft`, or
// through the test API server and the agents), and into the oracle's World
// (testing/policy-oracle.ts), which says for every probe whether it must pass. The expectation
// is always the oracle's, never written by hand.
//
// Isolation modes are skein's own, so the oracle knows nothing of them: their expectation is
// the generated policies of POLICY.md step 1 given to the oracle as ordinary NetworkPolicies,
// and for probes through a Service (which such policies admit from anywhere) the same
// policies with an ingress rule admitting every source.
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Subprocess } from "bun";
import { inNetns, run, runAsync } from "../agent/sys/exec.ts";
import type { Lab } from "./lab.ts";
import { OutputWatcher } from "./lab.ts";
import { allowed, type ContainerPort, type NetworkPolicy, type Protocol, type Source, type World } from "./policy-oracle.ts";
import type { ProbeOutcome, ProbeTarget, ProberRequest } from "./policy-prober.ts";
import type { Cluster } from "./multinode.ts";

export const LAB_NAMESPACES = ["x", "y", "z"] as const;
export const LAB_PODS = ["a", "b", "c"] as const;
export const LAB_PORTS = [80, 81] as const;
export const LAB_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];
export const LAB_NODES = ["n1", "n2"] as const;
/** a label every pod has: pod=<its name>; and every namespace: ns=<its name> */
export const POD_LABEL = "pod";
export const NS_LABEL = "ns";

const PROBER = resolve(import.meta.dir, "policy-prober.ts");

/**
 * Every pod's named container ports: serve-<port>-<proto> for each port and protocol, and
 * "web", which names a different port or protocol on each pod (a: 80/TCP, b: 81/TCP, c:
 * 80/UDP), so that a rule's named port resolves per destination pod.
 */
export function containerPorts(pod: string): ContainerPort[] {
  const web: Record<string, ContainerPort> = { a: { name: "web", port: 80, protocol: "TCP" }, b: { name: "web", port: 81, protocol: "TCP" }, c: { name: "web", port: 80, protocol: "UDP" } };
  return [...LAB_PORTS.flatMap((port) => LAB_PROTOCOLS.map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, port, protocol }))), web[pod]!];
}

export interface LabPod {
  namespace: string;
  name: string;
  /** "x/a" */
  key: string;
  /** the lab's namespace short name, "x-a" */
  short: string;
  node: string;
  ip: string;
}

export interface LabHost {
  /** the node's name, and its lab namespace */
  name: string;
  /** the address other nodes' pods see it with */
  ip: string;
}

export interface Fixture {
  pods: LabPod[];
  hosts: LabHost[];
  pod(key: string): LabPod;
}

/** Pod i of the nine (x/a, x/b, x/c, y/a, …) runs on node i % 2: every namespace has pods on both nodes. */
export function layout(): Array<{ namespace: string; name: string; key: string; short: string; node: string }> {
  return LAB_NAMESPACES.flatMap((namespace, i) =>
    LAB_PODS.map((name, j) => ({ namespace, name, key: `${namespace}/${name}`, short: `${namespace}-${name}`, node: LAB_NODES[(i * LAB_PODS.length + j) % 2]! })),
  );
}

export function fixture(pods: LabPod[], hosts: LabHost[]): Fixture {
  return {
    pods,
    hosts,
    pod(key) {
      const p = pods.find((x) => x.key === key);
      if (!p) throw new Error(`no lab pod ${key}`);
      return p;
    },
  };
}

export interface LabService {
  namespace: string;
  name: string;
  clusterIP: string;
  port: number;
  targetPort: number;
  /** the one backend pod, "y/a" */
  backend: string;
  protocols: Protocol[];
}

/** What a case sets up; everything not named is the base: labels ns=<ns> and pod=<pod> only. */
export interface Scene {
  policies?: NetworkPolicy[];
  /** labels of a namespace besides ns=<name> */
  nsLabels?: Record<string, Record<string, string>>;
  /** namespaces annotated skein.io/isolation: "namespace" */
  isolated?: string[];
  /** labels of a pod ("x/a") besides pod=<name> */
  podLabels?: Record<string, Record<string, string>>;
  services?: LabService[];
}

export const ISOLATION_ANNOTATION = "skein.io/isolation";
export const APP_LABEL = "skein.io/app";

export function policy(namespace: string, name: string, spec: NetworkPolicy["spec"]): NetworkPolicy {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace, name }, spec };
}

const nsLabelsOf = (s: Scene, ns: string): Record<string, string> => ({ [NS_LABEL]: ns, ...s.nsLabels?.[ns], "kubernetes.io/metadata.name": ns });
const podLabelsOf = (s: Scene, p: { key: string; name: string }): Record<string, string> => ({ [POD_LABEL]: p.name, ...s.podLabels?.[p.key] });

/**
 * The policies POLICY.md step 1 generates for the isolation modes, as NetworkPolicies. With
 * `viaService`, their ingress admits every source: what they allow to connections that came
 * through a Service.
 */
export function isolationPolicies(fx: Fixture, s: Scene, o: { viaService?: boolean } = {}): NetworkPolicy[] {
  const out: NetworkPolicy[] = [];
  const rule = (from: NetworkPolicy["spec"]["ingress"]) => (o.viaService ? [{}] : from);
  for (const ns of [...(s.isolated ?? [])].sort()) {
    out.push(policy(ns, "skein:isolation", { podSelector: { matchExpressions: [{ key: APP_LABEL, operator: "DoesNotExist" }] }, policyTypes: ["Ingress"], ingress: rule([{ from: [{ podSelector: {} }] }]) }));
  }
  const apps = new Set<string>();
  for (const p of fx.pods) {
    const a = podLabelsOf(s, p)[APP_LABEL];
    if (a !== undefined) apps.add(JSON.stringify([p.namespace, a]));
  }
  for (const [ns, a] of [...apps].map((x) => JSON.parse(x) as [string, string]).sort()) {
    const sel = { matchExpressions: [{ key: APP_LABEL, operator: "In", values: [a] }] };
    out.push(policy(ns, `skein:app=${a}`, { podSelector: sel, policyTypes: ["Ingress"], ingress: rule([{ from: [{ podSelector: sel }] }]) }));
  }
  return out;
}

/** The oracle's World of a scene (isolation modes as their generated policies). */
export function world(fx: Fixture, s: Scene, o: { viaService?: boolean } = {}): World {
  return {
    namespaces: LAB_NAMESPACES.map((name) => ({ name, labels: nsLabelsOf(s, name) })),
    pods: fx.pods.map((p) => ({ namespace: p.namespace, name: p.name, labels: podLabelsOf(s, p), ip: p.ip, node: p.node, containerPorts: containerPorts(p.name) })),
    policies: [...(s.policies ?? []), ...isolationPolicies(fx, s, o)],
    nodes: fx.hosts.map((h) => ({ name: h.name, ip: h.ip })),
  };
}

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };

/** The Kubernetes objects of a scene: Namespaces, Pods (bound, Running, with their addresses), NetworkPolicies, Services and EndpointSlices. */
export function objects(fx: Fixture, s: Scene): K8sObject[] {
  const out: K8sObject[] = [];
  for (const ns of LAB_NAMESPACES) {
    const iso = s.isolated?.includes(ns);
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: nsLabelsOf(s, ns), ...(iso ? { annotations: { [ISOLATION_ANNOTATION]: "namespace" } } : {}) } });
  }
  for (const p of fx.pods) {
    const host = fx.hosts.find((h) => h.name === p.node);
    out.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: p.name, namespace: p.namespace, labels: podLabelsOf(s, p) },
      spec: { nodeName: p.node, containers: [{ name: "probe", image: "skein-probe", ports: containerPorts(p.name).map((c) => ({ name: c.name, containerPort: c.port, protocol: c.protocol })) }] },
      status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }], ...(host ? { hostIP: host.ip } : {}) },
    });
  }
  for (const np of s.policies ?? []) out.push(np as unknown as K8sObject);
  for (const v of s.services ?? []) {
    const b = fx.pod(v.backend);
    out.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: v.name, namespace: v.namespace },
      spec: { type: "ClusterIP", clusterIP: v.clusterIP, clusterIPs: [v.clusterIP], ports: v.protocols.map((p) => ({ name: p.toLowerCase(), protocol: p, port: v.port, targetPort: v.targetPort })) },
    });
    out.push({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${v.name}-1`, namespace: v.namespace, labels: { "kubernetes.io/service-name": v.name } },
      addressType: "IPv4",
      ports: v.protocols.map((p) => ({ name: p.toLowerCase(), protocol: p, port: v.targetPort })),
      endpoints: [{ addresses: [b.ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: b.node, targetRef: { kind: "Pod", namespace: b.namespace, name: b.name } }],
    });
  }
  return out;
}

// ---- probes and their expectation ----

/** One probe of the truth table: who connects where, and what the oracle says of it. */
export interface Cell {
  proto: Protocol;
  /** the port the prober connects to (a Service's port for a Service) */
  port: number;
  /** a pod key ("x/a") or "host n1" */
  from: string;
  /** a pod key, or "svc <ns>/<name>" */
  to: string;
  ip: string;
  expect: boolean;
  why: string;
  /** the name the server answers with */
  server: string;
  /** the source address the server must see (pod to pod: no address translation), if checked */
  source?: string;
}

const sourceOf = (k: string): Source => (k.startsWith("host ") ? { host: k.slice(5) } : { namespace: k.split("/")[0]!, name: k.split("/")[1]! });

/** The sources of every matrix: the nine pods, then the nodes' hosts. */
export function sources(fx: Fixture): string[] {
  return [...fx.pods.map((p) => p.key), ...fx.hosts.map((h) => `host ${h.name}`)];
}

/** The whole truth table of a scene: every source to every pod on every protocol and port, and to every Service. */
export function expected(fx: Fixture, s: Scene, o: { protocols?: readonly Protocol[] } = {}): Cell[] {
  const w = world(fx, s);
  const cells: Cell[] = [];
  for (const proto of o.protocols ?? LAB_PROTOCOLS) {
    for (const port of LAB_PORTS) {
      for (const from of sources(fx)) {
        for (const to of fx.pods) {
          const v = allowed(w, sourceOf(from), to, proto, port);
          cells.push({ proto, port, from, to: to.key, ip: to.ip, expect: v.allowed, why: v.why, server: to.key, ...(from.startsWith("host ") ? {} : { source: fx.pod(from).ip }) });
        }
      }
    }
  }
  if (s.services?.length) {
    const via = world(fx, s, { viaService: true });
    for (const v of s.services) {
      const b = fx.pod(v.backend);
      for (const proto of v.protocols) {
        for (const from of sources(fx)) {
          // egress to a ClusterIP is judged on the chosen backend and its target port
          const r = allowed(via, sourceOf(from), b, proto, v.targetPort);
          cells.push({ proto, port: v.port, from, to: `svc ${v.namespace}/${v.name}`, ip: v.clusterIP, expect: r.allowed, why: `through ${v.clusterIP}:${v.port} to ${b.key}:${v.targetPort}: ${r.why}`, server: b.key });
        }
      }
    }
  }
  return cells;
}

/** What a truth table says, as one comparable string. */
const truthTable = (cells: Cell[]) => cells.map((c) => `${c.proto}/${c.port} ${c.from}>${c.to}:${c.expect ? 1 : 0}`).join("\n");

export interface Observation extends ProbeOutcome {
  /** not reached, but while a prober stood still (LATE_MS, STALL_MS): no evidence of a drop */
  stalled?: boolean;
}

/** A cell's observation is what the oracle says: reached (by the right server, seeing the right source) exactly when allowed. */
export function agrees(c: Cell, o: Observation): boolean {
  if (!o.ok) return !c.expect;
  if (!c.expect) return false;
  const [name, seen] = (o.answer ?? "").split(" ");
  return name === c.server && (c.source === undefined || seen === c.source);
}

const MAX_LISTED = 8;

/**
 * The cells grouped per protocol/port and destination kind, as grids: one row per source, one
 * column per destination ("." reached, "X" not, "?" reached by the wrong server or from the
 * wrong source), expected and observed side by side, then (up to MAX_LISTED per group) the
 * cells that differ with the oracle's reason and what the probe saw.
 */
export function formatDiff(cells: Cell[], got: Observation[]): string {
  const out: string[] = [];
  const groups = new Map<string, number[]>();
  cells.forEach((c, i) => {
    const g = `${c.proto}/${c.port}${c.to.startsWith("svc ") ? " via Service" : ""}`;
    groups.set(g, [...(groups.get(g) ?? []), i]);
  });
  for (const [g, idx] of groups) {
    if (idx.every((i) => agrees(cells[i]!, got[i]!))) continue;
    const rows = [...new Set(idx.map((i) => cells[i]!.from))];
    const cols = [...new Set(idx.map((i) => cells[i]!.to))];
    const w = Math.max(...rows.map((r) => r.length));
    const at = new Map(idx.map((i) => [`${cells[i]!.from}|${cells[i]!.to}`, i]));
    const grid = (f: (i: number) => string) => (r: string) => cols.map((c) => (at.has(`${r}|${c}`) ? f(at.get(`${r}|${c}`)!) : " ")).join("");
    const exp = grid((i) => (cells[i]!.expect ? "." : "X"));
    const obs = grid((i) => (got[i]!.ok ? (agrees(cells[i]!, got[i]!) || !cells[i]!.expect ? "." : "?") : "X"));
    out.push(`${g}: expected | observed   (columns: ${cols.join(" ")})`);
    for (const r of rows) out.push(`  ${r.padEnd(w)} ${exp(r)} | ${obs(r)}${exp(r) === obs(r) ? "" : "   <-"}`);
    const wrong = idx.filter((i) => !agrees(cells[i]!, got[i]!));
    for (const i of wrong.slice(0, MAX_LISTED)) {
      const c = cells[i]!;
      const o = got[i]!;
      const seen = o.ok ? `reached: "${o.answer}"` : `not reached: ${o.error}`;
      out.push(`  ${c.proto}/${c.port} ${c.from} -> ${c.to} (${c.ip}): expected ${c.expect ? `reached by ${c.server}${c.source ? ` from ${c.source}` : ""}` : "not reached"} [${c.why}], ${seen}`);
    }
    if (wrong.length > MAX_LISTED) out.push(`  ... and ${wrong.length - MAX_LISTED} more`);
  }
  return out.join("\n");
}

// ---- probers ----

/** probers still running: killed when this process exits, whatever killed it (a namespace's removal does not end what runs in it) */
const running = new Set<Subprocess>();
process.on("exit", () => running.forEach((p) => p.kill("SIGKILL")));

/** One prober process inside a namespace, spoken to over its standard input and output. */
export class ProberClient {
  private seq = 0;
  private readonly waiting = new Map<number, (r: Record<string, unknown>) => void>();
  private constructor(
    readonly name: string,
    readonly proc: Subprocess<"pipe", "pipe", "pipe">,
  ) {}

  static async start(netnsPath: string, name: string, o: { serve: boolean; timeoutMs?: number }): Promise<ProberClient> {
    const argv = [process.execPath, PROBER, "--name", name, "--ports", LAB_PORTS.join(","), ...(o.serve ? [] : ["--no-serve"])];
    const proc = Bun.spawn(inNetns(netnsPath, argv), { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    running.add(proc);
    void proc.exited.then(() => running.delete(proc));
    const c = new ProberClient(name, proc);
    const err = new OutputWatcher(proc.stderr);
    const ready = new Promise<void>((ok, fail) => {
      void c.read(ok).catch(fail);
    });
    const timeoutMs = o.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        ready,
        new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`prober ${name} not ready within ${timeoutMs} ms: ${err.text.trim()}`)), timeoutMs))),
        proc.exited.then((code) => {
          throw new Error(`prober ${name} exited ${code}: ${err.text.trim()}`);
        }),
      ]);
    } catch (e) {
      proc.kill("SIGKILL");
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  private async read(ready: () => void): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of this.proc.stdout) {
      buf += decoder.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const m = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (m.ready !== undefined) ready();
        const w = this.waiting.get(m.id as number);
        this.waiting.delete(m.id as number);
        w?.(m);
      }
    }
    for (const w of this.waiting.values()) w({ error: `prober ${this.name} ended` });
    this.waiting.clear();
  }

  async request<T = Record<string, unknown>>(r: Omit<ProberRequest, "id">): Promise<T> {
    const id = ++this.seq;
    const answer = new Promise<Record<string, unknown>>((ok) => this.waiting.set(id, ok));
    this.proc.stdin.write(`${JSON.stringify({ ...r, id })}\n`);
    this.proc.stdin.flush();
    const m = await answer;
    if (typeof m.error === "string") throw new Error(`prober ${this.name}: ${m.error}`);
    return m as T;
  }

  /** The longest stall of the prober's event loop between two Date.now() times. */
  async worstStall(from: number, to: number): Promise<number> {
    return (await this.request<{ worst: number }>({ op: "stalls", from, to } as Omit<ProberRequest, "id">)).worst;
  }

  async probe(targets: ProbeTarget[], timeoutMs: number): Promise<ProbeOutcome[]> {
    if (!targets.length) return [];
    return (await this.request<{ results: ProbeOutcome[] }>({ op: "probe", targets, timeoutMs } as Omit<ProberRequest, "id">)).results;
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

// ---- the environment: pods, probers, and how a scene gets into the datapath ----

export interface Applier {
  readonly kind: "offline" | "agent";
  apply(s: Scene): Promise<void>;
}

/** How long a probe waits before calling a connection dropped; a cell expected to be reached
 * and not reached in that time, or not reached while a prober stalled, is probed again with
 * CONFIRM_MS before it counts. */
export const PROBE_MS = 300;
export const CONFIRM_MS = 2000;
/** A timeout is no evidence of a drop when its timer fired LATE_MS late (the prober's loop stood
 * still when the answer may have been waiting), or when the source's or the server's prober
 * stood still STALL_MS at once during the wait (a request sent late, an answer made late). */
export const LATE_MS = 50;
export const STALL_MS = 150;

export class PolicyLab {
  readonly probers = new Map<string, ProberClient>();
  /** the last check(), for the log: its time, and per probe round the cells that disagreed
   * (expected reached and not / expected not reached and reached) */
  last = { ms: 0, rounds: [] as string[] };
  /** the truth table the datapath was last seen to enforce */
  private inForce: string | undefined;

  constructor(
    readonly lab: Lab,
    readonly fx: Fixture,
    readonly applier: Applier,
  ) {}

  /** Starts a prober in every pod (serving) and in every node's host namespace (probing only). */
  async startProbers(): Promise<void> {
    const started = await Promise.all([
      ...this.fx.pods.map((p) => ProberClient.start(this.lab.path(p.short), p.key, { serve: true })),
      ...this.fx.hosts.map((h) => ProberClient.start(this.lab.path(h.name), `host ${h.name}`, { serve: false })),
    ]);
    for (const c of started) this.probers.set(c.name, c);
  }

  stopProbers(): void {
    for (const c of this.probers.values()) c.kill();
    this.probers.clear();
  }

  /** Probes every cell once, all sources in parallel. */
  async observe(cells: Cell[], timeoutMs = PROBE_MS, only?: number[]): Promise<Map<number, Observation>> {
    const idx = only ?? cells.map((_, i) => i);
    const bySource = new Map<string, number[]>();
    for (const i of idx) bySource.set(cells[i]!.from, [...(bySource.get(cells[i]!.from) ?? []), i]);
    const out = new Map<number, Observation>();
    await Promise.all(
      [...bySource].map(async ([from, is]) => {
        const p = this.probers.get(from);
        if (!p) throw new Error(`no prober for ${from}`);
        const r = await p.probe(is.map((i) => ({ proto: cells[i]!.proto.toLowerCase() as ProbeTarget["proto"], ip: cells[i]!.ip, port: cells[i]!.port })), timeoutMs);
        is.forEach((i, k) => out.set(i, r[k]!));
      }),
    );
    const waits = [...out.values()].flatMap((o) => (o.window ? [o.window] : []));
    if (waits.length) {
      const [from, to] = [Math.min(...waits.map((w) => w[0])), Math.max(...waits.map((w) => w[1]))];
      const stalls = new Map(await Promise.all([...this.probers].map(async ([k, p]) => [k, await p.worstStall(from, to)] as const)));
      for (const [i, o] of out) {
        if (!o.ok && ((o.lateMs ?? 0) >= LATE_MS || Math.max(stalls.get(cells[i]!.from) ?? 0, stalls.get(cells[i]!.server) ?? 0) >= STALL_MS)) o.stalled = true;
      }
    }
    return out;
  }

  /**
   * Probes until every cell agrees with the oracle, or throws at the deadline with the
   * matrices side by side. A cell not reached that was expected reached, or not reached while
   * a prober stalled, is probed again with a long timeout once everything else agrees: on a
   * loaded machine a late answer is not a drop, and a drop seen by a prober that stood still is
   * no evidence of one.
   */
  async check(cells: Cell[], what: string, deadlineMs: number): Promise<void> {
    const t0 = performance.now();
    const deadline = Date.now() + deadlineMs;
    const rounds: string[] = [];
    for (;;) {
      const got = await this.observe(cells);
      const bad = cells.map((_, i) => i).filter((i) => !agrees(cells[i]!, got.get(i)!));
      const slow = bad.filter((i) => cells[i]!.expect && !got.get(i)!.ok);
      const unsure = cells.map((_, i) => i).filter((i) => !got.get(i)!.ok && (cells[i]!.expect || got.get(i)!.stalled));
      rounds.push(`${slow.length}/${bad.length - slow.length}${unsure.length > slow.length ? `(${unsure.length - slow.length} stalled)` : ""}`);
      const late = Date.now() > deadline;
      if (unsure.length && (slow.length === bad.length || late)) {
        for (const [i, o] of await this.observe(cells, CONFIRM_MS, unsure)) got.set(i, o);
      }
      const all = cells.map((_, i) => got.get(i)!);
      if (cells.every((c, i) => agrees(c, all[i]!))) {
        this.last = { rounds, ms: performance.now() - t0 };
        return;
      }
      if (late) {
        throw new Error(`${what}: the datapath disagrees with the oracle after ${rounds.length} probe rounds in ${(performance.now() - t0).toFixed(0)} ms (${cells.filter((c, i) => !agrees(c, all[i]!)).length} of ${cells.length} probes):\n${formatDiff(cells, all)}`);
      }
    }
  }

  /**
   * Applies a scene and waits (with a deadline) until its whole truth table holds. Through the
   * agents, a table equal to the one in force would hold before the agents did anything: then
   * a scene with another table is applied and seen first, so that the check sees the change.
   */
  async scene(s: Scene, what: string, deadlineMs = this.applier.kind === "agent" ? 10_000 : 3000): Promise<Cell[]> {
    const cells = expected(this.fx, s);
    if (this.applier.kind === "agent" && this.inForce === truthTable(cells)) {
      const open = expected(this.fx, {});
      const between = truthTable(open) === this.inForce ? { policies: LAB_NAMESPACES.map((ns) => policy(ns, "between-scenes", { podSelector: {}, policyTypes: ["Ingress"] })) } : {};
      await this.applier.apply(between);
      await this.check(expected(this.fx, between), `${what} (a different table first)`, deadlineMs);
    }
    await this.applier.apply(s);
    this.inForce = undefined;
    await this.check(cells, what, deadlineMs);
    this.inForce = truthTable(cells);
    return cells;
  }
}

// ---- offline: pods wired in the routed model by the lab itself, tables from `skein tables --state` ----

const OFFLINE_UNDERLAY = ["192.168.77.1", "192.168.77.2"];
const OFFLINE_SERVICE_CIDR = "10.96.0.0/16";

/**
 * Two node namespaces joined by one veth, each routing to the other's pod CIDR, and the nine
 * pods wired as a routed CNI would but not as skein's does (other interface names, no fixed
 * host MAC): policy must be keyed by addresses, never by skein's interfaces.
 */
export async function wireOffline(lab: Lab): Promise<Fixture> {
  const hosts = LAB_NODES.map((name, i) => ({ name, ip: OFFLINE_UNDERLAY[i]! }));
  for (const h of hosts) lab.host(h.name);
  lab.wire({ ns: "n1", addr: `${OFFLINE_UNDERLAY[0]}/24` }, { ns: "n2", addr: `${OFFLINE_UNDERLAY[1]}/24` });
  const batch = (ns: string, lines: string[]) => runAsync(["ip", "-n", lab.name(ns), "-batch", "-"], { stdin: lines.join("\n") + "\n" });
  // a route for the ClusterIPs too, as a node's default route would give: the service
  // datapath translates a host's own connections after the route was first chosen
  await batch("n1", [`route add 10.244.2.0/24 via ${OFFLINE_UNDERLAY[1]}`, `route add ${OFFLINE_SERVICE_CIDR} via ${OFFLINE_UNDERLAY[1]}`]);
  await batch("n2", [`route add 10.244.1.0/24 via ${OFFLINE_UNDERLAY[0]}`, `route add ${OFFLINE_SERVICE_CIDR} via ${OFFLINE_UNDERLAY[0]}`]);
  for (const h of hosts) await lab.exec(h.name, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  const pods: LabPod[] = [];
  let k = 0;
  for (const p of layout()) {
    k++;
    const ip = `10.244.${p.node === "n1" ? 1 : 2}.${10 + k}`;
    const hostIf = `pv${k}`;
    lab.host(p.short);
    run(["ip", "-n", lab.name(p.node), "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", lab.name(p.short)]);
    const mac = JSON.parse(run(["ip", "-n", lab.name(p.node), "-j", "link", "show", hostIf]).stdout)[0].address as string;
    await batch(p.node, [`link set ${hostIf} up`, `route add ${ip}/32 dev ${hostIf}`]);
    await batch(p.short, [`addr add ${ip}/32 dev eth0`, "link set eth0 up", "route add 169.254.1.1/32 dev eth0 scope link", "route add default via 169.254.1.1 dev eth0", `neigh replace 169.254.1.1 lladdr ${mac} dev eth0 nud permanent`]);
    pods.push({ ...p, ip });
  }
  return fixture(pods, hosts);
}

/** The Node objects of the offline lab (pod CIDRs and addresses), for the state file. */
function offlineNodes(fx: Fixture): K8sObject[] {
  return fx.hosts.map((h, i) => ({ apiVersion: "v1", kind: "Node", metadata: { name: h.name }, spec: { podCIDR: `10.244.${i + 1}.0/24`, podCIDRs: [`10.244.${i + 1}.0/24`] }, status: { addresses: [{ type: "InternalIP", address: h.ip }] } }));
}

/** Writes the scene as a state file, and loads `skein tables --state FILE --node-name NODE --nft` with `nft -f` in each node. */
export class OfflineApplier implements Applier {
  readonly kind = "offline";
  private n = 0;
  /** what `skein tables` said on stderr at the last apply, per node */
  readonly said = new Map<string, string>();
  constructor(
    readonly lab: Lab,
    readonly fx: () => Fixture,
    readonly skein: string,
    readonly dir: string,
    /** objects written to the state file besides the scene's (e.g. ones it must refuse), and
     * whether `skein tables` may then exit 1 (it does when it left an object out) */
    readonly extra: { objects: () => unknown[]; refused: boolean } = { objects: () => [], refused: false },
  ) {
    mkdirSync(dir, { recursive: true });
  }

  async apply(s: Scene): Promise<void> {
    const file = `${this.dir}/state-${++this.n}.json`;
    writeFileSync(file, JSON.stringify([...offlineNodes(this.fx()), ...objects(this.fx(), s), ...this.extra.objects()], null, 1));
    await Promise.all(
      LAB_NODES.map(async (node) => {
        const r = await runAsync([this.skein, "tables", "--state", file, "--node-name", node, "--nft"], { allowFail: true });
        this.said.set(node, r.stderr);
        if (r.exitCode !== 0 && !(this.extra.refused && r.exitCode === 1)) throw new Error(`skein tables --state ${file} --node-name ${node} --nft exited ${r.exitCode}: ${r.stderr.trim()}`);
        // loaded alone, as issue 15 point 7 says: the transaction replaces whatever table was there
        await this.lab.exec(node, ["nft", "-f", "-"], { stdin: r.stdout });
      }),
    );
  }
}

// ---- through the API: the test API server and an agent per node ----

/** An object's path in the API server. */
export const pathOf = (o: K8sObject): string => {
  const ns = o.metadata.namespace;
  switch (o.kind) {
    case "Namespace":
      return `/api/v1/namespaces/${o.metadata.name}`;
    case "Pod":
      return `/api/v1/namespaces/${ns}/pods/${o.metadata.name}`;
    case "Service":
      return `/api/v1/namespaces/${ns}/services/${o.metadata.name}`;
    case "EndpointSlice":
      return `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/${o.metadata.name}`;
    case "NetworkPolicy":
      return `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies/${o.metadata.name}`;
    default:
      throw new Error(`no path for kind ${o.kind}`);
  }
};
const collection = (o: K8sObject) => pathOf(o).slice(0, pathOf(o).lastIndexOf("/"));
/** what of an object a scene sets: labels and annotations of Namespaces and Pods, all of the rest */
const content = (o: K8sObject) => (o.kind === "Namespace" || o.kind === "Pod" ? JSON.stringify([o.metadata.labels, o.metadata.annotations ?? {}]) : JSON.stringify(o));

/**
 * Gets a scene into the API server as a controller would: Namespaces and Pods exist from the
 * start and only their labels and annotations change; NetworkPolicies, Services and
 * EndpointSlices are created, replaced and deleted to match.
 */
export class AgentApplier implements Applier {
  readonly kind = "agent";
  private readonly now = new Map<string, K8sObject>();
  constructor(
    readonly cluster: Cluster,
    readonly fx: () => Fixture,
  ) {}

  /** Creates the Namespaces and the Pods (bound to their nodes, Running with their addresses). */
  async init(): Promise<void> {
    const objs = objects(this.fx(), {});
    for (const o of objs) {
      if (o.kind === "Namespace") await this.cluster.api.create("/api/v1/namespaces", o);
    }
    await Promise.all(
      objs
        .filter((o) => o.kind === "Pod")
        .map(async (o) => {
          const { status, ...rest } = o;
          await this.cluster.api.create(collection(o), rest);
          await this.cluster.api.request("PATCH", `${pathOf(o)}/status`, { status }, "application/merge-patch+json");
        }),
    );
    for (const o of objs) this.now.set(pathOf(o), o);
  }

  async apply(s: Scene): Promise<void> {
    const api = this.cluster.api;
    const want = new Map(objects(this.fx(), s).map((o) => [pathOf(o), o]));
    // creations and changes before deletions: one watch delivers a kind's events in order, so
    // once the datapath shows an object gone, the objects of its kind created before are in too
    // (a scene whose table is the one before can still be told from it, see PolicyLab.scene)
    for (const [path, o] of want) {
      const cur = this.now.get(path);
      if (cur && content(cur) === content(o)) continue;
      if (o.kind === "Namespace" || o.kind === "Pod") {
        await api.replace(path, (x) => ({ ...x, metadata: { ...x.metadata, labels: o.metadata.labels, annotations: o.metadata.annotations ?? {} } }));
      } else if (cur) {
        await api.replace(path, (x) => ({ ...o, metadata: { ...o.metadata, resourceVersion: x.metadata.resourceVersion } }));
      } else {
        await api.create(collection(o), o);
      }
      this.now.set(path, o);
    }
    for (const path of [...this.now.keys()].reverse()) {
      if (want.has(path)) continue;
      await api.delete(path);
      this.now.delete(path);
    }
  }
}

/** The nine pods wired on the cluster's nodes by skein's CNI (their Pod objects are AgentApplier.init's), and the nodes as hosts. */
export async function agentFixture(c: Cluster): Promise<Fixture> {
  const pods = await Promise.all(layout().map(async (p) => ({ ...p, ip: (await c.addPod(p.node, p.short, { register: false })).ip })));
  return fixture(pods, LAB_NODES.map((n) => ({ name: n, ip: c.underlay.node(n).address })));
}
