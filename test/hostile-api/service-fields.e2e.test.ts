// Service fields the agent consumes must be validated as kube-apiserver validates them (422
// naming the field), and an ExternalName Service cannot hold a ClusterIP another Service has.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("svcf");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir, ["--service-cidr", "10.96.0.0/24"]);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

const svc = (name: string, spec: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Service", metadata: { name }, spec: { ports: [{ port: 80 }], ...spec } });

describe("invalid ports are refused with 422 naming the field", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["skha-p65536", { ports: [{ port: 65536 }] }, "spec.ports[0].port"],
    ["skha-p0", { ports: [{ port: 0 }] }, "spec.ports[0].port"],
    ["skha-pinf", { ports: [{ port: 1e400 }] }, "spec.ports[0].port"],
    ["skha-pstr", { ports: [{ port: "80" }] }, "port"],
    ["skha-proto", { ports: [{ port: 80, protocol: "FOO" }] }, "spec.ports[0].protocol"],
    ["skha-tneg", { ports: [{ port: 80, targetPort: -1 }] }, "spec.ports[0].targetPort"],
  ];
  for (const [name, spec, field] of cases) {
    test(`${name}: ${JSON.stringify(spec.ports)}`, async () => {
      // 1e400 must reach the server as written, not as JSON.stringify's null
      const body = JSON.stringify(svc(name, spec)).replace("null", "1e400");
      const r = await api.req("POST", "/api/v1/namespaces/default/services", body);
      expect([400, 422]).toContain(r.status);
      expect(r.text).toContain(field);
      expect((await api.req("GET", `/api/v1/namespaces/default/services/${name}`)).status).toBe(404);
    });
  }
});

test("an ExternalName Service asking for a ClusterIP in use is refused (no address held twice)", async () => {
  const a = await api.req("POST", "/api/v1/namespaces/default/services", svc("skha-holder", {}));
  expect(a.status).toBe(201);
  const ip = a.json().spec.clusterIP;
  const r = await api.req("POST", "/api/v1/namespaces/default/services", svc("skha-ext", { type: "ExternalName", externalName: "example.com", clusterIP: ip }));
  // kube-apiserver: spec.clusterIP may not be set for ExternalName services (422)
  expect(r.status).toBe(422);
  const list = (await api.req("GET", "/api/v1/services")).json();
  const holders = list.items.filter((s: any) => s.spec.clusterIP === ip).map((s: any) => s.metadata.name);
  expect(holders).toEqual(["skha-holder"]);
});
