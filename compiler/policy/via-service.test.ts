import { expect, test } from "bun:test";
import { compilePolicy } from "./reference.ts";
import { serviceSource, viaServiceIdentities, withServiceSources } from "./via-service.ts";
import { VIA_SERVICE, type PolicyState } from "./types.ts";

test("a pod CIDR's Service source is its first host address", () => {
  expect(serviceSource("10.244.1.0/24")).toEqual({ family: 4, ip: "10.244.1.1" });
  expect(serviceSource("10.244.0.0/16")).toEqual({ family: 4, ip: "10.244.0.1" });
  expect(serviceSource("fd00:10:244:3::/64")).toEqual({ family: 6, ip: "fd00:10:244:3::1" });
});

const ns = (name: string, isolation = false) => ({ name, labels: { "kubernetes.io/metadata.name": name }, isolation });
const pod = (namespace: string, name: string, ip: string, labels: Record<string, string>, nodeName = "n2") => ({ namespace, name, nodeName, ips: [ip], labels, ports: [] });

test("identities a viaService policy selects, on every node; every node's source as VIA_SERVICE, this node's apart", () => {
  const state: PolicyState = {
    namespaces: [ns("iso", true), ns("open")],
    pods: [
      pod("iso", "a", "10.244.2.5", { role: "db" }),
      pod("iso", "b", "10.244.2.6", { "skein.io/app": "shop" }),
      pod("open", "c", "10.244.1.7", { "skein.io/app": "blog" }, "n1"),
      pod("open", "d", "10.244.1.8", { role: "db" }, "n1"),
      // another CNI handed out a node's first address: it stays the pod's
      pod("open", "e", "10.244.3.1", { role: "x" }),
    ],
    policies: [],
  };
  const t = compilePolicy(state, { nodeName: "n1", podCIDRs: ["10.244.1.0/24"], maxIdentity: 1000 });
  const id = (ip: string) => t.pods.find((p) => p.ip === ip)!.id;
  // a (namespace isolation), b (app isolation), c (app isolation); not d, not e
  expect(viaServiceIdentities(t).sort()).toEqual([id("10.244.2.5"), id("10.244.2.6"), id("10.244.1.7")].sort());
  const w = withServiceSources(t, [{ name: "n1", podCIDRs: ["10.244.1.0/24", "fd00:1::/64"] }, { name: "n2", podCIDRs: ["10.244.2.0/24"] }, { name: "n3", podCIDRs: ["10.244.3.0/24"] }], "n1");
  expect(w.serviceSources).toEqual([
    { family: 4, ip: "10.244.1.1", id: VIA_SERVICE },
    { family: 4, ip: "10.244.2.1", id: VIA_SERVICE },
    { family: 6, ip: "fd00:1::1", id: VIA_SERVICE },
  ]);
  expect(w.serviceSource).toEqual({ 4: "10.244.1.1", 6: "fd00:1::1" });
  // with no isolation mode there is nothing to carry
  expect(viaServiceIdentities(compilePolicy({ ...state, namespaces: [ns("iso"), ns("open")], pods: state.pods.map((p) => ({ ...p, labels: { role: "x" } })) }, { nodeName: "n1", podCIDRs: [], maxIdentity: 1000 }))).toEqual([]);
});
