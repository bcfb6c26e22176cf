import { afterAll, describe, expect, test } from "bun:test";
import { waitFor } from "../../test/harness/index.ts";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseListen, startHttp } from "./serve.ts";
import { Metrics } from "./metrics.ts";
import { reportToAgent } from "../cni/report.ts";
import { metric, parseMetrics } from "../../testing/prometheus-text.ts";
import type { AgentView } from "./app.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-http-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const view: AgentView = { node: "n1", ready: () => ({ ready: true, reasons: [] }), status: () => ({}), peers: () => ({}), state: () => ({}), tables: () => undefined };

test("parseListen reads ADDRESS:PORT strictly", () => {
  expect(parseListen("127.0.0.1:9465")).toEqual({ host: "127.0.0.1", port: 9465 });
  expect(parseListen("[::1]:80")).toEqual({ host: "::1", port: 80 });
  expect(parseListen("none")).toBeUndefined();
  for (const bad of ["127.0.0.01:80", "127.0.0.1", "::1:80", "127.0.0.1:65536", "127.0.0.1:080", "host:80", "[fe80::1%eth0]:80"]) expect(() => parseListen(bad)).toThrow();
});

test("the unix socket is root's alone, a stale one is replaced, and the CNI plugin's report reaches the metrics", async () => {
  const socket = `${dir}/agent.sock`;
  const metrics = new Metrics({ version: "x", node: "n1" });
  const first = startHttp({ view, metrics, socket });
  expect(first.errors).toEqual([]);
  first.stop();
  // a socket left by an agent that died
  const stale = startHttp({ view, metrics, socket });
  expect(statSync(socket).mode & 0o777).toBe(0o600);
  expect(await reportToAgent({ command: "ADD", result: "ok", seconds: 0.0123 }, socket)).toBe(true);
  expect(await reportToAgent({ command: "DEL", result: 7, seconds: 0.001 }, socket)).toBe(true);
  const m = parseMetrics(await metrics.render());
  expect(metric(m, "skein_cni_requests_total", { command: "ADD", result: "ok" })).toBe(1);
  expect(metric(m, "skein_cni_request_duration_seconds_sum", { command: "ADD" })).toBeCloseTo(0.0123, 6);
  expect(metric(m, "skein_cni_requests_total", { command: "DEL", result: "7" })).toBe(1);
  stale.stop();
  // no agent: nothing sent, at once
  const t0 = performance.now();
  expect(await reportToAgent({ command: "ADD", result: "ok", seconds: 0.01 }, socket)).toBe(false);
  expect(performance.now() - t0).toBeLessThan(50);
});

test("a file that is not a socket is not replaced; the other listeners still start", () => {
  const path = `${dir}/not-a-socket`;
  writeFileSync(path, "keep me");
  const l = startHttp({ view, metrics: new Metrics({ version: "x", node: "n1" }), socket: path, listen: { host: "127.0.0.1", port: 0 } });
  try {
    expect(l.errors).toEqual([expect.stringContaining("is not a socket")]);
    expect(l.addresses).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
  } finally {
    l.stop();
  }
  expect(Bun.file(path).size).toBe(7);
});

test("a non-loopback API without a token does not start", () => {
  const l = startHttp({ view, metrics: new Metrics({ version: "x", node: "n1" }), listen: { host: "0.0.0.0", port: 0 } });
  expect(l.errors).toEqual([expect.stringContaining("bearer token")]);
  l.stop();
});

/** One raw request, the status line's code (0: none). */
async function rawStatus(o: { port?: number; unix?: string }, request: string): Promise<number> {
  const { connect } = await import("node:net");
  return await new Promise((resolve) => {
    let got = "";
    const s = o.unix ? connect(o.unix) : connect(o.port!, "127.0.0.1");
    s.on("connect", () => s.write(request));
    s.on("data", (d) => {
      got += d;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      if (m) (s.destroy(), resolve(Number(m[1])));
    });
    s.on("error", () => resolve(0));
    s.on("close", () => resolve(0));
  });
}

test("a request without a usable Host (HTTP/1.0, CONNECT, a broken Host) is a 400, not an internal error", async () => {
  const socket = `${dir}/nohost.sock`;
  const l = startHttp({ view, metrics: new Metrics({ version: "x", node: "n1" }), socket, listen: { host: "127.0.0.1", port: 0 }, healthPort: 0 });
  try {
    const port = Number(l.addresses.find((a) => a.startsWith("127."))!.split(":")[1]);
    for (const where of [{ port }, { unix: socket }]) {
      expect(await rawStatus(where, "GET /healthz HTTP/1.0\r\n\r\n")).toBe(400);
      expect(await rawStatus(where, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n")).toBe(400);
      expect(await rawStatus(where, "GET /v1/status HTTP/1.1\r\nHost: [::1\r\n\r\n")).toBe(400);
      // and the same request with a Host is served
      expect(await rawStatus(where, "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")).toBe(200);
    }
  } finally {
    l.stop();
  }
});

describe("the health port", () => {
  const { listenHealth } = require("./health-listener.ts") as typeof import("./health-listener.ts");
  const { createApp } = require("./app.ts") as typeof import("./app.ts");
  const start = (o: { maxConnections?: number; perClient?: number; requestSeconds?: number } = {}) => listenHealth({ host: "127.0.0.1", port: 0, app: createApp({ view, metrics: new Metrics({ version: "x", node: "n1" }), via: "loopback", healthOnly: true, clientOf: (c) => (c.env as { ip?: string }).ip }), ...o });
  /** one raw exchange: what the server sent until it closed */
  const exchange = (port: number, text: string) =>
    new Promise<string>((resolve) => {
      let got = "";
      void Bun.connect({ hostname: "127.0.0.1", port, socket: { open: (s) => void s.write(text), data: (_s, d) => void (got += d.toString()), close: () => resolve(got), error: () => resolve(got) } });
    });

  test("GET /healthz and /readyz answer and close; other paths, methods and malformed requests get 4xx", async () => {
    const l = start();
    try {
      expect(await exchange(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\n\{"ok":true,"node":"n1"\}$/);
      expect(await exchange(l.port, "GET /readyz HTTP/1.0\r\n\r\n")).toMatch(/^HTTP\/1\.1 200 /);
      expect(await exchange(l.port, "GET /readyz HTTP/1.1\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 [\s\S]*without a Host/);
      expect(await exchange(l.port, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n$/);
      expect(await exchange(l.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 404 /);
      expect(await exchange(l.port, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")).toMatch(/^HTTP\/1\.1 405 /);
      expect(await exchange(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")).toMatch(/^HTTP\/1\.1 413 /);
      expect(await exchange(l.port, "CONNECT x:1 HTTP/1.1\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 /);
      expect(await exchange(l.port, "GET /healthz?x=%ff HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 /);
      expect(await exchange(l.port, "GET /\x00 HTTP/1.1\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 /);
      expect(await exchange(l.port, `GET /healthz HTTP/1.1\r\nX: ${"a".repeat(10_000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    } finally {
      l.stop();
    }
  });

  test("connections are capped per client and in all; a request that does not come in time is closed", async () => {
    const l = start({ perClient: 4, maxConnections: 8, requestSeconds: 1 });
    const idle: Array<{ end(): void }> = [];
    try {
      // four idle connections from this client fill its share: the fifth is refused at once
      for (let i = 0; i < 4; i++) idle.push(await Bun.connect({ hostname: "127.0.0.1", port: l.port, socket: { data() {} } }));
      await waitFor("4 open", () => l.open() === 4);
      expect(await exchange(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 503 [\s\S]*too many connections/);
      // the idle ones are closed after the request time, and the client is served again
      await waitFor("idle connections closed", () => l.open() === 0, 5000);
      expect(await exchange(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const s of idle) s.end();
      l.stop();
    }
  });
});
