// `skein trace` against the real packet: three nodes on the lab underlay (testing/multinode.ts:
// n1 and n2 on one subnet, n3 behind a router, so n1 reaches n2 directly and n3 over VXLAN),
// an agent on each, pods wired by skein's CNI and answering with their name (skein probe
// serve), a Service with a backend on every node, one without endpoints, and a NetworkPolicy
// that lets only app=client reach app=web. Each trace is run in a node's namespace, on the
// state the API server holds (`--state`, as the agent compiles it), and what it says is
// compared with what the packet does: the backend it names is the one that answers (the
// source port fixed, so the 5-tuple is the trace's), a denied or rejected connection gets no
// answer or a refusal, and a cross-node packet takes the route the trace names and arrives.
// The running agents are asked too (no --state: GET /v1/trace on the node's socket): they
// must say the same, each judging what its own node judges.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { buildUnderlay, startCluster, CLUSTER_CIDR, SERVICE_CIDR, type Cluster } from "../testing/multinode.ts";
import type { BackendStep, PolicyStep, RouteStep, TraceResult } from "../agent/trace/explain.ts";
import { SKEIN, builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("trace");
const tmp = useTempDir("trace");
let c: Cluster;

const WEB_IP = "10.96.0.10";
const EMPTY_IP = "10.96.0.20";
const PODS: Array<[string, string, string]> = [
  ["client", "n1", "client"],
  ["other", "n1", "other"],
  ["web-a", "n1", "web"],
  ["web-b", "n2", "web"],
  ["web-c", "n3", "web"],
];

const ns = "/api/v1/namespaces/default";
const eps = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

beforeAll(async () => {
  builtSkein();
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2", "n3"] });
  c = await startCluster({ underlay: u, dir: tmp });
  for (const [name, node, app] of PODS) await c.addPod(node, name, { labels: { app } });
  for (const [name] of PODS) await lab.serve(name, { name, tcp: 8080, udp: 8080 });
  const ports = (proto: string, port: number, targetPort: number) => ({ name: proto.toLowerCase(), protocol: proto, port, targetPort });
  await c.api.create(`${ns}/services`, { metadata: { name: "web" }, spec: { type: "ClusterIP", clusterIP: WEB_IP, clusterIPs: [WEB_IP], ports: [ports("TCP", 80, 8080), ports("UDP", 80, 8080)] } });
  await c.api.create(eps, {
    metadata: { name: "web-1", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ name: "tcp", protocol: "TCP", port: 8080 }, { name: "udp", protocol: "UDP", port: 8080 }],
    endpoints: PODS.filter(([, , app]) => app === "web").map(([name, node]) => ({ addresses: [c.pods.get(name)!.ip], nodeName: node, conditions: { ready: true } })),
  });
  await c.api.create(`${ns}/services`, { metadata: { name: "empty" }, spec: { type: "ClusterIP", clusterIP: EMPTY_IP, clusterIPs: [EMPTY_IP], ports: [ports("TCP", 80, 8080)] } });
  await c.api.create("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", {
    metadata: { name: "web-from-client" },
    spec: { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ protocol: "TCP", port: 8080 }, { protocol: "UDP", port: 8080 }] }] },
  });
  // the Service and the policy are in force on n1 once the client gets an answer through the
  // ClusterIP and `other` gets none from web-a
  await waitFor("the Service in force on n1", async () => (await lab.connect("client", "tcp", WEB_IP, 80, 500)).ok, 15_000, 100);
  await waitFor("the policy in force on n1", async () => !(await lab.connect("other", "tcp", c.pods.get("web-a")!.ip, 8080, 300)).ok, 15_000, 100);
}, 120_000);

afterAll(async () => {
  await c?.stop();
});

/** The API server's objects as one state file (list items carry no kind: it is put back). */
async function stateFile(): Promise<string> {
  const lists: Array<[string, string]> = [
    ["/api/v1/nodes", "Node"],
    ["/api/v1/namespaces", "Namespace"],
    [`${ns}/pods`, "Pod"],
    [`${ns}/services`, "Service"],
    [eps, "EndpointSlice"],
    ["/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", "NetworkPolicy"],
  ];
  const objects: unknown[] = [];
  for (const [path, kind] of lists) {
    const l = await c.api.request<{ apiVersion: string; items: Array<Record<string, unknown>> }>("GET", path);
    for (const o of l.items) objects.push({ apiVersion: l.apiVersion, kind, ...o });
  }
  const f = `${tmp}/state-${Math.random().toString(36).slice(2, 8)}.json`;
  writeFileSync(f, JSON.stringify(objects));
  return f;
}

let state: string | undefined;
/** `skein trace --state … --json` in the node's own namespace (its underlay interface tells the route plan its subnet). */
async function trace(node: string, src: string, dst: string): Promise<TraceResult> {
  state ??= await stateFile();
  const r = await lab.exec(node, [SKEIN, "trace", "--state", state, "--node-name", node, "--service-cidr", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR, "--json", src, dst], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`skein trace exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout) as TraceResult;
}

/** `skein trace --json` in the node's namespace without --state: its running agent answers, from the tables in force. */
async function live(node: string, src: string, dst: string): Promise<TraceResult> {
  const r = await lab.exec(node, [SKEIN, "trace", "--json", src, dst], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`skein trace (live) exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout) as TraceResult;
}

/** The ingress verdict as a node judges it. */
const ingressOf = (t: TraceResult) => (t.steps.find((s) => s.kind === "policy") as PolicyStep | undefined)?.sides.find((s) => s.direction === "ingress");

const step = <K extends TraceResult["steps"][number]["kind"]>(r: TraceResult, kind: K) => r.steps.find((s) => s.kind === kind) as Extract<TraceResult["steps"][number], { kind: K }> | undefined;
const ip = (pod: string) => c.pods.get(pod)!.ip;

/** `skein probe connect` from a pod, from a fixed source port. */
async function probe(pod: string, proto: "tcp" | "udp", host: string, port: number, sport: number, timeoutMs = 1500) {
  const r = await lab.exec(pod, [SKEIN, "probe", "connect", proto, host, String(port), "--timeout", String(timeoutMs), "--source-port", String(sport)], { allowFail: true, timeoutMs: timeoutMs + 5000 });
  return { ok: r.exitCode === 0, answer: r.stdout.trim().split(" ")[0] ?? "", error: r.stderr.trim(), ms: 0 };
}

describe("trace against the packet", () => {
  test("allowed through a ClusterIP: for each source port, the backend the trace picks is the one that answers (TCP and UDP, backends on all three nodes)", async () => {
    const seen = new Set<string>();
    let sport = 20_000;
    for (const proto of ["udp", "tcp"] as const) {
      for (let k = 0; k < 9; k++, sport++) {
        const t = await trace("n1", `${ip("client")}:${sport}`, `${WEB_IP}:80/${proto}`);
        expect(t.outcome).toBe("delivered");
        expect(step(t, "frontend")).toMatchObject({ result: "translated", frontend: { service: `default/web:${proto}/${proto.toUpperCase()}`, kind: "cluster" } });
        const b = step(t, "backend") as BackendStep;
        expect(b.candidates.map((x) => x.where.pod).sort()).toEqual(["default/web-a", "default/web-b", "default/web-c"]);
        const ingress = (step(t, "policy") as PolicyStep).sides.find((s) => s.direction === "ingress")!;
        expect(ingress).toMatchObject({ result: "allowed", allowedBy: ["default/web-from-client"], node: b.chosen!.where.node });
        // the running agent picks the same backend and gives the same verdict; for a backend
        // on another node it compiles that node's verdict from what it holds of the cluster,
        // and that node's own agent agrees
        const l = await live("n1", `${ip("client")}:${sport}`, `${WEB_IP}:80/${proto}`);
        expect((step(l, "backend") as BackendStep).chosen).toEqual(b.chosen!);
        const there = b.chosen!.where.node!;
        expect(l.outcome).toBe("delivered");
        expect(ingressOf(l)).toMatchObject({ node: there, result: "allowed", allowedBy: ["default/web-from-client"] });
        if (there !== "n1") {
          const t2 = await live(there, `${ip("client")}:${sport}`, `${b.chosen!.ip}:${b.chosen!.port}/${proto}`);
          expect(ingressOf(t2)).toMatchObject({ node: there, result: "allowed", allowedBy: ["default/web-from-client"] });
        }
        const got = await probe("client", proto, WEB_IP, 80, sport);
        expect({ sport, proto, answer: got.answer, error: got.error }).toEqual({ sport, proto, answer: b.chosen!.where.pod!.split("/")[1]!, error: "" });
        seen.add(b.chosen!.where.pod!);
      }
    }
    // the check means something only if the ring's choice varied
    expect(seen.size).toBeGreaterThan(1);
  }, 60_000);

  test("denied by a NetworkPolicy: the trace names the policy and the node that drops it; no answer comes", async () => {
    for (const [dst, sport] of [[`${WEB_IP}:80/tcp`, 21_000], [`${ip("web-b")}:8080/tcp`, 21_001], [`${WEB_IP}:80/udp`, 21_002]] as const) {
      const t = await trace("n1", `${ip("other")}:${sport}`, dst);
      expect(t.outcome).toBe("dropped");
      const denied = (step(t, "policy") as PolicyStep).sides.find((s) => s.result === "denied")!;
      expect(denied).toMatchObject({ direction: "ingress", isolatedBy: ["default/web-from-client"], allowedBy: [] });
      expect(t.summary).toContain("default/web-from-client");
      // the running agents: the backend's own node names the policy that drops it
      const l = await live("n1", `${ip("other")}:${sport}`, dst);
      expect((step(l, "backend") as BackendStep | undefined)?.chosen).toEqual((step(t, "backend") as BackendStep | undefined)?.chosen);
      const at = denied.node;
      const d = t.destination!;
      const l2 = at === "n1" ? l : await live(at, `${ip("other")}:${sport}`, `${d.ip}:${d.port}/${dst.split("/")[1]}`);
      expect({ outcome: l2.outcome, ingress: ingressOf(l2) }).toMatchObject({ outcome: "dropped", ingress: { node: at, result: "denied", isolatedBy: ["default/web-from-client"] } });
      const [host, rest] = dst.split(/:(?=\d)/) as [string, string];
      const got = await probe("other", dst.endsWith("udp") ? "udp" : "tcp", host, Number(rest.split("/")[0]), sport, 1000);
      expect(got.ok).toBe(false);
      expect(got.error).toContain("no answer within");
    }
  }, 30_000);

  test("a Service without endpoints: the trace says rejected; the connection is refused at once", async () => {
    const t = await trace("n1", `${ip("client")}:22000`, `${EMPTY_IP}:80/tcp`);
    expect(t.outcome).toBe("rejected");
    expect(step(t, "frontend")).toMatchObject({ result: "rejected", frontend: { service: "default/empty:tcp/TCP" } });
    expect(t.steps).toHaveLength(1);
    expect(await live("n1", `${ip("client")}:22000`, `${EMPTY_IP}:80/tcp`)).toMatchObject({ outcome: "rejected", steps: [{ kind: "frontend", result: "rejected" }] });
    const started = performance.now();
    const got = await probe("client", "tcp", EMPTY_IP, 80, 22_000, 3000);
    expect(got.ok).toBe(false);
    expect(got.error).toContain("ECONNREFUSED");
    expect(performance.now() - started).toBeLessThan(2500);
  }, 30_000);

  test("across nodes: the trace names the direct route to n2 and the VXLAN tunnel to n3, the kernel routes the packet that way, and it arrives", async () => {
    for (const [pod, how, endpoint, dev] of [["web-b", "direct", "192.168.50.12", "eth0"], ["web-c", "vxlan", "192.168.60.13", "skein.vxlan"]] as const) {
      const sport = pod === "web-b" ? 23_000 : 23_001;
      const t = await trace("n1", `${ip("client")}:${sport}`, `${ip(pod)}:8080/udp`);
      expect(t.outcome).toBe("delivered");
      const r = step(t, "route") as RouteStep;
      expect(r).toMatchObject({ how, endpoint, peer: pod === "web-b" ? "n2" : "n3" });
      // the running agent's own plan says the same
      expect(step(await live("n1", `${ip("client")}:${sport}`, `${ip(pod)}:8080/udp`), "route")).toMatchObject({ how, endpoint });
      const routed = JSON.parse((await lab.exec("n1", ["ip", "-j", "route", "get", ip(pod)])).stdout)[0] as { dev: string; gateway?: string };
      expect(routed.dev).toBe(dev);
      if (how === "direct") expect(routed.gateway).toBe(endpoint);
      const got = await probe("client", "udp", ip(pod), 8080, sport);
      expect(got.answer).toBe(pod);
    }
  }, 30_000);
});
