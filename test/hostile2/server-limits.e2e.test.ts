// Hostile round 2 on `skein apiserver` (the built binary), loopback only: reproductions of the
// problems found; each test states what kube-apiserver does and fails while skein does otherwise.
import { afterAll, afterEach, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { SKEIN, waitFor } from "../harness/index.ts";

const TOKEN = "skhb-token";
const dirs: string[] = [];
const procs: Bun.Subprocess[] = [];
afterEach(() => procs.splice(0).forEach((p) => p.exitCode === null && p.kill("SIGKILL")));
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tmp(tag: string): string {
  const d = mkdtempSync(`${tmpdir()}/skhb-${tag}-`);
  dirs.push(d);
  return d;
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

function drain(s: ReadableStream<Uint8Array>, sink: (text: string) => void): void {
  void (async () => {
    const dec = new TextDecoder();
    for await (const c of s) sink(dec.decode(c, { stream: true }));
  })();
}

const api = (port: number) => async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000) => {
  const r = await fetch(`https://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { rejectUnauthorized: false },
    signal: AbortSignal.timeout(timeoutMs),
  } as RequestInit);
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
};

async function startApi(dir: string, port = freePort()) {
  const proc = Bun.spawn([SKEIN, "apiserver", "--dir", dir, "--listen", `127.0.0.1:${port}`, "--token", TOKEN], { stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  let out = "";
  drain(proc.stdout, (t) => (out += t));
  drain(proc.stderr, (t) => (out += t));
  await waitFor("skein apiserver serving or exited", () => out.includes("serving") || proc.exitCode !== null, 15_000);
  return { proc, port, out: () => out, req: api(port), serving: out.includes("serving") };
}

/** What arrives within `ms` on a raw TLS connection for a GET of `path`. */
async function rawGet(port: number, path: string, ms: number, done: (got: string) => boolean): Promise<string> {
  const tls = await import("node:tls");
  return new Promise((resolve) => {
    let got = "";
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    });
    const end = () => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(end, ms);
    s.on("data", (b: Buffer) => {
      got += b.toString("latin1");
      if (done(got)) end();
    });
    s.on("error", end);
  });
}

test("a JSON patch whose copy ops double the object is refused quickly, not run until the server is out of memory", async () => {
  // kube-apiserver bounds this (jsonpatch.AccumulatedCopySizeLimit, and the object size limit):
  // the request fails at once. skein ran 30 doubling copies: RSS 84 MB -> 2.9 GB in 20 s, no
  // answer, /healthz hung for every other client.
  const a = await startApi(tmp("jp"));
  const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "skhb-jp", annotations: { a: "x" } }, data: { k: "v" } };
  expect((await a.req("POST", "/api/v1/namespaces/default/configmaps", cm)).status).toBe(201);
  const ops = Array.from({ length: 30 }, (_, i) => ({ op: "copy", from: "/metadata", path: `/metadata/annotations/x${i}` }));
  const t0 = Date.now();
  const r = await a
    .req("PATCH", "/api/v1/namespaces/default/configmaps/skhb-jp", ops, { "content-type": "application/json-patch+json" }, 8_000)
    .catch((e: Error) => ({ status: 0, text: String(e) }));
  expect(r.status, `answer after ${Date.now() - t0} ms: ${r.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
  expect(r.status).toBeLessThan(500);
  expect((await a.req("GET", "/healthz", undefined, {}, 3_000)).status).toBe(200);
}, 60_000);

test("a watch with no events yet sends its whole response header at once (kube-apiserver does; header-timeout clients give up otherwise)", async () => {
  // skein sends the status line and two headers but neither Transfer-Encoding nor the blank line
  // that ends the header until the first event, so Bun's fetch (and Go's ResponseHeaderTimeout)
  // sees no response at all on a quiet resource.
  const a = await startApi(tmp("wh"));
  const got = await rawGet(a.port, "/api/v1/namespaces/default/configmaps?watch=1", 3_000, (g) => g.includes("\r\n\r\n"));
  expect(got.startsWith("HTTP/1.1 200")).toBe(true);
  expect(got, JSON.stringify(got)).toContain("\r\n\r\n");
  const r = await fetch(`https://127.0.0.1:${a.port}/api/v1/namespaces/default/configmaps?watch=1`, {
    headers: { authorization: `Bearer ${TOKEN}` },
    tls: { rejectUnauthorized: false },
    signal: AbortSignal.timeout(3_000),
  } as RequestInit).then((x) => x.status, (e: Error) => String(e));
  expect(r).toBe(200);
}, 60_000);

test("a watch from a resourceVersion beyond the current one gets 504 Too large resource version, as a list does", async () => {
  // kube-apiserver waits ~3 s for the revision, then answers the watch 504 (ResourceVersionTooLarge).
  // skein answers the list 504 at once but the watch 200 with no event, for as long as it is open.
  const a = await startApi(tmp("wf"));
  const list = await a.req("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=999999&resourceVersionMatch=NotOlderThan");
  expect(list.status).toBe(504);
  const got = await rawGet(a.port, "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=999999", 8_000, (g) => !g.startsWith("HTTP/1.1 200") || g.includes('"ERROR"'));
  const said = got.startsWith("HTTP/1.1 504") ? "504" : got.includes('"ERROR"') ? "ERROR event" : JSON.stringify(got.slice(0, 120));
  expect(said).toMatch(/^(504|ERROR event)$/);
}, 60_000);

test("watchers that stop reading do not make the server buffer every event for them without bound", async () => {
  // kube-apiserver gives each watcher a bounded buffer and closes a watcher that falls behind.
  // skein queues everything: 20 stalled watchers, 60 updates of a 900 kB ConfigMap took RSS from
  // 66 MB to 790 MB (149 MB with no watchers), with --watch-history-bytes at its 1 KiB minimum.
  const a = await startApi(tmp("sw"));
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync(`/proc/${a.proc.pid}/status`, "utf8"))![1]) / 1024;
  const tls = await import("node:tls");
  const socks = Array.from({ length: 10 }, () => {
    const s = tls.connect({ host: "127.0.0.1", port: a.port, rejectUnauthorized: false }, () => {
      s.write(`GET /api/v1/namespaces/default/configmaps?watch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
      s.pause();
    });
    s.on("error", () => {});
    return s;
  });
  try {
    await waitFor("watch headers sent", () => socks.every((s) => s.bytesWritten > 0), 5_000);
    const before = rss();
    const big = "a".repeat(900_000);
    for (let i = 0; i < 40; i++) {
      const r = await a.req(i ? "PUT" : "POST", `/api/v1/namespaces/default/configmaps${i ? "/skhb-slow" : ""}`, { metadata: { name: "skhb-slow" }, data: { x: big + i } });
      expect(r.status).toBeLessThan(300);
    }
    // 10 watchers x 40 events x 0.9 MB = 360 MB would be queued
    expect(rss() - before).toBeLessThan(200);
  } finally {
    socks.forEach((s) => s.destroy());
  }
}, 120_000);
