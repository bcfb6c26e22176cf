// An object the server answered 201 for survives the server being killed right after (kill -9),
// as with kube-apiserver on etcd; and the state it restarts from is whole.
import { afterAll, expect, test } from "bun:test";
import { removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("dur");
afterAll(() => removeDir(dir));

test("50 acknowledged creates, then SIGKILL: all 50 are there after a restart", async () => {
  let api = await startApi(dir);
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => api.req("POST", "/api/v1/namespaces/default/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `skha-d${i}` }, data: { a: "x" } })));
  expect(rs.map((r) => r.status)).toEqual(Array(50).fill(201));
  api.proc.kill("SIGKILL");
  await api.proc.exited;
  api = await startApi(dir, [], api.port);
  try {
    const names = (await api.req("GET", "/api/v1/namespaces/default/configmaps")).json().items.map((c: any) => c.metadata.name);
    // observed: none of the 50 (the save waits about a second after the last write)
    expect(names.filter((n: string) => n.startsWith("skha-d")).length).toBe(50);
  } finally {
    await api.stop();
  }
}, 60_000);
