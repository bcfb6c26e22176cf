// Smaller gaps between skein apiserver and what a user of kube-apiserver and kubectl expects.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("misc");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

test("discovery puts pods and services in the category `all`, so `kubectl get all` works", async () => {
  const v1 = (await api.req("GET", "/api/v1")).json();
  const cats = Object.fromEntries(v1.resources.map((r: any) => [r.name, r.categories ?? []]));
  expect(cats.pods).toContain("all");
  expect(cats.services).toContain("all");
});
