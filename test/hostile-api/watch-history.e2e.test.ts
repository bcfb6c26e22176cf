// The watch history of skein apiserver: a resumed watch gets its events or 410 Expired, never an
// empty 200; and the history of large objects cannot grow the server's memory without bound.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { type Api, TOKEN, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("whist");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

const rssKiB = () => Number(readFileSync(`/proc/${api.proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)![1]);
const merge = { "content-type": "application/merge-patch+json" };

/** Reads a watch response until it ends or `ms` pass; returns what came. */
async function readWatch(res: Response, ms: number): Promise<string> {
  const rd = res.body!.getReader();
  let s = "";
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0 || s.includes("\n")) break;
    const x = await Promise.race([rd.read(), Bun.sleep(left).then(() => undefined)]);
    if (!x || x.done) break;
    s += new TextDecoder().decode(x.value);
  }
  await rd.cancel().catch(() => {});
  return s;
}

test("a watch resumed from a resourceVersion before 40 one-megabyte updates gets events or 410, not an empty 200", async () => {
  const c = await api.req("POST", "/api/v1/namespaces/default/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "skha-big" }, data: { a: "x" } });
  expect(c.status).toBe(201);
  const rv0 = c.json().metadata.resourceVersion;
  for (let i = 0; i < 40; i++) {
    const r = await api.req("PATCH", "/api/v1/namespaces/default/configmaps/skha-big", { data: { a: String.fromCharCode(97 + (i % 26)).repeat(1_000_000) } }, merge);
    expect(r.status).toBe(200);
  }
  const res = await fetch(`https://127.0.0.1:${api.port}/api/v1/configmaps?watch=1&resourceVersion=${rv0}`, { headers: { authorization: `Bearer ${TOKEN}` }, tls: { rejectUnauthorized: false } } as RequestInit);
  expect(res.status).toBe(200);
  const first = (await readWatch(res, 10_000)).split("\n")[0] ?? "";
  // observed: 200 with Content-Length: 0 and the stream closed, so an informer re-watches
  // from the same resourceVersion forever and never re-lists
  expect(first.length).toBeGreaterThan(0);
  const ev = JSON.parse(first);
  if (ev.type === "ERROR") expect(ev.object.code).toBe(410);
  else expect(ev.object.metadata.resourceVersion).toBe(String(Number(rv0) + 1));
}, 120_000);

test("250 two-megabyte updates of one object, nobody watching: the server's RSS stays bounded", async () => {
  const c = await api.req("POST", "/api/v1/namespaces/default/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "skha-churn" }, data: { a: "x" } });
  expect(c.status).toBe(201);
  const before = rssKiB();
  for (let i = 0; i < 250; i++) {
    const r = await api.req("PATCH", "/api/v1/namespaces/default/configmaps/skha-churn", { data: { a: String.fromCharCode(97 + (i % 26)).repeat(2_000_000) } }, merge);
    expect(r.status).toBe(200);
  }
  // one 2 MB object is stored; the history of 250 copies of it (500 MB) must not all be kept
  const grown = rssKiB() - before;
  expect(grown).toBeLessThan(256 * 1024);
}, 300_000);
