// Names, labels and kinds as kube-apiserver validates them (cases from k8s.io/apimachinery's
// validation tests), and the depth and size limits of bodies.
import { describe, expect, test } from "bun:test";
import { checkTypeMeta, depthOf, labelSelectorErrors, pathSegmentProblems, portNumOrNameErrors, validateObject } from "./validate.ts";
import { newStore } from "./server.ts";
import { checkDepth, readBytes } from "./body.ts";
import { BUILTIN, type KubeObject } from "./resources.ts";
import { ApiError } from "./errors.ts";

const type = (kind: string) => BUILTIN.find((t) => t.kind === kind)!;
const errorOf = (f: () => void): ApiError | undefined => {
  try {
    f();
  } catch (e) {
    return e as ApiError;
  }
  return undefined;
};
// metadata only: the kinds' field rules are tested below
const fields = (kind: string, metadata: KubeObject["metadata"]) => errorOf(() => validateObject(type(kind), { metadata: { namespace: "default", ...metadata } }, false))?.details?.causes as Array<{ field: string }> | undefined;

describe("names by kind", () => {
  test.each([
    ["Pod", "a", true],
    ["Pod", "a.b-c", true],
    ["Pod", "1-pod", true],
    ["Pod", "A", false],
    ["Pod", "-a", false],
    ["Pod", "a-", false],
    ["Pod", "a..b", false],
    ["Pod", "a_b", false],
    ["Pod", "x".repeat(253), true],
    ["Pod", "x".repeat(254), false],
    ["Node", "node-1.example.com", true],
    ["EndpointSlice", "web-abc12", true],
    ["NetworkPolicy", "deny.all", true],
    ["Namespace", "kube-system", true],
    ["Namespace", "a.b", false],
    ["Namespace", "x".repeat(64), false],
    ["Service", "web", true],
    ["Service", "1web", false],
    ["Service", "web.a", false],
    ["Service", "x".repeat(63), true],
    ["Service", "x".repeat(64), false],
  ] as const)("%s %s: %p", (kind, name, ok) => {
    const causes = fields(kind, { name });
    if (ok) expect(causes).toBeUndefined();
    else expect(causes?.map((c) => c.field)).toEqual(["metadata.name"]);
  });

  test("generateName is checked as the start of a name; a missing name is Required", () => {
    expect(fields("Service", { name: "web-x1b2c", generateName: "web-" })).toBeUndefined();
    expect(fields("Service", { name: "a", generateName: "1web-" })?.map((c) => c.field)).toEqual(["metadata.generateName"]);
    const e = errorOf(() => validateObject(type("Pod"), { metadata: { namespace: "default" } }))!;
    expect(e.message).toBe('Pod "" is invalid: metadata.name: Required value: name or generateName is required');
  });

  test("path segments: '.', '..', '/' and '%' never name an object", () => {
    expect(pathSegmentProblems("..")).toEqual(["may not be '..'"]);
    expect(pathSegmentProblems(".")).toEqual(["may not be '.'"]);
    expect(pathSegmentProblems("a/b%")).toEqual(["may not contain '/'", "may not contain '%'"]);
    expect(pathSegmentProblems("a.b")).toEqual([]);
  });
});

describe("labels and annotations", () => {
  test.each([
    [{ app: "web" }, 0],
    [{ "app.kubernetes.io/name": "" }, 0],
    [{ "example.com/a_b.c-d": "A_b.9" }, 0],
    [{ "a/b/c": "x" }, 1],
    [{ "/a": "x" }, 1],
    [{ "Example.com/a": "x" }, 1],
    [{ ["x".repeat(64)]: "x" }, 1],
    [{ app: "-web" }, 1],
    [{ app: "x".repeat(64) }, 1],
    [{ app: "a b" }, 1],
  ])("labels %p: %d errors", (labels, n) => {
    expect(fields("Pod", { name: "p", labels })?.length ?? 0).toBe(n);
  });

  test("annotation keys are qualified names, values anything; neither map may be anything else", () => {
    expect(fields("Pod", { name: "p", annotations: { "example.com/x": "any value at all: ✓" } })).toBeUndefined();
    expect(fields("Pod", { name: "p", annotations: { "a b": "x" } })?.map((c) => c.field)).toEqual(["metadata.annotations"]);
    expect(fields("Pod", { name: "p", labels: ["x"] as unknown as Record<string, string> })?.map((c) => c.field)).toEqual(["metadata.labels"]);
    expect(fields("Pod", { name: "p", labels: { a: 5 } as unknown as Record<string, string> })?.map((c) => c.field)).toEqual(["metadata.labels.a"]);
  });
});

describe("kinds", () => {
  test("the body's kind and apiVersion must be the path's; missing ones are fine", () => {
    expect(errorOf(() => checkTypeMeta(type("Service"), { metadata: {} }))).toBeUndefined();
    expect(errorOf(() => checkTypeMeta(type("EndpointSlice"), { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: {} }))).toBeUndefined();
    expect(errorOf(() => checkTypeMeta(type("Service"), { kind: "Pod", metadata: {} }))).toMatchObject({ code: 400 });
    expect(errorOf(() => checkTypeMeta(type("EndpointSlice"), { apiVersion: "discovery.k8s.io/v1beta1", metadata: {} }))?.message).toBe("the API version in the data (discovery.k8s.io/v1beta1) does not match the expected API version (discovery.k8s.io/v1)");
  });
});

describe("bounds", () => {
  test("depth: counted without recursion, strings and escapes skipped", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(depthOf(deep, 600)).toBe(601);
    expect(depthOf({ a: [{ b: 1 }] })).toBe(3);
    expect(() => checkDepth('{"a": "[[[[[[\\"[[[[["}', 2)).not.toThrow();
    expect(() => checkDepth("[[[]]]", 2)).toThrow(/nested deeper than 2 levels/);
  });

  test("size: a declared length over the limit is refused before reading; a stream is cut at the limit", async () => {
    expect(await readBytes(new Request("http://x/", { method: "POST", body: "abc" }), 3)).toEqual(new TextEncoder().encode("abc"));
    await expect(readBytes(new Request("http://x/", { method: "POST", body: "abcd" }), 3)).rejects.toMatchObject({ code: 413 });
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull: (c) => {
        pulled++;
        c.enqueue(new Uint8Array(1024));
      },
    });
    await expect(readBytes(new Request("http://x/", { method: "POST", body: endless }), 10_000)).rejects.toMatchObject({ code: 413, reason: "RequestEntityTooLarge" });
    expect(pulled).toBeLessThan(20);
  });
});

// What kube-apiserver's ValidateNetworkPolicy, ValidateEndpointSlice and ValidateNode refuse of
// the fields skein's agent builds its datapath from: 422 naming the field, nothing stored.
describe("network objects' fields", () => {
  const np = (spec: Record<string, unknown>) => ({ metadata: { name: "p" }, spec: { podSelector: {}, ...spec } });
  const es = (x: Record<string, unknown>) => ({ metadata: { name: "e" }, addressType: "IPv4", endpoints: [], ...x });
  const node = (spec: Record<string, unknown>) => ({ metadata: { name: "n" }, spec });
  const plural = { NetworkPolicy: "networkpolicies", EndpointSlice: "endpointslices", Node: "nodes" } as const;
  /** the fields named by the 422 of creating `o`, after checking that nothing was stored */
  const refused = (kind: keyof typeof plural, o: KubeObject) => {
    const store = newStore();
    const t = store.allTypes().find((x) => x.plural === plural[kind])!;
    const e = errorOf(() => store.create(t, t.namespaced ? "default" : undefined, structuredClone(o)));
    expect(errorOf(() => store.get(t, t.namespaced ? "default" : undefined, o.metadata.name!))).toMatchObject({ code: 404 });
    expect(e).toMatchObject({ code: 422, reason: "Invalid" });
    return (e!.details!.causes as Array<{ field: string }>).map((c) => c.field);
  };
  const accepted = (kind: keyof typeof plural, o: KubeObject) => {
    const store = newStore();
    const t = store.allTypes().find((x) => x.plural === plural[kind])!;
    expect(errorOf(() => store.create(t, t.namespaced ? "default" : undefined, structuredClone(o)))).toBeUndefined();
  };

  test.each([
    ["ipBlock 10.0.0.0/33", np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] }), ["spec.ingress[0].from[0].ipBlock.cidr"]],
    ["except outside its cidr", np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/24", except: ["11.0.0.0/8"] } }] }] }), ["spec.ingress[0].from[0].ipBlock.except[0]"]],
    ["except equal to its cidr", np({ egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/24", except: ["10.0.0.0/24"] } }] }] }), ["spec.egress[0].to[0].ipBlock.except[0]"]],
    ["port 70000", np({ ingress: [{ ports: [{ port: 70000 }] }] }), ["spec.ingress[0].ports[0].port"]],
    ["port name with a capital", np({ ingress: [{ ports: [{ port: "Http" }] }] }), ["spec.ingress[0].ports[0].port"]],
    ["endPort below port", np({ ingress: [{ ports: [{ port: 100, endPort: 50 }] }] }), ["spec.ingress[0].ports[0].endPort"]],
    ["endPort without port", np({ egress: [{ ports: [{ endPort: 50 }] }] }), ["spec.egress[0].ports[0].port"]],
    ["endPort with a named port", np({ egress: [{ ports: [{ port: "dns", endPort: 50 }] }] }), ["spec.egress[0].ports[0].endPort"]],
    ["protocol ICMP", np({ ingress: [{ ports: [{ protocol: "ICMP", port: 1 }] }] }), ["spec.ingress[0].ports[0].protocol"]],
    ["policyTypes Sideways", np({ policyTypes: ["Sideways"] }), ["spec.policyTypes[0]"]],
    ["three policyTypes", np({ policyTypes: ["Ingress", "Egress", "Ingress"] }), ["spec.policyTypes"]],
    ["a peer of nothing", np({ ingress: [{ from: [{}] }] }), ["spec.ingress[0].from[0]"]],
    ["ipBlock with a podSelector", np({ ingress: [{ from: [{ podSelector: {}, ipBlock: { cidr: "10.0.0.0/8" } }] }] }), ["spec.ingress[0].from[0]"]],
    ["selector operator Frob", np({ podSelector: { matchExpressions: [{ key: "a", operator: "Frob", values: ["x"] }] } }), ["spec.podSelector.matchExpressions[0].operator"]],
    ["peer namespaceSelector label value", np({ ingress: [{ from: [{ namespaceSelector: { matchLabels: { a: "-x" } } }] }] }), ["spec.ingress[0].from[0].namespaceSelector.matchLabels"]],
  ] as const)("NetworkPolicy: %s", (_, o, want) => {
    expect(refused("NetworkPolicy", o as KubeObject)).toEqual([...want]);
  });

  test("a NetworkPolicy kube-apiserver takes is taken", () => {
    accepted("NetworkPolicy", np({
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.1.0/24"] } }, { podSelector: { matchLabels: { app: "a" } }, namespaceSelector: { matchExpressions: [{ key: "team", operator: "Exists" }] } }], ports: [{ protocol: "UDP", port: 53 }, { port: "http" }, { port: 1000, endPort: 2000 }] }],
      egress: [{ to: [{ ipBlock: { cidr: "fd00::/64" } }] }, {}],
    }) as KubeObject);
  });

  test.each([
    ["address 999.1.1.1", es({ endpoints: [{ addresses: ["999.1.1.1"] }] }), ["endpoints[0].addresses[0]"]],
    ["an IPv6 address in an IPv4 slice", es({ endpoints: [{ addresses: ["fd00::1"] }] }), ["endpoints[0].addresses[0]"]],
    ["a loopback address", es({ endpoints: [{ addresses: ["127.0.0.1"] }] }), ["endpoints[0].addresses[0]"]],
    ["a non-canonical IPv6 address", es({ addressType: "IPv6", endpoints: [{ addresses: ["FD00::1"] }] }), ["endpoints[0].addresses[0]"]],
    ["an endpoint without addresses", es({ endpoints: [{ addresses: [] }] }), ["endpoints[0].addresses"]],
    ["addressType Frob", es({ addressType: "Frob" }), ["addressType"]],
    ["no addressType", es({ addressType: undefined }), ["addressType"]],
    ["protocol ICMP", es({ ports: [{ port: 80, protocol: "ICMP" }] }), ["ports[0].protocol"]],
    ["a port name twice", es({ ports: [{ name: "a", port: 80 }, { name: "a", port: 81 }] }), ["ports[1].name"]],
    ["a port that is no number", es({ ports: [{ port: "80" }] }), ["ports[0].port"]],
  ] as const)("EndpointSlice: %s", (_, o, want) => {
    expect(refused("EndpointSlice", o as KubeObject)).toEqual([...want]);
  });

  test("an EndpointSlice port out of range is taken, as kube-apiserver takes it (validatePorts checks no range): the agent must refuse it itself", () => {
    accepted("EndpointSlice", es({ ports: [{ port: 70000 }], endpoints: [{ addresses: ["10.1.0.5"], nodeName: "n1" }] }) as KubeObject);
    accepted("EndpointSlice", es({ addressType: "IPv6", endpoints: [{ addresses: ["fd00::5"] }], ports: [{ name: "", port: 80, protocol: "TCP" }] }) as KubeObject);
  });

  test.each([
    ["podCIDRs 10.0.0.0/99", node({ podCIDR: "10.0.0.0/99", podCIDRs: ["10.0.0.0/99"] }), ["spec.podCIDR", "spec.podCIDRs[0]"]],
    ["two IPv4 podCIDRs", node({ podCIDRs: ["10.0.0.0/24", "10.0.1.0/24"] }), ["spec.podCIDRs"]],
    ["three podCIDRs", node({ podCIDRs: ["10.0.0.0/24", "fd00::/64", "10.0.1.0/24"] }), ["spec.podCIDRs"]],
    ["podCIDRs not a list", node({ podCIDRs: "10.0.0.0/24" }), ["spec.podCIDRs"]],
  ] as const)("Node: %s", (_, o, want) => {
    expect(refused("Node", o as KubeObject)).toEqual([...want]);
  });

  test("a dual-stack Node is taken", () => accepted("Node", node({ podCIDR: "10.0.0.0/24", podCIDRs: ["10.0.0.0/24", "fd00::/64"] }) as KubeObject));

  test("the 422 names the field as kube-apiserver words it", () => {
    const store = newStore();
    const t = store.type("networking.k8s.io", "networkpolicies")!;
    const e = errorOf(() => store.create(t, "default", np({ policyTypes: ["Sideways"], ingress: [{ ports: [{ port: 70000 }] }] }) as KubeObject))!;
    expect(e.message).toBe('NetworkPolicy.networking.k8s.io "p" is invalid: [spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive, spec.policyTypes[0]: Unsupported value: "Sideways": supported values: "Egress", "Ingress"]');
  });

  test("Store.checkFields false (tests of a client's own checks) takes what the field rules refuse, but not bad metadata", () => {
    const store = newStore();
    store.checkFields = false;
    const t = store.type("networking.k8s.io", "networkpolicies")!;
    expect(store.create(t, "default", np({ ingress: [{ ports: [{ port: 70000 }] }] }) as KubeObject).metadata.name).toBe("p");
    expect(errorOf(() => store.create(t, "default", { metadata: { name: "Bad" } }))).toMatchObject({ code: 422 });
  });
});

describe("label selectors", () => {
  test.each([
    [{ matchLabels: { a: "b" }, matchExpressions: [{ key: "example.com/x", operator: "In", values: ["1", "2"] }, { key: "y", operator: "DoesNotExist" }] }, []],
    [{ matchExpressions: [{ key: "a", operator: "In", values: [] }] }, ["s.matchExpressions[0].values"]],
    [{ matchExpressions: [{ key: "a", operator: "NotIn" }] }, ["s.matchExpressions[0].values"]],
    [{ matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] }, ["s.matchExpressions[0].values"]],
    [{ matchExpressions: [{ key: "a b", operator: "Exists" }] }, ["s.matchExpressions[0].key"]],
    [{ matchExpressions: [{ key: "a", operator: "In", values: ["ok", "not ok"] }] }, ["s.matchExpressions[0].values[1]"]],
    [{ matchExpressions: [{ key: "a", operator: "Frob" }] }, ["s.matchExpressions[0].operator"]],
    [{ matchExpressions: "a" }, ["s.matchExpressions"]],
    [{ matchLabels: { "a/b/c": "x" } }, ["s.matchLabels"]],
    ["app=web", ["s"]],
  ])("%p: %p", (sel, want) => {
    expect(labelSelectorErrors(sel, "s").map((e) => e.field)).toEqual(want);
  });

  test("ports by number or IANA service name", () => {
    expect(portNumOrNameErrors("http-alt", "p")).toEqual([]);
    expect(portNumOrNameErrors(8080, "p")).toEqual([]);
    for (const bad of ["Http", "80", "a--b", "-a", "abcdefghijklmnop", "", 0, -1, 65536, 1.5, Infinity, null]) expect(portNumOrNameErrors(bad, "p").length).toBeGreaterThan(0);
  });
});
