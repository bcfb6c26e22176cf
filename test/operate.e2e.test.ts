// What operators ask a running agent, end to end: three virtual nodes (n1 and n2 on one
// subnet, n3 over VXLAN) with an agent each, gossip over a real nats-server, pods wired by
// skein's CNI, a Service and a NetworkPolicy; the agents' HTTP API over their unix sockets
// and loopback, `skein status` and `skein tables` finding the agent of the namespace they
// run in, /metrics read by a Prometheus text-format parser, node health probes across the
// pod network, and hostile requests.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { writeFileSync } from "node:fs";
import { buildUnderlay, startCluster, type Cluster } from "../testing/multinode.ts";
import { NatsCluster } from "../testing/nats.ts";
import { metric, parseMetrics } from "../testing/prometheus-text.ts";
import { builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("op");
const tmp = useTempDir("op");
let c: Cluster;
let nats: NatsCluster;
const GET = resolve(import.meta.dir, "fixtures/http-get.ts");
const TOKEN = "operate-e2e-token-0123456789";

/** One request from inside a node's namespace (loopback there is the node's own). */
async function http(node: string, url: string, o: { method?: string; headers?: Record<string, string>; bodyBytes?: number; unix?: string } = {}): Promise<{ status: number; type?: string; body?: string; error?: string; json?: any }> {
  const argv = [process.execPath, GET, url];
  if (o.method) argv.push("--method", o.method);
  for (const [k, v] of Object.entries(o.headers ?? {})) argv.push("--header", `${k}: ${v}`);
  if (o.bodyBytes !== undefined) argv.push("--body-bytes", String(o.bodyBytes));
  if (o.unix) argv.push("--unix", o.unix);
  const r = JSON.parse((await lab.exec(node, argv)).stdout);
  try {
    r.json = JSON.parse(r.body);
  } catch {}
  return r;
}

/** The node's agent API: n2's is on its own address with a token, the others' on loopback. */
const api = (node: string, path: string) => (node === "n2" ? http(node, `http://${c.underlay.node("n2").address}:9466${path}`, { headers: { Authorization: `Bearer ${TOKEN}` } }) : http(node, `http://127.0.0.1:9465${path}`));
const skein = (node: string, args: string[]) => lab.exec(node, [builtSkein(), ...args], { allowFail: true, env: { NO_COLOR: "1" } });
const metrics = async (node: string) => parseMetrics((await api(node, "/metrics")).body!);

beforeAll(async () => {
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2", "n3"] });
  nats = await NatsCluster.start({ netns: lab.path("cp"), host: u.controlPlane.address });
  writeFileSync(`${tmp}/token`, TOKEN);
  c = await startCluster({
    underlay: u,
    dir: tmp,
    pods: 1,
    natsUrls: nats.urls,
    agentFlags: (n, x) => ["--nats-url", x.natsUrls.join(","), "--health-interval", "1", ...(n.name === "n2" ? ["--http-listen", `${n.address}:9466`, "--http-token-file", `${tmp}/token`] : [])],
  });
  for (const p of c.pods.values()) await lab.serve(p.name, { name: p.name, tcp: 8080, udp: 8080 });
  await c.api.create("/api/v1/namespaces/default/services", { metadata: { name: "web" }, spec: { clusterIP: "10.96.0.80", ports: [{ name: "http", port: 80, targetPort: 8080 }] } });
  await c.api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
    metadata: { name: "web-1", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    endpoints: ["n2-p1", "n3-p1"].map((p) => ({ addresses: [c.pods.get(p)!.ip], conditions: { ready: true }, nodeName: c.pods.get(p)!.node, targetRef: { kind: "Pod", namespace: "default", name: p } })),
  });
}, 120_000);

afterAll(async () => {
  await c?.stop();
  await nats?.close();
});

describe("the agent's HTTP API", () => {
  test("/healthz and /readyz on loopback, and on the health port from another node", async () => {
    expect(await api("n1", "/healthz")).toMatchObject({ status: 200, json: { ok: true, node: "n1" } });
    await waitFor("n1 ready", async () => (await api("n1", "/readyz")).status === 200, 10_000);
    expect((await api("n1", "/readyz")).json).toEqual({ node: "n1", ready: true, reasons: [] });
    // the health port answers on the node's addresses, without a token, and nothing else
    const n1 = c.underlay.node("n1").address;
    expect(await http("n2", `http://${n1}:4250/healthz`)).toMatchObject({ status: 200, json: { node: "n1" } });
    expect((await http("n2", `http://${n1}:4250/metrics`)).status).toBe(404);
    // the API itself is not on the node's address
    expect((await http("n2", `http://${n1}:9465/healthz`)).status).toBe(0);
  });

  test("/metrics parses as Prometheus text and says what the agent did", async () => {
    // the pods were wired after the agents started: the CNI plugin reported its ADDs
    const m = await waitFor("peers probed and CNI ADD reported", async () => {
      const m = await metrics("n1");
      return metric(m, "skein_peers", { state: "up" }) === 2 && metric(m, "skein_cni_requests_total", { command: "ADD", result: "ok" }) !== undefined && m;
    }, 15_000);
    const num = (name: string, labels: Record<string, string> = {}) => metric(m, name, labels);
    expect(num("skein_api_requests_total", { resource: "pods", verb: "list", code: "200" })).toBeGreaterThan(0);
    expect(num("skein_api_requests_total", { resource: "services", verb: "watch", code: "200" })).toBeGreaterThan(0);
    expect(num("skein_api_request_duration_seconds_count", { resource: "nodes", verb: "list" })).toBeGreaterThan(0);
    expect(num("skein_watch_events_total", { resource: "Node", type: "set" })).toBeGreaterThanOrEqual(3);
    expect(num("skein_compile_duration_seconds_count", { part: "services" })).toBeGreaterThan(0);
    expect(num("skein_apply_duration_seconds_count", { part: "services", kind: "full" })).toBe(1);
    expect(num("skein_table_entries", { table: "frontends" })).toBeGreaterThanOrEqual(1);
    expect(num("skein_table_entries", { table: "backends" })).toBeGreaterThanOrEqual(2);
    expect(num("skein_table_generation")).toBeGreaterThan(0);
    expect(num("skein_cni_requests_total", { command: "ADD", result: "ok" })).toBe(1);
    expect(num("skein_cni_request_duration_seconds_count", { command: "ADD" })).toBe(1);
    expect(num("skein_peer_reachable", { peer: "n2" })).toBe(1);
    expect(num("skein_peer_probe_latency_seconds", { peer: "n3" })).toBeGreaterThan(0);
    expect(num("skein_ready")).toBe(1);
  });

  test("/v1/status, /v1/peers and /v1/state", async () => {
    const s = (await api("n1", "/v1/status")).json;
    expect(s).toMatchObject({ node: "n1", mode: "auto", ready: true, listed: true, network: { gossip: "live", planned: true } });
    expect(s.generation).toBeGreaterThan(0);
    const p = await waitFor("n1 probes both peers", async () => {
      const p = (await api("n1", "/v1/peers")).json;
      return p.peers.every((x: any) => x.probe?.ok) && p;
    }, 10_000);
    expect(p.peers.map((x: any) => [x.name, x.source, x.paths[0].how])).toEqual([
      ["n2", "gossip", "direct"],
      ["n3", "gossip", "vxlan"],
    ]);
    // n3 is probed at its pod-network address (through the tunnel), n2 at the same kind of address over the direct route
    expect(p.peers.map((x: any) => x.probe.address)).toEqual(["10.244.2.0", "10.244.3.0"]);
    console.log(`health probe round trips from n1: ${p.peers.map((x: any) => `${x.name} (${x.paths[0].how}) ${x.probe.rttMs} ms`).join(", ")}`);
    expect(p.peers.every((x: any) => x.lastHeartbeatMsAgo >= 0)).toBe(true);
    const st = (await api("n1", "/v1/state")).json;
    expect(st.nodes.map((n: any) => n.name).sort()).toEqual(["n1", "n2", "n3"]);
    expect(st.services.map((x: any) => `${x.namespace}/${x.name}`)).toContain("default/web");
    expect(st.pods.map((x: any) => x.name).sort()).toEqual(["n1-p1", "n2-p1", "n3-p1"]);
  });

  test("/v1/tables: whole, one Service, one Pod, as JSON and text", async () => {
    const whole = (await api("n1", "/v1/tables")).json;
    expect(whole.frontends.some((f: any) => f.ip === "10.96.0.80" && f.port === 80)).toBe(true);
    const one = (await api("n1", "/v1/tables?service=default/web")).json;
    expect(one.targets).toHaveLength(1);
    expect(one.targets[0].backends.map((b: any) => b.ip).sort()).toEqual([c.pods.get("n2-p1")!.ip, c.pods.get("n3-p1")!.ip].sort());
    expect(one.targets[0].ring.length).toBe(one.targets[0].ringSize);
    const text = await http("n1", "http://127.0.0.1:9465/v1/tables?service=default/web&format=text");
    expect(text.type).toContain("text/plain");
    expect(text.body).toContain("10.96.0.80:80/TCP");
    expect((await api("n1", "/v1/tables?service=default/nope")).status).toBe(404);
    const pod = (await api("n1", "/v1/tables?pod=default/n2-p1")).json;
    expect(pod).toMatchObject({ pod: "default/n2-p1", node: "n2", ips: [c.pods.get("n2-p1")!.ip] });
    expect(pod.backendOf.map((b: any) => b.service)).toEqual(["default/web:http/TCP"]);
  });
});

test("the unix socket: root's, at the path named for the namespace; a bad CNI report is refused", async () => {
  const socket = /"listen":\[("[^"]+")/.exec(c.agents.get("n1")!.out.text)?.[1];
  expect(socket).toMatch(/^"\/run\/skein\/agent-\d+-\d+\.sock"$/);
  const path = JSON.parse(socket!);
  const ask = async (p: string, init: RequestInit = {}) => {
    const r = await fetch(`http://localhost${p}`, { ...init, unix: path } as RequestInit);
    return { status: r.status, body: await r.text() };
  };
  expect((await ask("/v1/status")).status).toBe(200);
  expect((await ask("/v1/cni", { method: "POST", body: JSON.stringify({ command: "ADD", result: "ok", seconds: 1e9 }) })).status).toBe(400);
  expect((await ask("/v1/cni", { method: "POST", body: "x".repeat(100_000) })).status).toBe(413);
  expect((await ask("/healthz")).status).toBe(200);
});

describe("the CLI asks the agent of its namespace", () => {
  test("skein status: human and --json", async () => {
    await waitFor("n1's probes answered", async () => (await api("n1", "/v1/peers")).json.peers.every((x: any) => x.probe?.ok), 10_000);
    const r = await skein("n1", ["status"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Node: +n1 \(skein /m);
    expect(r.stdout).toMatch(/^Ready: +yes$/m);
    expect(r.stdout).toMatch(/^Mode: +auto, gossip live, underlay 192\.168\.50\.11/m);
    expect(r.stdout).toMatch(/^ {2}n2 +gossip +[\d.]+ (ms|s) ago +direct via 192\.168\.50\.12 +ok [\d.]+ ms$/m);
    expect(r.stdout).toMatch(/^ {2}n3 +gossip +[\d.]+ (ms|s) ago +vxlan via 192\.168\.60\.13 +ok [\d.]+ ms$/m);
    expect(r.stdout).not.toContain("\x1b[");
    const j = await skein("n3", ["status", "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({ node: "n3", ready: true });
  });

  test("skein tables --service / --pod / --json on the live agent", async () => {
    const r = await skein("n1", ["tables", "--service", "default/web"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("default/web:http/TCP");
    const p = await skein("n1", ["tables", "--pod", "default/n1-p1"]);
    expect(p.stdout).toContain("POD default/n1-p1 on n1");
    const j = JSON.parse((await skein("n2", ["tables", "--json"])).stdout);
    expect(j.frontends.length).toBeGreaterThan(0);
    const none = await skein("n1", ["tables", "--service", "default/nope"]);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain("404");
  });

  test("without an agent in the namespace: exit 69 and what to do", async () => {
    const r = await skein("cp", ["status"]);
    expect(r.exitCode).toBe(69);
    expect(r.stderr).toContain("no skein agent answers");
  });
});

describe("node health probes", () => {
  test("a dead peer's agent shows as unreachable, and reachable again when it is back", async () => {
    await c.stopAgent("n3", { signal: "SIGKILL" });
    await waitFor("n1 sees n3 unreachable", async () => {
      const p = (await api("n1", "/v1/peers")).json.peers.find((x: any) => x.name === "n3");
      return p?.probe && !p.probe.ok;
    }, 10_000);
    const m = await metrics("n1");
    expect(metric(m, "skein_peer_reachable", { peer: "n3" })).toBe(0);
    expect(metric(m, "skein_peers", { state: "down" })).toBe(1);
    const s = await skein("n1", ["status"]);
    expect(s.stdout).toMatch(/^ {2}n3 .* failed: .+$/m);
    await c.startAgent("n3", [], { ready: "HTTP API" });
    await waitFor("n1 sees n3 reachable again", async () => (await api("n1", "/v1/peers")).json.peers.find((x: any) => x.name === "n3")?.probe?.ok, 15_000);
  }, 40_000);
});

describe("hostile requests get a 4xx and the agent keeps serving", () => {
  const n2 = () => c.underlay.node("n2").address;
  test("on a non-loopback address: no token, a wrong one, a malformed one", async () => {
    const url = `http://${n2()}:9466/v1/status`;
    expect((await http("n1", url)).status).toBe(401);
    expect((await http("n1", url, { headers: { Authorization: "Bearer wrong-token-0123456789" } })).status).toBe(401);
    expect((await http("n1", url, { headers: { Authorization: "Token x" } })).status).toBe(400);
    expect(await http("n1", url, { headers: { Authorization: `Bearer ${TOKEN}` } })).toMatchObject({ status: 200, json: { node: "n2" } });
    // the CLI with the token
    writeFileSync(`${tmp}/cli-token`, TOKEN);
    const r = await skein("n1", ["status", "--agent", `http://${n2()}:9466`, "--token-file", `${tmp}/cli-token`, "--json"]);
    expect(JSON.parse(r.stdout).node).toBe("n2");
  });

  test("huge bodies, traversal, malformed queries, floods", async () => {
    const base = `http://${n2()}:9466`;
    const auth = { Authorization: `Bearer ${TOKEN}` };
    expect((await http("n1", `${base}/v1/cni`, { method: "POST", headers: auth, bodyBytes: 10 * 1024 * 1024 })).status).toBe(413);
    expect((await http("n1", `${base}/v1/cni`, { method: "POST", headers: auth, bodyBytes: 100 })).status).toBe(403);
    expect((await http("n1", `${base}/v1/tables?pod=../../../etc/shadow`, { headers: auth })).status).toBe(400);
    expect((await http("n1", `${base}/../../etc/passwd`, { headers: auth })).status).toBe(404);
    expect((await http("n1", `${base}/v1/tables?service=%ff%fe`, { headers: auth })).status).toBe(400);
    expect((await http("n1", `${base}/v1/tables?format=`, { headers: auth })).status).toBe(400);
    expect((await http("n1", `${base}/v1/trace?src=1.2.3.4&dst=${"9".repeat(5000)}`, { headers: auth })).status).toBe(414);
    expect((await http("n1", `${base}/metrics`, { method: "PATCH", headers: auth })).status).toBe(405);
    // a flood from one client: refused past the rate, and others are still served
    const flood = await lab.exec("n1", [process.execPath, "-e", `let n=0;for(let i=0;i<300;i++){const r=await fetch("${base}/healthz",{headers:{Authorization:"Bearer ${TOKEN}"}});if(r.status===429)n++;await r.text()}console.log(n)`]);
    expect(Number(flood.stdout)).toBeGreaterThan(0);
    expect((await http("n2", `http://${n2()}:4250/healthz`)).status).toBe(200);
    expect(await http("n3", `${base}/v1/status`, { headers: auth })).toMatchObject({ status: 200, json: { node: "n2" } });
  });
});

test("repairs of what others changed are counted", async () => {
  await lab.exec("n1", ["ip", "route", "del", "10.244.3.0/24"]);
  await lab.exec("n1", ["nft", "delete", "table", "inet", "skein"]);
  await waitFor("both repairs counted", async () => {
    const m = await metrics("n1");
    return (metric(m, "skein_drift_repairs_total", { what: "overlay" }) ?? 0) >= 1 && (metric(m, "skein_drift_repairs_total", { what: "table" }) ?? 0) >= 1;
  }, 10_000);
  await waitFor("n1's route to n3 back", async () => (await lab.exec("n1", ["ip", "route", "show", "10.244.3.0/24"])).stdout.includes("skein.vxlan"), 5000);
});

test("per-policy verdict counters in /metrics", async () => {
  const dst = c.pods.get("n1-p1")!;
  expect((await lab.connect("n2-p1", "tcp", dst.ip, 8080)).ok).toBe(true);
  await c.api.create("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", { metadata: { name: "deny-in" }, spec: { podSelector: {}, policyTypes: ["Ingress"] } });
  try {
    await waitFor("n2-p1 denied to n1-p1", async () => !(await lab.connect("n2-p1", "tcp", dst.ip, 8080, 500)).ok, 10_000);
    for (let i = 0; i < 3; i++) await lab.connect("n2-p1", "udp", dst.ip, 8080, 300);
    // counted where the packets were dropped: a node drops traffic to an identity isolated for
    // ingress wherever that identity's pods are, so the sender's node may be the one
    await waitFor("drops counted for default/deny-in", async () => {
      let dropped = 0;
      for (const n of ["n1", "n2", "n3"]) dropped += metric(await metrics(n), "skein_policy_packets_total", { policy: "default/deny-in", verdict: "dropped" }) ?? 0;
      return dropped >= 4;
    }, 10_000);
  } finally {
    await c.api.request("DELETE", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/deny-in");
  }
});
