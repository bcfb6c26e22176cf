// An allocation corner where skein apiserver differs from kube-apiserver: a healthCheckNodePort
// on a Service that may not have one, already held by another Service.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("allocx");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir, ["--service-cidr", "10.96.0.0/28,fd00::/124", "--service-node-port-range", "30000-30004"]);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

const S = "/api/v1/namespaces/default/services";
const svc = (name: string, spec: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Service", metadata: { name }, spec: { ports: [{ port: 80 }], ...spec } });

test("a ClusterIP Service cannot take the healthCheckNodePort of a LoadBalancer (no port held twice)", async () => {
  const lb = await api.req("POST", S, svc("skha-lb", { type: "LoadBalancer", externalTrafficPolicy: "Local" }));
  expect(lb.status).toBe(201);
  const hc = lb.json().spec.healthCheckNodePort;
  expect(hc).toBeGreaterThanOrEqual(30000);
  const r = await api.req("POST", S, svc("skha-hc", { healthCheckNodePort: hc }));
  // kube-apiserver: 422, healthCheckNodePort only for type=LoadBalancer with externalTrafficPolicy=Local
  expect(r.status).toBe(422);
  const holders = (await api.req("GET", "/api/v1/services")).json().items.filter((s: any) => s.spec.healthCheckNodePort === hc || s.spec.ports.some((p: any) => p.nodePort === hc));
  expect(holders.map((s: any) => s.metadata.name)).toEqual(["skha-lb"]);
});
