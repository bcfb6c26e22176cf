// Smaller gaps between skein apiserver and what a user of kube-apiserver and kubectl expects.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { SKEIN } from "../harness/index.ts";
import { type Api, TOKEN, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("misc");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

test("--listen with a port out of range exits with a message naming it (observed: exit 2, silent)", async () => {
  const d = skhaDir("misc-port");
  try {
    const p = Bun.spawn([SKEIN, "apiserver", "--dir", d, "--listen", "127.0.0.1:99999", "--token", TOKEN], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code).not.toBe(0);
    expect(out + err).toContain("99999");
  } finally {
    removeDir(d);
  }
}, 30_000);

test("discovery puts pods and services in the category `all`, so `kubectl get all` works", async () => {
  const v1 = (await api.req("GET", "/api/v1")).json();
  const cats = Object.fromEntries(v1.resources.map((r: any) => [r.name, r.categories ?? []]));
  expect(cats.pods).toContain("all");
  expect(cats.services).toContain("all");
});
