// Deleting a Namespace must delete what is in it (kube-apiserver's namespace controller does),
// freeing the Services' ClusterIPs and NodePorts; a Namespace of the same name made later is empty.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { waitFor } from "../harness/index.ts";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("nsdel");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir, ["--service-node-port-range", "30000-30000"]);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

test("a deleted Namespace takes its Services, ConfigMaps and their node port with it", async () => {
  expect((await api.req("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "skha-ns" } })).status).toBe(201);
  const s = await api.req("POST", "/api/v1/namespaces/skha-ns/services", { apiVersion: "v1", kind: "Service", metadata: { name: "web" }, spec: { type: "NodePort", ports: [{ port: 80 }] } });
  expect(s.status).toBe(201);
  expect(s.json().spec.ports[0].nodePort).toBe(30000);
  expect((await api.req("POST", "/api/v1/namespaces/skha-ns/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm" } })).status).toBe(201);

  expect((await api.req("DELETE", "/api/v1/namespaces/skha-ns")).status).toBeLessThan(300);
  await waitFor("the Namespace gone", async () => (await api.req("GET", "/api/v1/namespaces/skha-ns")).status === 404, 10_000);
  // observed: the Service (with its ClusterIP and node port) and the ConfigMap stay, listed in
  // /api/v1/services under a namespace that no longer exists
  await waitFor(
    "its Services gone",
    async () => (await api.req("GET", "/api/v1/services")).json().items.every((x: any) => x.metadata.namespace !== "skha-ns"),
    10_000,
  );
  const cms = (await api.req("GET", "/api/v1/configmaps")).json().items.filter((x: any) => x.metadata.namespace === "skha-ns");
  expect(cms).toEqual([]);
  // the only node port is free again
  expect((await api.req("POST", "/api/v1/namespaces/default/services", { apiVersion: "v1", kind: "Service", metadata: { name: "again" }, spec: { type: "NodePort", ports: [{ port: 80 }] } })).status).toBe(201);
}, 60_000);
