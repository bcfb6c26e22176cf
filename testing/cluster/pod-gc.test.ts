import { afterAll, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../../agent/watch/kube.ts";
import { TestApiServer } from "../apiserver/server.ts";
import { waitFor } from "../../test/harness/index.ts";
import { orphans, PodGC } from "./pod-gc.ts";

const pod = (name: string, nodeName?: string, uid = name) => ({ metadata: { name, namespace: "default", uid }, spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: "c", image: "any" }] } });

test("orphans: pods bound to a missing node, with when it was first seen missing; the others forgotten", () => {
  const since = new Map<string, number>([["gone", 1]]);
  const got = orphans([pod("a", "n1"), pod("b", "ghost"), pod("c")], [{ metadata: { name: "n1" } }], since, 100);
  expect(got.map((p) => p.metadata!.name)).toEqual(["b"]);
  expect([...since]).toEqual([["b", 100]]);
  orphans([pod("b", "ghost")], [], since, 200);
  expect(since.get("b")).toBe(100);
});

const server = TestApiServer.start({ tokens: ["t"] });
const kc = new KubeConfig();
kc.loadFromString(server.kubeconfig());
const k = new KubeClient(kc);
const gc = new PodGC(k, () => {}, 300);
afterAll(async () => {
  await gc.stop();
  await server.stop();
});

test("a pod on a node that does not exist, or no longer does, is deleted after the quarantine; the others stay", async () => {
  await k.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" } } });
  await k.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n2" } } });
  for (const [name, node] of [["on-n1", "n1"], ["on-n2", "n2"], ["on-ghost", "ghost"], ["unbound", undefined]] as const) await k.request("POST", "/api/v1/namespaces/default/pods", { body: pod(name, node) });
  // a pod being deleted gracefully on a node with no kubelet to finish it
  await k.request("DELETE", "/api/v1/namespaces/default/pods/on-ghost");
  const names = async () => (await k.request<any>("GET", "/api/v1/namespaces/default/pods")).items.map((p: any) => p.metadata.name).sort();
  expect(await names()).toEqual(["on-ghost", "on-n1", "on-n2", "unbound"]);
  const t0 = Date.now();
  await gc.start();
  await waitFor("on-ghost collected", async () => !(await names()).includes("on-ghost"), 5000);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  await k.request("DELETE", "/api/v1/nodes/n2");
  await waitFor("on-n2 collected once n2 is gone", async () => (await names()).join() === "on-n1,unbound", 5000);
});
