import { describe, expect, test } from "bun:test";
import { metric, parseMetrics } from "../../testing/prometheus-text.ts";
import { createApp, TraceQueryError, type AgentView, type AppOptions } from "./app.ts";
import { Metrics } from "./metrics.ts";

function view(over: Partial<AgentView> = {}): AgentView & { asked: unknown[] } {
  const asked: unknown[] = [];
  return {
    asked,
    node: "n1",
    ready: () => ({ ready: false, reasons: ["the cluster is not listed yet"] }),
    status: () => ({ node: "n1", generation: 3 }),
    peers: () => ({ peers: [{ name: "n2" }] }),
    state: () => ({ services: [] }),
    tables: (f) => {
      asked.push(f);
      if (f.service?.name === "gone") return { missing: "Service default/gone is not known" };
      return { json: { frontends: [] }, text: "FRONTEND\n" };
    },
    trace: (src, dst) => {
      if (src === "bad") throw new TraceQueryError("src: bad is not an address");
      return { json: { src, dst }, text: `${src} -> ${dst}\n` };
    },
    ...over,
  };
}

function app(o: Partial<AppOptions> = {}) {
  const metrics = new Metrics({ version: "0.1.0", node: "n1" });
  const v = (o.view as ReturnType<typeof view>) ?? view();
  return { app: createApp({ view: v, metrics, via: "loopback", ...o }), metrics, view: v };
}

const get = async (a: ReturnType<typeof createApp>, path: string, init?: RequestInit) => {
  const r = await a.request(path, init);
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, text, json, type: r.headers.get("content-type") ?? "" };
};

describe("endpoints", () => {
  test("/healthz and /readyz", async () => {
    const { app: a } = app();
    expect(await get(a, "/healthz")).toMatchObject({ status: 200, json: { ok: true, node: "n1" } });
    expect(await get(a, "/readyz")).toMatchObject({ status: 503, json: { ready: false, reasons: ["the cluster is not listed yet"] } });
    const ready = app({ view: view({ ready: () => ({ ready: true, reasons: [] }) }) });
    expect((await get(ready.app, "/readyz")).status).toBe(200);
  });

  test("/metrics is Prometheus text that a parser reads, with what was recorded", async () => {
    const { app: a, metrics } = app();
    metrics.apiRequest("GET", "/api/v1/pods", true, 200, 0.01);
    metrics.apiRequest("GET", "/api/v1/namespaces/a/pods/p", false, 404, 0.002);
    metrics.cni("ADD", "ok", 0.02);
    metrics.probes([{ name: "n2", ok: true, rttMs: 1.5 }, { name: "n3", ok: false }, { name: "n4" }]);
    const r = await get(a, "/metrics");
    expect(r.status).toBe(200);
    expect(r.type).toContain("text/plain");
    const m = parseMetrics(r.text);
    expect(m.find((x) => x.name === "skein_api_requests_total")?.type).toBe("counter");
    expect(metric(m, "skein_api_requests_total", { resource: "pods", verb: "watch", code: "200" })).toBe(1);
    expect(metric(m, "skein_api_requests_total", { resource: "pods", verb: "get", code: "404" })).toBe(1);
    expect(metric(m, "skein_api_request_duration_seconds_count", { resource: "pods", verb: "watch" })).toBe(1);
    expect(metric(m, "skein_api_request_duration_seconds_bucket", { resource: "pods", verb: "watch", le: "0.01" })).toBe(1);
    expect(metric(m, "skein_api_request_duration_seconds_bucket", { resource: "pods", verb: "watch", le: "0.005" })).toBe(0);
    expect(metric(m, "skein_peers", { state: "unprobed" })).toBe(1);
    expect(metric(m, "skein_peer_reachable", { peer: "n2" })).toBe(1);
    expect(metric(m, "skein_peer_reachable", { peer: "n3" })).toBe(0);
    expect(metric(m, "skein_peer_probe_latency_seconds", { peer: "n2" })).toBe(0.0015);
    expect(metric(m, "skein_cni_requests_total", { command: "ADD", result: "ok" })).toBe(1);
    expect(metric(m, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(() => parseMetrics("skein_x{a=} 1\n")).toThrow(/not Prometheus text/);
  });

  test("/v1/tables: json, text, one Service or Pod; a Service not there is 404", async () => {
    const { app: a, view: v } = app();
    expect(await get(a, "/v1/tables")).toMatchObject({ status: 200, json: { frontends: [] } });
    expect(await get(a, "/v1/tables?format=text")).toMatchObject({ status: 200, text: "FRONTEND\n" });
    await get(a, "/v1/tables?service=default/web");
    await get(a, "/v1/tables?pod=kube-system/dns-1.x");
    expect(v.asked).toEqual([{}, {}, { service: { namespace: "default", name: "web" } }, { pod: { namespace: "kube-system", name: "dns-1.x" } }]);
    expect(await get(a, "/v1/tables?service=default/gone")).toMatchObject({ status: 404, json: { error: "Service default/gone is not known" } });
    const none = app({ view: view({ tables: () => undefined }) });
    expect((await get(none.app, "/v1/tables")).status).toBe(503);
  });

  test("/v1/status, /v1/peers, /v1/state, /v1/trace", async () => {
    const { app: a } = app();
    expect(await get(a, "/v1/status")).toMatchObject({ status: 200, json: { generation: 3 } });
    expect(await get(a, "/v1/peers")).toMatchObject({ status: 200, json: { peers: [{ name: "n2" }] } });
    expect(await get(a, "/v1/state")).toMatchObject({ status: 200, json: { services: [] } });
    expect(await get(a, "/v1/trace?src=10.0.0.1&dst=10.96.0.1:80/tcp")).toMatchObject({ status: 200, json: { src: "10.0.0.1", dst: "10.96.0.1:80/tcp" } });
    expect(await get(a, "/v1/trace?src=10.0.0.1&dst=10.96.0.1:80", { headers: { Accept: "text/plain" } })).toMatchObject({ status: 200, text: "10.0.0.1 -> 10.96.0.1:80\n" });
    expect(await get(a, "/v1/trace?src=bad&dst=x")).toMatchObject({ status: 400, json: { error: "src: bad is not an address" } });
  });
});

describe("hostile requests get a 4xx and the app keeps serving", () => {
  const { app: a } = app();
  const cases: Array<[string, string, RequestInit | undefined, number]> = [
    ["unknown path", "/v2/secrets", undefined, 404],
    ["traversal in the path", "/v1/tables/../../etc/passwd", undefined, 404],
    ["encoded traversal", "/v1/%2e%2e/%2e%2e/etc/passwd", undefined, 404],
    ["traversal in a name", "/v1/tables?service=../../etc/passwd", undefined, 400],
    ["a name with a slash too many", "/v1/tables?pod=a/b/c", undefined, 400],
    ["upper case name", "/v1/tables?pod=Default/Web", undefined, 400],
    ["NUL in a name", "/v1/tables?service=default/a%00b", undefined, 400],
    ["unknown parameter", "/v1/tables?colour=red", undefined, 400],
    ["parameter twice", "/v1/tables?service=a/b&service=c/d", undefined, 400],
    ["service and pod", "/v1/tables?service=a/b&pod=c/d", undefined, 400],
    ["bad format", "/v1/tables?format=xml", undefined, 400],
    ["query on /healthz", "/healthz?x=1", undefined, 400],
    ["trace without dst", "/v1/trace?src=10.0.0.1", undefined, 400],
    ["long path", "/" + "a".repeat(300), undefined, 414],
    ["long query", "/v1/tables?service=" + "a".repeat(2000), undefined, 414],
    ["PUT", "/v1/tables", { method: "PUT", body: "x" }, 405],
    ["DELETE", "/healthz", { method: "DELETE" }, 405],
    ["GET with a body", "/v1/status", { method: "GET", headers: { "content-length": "5" } }, 413],
    ["CNI report over TCP", "/v1/cni", { method: "POST", body: JSON.stringify({ command: "ADD", result: "ok", seconds: 0.1 }) }, 403],
  ];
  for (const [what, path, init, code] of cases)
    test(`${what}: ${code}`, async () => {
      const r = await get(a, path, init);
      expect(r.status).toBe(code);
      expect(r.json?.error ?? "").not.toBe("");
      expect((await get(a, "/healthz")).status).toBe(200);
    });

  test("CNI reports over the unix socket: checked strictly, bounded", async () => {
    const u = app({ via: "unix" });
    const post = (body: string) => get(u.app, "/v1/cni", { method: "POST", body, headers: { "content-type": "application/json" } });
    expect((await post(JSON.stringify({ command: "ADD", result: "ok", seconds: 0.012 }))).status).toBe(204);
    expect((await post(JSON.stringify({ command: "DEL", result: 7, seconds: 0.002 }))).status).toBe(204);
    expect((await post("{")).status).toBe(400);
    expect((await post(JSON.stringify({ command: "ADD", result: "ok", seconds: 0.1, extra: 1 }))).status).toBe(400);
    expect((await post(JSON.stringify({ command: "RM", result: "ok", seconds: 0.1 }))).status).toBe(400);
    expect((await post(JSON.stringify({ command: "ADD", result: "ok", seconds: -1 }))).status).toBe(400);
    expect((await post(JSON.stringify({ command: "ADD", result: "ok", seconds: 1, pad: "x".repeat(10_000) }))).status).toBe(413);
    const m = parseMetrics(await u.metrics.render());
    expect(metric(m, "skein_cni_requests_total", { command: "ADD", result: "ok" })).toBe(1);
    expect(metric(m, "skein_cni_requests_total", { command: "DEL", result: "7" })).toBe(1);
  });

  test("a non-loopback listener wants the bearer token", async () => {
    const r = app({ via: "remote", token: "0123456789abcdef-token" });
    expect((await get(r.app, "/v1/status")).status).toBe(401);
    expect((await get(r.app, "/v1/status", { headers: { Authorization: "Bearer wrong-token-0123456789" } })).status).toBe(401);
    expect((await get(r.app, "/v1/status", { headers: { Authorization: "Basic abc" } })).status).toBe(400);
    expect((await get(r.app, "/v1/status", { headers: { Authorization: "Bearer 0123456789abcdef-token" } })).status).toBe(200);
    expect(() => createApp({ view: view(), metrics: new Metrics({ version: "x", node: "n" }), via: "remote" })).toThrow(/token/);
  });

  test("the rate per client is bounded, and other clients are still served", async () => {
    let now = 0;
    const r = app({ rate: { perSecond: 5, burst: 10 }, clientOf: (c) => c.req.header("x-test-client"), now: () => now });
    const from = (who: string) => get(r.app, "/healthz", { headers: { "x-test-client": who } });
    const codes: number[] = [];
    for (let i = 0; i < 15; i++) codes.push((await from("a")).status);
    expect(codes.filter((c) => c === 200).length).toBe(10);
    expect(codes.filter((c) => c === 429).length).toBe(5);
    expect((await from("b")).status).toBe(200);
    now += 1000;
    expect((await from("a")).status).toBe(200);
  });

  test("many clients each within their rate cannot starve /healthz and /readyz for the next (kubelet, a peer's probe); the other paths keep the overall cap", async () => {
    for (const healthOnly of [true, false]) {
      const r = app({ healthOnly, rate: { perSecond: 5, burst: 10 }, clientOf: (c) => c.req.header("x-test-client"), now: () => 0 });
      const from = (who: string, path = "/healthz") => get(r.app, path, { headers: { "x-test-client": who } });
      for (let i = 0; i < 100; i++) for (let k = 0; k < 5; k++) await from(`flood-${i}`);
      expect((await from("kubelet")).status).toBe(200);
      expect((await from("peer", "/readyz")).status).toBe(503);
    }
    const r = app({ rate: { perSecond: 5, burst: 10 }, clientOf: (c) => c.req.header("x-test-client"), now: () => 0 });
    const codes: number[] = [];
    for (let i = 0; i < 100; i++) codes.push((await get(r.app, "/v1/status", { headers: { "x-test-client": `c-${i}` } })).status);
    expect(codes.filter((c) => c === 429).length).toBe(100 - 40);
  });

  test("health-only listener serves /healthz and /readyz alone", async () => {
    const h = app({ healthOnly: true });
    expect((await get(h.app, "/healthz")).status).toBe(200);
    expect((await get(h.app, "/readyz")).status).toBe(503);
    for (const p of ["/metrics", "/v1/status", "/v1/state", "/v1/tables"]) expect((await get(h.app, p)).status).toBe(404);
  });
});
