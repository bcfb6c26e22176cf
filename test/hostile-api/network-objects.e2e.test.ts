// The objects skein's agent builds its datapath from (NetworkPolicy, EndpointSlice, Node, Pod
// status) are validated as kube-apiserver validates them: 422 naming the field, nothing stored.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Api, removeDir, skhaDir, startApi } from "./lib.ts";

const dir = skhaDir("netobj");
let api: Api;
beforeAll(async () => {
  api = await startApi(dir);
});
afterAll(async () => {
  await api.stop();
  removeDir(dir);
});

const NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";
const ES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const np = (name: string, spec: Record<string, unknown>) => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name }, spec: { podSelector: {}, ...spec } });
const es = (name: string, x: Record<string, unknown>) => ({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name }, addressType: "IPv4", endpoints: [], ...x });

const cases: [string, string, string, unknown, string][] = [
  ["NetworkPolicy ipBlock 10.0.0.0/33", NP, "skha-np1", np("skha-np1", { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] }), "cidr"],
  ["NetworkPolicy except outside cidr", NP, "skha-np2", np("skha-np2", { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/24", except: ["11.0.0.0/8"] } }] }] }), "except"],
  ["NetworkPolicy port 70000", NP, "skha-np3", np("skha-np3", { ingress: [{ ports: [{ port: 70000 }] }] }), "port"],
  ["NetworkPolicy endPort < port", NP, "skha-np4", np("skha-np4", { ingress: [{ ports: [{ port: 100, endPort: 50 }] }] }), "endPort"],
  ["NetworkPolicy protocol ICMP", NP, "skha-np5", np("skha-np5", { ingress: [{ ports: [{ protocol: "ICMP", port: 1 }] }] }), "protocol"],
  ["NetworkPolicy policyTypes Sideways", NP, "skha-np6", np("skha-np6", { policyTypes: ["Sideways"] }), "policyTypes"],
  ["NetworkPolicy selector operator Frob", NP, "skha-np7", np("skha-np7", { podSelector: { matchExpressions: [{ key: "a", operator: "Frob", values: ["x"] }] } }), "operator"],
  ["EndpointSlice address 999.1.1.1", ES, "skha-es1", es("skha-es1", { endpoints: [{ addresses: ["999.1.1.1"] }] }), "addresses"],
  ["EndpointSlice IPv6 address in an IPv4 slice", ES, "skha-es2", es("skha-es2", { endpoints: [{ addresses: ["fd00::1"] }] }), "addresses"],
  ["EndpointSlice addressType Frob", ES, "skha-es3", es("skha-es3", { addressType: "Frob" }), "addressType"],
  ["EndpointSlice port 70000", ES, "skha-es4", es("skha-es4", { ports: [{ port: 70000 }] }), "port"],
  ["Node podCIDRs 10.0.0.0/99", "/api/v1/nodes", "skha-n1", { apiVersion: "v1", kind: "Node", metadata: { name: "skha-n1" }, spec: { podCIDR: "10.0.0.0/99", podCIDRs: ["10.0.0.0/99"] } }, "podCIDR"],
];

describe("invalid network objects are refused", () => {
  for (const [what, path, name, body, field] of cases) {
    test(what, async () => {
      const r = await api.req("POST", path, body);
      // observed for every case: 201, stored as sent
      expect(r.status).toBe(422);
      expect(r.text).toContain(field);
      expect((await api.req("GET", `${path}/${name}`)).status).toBe(404);
    });
  }
});
