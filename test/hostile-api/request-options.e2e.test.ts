// Request options and server-owned fields: `kubectl --dry-run=server` must not change anything,
// and a client cannot set metadata.deletionTimestamp (kube-apiserver keeps the old value).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("opts");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

const S = "/api/v1/namespaces/default/services";
const svc = (name: string) => ({ apiVersion: "v1", kind: "Service", metadata: { name }, spec: { ports: [{ port: 80 }] } });

test("POST ?dryRun=All answers but stores nothing (observed: the Service is created, with an address)", async () => {
  const r = await api.req("POST", `${S}?dryRun=All`, svc("skha-dry"));
  expect(r.status).toBe(201);
  expect((await api.req("GET", `${S}/skha-dry`)).status).toBe(404);
});

test("PATCH/DELETE ?dryRun=All change nothing", async () => {
  expect((await api.req("POST", S, svc("skha-dry2"))).status).toBe(201);
  const before = (await api.req("GET", `${S}/skha-dry2`)).json();
  await api.req("PATCH", `${S}/skha-dry2?dryRun=All`, { metadata: { labels: { a: "b" } } }, { "content-type": "application/merge-patch+json" });
  await api.req("DELETE", `${S}/skha-dry2?dryRun=All`);
  const after = await api.req("GET", `${S}/skha-dry2`);
  expect(after.status).toBe(200);
  expect(after.json().metadata).toEqual(before.metadata);
});

test("a merge patch cannot set metadata.deletionTimestamp", async () => {
  expect((await api.req("POST", S, svc("skha-dts"))).status).toBe(201);
  await api.req("PATCH", `${S}/skha-dts`, { metadata: { deletionTimestamp: "2020-01-01T00:00:00Z" } }, { "content-type": "application/merge-patch+json" });
  const g = (await api.req("GET", `${S}/skha-dts`)).json();
  expect(g.metadata.deletionTimestamp).toBeUndefined();
});
