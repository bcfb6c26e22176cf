// The Service registry's allocation, through a Store as the server uses it: defaults, IP
// families, ClusterIPs and NodePorts taken, refused, released and rebuilt after a restart.
import { describe, expect, test } from "bun:test";
import { newStore } from "./server.ts";
import { attachServiceAllocator, parsePortRange, parseServiceCidrs, ServiceAllocator } from "./services.ts";
import { Store } from "./store.ts";
import { apiErrorOf } from "./errors.ts";
import type { KubeObject } from "./resources.ts";

function setup(cidrs = "10.96.0.0/12", ports = "30000-32767") {
  const store = newStore();
  attachServiceAllocator(store, { serviceCIDRs: parseServiceCidrs(cidrs), nodePorts: parsePortRange(ports) });
  const t = store.type("", "services")!;
  const create = (name: string, spec: Record<string, unknown>) => store.create(t, "default", { metadata: { name }, spec }).spec as Record<string, any>;
  const update = (name: string, spec: Record<string, unknown>) => store.update(t, "default", name, { metadata: { name }, spec }).spec as Record<string, any>;
  const patch = (name: string, f: (s: Record<string, any>) => void) => {
    const cur = structuredClone(store.get(t, "default", name));
    f(cur.spec as Record<string, any>);
    return store.update(t, "default", name, cur).spec as Record<string, any>;
  };
  const del = (name: string) => store.delete(t, "default", name);
  return { store, t, create, update, patch, del };
}
const inRange = (ip: string, prefix: string) => ip.startsWith(prefix);
const port = (n: number, extra: object = {}) => ({ port: n, ...extra });

describe("defaults and families", () => {
  test("a Service without clusterIP gets one from the range, with the v1 defaults", () => {
    const { create } = setup();
    const s = create("web", { ports: [port(80)] });
    expect(s.clusterIP).toMatch(/^10\.(9[6-9]|10[0-9]|11[01])\./);
    expect(s.clusterIPs).toEqual([s.clusterIP]);
    expect(s).toMatchObject({ type: "ClusterIP", sessionAffinity: "None", internalTrafficPolicy: "Cluster", ipFamilies: ["IPv4"], ipFamilyPolicy: "SingleStack", ports: [{ port: 80, protocol: "TCP", targetPort: 80 }] });
    expect(s.externalTrafficPolicy).toBeUndefined();
    // the network address, the broadcast and the low band kept for requests are not handed out
    const n = s.clusterIP.split(".").map(Number);
    expect(((n[1] - 96) << 16) + (n[2] << 8) + n[3]).toBeGreaterThanOrEqual(256);
  });

  test("headless stays headless; without a selector it asks for both families", () => {
    const { create } = setup("10.96.0.0/16,fd00:10:96::/112");
    expect(create("h", { clusterIP: "None", selector: { app: "a" } })).toMatchObject({ clusterIP: "None", clusterIPs: ["None"], ipFamilies: ["IPv4"], ipFamilyPolicy: "SingleStack" });
    expect(create("h2", { clusterIP: "None" })).toMatchObject({ clusterIPs: ["None"], ipFamilies: ["IPv4", "IPv6"], ipFamilyPolicy: "RequireDualStack" });
    expect(apiErrorOf(() => create("np", { type: "NodePort", clusterIP: "None", ports: [port(80)] })).message).toContain("may not be set to 'None' for NodePort services");
  });

  test("ipFamilyPolicy on a dual-stack cluster: PreferDualStack and RequireDualStack get both, IPv6 first when asked", () => {
    const { create } = setup("10.96.0.0/16,fd00:10:96::/112");
    const p = create("p", { ipFamilyPolicy: "PreferDualStack", ports: [port(80)] });
    expect(p.ipFamilies).toEqual(["IPv4", "IPv6"]);
    expect(p.clusterIPs[0]).toMatch(/^10\.96\./);
    expect(p.clusterIPs[1]).toMatch(/^fd00:10:96::/);
    const r = create("r", { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv6"], ports: [port(80)] });
    expect(r.ipFamilies).toEqual(["IPv6", "IPv4"]);
    expect(r.clusterIP).toBe(r.clusterIPs[0]);
    expect(r.clusterIP).toMatch(/^fd00:10:96::/);
    expect(create("s", { ipFamilies: ["IPv6"], ports: [port(80)] })).toMatchObject({ ipFamilies: ["IPv6"], ipFamilyPolicy: "SingleStack" });
    // a requested address names its family
    expect(create("v6", { clusterIP: "fd00:10:96::aa", ports: [port(80)] })).toMatchObject({ clusterIPs: ["fd00:10:96::aa"], ipFamilies: ["IPv6"] });
    expect(apiErrorOf(() => create("two", { ipFamilies: ["IPv4", "IPv6"], ports: [port(80)] })).message).toContain("must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified");
  });

  test("single-stack cluster: RequireDualStack and an unconfigured family are refused; PreferDualStack gets one", () => {
    const { create } = setup();
    expect(apiErrorOf(() => create("r", { ipFamilyPolicy: "RequireDualStack", ports: [port(80)] })).message).toBe(
      'Service "r" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
    );
    expect(apiErrorOf(() => create("f", { ipFamilies: ["IPv6"], ports: [port(80)] })).message).toContain('spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster');
    expect(create("p", { ipFamilyPolicy: "PreferDualStack", ports: [port(80)] }).ipFamilies).toEqual(["IPv4"]);
    expect(apiErrorOf(() => create("bad", { ipFamilyPolicy: "Both", ports: [port(80)] })).message).toContain('spec.ipFamilyPolicy: Unsupported value: "Both"');
  });
});

describe("ClusterIP allocation", () => {
  test("a requested address must be in the range and free; none is given twice", () => {
    const { create, del } = setup("10.96.0.0/24");
    expect(create("a", { clusterIP: "10.96.0.10", ports: [port(80)] }).clusterIP).toBe("10.96.0.10");
    const taken = apiErrorOf(() => create("b", { clusterIP: "10.96.0.10", ports: [port(80)] }));
    expect(taken.code).toBe(422);
    expect(taken.message).toBe('Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: provided IP is already allocated');
    expect(apiErrorOf(() => create("c", { clusterIP: "10.97.0.1", ports: [port(80)] })).message).toBe(
      'Service "c" is invalid: spec.clusterIPs: Invalid value: []string{"10.97.0.1"}: failed to allocate IP 10.97.0.1: the provided IP (10.97.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/24',
    );
    // the network and broadcast addresses are not in the valid range
    for (const ip of ["10.96.0.0", "10.96.0.255"]) expect(apiErrorOf(() => create("d", { clusterIP: ip, ports: [port(80)] })).message).toContain("is not in the valid range");
    expect(apiErrorOf(() => create("e", { clusterIP: "010.96.0.1", ports: [port(80)] })).message).toContain("spec.clusterIPs[0]: Invalid value");
    // 253 usable addresses, one taken: the rest are handed out once each, then the range is full
    const seen = new Set(["10.96.0.10"]);
    for (let i = 0; i < 253; i++) seen.add(create(`s${i}`, { ports: [port(80)] }).clusterIP);
    expect(seen.size).toBe(254);
    expect(apiErrorOf(() => create("full", { ports: [port(80)] })).code).toBe(500);
    del("a");
    expect(create("again", { clusterIP: "10.96.0.10", ports: [port(80)] }).clusterIP).toBe("10.96.0.10");
  });

  test("a refused create takes nothing: its cluster IP stays free", () => {
    const { create } = setup();
    create("np", { type: "NodePort", ports: [port(80, { nodePort: 30080 })] });
    expect(apiErrorOf(() => create("x", { type: "NodePort", clusterIP: "10.96.0.50", ports: [port(80, { nodePort: 30080 })] })).message).toContain("provided port is already allocated");
    expect(create("y", { clusterIP: "10.96.0.50", ports: [port(80)] }).clusterIP).toBe("10.96.0.50");
  });

  test("clusterIP is immutable; an update that leaves it out keeps it", () => {
    const { create, update, patch } = setup();
    const ip = create("a", { ports: [port(80)] }).clusterIP;
    expect(apiErrorOf(() => patch("a", (s) => ((s.clusterIP = "10.96.0.77"), (s.clusterIPs = ["10.96.0.77"])))).message).toBe(
      'Service "a" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.77"}: may not change once set',
    );
    expect(apiErrorOf(() => patch("a", (s) => (s.clusterIP = "None"))).message).toContain("may not change once set");
    const s = update("a", { ports: [port(81)] });
    expect(s.clusterIP).toBe(ip);
    expect(s.clusterIPs).toEqual([ip]);
    // 10.96.0.77 was not taken by the refused update
    expect(create("b", { clusterIP: "10.96.0.77", ports: [port(80)] }).clusterIP).toBe("10.96.0.77");
  });

  test("upgrade to dual-stack takes a second address; downgrade releases it", () => {
    const { create, patch } = setup("10.96.0.0/16,fd00:10:96::/112");
    create("a", { ports: [port(80)] });
    const up = patch("a", (s) => (delete s.ipFamilies, (s.ipFamilyPolicy = "RequireDualStack")));
    expect(up.ipFamilies).toEqual(["IPv4", "IPv6"]);
    const v6 = up.clusterIPs[1];
    expect(apiErrorOf(() => create("b", { clusterIP: v6, ports: [port(80)] })).message).toContain("provided IP is already allocated");
    const down = patch("a", (s) => (s.ipFamilyPolicy = "SingleStack"));
    expect(down.clusterIPs).toHaveLength(1);
    expect(down.ipFamilies).toEqual(["IPv4"]);
    expect(create("b", { clusterIP: v6, ports: [port(80)] }).clusterIP).toBe(v6);
  });

  test("ExternalName gets no address; changing to ClusterIP allocates one, back releases it", () => {
    const { create, patch, update } = setup("10.96.0.0/24");
    expect(create("x", { type: "ExternalName", externalName: "example.com" }).clusterIP).toBeUndefined();
    const s = update("x", { type: "ClusterIP", clusterIP: "10.96.0.9", ports: [port(80)] });
    expect(s.clusterIPs).toEqual(["10.96.0.9"]);
    const back = patch("x", (s) => Object.assign(s, { type: "ExternalName", externalName: "example.com" }));
    expect(back.clusterIP).toBeUndefined();
    expect(create("y", { clusterIP: "10.96.0.9", ports: [port(80)] }).clusterIP).toBe("10.96.0.9");
  });
});

describe("NodePort allocation", () => {
  test("NodePort and LoadBalancer ports get node ports in range; a requested one is checked", () => {
    const { create } = setup();
    const s = create("np", { type: "NodePort", ports: [port(80, { name: "http" }), port(443, { name: "https" })] });
    for (const p of s.ports) expect(p.nodePort).toBeGreaterThanOrEqual(30000), expect(p.nodePort).toBeLessThanOrEqual(32767);
    expect(s.ports[0].nodePort).not.toBe(s.ports[1].nodePort);
    expect(s.externalTrafficPolicy).toBe("Cluster");
    expect(create("lb", { type: "LoadBalancer", ports: [port(80)] }).ports[0].nodePort).toBeGreaterThanOrEqual(30000);
    expect(create("req", { type: "NodePort", ports: [port(80, { nodePort: 30080 })] }).ports[0].nodePort).toBe(30080);
    expect(apiErrorOf(() => create("dup", { type: "NodePort", ports: [port(80, { nodePort: 30080 })] })).message).toBe(
      'Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated',
    );
    expect(apiErrorOf(() => create("low", { type: "NodePort", ports: [port(80, { nodePort: 8080 })] })).message).toBe(
      'Service "low" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767',
    );
    expect(apiErrorOf(() => create("ci", { ports: [port(80, { nodePort: 30081 })] })).message).toContain("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'");
    expect(apiErrorOf(() => create("names", { type: "NodePort", ports: [port(80, { name: "x" }), port(81, { name: "x" }), port(82)] })).message).toBe(
      'Service "names" is invalid: [spec.ports[1].name: Duplicate value: "x", spec.ports[2].name: Required value]',
    );
    // one port number on two protocols shares its node port
    const dns = create("dns", { type: "NodePort", ports: [port(53, { name: "u", protocol: "UDP" }), port(53, { name: "t" })] });
    expect(dns.ports[0].nodePort).toBe(dns.ports[1].nodePort);
    // a LoadBalancer that asks for no node ports gets none; health check port with Local
    expect(create("lb2", { type: "LoadBalancer", allocateLoadBalancerNodePorts: false, ports: [port(80)] }).ports[0].nodePort).toBeUndefined();
    expect(create("lb3", { type: "LoadBalancer", externalTrafficPolicy: "Local", ports: [port(80)] }).healthCheckNodePort).toBeGreaterThanOrEqual(30000);
  });

  test("a range of three ports is handed out once each; NodePort to ClusterIP frees them; delete frees them", () => {
    const { create, patch, del } = setup("10.96.0.0/24", "30000-30002");
    const a = create("a", { type: "NodePort", ports: [port(80, { name: "a" }), port(81, { name: "b" })] });
    const b = create("b", { type: "NodePort", ports: [port(80)] });
    expect(new Set([...a.ports, ...b.ports].map((p: { nodePort: number }) => p.nodePort))).toEqual(new Set([30000, 30001, 30002]));
    expect(apiErrorOf(() => create("c", { type: "NodePort", ports: [port(80)] })).message).toContain("failed to allocate a nodePort");
    const ci = patch("a", (s) => (s.type = "ClusterIP"));
    expect(ci.ports.map((p: { nodePort?: number }) => p.nodePort)).toEqual([undefined, undefined]);
    expect(ci.externalTrafficPolicy).toBeUndefined();
    const c = create("c", { type: "NodePort", ports: [port(80, { name: "a", nodePort: a.ports[0].nodePort }), port(81, { name: "b", nodePort: a.ports[1].nodePort })] });
    expect(c.ports.map((p: { nodePort: number }) => p.nodePort)).toEqual(a.ports.map((p: { nodePort: number }) => p.nodePort));
    del("b");
    expect(create("d", { type: "NodePort", ports: [port(80, { nodePort: b.ports[0].nodePort })] }).ports[0].nodePort).toBe(b.ports[0].nodePort);
    // back to NodePort: the range is full again, so the change is refused and takes nothing
    expect(apiErrorOf(() => patch("a", (s) => (s.type = "NodePort"))).message).toContain("failed to allocate a nodePort");
    del("d");
    const np = patch("a", (s) => ((s.type = "LoadBalancer"), (s.ports = [s.ports[0]])));
    expect(np.ports[0].nodePort).toBe(b.ports[0].nodePort);
    expect(np).toMatchObject({ externalTrafficPolicy: "Cluster", allocateLoadBalancerNodePorts: true });
  });

  test("an update keeps node ports it leaves out (by port name) and releases ones it drops", () => {
    const { create, update } = setup("10.96.0.0/24", "30000-30002");
    const a = create("a", { type: "NodePort", ports: [port(80, { name: "http" }), port(443, { name: "https" })] });
    const kept = update("a", { type: "NodePort", ports: [port(8080, { name: "http" })] });
    expect(kept.ports[0].nodePort).toBe(a.ports[0].nodePort);
    // a port added without a node port gets a new one, not the one an old port of its name had
    const two = update("a", { type: "NodePort", ports: [port(8080, { name: "http" }), port(9090, { name: "metrics" })] });
    expect(two.ports[0].nodePort).toBe(a.ports[0].nodePort);
    expect(two.ports[1].nodePort).not.toBe(a.ports[0].nodePort);
    update("a", { type: "NodePort", ports: [port(8080, { name: "http" })] });
    expect(create("b", { type: "NodePort", ports: [port(80, { nodePort: a.ports[1].nodePort })] }).ports[0].nodePort).toBe(a.ports[1].nodePort);
  });
});

describe("restart", () => {
  test("a store restored from a snapshot rebuilds the allocation from its Services", () => {
    const { store, create } = setup("10.96.0.0/24");
    const ip = create("a", { ports: [port(80)] }).clusterIP;
    const n = create("n", { type: "NodePort", ports: [port(80)] });
    const np = n.ports[0].nodePort;
    const snap = store.snapshot();
    const again = new Store(store.allTypes(), undefined, snap);
    expect(attachServiceAllocator(again, { serviceCIDRs: parseServiceCidrs("10.96.0.0/24") })).toEqual([]);
    const t = again.type("", "services")!;
    const mk = (name: string, spec: object) => again.create(t, "default", { metadata: { name }, spec } as KubeObject);
    expect(apiErrorOf(() => mk("b", { clusterIP: ip, ports: [port(80)] })).message).toContain("provided IP is already allocated");
    expect(apiErrorOf(() => mk("c", { type: "NodePort", ports: [port(80, { nodePort: np })] })).message).toContain("provided port is already allocated");
    // a service outside the (changed) range is reported, not changed
    const other = new Store(store.allTypes(), undefined, snap);
    expect(attachServiceAllocator(other, { serviceCIDRs: parseServiceCidrs("10.100.0.0/24") })).toEqual([`Service default/a: clusterIP ${ip} is not in the service CIDRs`, `Service default/n: clusterIP ${n.clusterIP} is not in the service CIDRs`]);
  });
});

describe("flags", () => {
  test("--service-cidr: one or two CIDRs of different families; --service-node-port-range: low-high", () => {
    expect(parseServiceCidrs("10.96.0.0/12,fd00:10:96::/112").map((c) => c.family)).toEqual([4, 6]);
    expect(() => parseServiceCidrs("10.96.0.0/12,10.100.0.0/16")).toThrow("different IP families");
    expect(() => parseServiceCidrs("10.96.0.1/12")).toThrow("host bits");
    expect(() => parseServiceCidrs("a,b,c")).toThrow("at most two");
    expect(() => parseServiceCidrs("10.96.0.0/31")).toThrow("no address");
    expect(parsePortRange("30000-32767")).toEqual({ lo: 30000, hi: 32767 });
    for (const bad of ["30000", "5-4", "0-10", "1-70000", " 1-2"]) expect(() => parsePortRange(bad)).toThrow("not a range");
  });

  test("IPv6 ranges: at most 65535 addresses handed out, canonical text", () => {
    const a = new ServiceAllocator({ serviceCIDRs: parseServiceCidrs("fd00::/64"), nodePorts: parsePortRange("30000-30001"), random: () => 0.999999 });
    const o: KubeObject = { metadata: { name: "x" }, spec: { ports: [port(80)] } };
    a.create(o);
    expect((o.spec as { clusterIP: string }).clusterIP).toBe("fd00::ffff");
    expect(() => a.create({ metadata: { name: "y" }, spec: { clusterIP: "fd00::1:0", ports: [port(80)] } })).toThrow("not in the valid range");
  });
});

describe("Services stored before allocation", () => {
  test("one with clusterIP alone (no clusterIPs, no families): held after a restart, updated as single-stack, freed on delete", () => {
    const store = newStore();
    const t = store.type("", "services")!;
    const legacy = (name: string, ip: string) => ({ type: t, object: { kind: "Service", metadata: { name, namespace: "default", resourceVersion: "9", uid: name }, spec: { clusterIP: ip, ports: [{ port: 80 }] } } as KubeObject });
    const again = new Store(store.allTypes(), undefined, { rev: 9, objects: [...store.snapshot().objects, legacy("old", "10.96.0.13"), legacy("old2", "10.96.0.14")] });
    expect(attachServiceAllocator(again, { serviceCIDRs: parseServiceCidrs("10.96.0.0/24") })).toEqual([]);
    const mk = (name: string) => again.create(t, "default", { metadata: { name }, spec: { clusterIP: "10.96.0.13", ports: [{ port: 80 }] } });
    expect(apiErrorOf(() => mk("x")).message).toContain("provided IP is already allocated");
    const u = again.update(t, "default", "old", { metadata: { name: "old" }, spec: { clusterIP: "10.96.0.13", ports: [{ port: 81 }] } }).spec as Record<string, unknown>;
    expect(u).toMatchObject({ clusterIP: "10.96.0.13", clusterIPs: ["10.96.0.13"], ipFamilies: ["IPv4"], ipFamilyPolicy: "SingleStack" });
    again.delete(t, "default", "old");
    expect((mk("x").spec as { clusterIP: string }).clusterIP).toBe("10.96.0.13");
    const mk2 = () => again.create(t, "default", { metadata: { name: "y" }, spec: { clusterIP: "10.96.0.14", ports: [{ port: 80 }] } });
    expect(apiErrorOf(mk2).message).toContain("provided IP is already allocated");
    again.delete(t, "default", "old2");
    expect((mk2().spec as { clusterIP: string }).clusterIP).toBe("10.96.0.14");
  });
});

// ValidateService's field rules, after the defaults, as kube-apiserver runs them: 422 naming
// the field, and nothing stored or allocated.
describe("Service fields", () => {
  const causes = (f: () => unknown) => (apiErrorOf(f).details!.causes as Array<{ field: string }>).map((c) => c.field);

  test.each([
    ["port 65536", { ports: [port(65536)] }, ["spec.ports[0].port"]],
    ["port 0", { ports: [port(0)] }, ["spec.ports[0].port"]],
    ["port Infinity (1e400 in the body)", { ports: [port(Infinity)] }, ["spec.ports[0].port"]],
    ["port 1.5", { ports: [port(1.5)] }, ["spec.ports[0].port"]],
    ['port "80"', { ports: [{ port: "80" }] }, ["spec.ports[0].port"]],
    ["protocol FOO", { ports: [port(80, { protocol: "FOO" })] }, ["spec.ports[0].protocol"]],
    ["targetPort -1", { ports: [port(80, { targetPort: -1 })] }, ["spec.ports[0].targetPort"]],
    ["targetPort 65536", { ports: [port(80, { targetPort: 65536 })] }, ["spec.ports[0].targetPort"]],
    ['targetPort "Web"', { ports: [port(80, { targetPort: "Web" })] }, ["spec.ports[0].targetPort"]],
    ["no ports", {}, ["spec.ports"]],
    ["empty ports", { ports: [] }, ["spec.ports"]],
    ["a NodePort Service without ports", { type: "NodePort" }, ["spec.ports"]],
    ["one port and protocol twice", { ports: [port(80, { name: "a" }), port(80, { name: "b" })] }, ["spec.ports[1]"]],
    ["a port name that is no DNS label", { ports: [port(80, { name: "Web" })] }, ["spec.ports[0].name"]],
    ["a node port twice", { type: "NodePort", ports: [port(80, { name: "a", nodePort: 30080 }), port(81, { name: "b", nodePort: 30080 })] }, ["spec.ports[1].nodePort"]],
    ["externalTrafficPolicy Sideways", { type: "NodePort", externalTrafficPolicy: "Sideways", ports: [port(80)] }, ["spec.externalTrafficPolicy"]],
    ["a selector value that is no label value", { selector: { app: "-x" }, ports: [port(80)] }, ["spec.selector"]],
    ["ExternalName without externalName", { type: "ExternalName" }, ["spec.externalName"]],
    ["ExternalName to no DNS name", { type: "ExternalName", externalName: "a b" }, ["spec.externalName"]],
  ] as const)("%s is refused", (_, spec, want) => {
    const { store, t, create } = setup();
    expect(causes(() => create("x", spec as Record<string, unknown>))).toEqual([...want]);
    expect(store.list(t).items).toEqual([]);
  });

  test("the message is kube-apiserver's", () => {
    const { create } = setup();
    expect(apiErrorOf(() => create("x", { ports: [port(65536)] })).message).toBe('Service "x" is invalid: spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive');
    expect(apiErrorOf(() => create("x", { ports: [port(80, { protocol: "FOO" })] })).message).toBe('Service "x" is invalid: spec.ports[0].protocol: Unsupported value: "FOO": supported values: "SCTP", "TCP", "UDP"');
  });

  test("what kube-apiserver takes: headless or ExternalName without ports, named target ports, one port on two protocols", () => {
    const { create } = setup();
    expect(create("h", { clusterIP: "None", selector: { app: "a" } }).clusterIP).toBe("None");
    expect(create("e", { type: "ExternalName", externalName: "example.com." }).type).toBe("ExternalName");
    expect(create("n", { ports: [port(80, { name: "dns", targetPort: "dns-tcp" }), port(80, { name: "dns-udp", protocol: "UDP" })] }).ports[0].targetPort).toBe("dns-tcp");
  });

  test("an update is checked as a create: removing the ports is refused and keeps the Service as it was", () => {
    const { store, t, create, update, patch } = setup();
    const before = create("x", { ports: [port(80)] });
    expect(causes(() => update("x", { clusterIP: before.clusterIP }))).toEqual(["spec.ports"]);
    expect(causes(() => patch("x", (s) => (s.ports = [port(70000)])))).toEqual(["spec.ports[0].port"]);
    expect(store.get(t, "default", "x").spec).toEqual(before);
  });

  test("an ExternalName Service may not ask for a cluster IP (one held by another Service stays held once)", () => {
    const { store, t, create } = setup("10.96.0.0/24");
    const ip = create("holder", { ports: [port(80)] }).clusterIP;
    expect(causes(() => create("ext", { type: "ExternalName", externalName: "example.com", clusterIP: ip }))).toEqual(["spec.clusterIPs"]);
    expect(apiErrorOf(() => create("ext", { type: "ExternalName", externalName: "example.com", clusterIPs: [ip] })).message).toContain("spec.clusterIPs: Forbidden: may not be set for ExternalName services");
    expect(store.list(t).items.filter((o) => (o.spec as { clusterIP?: string }).clusterIP === ip).map((o) => o.metadata.name)).toEqual(["holder"]);
  });

  test("a healthCheckNodePort only on a LoadBalancer with externalTrafficPolicy Local; one held by another Service is refused either way", () => {
    const { store, t, create, del } = setup("10.96.0.0/28", "30000-30004");
    const hc = create("lb", { type: "LoadBalancer", externalTrafficPolicy: "Local", ports: [port(80)] }).healthCheckNodePort;
    expect(hc).toBeGreaterThanOrEqual(30000);
    expect(causes(() => create("c", { healthCheckNodePort: hc, ports: [port(80)] }))).toEqual(["spec.healthCheckNodePort"]);
    expect(causes(() => create("np", { type: "NodePort", externalTrafficPolicy: "Local", healthCheckNodePort: hc, ports: [port(80)] }))).toEqual(["spec.healthCheckNodePort"]);
    expect(apiErrorOf(() => create("lb2", { type: "LoadBalancer", externalTrafficPolicy: "Local", healthCheckNodePort: hc, ports: [port(80)] })).message).toContain("provided port is already allocated");
    const holders = store.list(t).items.filter((o) => {
      const s = o.spec as { healthCheckNodePort?: number; ports: Array<{ nodePort?: number }> };
      return s.healthCheckNodePort === hc || s.ports.some((p) => p.nodePort === hc);
    });
    expect(holders.map((o) => o.metadata.name)).toEqual(["lb"]);
    // and the port is the LoadBalancer's alone: freed when it goes, not before
    del("lb");
    expect(create("lb3", { type: "LoadBalancer", externalTrafficPolicy: "Local", healthCheckNodePort: hc, ports: [port(80, { nodePort: hc === 30000 ? 30001 : 30000 })] }).healthCheckNodePort).toBe(hc);
  });

  test("Store.checkFields false (tests of a client's own checks) plants a port kube-apiserver would refuse", () => {
    const { store, create } = setup();
    store.checkFields = false;
    expect(create("x", { ports: [port(70000)] }).ports[0].port).toBe(70000);
  });
});
