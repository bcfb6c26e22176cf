import { describe, expect, test } from "bun:test";
import { clusterStateFrom } from "../state.ts";
import { compile } from "./compile.ts";
import { targetBackends, type Tables } from "../tables.ts";

const opts = { nodeName: "n1", nodeIPs: ["198.18.0.1"], ringFactor: 25 };
const svc = (name: string, spec: Record<string, unknown>) => ({ kind: "Service", metadata: { name, namespace: "default" }, spec });
const slice = (name: string, service: string, ports: unknown[], endpoints: unknown[]) => ({
  kind: "EndpointSlice",
  metadata: { name, namespace: "default", labels: { "kubernetes.io/service-name": service } },
  addressType: "IPv4",
  ports,
  endpoints,
});
const ep = (ip: string, nodeName = "n1", conditions: Record<string, boolean> = { ready: true }) => ({ addresses: [ip], nodeName, conditions });
const tablesOf = (objects: unknown[]) => {
  const { state, errors } = clusterStateFrom(objects);
  expect(errors).toEqual([]);
  return compile(state, opts);
};
const show = (t: Tables) => ({ frontends: t.frontends, targets: t.targets.map((x) => ({ ...x, ring: [...x.ring] })) });

const objects = [
  svc("web", { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }] }),
  slice("web-a", "web", [{ name: "http", port: 8080 }], [ep("10.244.1.2"), ep("10.244.1.3", "n2")]),
  slice("web-b", "web", [{ name: "http", port: 9090 }], [ep("10.244.1.4")]),
  svc("dns", { clusterIP: "10.96.0.53", ports: [{ name: "dns", port: 53, protocol: "UDP" }] }),
  slice("dns-a", "dns", [{ name: "dns", port: 53, protocol: "UDP" }], [ep("10.244.1.9", "n1", { ready: false, serving: true, terminating: true })]),
  svc("empty", { clusterIP: "10.96.0.99", ports: [{ port: 80 }] }),
  svc("np", { type: "NodePort", clusterIP: "10.96.0.30", externalTrafficPolicy: "Local", ports: [{ port: 80, nodePort: 30080 }] }),
  slice("np-a", "np", [{ port: 80 }], [ep("10.244.1.5"), ep("10.244.2.5", "n2")]),
];

describe("compile (reference)", () => {
  const t = tablesOf(objects);
  const target = (svcName: string, scope = "internal") => t.targets.find((x) => x.service.startsWith(`default/${svcName}:`) && x.scope === scope)!;

  test("named target ports resolve per slice", () => {
    expect(targetBackends(target("web"))).toEqual([
      { ip: "10.244.1.2", port: 8080 },
      { ip: "10.244.1.3", port: 8080 },
      { ip: "10.244.1.4", port: 9090 },
    ]);
    expect(target("web").ringSize).toBe(79); // smallest prime ≥ 25 × 3
  });

  test("serving+terminating endpoints are used only when none is ready", () => {
    expect(targetBackends(target("dns"))).toEqual([{ ip: "10.244.1.9", port: 53 }]);
  });

  test("a service without endpoints gets an empty target (the datapath rejects)", () => {
    expect(targetBackends(target("empty"))).toEqual([]);
    expect(target("empty").ringSize).toBe(0);
  });

  test("externalTrafficPolicy Local: the NodePort serves node-local backends, the ClusterIP all", () => {
    expect(targetBackends(target("np", "internal")).map((b) => b.ip)).toEqual(["10.244.1.5", "10.244.2.5"]);
    expect(targetBackends(target("np", "external")).map((b) => b.ip)).toEqual(["10.244.1.5"]);
    const fe = t.frontends.filter((f) => f.port === 30080);
    expect(fe).toEqual([{ family: 4, ip: "198.18.0.1", protocol: "TCP", port: 30080, kind: "nodeport", target: target("np", "external").id, masquerade: false }]);
  });

  test("the same state in any order compiles to the same tables", () => {
    const reversed = tablesOf([...objects].reverse());
    expect(show(reversed)).toEqual(show(t));
  });
});

describe("target ids", () => {
  test("a target keeps its id when other services come and go", () => {
    const first = tablesOf(objects);
    const fewer = objects.filter((o) => !JSON.stringify(o).includes('"web'));
    const { state } = clusterStateFrom([...fewer, svc("new", { clusterIP: "10.96.0.77", ports: [{ port: 80 }] })]);
    const second = compile(state, { ...opts, previous: first });
    for (const t of second.targets) {
      const old = first.targets.find((x) => x.service === t.service && x.scope === t.scope);
      if (old) expect(t.id).toBe(old.id);
    }
    const ids = second.targets.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    // the new service never takes an id freed by the same change (a delta would repoint a
    // live id at other backends); the smallest id unused by both compiles
    const freed = first.targets.filter((t) => t.service.startsWith("default/web")).map((t) => t.id);
    const newId = second.targets.find((t) => t.service.startsWith("default/new"))!.id;
    expect(freed).not.toContain(newId);
    expect(newId).toBe(Math.max(...first.targets.map((t) => t.id)) + 1);
    // one compile later, freed ids are free again
    const third = compile(clusterStateFrom([...fewer, svc("new", { clusterIP: "10.96.0.77", ports: [{ port: 80 }] }), svc("later", { clusterIP: "10.96.0.78", ports: [{ port: 80 }] })]).state, { ...opts, previous: second });
    expect(third.targets.find((t) => t.service.startsWith("default/later"))!.id).toBe(Math.min(...freed));
  });
});
