// The demo's kubectl proxy against the test API server on a Unix socket: requests and watches
// pass with the client's token (the server still checks it), dot segments are refused rather
// than resolved, and open watches past the cap get 429 instead of starving every other request.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:tls";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../../agent/watch/kube.ts";
import { TestApiServer } from "../apiserver/server.ts";
import { proxiedKubeconfig, startApiProxy } from "./api-proxy.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-proxy-`);
const server = TestApiServer.start({ tokens: ["t"], unix: `${dir}/api.sock` });
writeFileSync(`${dir}/certs.json`, JSON.stringify(server.certs));
const proxy = startApiProxy({ unix: `${dir}/api.sock`, certsFile: `${dir}/certs.json`, maxWatches: 3 });
const kc = new KubeConfig();
kc.loadFromString(proxiedKubeconfig(server.kubeconfig(), proxy.url));
const k = new KubeClient(kc);
afterAll(async () => {
  await proxy.stop();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("requests pass with the client's token; without one the API server answers 401", async () => {
  await k.request("POST", "/api/v1/namespaces", { body: { metadata: { name: "p1" } } });
  expect((await k.request<any>("GET", "/api/v1/namespaces/p1")).metadata.name).toBe("p1");
  const r = await fetch(`${proxy.url}/api/v1/namespaces`, { tls: { rejectUnauthorized: false } } as RequestInit);
  expect(r.status).toBe(401);
});

test("a dot segment, plain or percent-encoded, is refused, never resolved into another path", async () => {
  // sent raw: a fetch() would resolve the dot segments itself before sending
  const raw = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: proxy.port, rejectUnauthorized: false }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n`));
      let text = "";
      s.on("data", (d) => (text += d));
      s.on("end", () => resolve(text.split("\r\n")[0]!));
      s.on("error", reject);
    });
  for (const path of ["/api/v1/namespaces/%2e%2e/pods", "/api/v1/namespaces/default/%2E%2E/%2e%2e/pods", "/api/v1/namespaces/p1/../../namespaces", "/api/v1/namespaces/a%2fb/pods"]) {
    expect({ path, status: await raw(path) }).toEqual({ path, status: "HTTP/1.1 400 Bad Request" });
  }
  expect(await raw("/api/v1/namespaces/p1")).toBe("HTTP/1.1 200 OK");
});

test("watches stream through; past the cap a 429, and the slots come back when they close", async () => {
  const open = [new AbortController(), new AbortController(), new AbortController()];
  const watches = await Promise.all(open.map((c) => k.fetch("/api/v1/namespaces", { query: { watch: true }, signal: c.signal })));
  expect(watches.map((w) => w.status)).toEqual([200, 200, 200]);
  expect(proxy.inFlight()).toEqual({ all: 3, watches: 3 });
  expect((await k.fetch("/api/v1/namespaces", { query: { watch: true } })).status).toBe(429);
  expect((await k.fetch("/api/v1/watch/namespaces")).status).toBe(429);
  // what is not a watch still passes
  expect((await k.fetch("/api/v1/namespaces")).status).toBe(200);
  // the first event of a watch arrives through the proxy
  const reader = watches[0]!.body!.getReader();
  expect(new TextDecoder().decode((await reader.read()).value)).toContain('"ADDED"');
  for (const c of open) c.abort();
  const deadline = Date.now() + 5000;
  while (proxy.inFlight().all > 0 && Date.now() < deadline) await Bun.sleep(20);
  expect(proxy.inFlight()).toEqual({ all: 0, watches: 0 });
  expect((await k.fetch("/api/v1/namespaces", { query: { watch: true }, signal: AbortSignal.timeout(2000) })).status).toBe(200);
});
