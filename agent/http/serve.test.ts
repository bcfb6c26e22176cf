import { afterAll, expect, test } from "bun:test";
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
