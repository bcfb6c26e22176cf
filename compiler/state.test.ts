import { describe, expect, test } from "bun:test";
import { HOSTILE, VALID_ADDRESSES } from "./address.case.ts";
import { quote } from "./address.ts";
import { clusterStateFrom } from "./state.ts";

const svc = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ kind: "Service", metadata: { name, namespace: "default" }, spec, ...extra });
const slice = (name: string, service: string, body: Record<string, unknown>) => ({
  kind: "EndpointSlice",
  metadata: { name, namespace: "default", labels: { "kubernetes.io/service-name": service } },
  addressType: "IPv4",
  ...body,
});

describe("clusterStateFrom", () => {
  test("reads every Service type's frontends and the slice conditions", () => {
    const { state, errors } = clusterStateFrom([
      svc("web", { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }, { port: 53, protocol: "UDP", targetPort: 5353 }] }),
      svc("np", { type: "NodePort", clusterIP: "10.96.0.11", externalTrafficPolicy: "Local", ports: [{ port: 80, nodePort: 30080 }] }),
      svc("lb", { type: "LoadBalancer", clusterIPs: ["10.96.0.12"], externalIPs: ["198.18.5.5"], sessionAffinity: "ClientIP", ports: [{ port: 443 }] }, { status: { loadBalancer: { ingress: [{ ip: "198.18.9.9" }, { hostname: "x.example" }] } } }),
      svc("headless", { clusterIP: "None", ports: [{ port: 80 }] }),
      svc("alias", { type: "ExternalName", externalName: "example.org" }),
      slice("web-1", "web", {
        ports: [{ name: "http", port: 8080 }],
        endpoints: [
          { addresses: ["10.244.1.2"], conditions: { ready: true }, nodeName: "n1" },
          { addresses: ["10.244.1.3"], conditions: { ready: false, serving: true, terminating: true } },
          { addresses: ["10.244.1.4"] },
        ],
      }),
    ]);
    expect(errors).toEqual([]);
    expect(state.services.map((s) => s.name)).toEqual(["web", "np", "lb", "headless"]);
    const [web, np, lb, headless] = state.services;
    expect(web!.ports).toEqual([
      { name: "http", protocol: "TCP", port: 80, targetPort: "http", nodePort: 0 },
      { name: "", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 0 },
    ]);
    expect(np!.ports[0]!.nodePort).toBe(30080);
    expect(np!.externalTrafficLocal).toBe(true);
    expect(lb!.loadBalancerIPs).toEqual(["198.18.9.9"]);
    expect(lb!.affinityTimeout).toBe(10800);
    expect(headless!.clusterIPs).toEqual([]);
    expect(state.slices[0]!.endpoints.map((e) => [e.ready, e.serving, e.terminating])).toEqual([
      [true, true, false],
      [false, true, true],
      [true, true, false],
    ]);
  });

  test("bad objects are reported by name and field, and the rest is kept", () => {
    const manyPorts = [...Array(65536).keys()].map((i) => ({ port: (i % 65535) + 1 }));
    const { state, errors } = clusterStateFrom([
      svc("badip", { clusterIP: "10.96.0.300", ports: [{ port: 80 }] }),
      svc("badport", { clusterIP: "10.96.0.20", ports: [{ port: 80 }, { port: 70000 }] }),
      svc("many", { clusterIP: "10.96.0.21", ports: manyPorts }),
      svc("badname", { clusterIP: "10.96.0.22", ports: [{ port: 80, targetPort: "Not_A_Name" }] }),
      svc("good", { clusterIP: "10.96.0.23", ports: [{ port: 80 }] }),
      slice("orphan-1", "nosuch", { endpoints: [] }),
      slice("mixed-1", "good", { endpoints: [{ addresses: ["fd00::1"] }] }),
      "junk",
    ]);
    expect(errors).toEqual([
      'Service default/badip: spec.clusterIP: "10.96.0.300" is not a valid IPv4 address (each part must be 0-255)',
      "Service default/badport: spec.ports[1].port: 70000 is not a port (1-65535)",
      "Service default/many: spec.ports[65535].port: TCP port 1 is listed twice",
      'Service default/badname: spec.ports[0].targetPort: "Not_A_Name" is not a port name',
      'EndpointSlice default/mixed-1: endpoints[0].addresses[0]: "fd00::1" is not an IPv4 address',
      "object 7: not a Kubernetes object",
      "EndpointSlice default/orphan-1: Service default/nosuch does not exist",
    ]);
    expect(state.services.map((s) => s.name)).toEqual(["good"]);
  });
});

describe("every address field is read strictly (compiler/address.case.ts)", () => {
  // each field of a Service or slice that holds an address, as a function putting a value there
  const fields: Array<[string, string, (v: unknown) => unknown]> = [
    ["Service", "spec.clusterIP", (v) => svc("web", { clusterIP: v, ports: [{ port: 80 }] })],
    ["Service", "spec.clusterIPs[1]", (v) => svc("web", { clusterIPs: ["10.96.0.10", v], ports: [{ port: 80 }] })],
    ["Service", "spec.externalIPs[0]", (v) => svc("web", { clusterIP: "10.96.0.10", externalIPs: [v], ports: [{ port: 80 }] })],
    [
      "Service",
      "status.loadBalancer.ingress[1].ip",
      (v) => svc("web", { type: "LoadBalancer", clusterIP: "10.96.0.10", ports: [{ port: 80 }] }, { status: { loadBalancer: { ingress: [{ hostname: "lb.example" }, { ip: v }] } } }),
    ],
    ["EndpointSlice", "endpoints[1].addresses[0]", (v) => slice("web-1", "web", { endpoints: [{ addresses: ["10.244.1.2"] }, { addresses: [v] }] })],
    ["EndpointSlice", "endpoints[0].addresses[0]", (v) => slice("web-1", "web", { addressType: "IPv6", endpoints: [{ addresses: [v] }] })],
  ];
  const web = svc("web", { clusterIP: "10.96.0.10", ports: [{ port: 80 }] });
  const cases = fields.flatMap(([kind, field, put]) => HOSTILE.map((h) => [`${kind} ${field} = ${quote(h.value)}`, kind, field, put(h.value)] as const));

  test.each(cases)("%s is refused, naming the object and field", (_n, kind, field, obj) => {
    const { state, errors } = clusterStateFrom(kind === "Service" ? [obj] : [web, obj]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.startsWith(`${kind} default/${kind === "Service" ? "web" : "web-1"}: ${field}: `)).toBe(true);
    expect(kind === "Service" ? state.services : state.slices).toEqual([]);
  });

  // addresses that stay on the node or its link: Kubernetes refuses them as external IPs and
  // endpoints, and allows them as cluster and load-balancer IPs
  const SPECIAL = ["0.0.0.0", "127.0.0.1", "127.255.0.9", "169.254.169.254", "224.0.0.251", "::", "::1", "fe80::1", "febf::1", "ff02::1", "ff12::1:2"];
  const remote = (field: string) => field.startsWith("spec.externalIPs") || field.startsWith("endpoints");

  test.each(fields.map(([kind, field, put]) => [`${kind} ${field}`, kind, field, put] as const))("%s takes valid addresses as they are", (_n, kind, field, put) => {
    const v6 = field === "endpoints[0].addresses[0]";
    for (const a of VALID_ADDRESSES.filter((a) => a.includes(":") === v6 && !(remote(field) && SPECIAL.includes(a)))) {
      const { state, errors } = clusterStateFrom(kind === "Service" ? [put(a)] : [web, put(a)]);
      expect(errors).toEqual([]);
      expect(JSON.stringify(state)).toContain(`"${a}"`);
    }
  });

  test.each(fields.map(([kind, field, put]) => [`${kind} ${field}`, kind, field, put] as const))("%s: addresses on the node or its link, as Kubernetes validates the field", (_n, kind, field, put) => {
    const v6 = field === "endpoints[0].addresses[0]";
    const family = field.startsWith("endpoints[1]") ? ["0.0.0.0", "127.0.0.1", "127.255.0.9", "169.254.169.254", "224.0.0.251"] : SPECIAL.filter((a) => a.includes(":") === v6 || !field.startsWith("endpoints"));
    for (const a of family) {
      const { state, errors } = clusterStateFrom(kind === "Service" ? [put(a)] : [web, put(a)]);
      if (remote(field)) {
        expect(errors).toEqual([expect.stringMatching(new RegExp(`^${kind} default/web(-1)?: ${field.replace(/[[\].]/g, "\\$&")}: "${a.replace(/\./g, "\\.")}" may not be used here: it is (unspecified|loopback|link-local)`))]);
      } else {
        expect(errors).toEqual([]);
        expect(JSON.stringify(state)).toContain(`"${a}"`);
      }
    }
  });

  test("the issue's example, word for word", () => {
    const { errors } = clusterStateFrom([svc("web", { clusterIPs: ["10.0.0.2", "010.0.0.1"], ports: [{ port: 80 }] })]);
    expect(errors).toEqual(['Service default/web: spec.clusterIPs[1]: "010.0.0.1" is not a valid IPv4 address (leading zero)']);
  });
});

test("a name or namespace Kubernetes would refuse (control characters, too long) is refused by a quoted name, never printed raw", () => {
  const bad = [
    { kind: "Service", metadata: { name: "web\u001b[2J\u001b[31mEVIL", namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } },
    { kind: "Service", metadata: { name: "x".repeat(5000), namespace: "default" }, spec: { clusterIP: "10.96.0.11", ports: [{ port: 80 }] } },
    { kind: "Service", metadata: { name: "web", namespace: "de\u0000fault" }, spec: { clusterIP: "10.96.0.12", ports: [{ port: 80 }] } },
    { kind: "EndpointSlice", metadata: { name: "Web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } }, addressType: "IPv4", endpoints: [] },
  ];
  const { state, errors } = clusterStateFrom(bad);
  expect(state.services).toEqual([]);
  expect(state.slices).toEqual([]);
  expect(errors).toHaveLength(4);
  for (const e of errors) {
    expect(e).not.toMatch(/[\u0000-\u001f]/);
    expect(e.length).toBeLessThan(300);
    expect(e).toMatch(/metadata\.(name|namespace)/);
  }
  // what Kubernetes takes is taken
  expect(clusterStateFrom([{ kind: "Service", metadata: { name: "web-1.v2", namespace: "kube-system" }, spec: { clusterIP: "10.96.0.13", ports: [{ port: 80 }] } }]).errors).toEqual([]);
});
