// Protobuf request bodies to the JSON form the server stores: the bytes kubectl sends, round
// trips through @bufbuild/protobuf's encoder for every served kind, Go's JSON rules for zero
// values, and malformed input as 400/413/415 with a message, never anything else.
import { describe, expect, test } from "bun:test";
import { create, createFileRegistry, fromBinary, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { decodeProtobuf, schemaOf } from "./protobuf.ts";
import { SCHEMA, SOURCE_TAG } from "./k8s-proto.ts";
import { BUILTIN, groupVersion, type ResourceType } from "./resources.ts";
import { apiErrorOf } from "./errors.ts";

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, SCHEMA));
const UNKNOWN = registry.getMessage("k8s.io.apimachinery.pkg.runtime.Unknown")!;
const type = (plural: string) => BUILTIN.find((t) => t.plural === plural)!;

/** `raw` wrapped as kube's protobuf serializer does. */
function envelope(raw: Uint8Array, typeMeta: { apiVersion: string; kind: string }, extra: Record<string, string> = {}): Uint8Array {
  const u = create(UNKNOWN, { typeMeta, raw, ...extra } as never);
  return new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...toBinary(UNKNOWN, u)]);
}
/** `json` (protobuf's JSON mapping of the k8s message) encoded and wrapped for `t`. */
const encode = (t: ResourceType, json: JsonValue) => envelope(toBinary(schemaOf(t)!, fromJson(schemaOf(t)!, json)), { apiVersion: groupVersion(t), kind: t.kind });


describe("decodeProtobuf", () => {
  test("the schema is k8s.io/api's for kubectl 1.32 and covers every built-in kind served", () => {
    expect(SOURCE_TAG).toBe("v0.32.4");
    // Events are written by the agents' recorders (client-node, JSON) and CRDs by kubectl
    // apply (JSON); kubectl has no typed command that sends either, so the schema has neither
    for (const t of BUILTIN.filter((t) => t.kind !== "Event" && t.kind !== "CustomResourceDefinition")) expect(schemaOf(t)?.typeName).toEndWith(`.${t.version}.${t.kind}`);
  });

  test("a protobuf Event is 415 naming the JSON it takes instead", () => {
    const bytes = envelope(new Uint8Array(), { apiVersion: "v1", kind: "Event" });
    expect(apiErrorOf(() => decodeProtobuf(bytes, type("events")))).toMatchObject({ code: 415, message: expect.stringContaining("there is no protobuf schema for Event (v1); send application/json") });
  });

  test("the bytes kubectl 1.32 sends for `create service nodeport np --tcp=80:http`", () => {
    const bytes = Buffer.from("azhzAAoNCgJ2MRIHU2VydmljZRJoCh0KAm5wEgAaACIAKgAyADgAQgBaCQoDYXBwEgJucBJDCh4KBzgwLWh0dHASA1RDUBhQIgoIARAAGgRodHRwKAASCQoDYXBwEgJucBoAIghOb2RlUG9ydDoAQgBSAFoAYABoABoCCgAaACIA", "base64");
    // Go writes every non-pointer field, "" and 0 included; those with omitempty are left out
    expect(decodeProtobuf(bytes, type("services"))).toEqual({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "np", labels: { app: "np" } },
      spec: { ports: [{ name: "80-http", protocol: "TCP", port: 80, targetPort: "http" }], selector: { app: "np" }, type: "NodePort" },
      status: { loadBalancer: {} },
    });
  });

  test("round trips: Namespace, ConfigMap, Service, Pod, Node, EndpointSlice, NetworkPolicy", () => {
    const meta = { name: "a", namespace: "default", labels: { app: "a" }, annotations: { note: "x" }, creationTimestamp: { seconds: "1700000000" } };
    const metaJson = { name: "a", namespace: "default", labels: { app: "a" }, annotations: { note: "x" }, creationTimestamp: "2023-11-14T22:13:20Z" };
    const cases: Array<[string, JsonValue, Record<string, unknown>]> = [
      ["namespaces", { metadata: { name: "x", finalizers: ["f"] }, spec: { finalizers: ["kubernetes"] } }, { metadata: { name: "x", finalizers: ["f"] }, spec: { finalizers: ["kubernetes"] } }],
      ["configmaps", { metadata: meta, data: { a: "b" }, binaryData: { bin: "AAEC" }, immutable: false }, { metadata: metaJson, data: { a: "b" }, binaryData: { bin: "AAEC" }, immutable: false }],
      [
        "services",
        { metadata: meta, spec: { ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: { type: "0", intVal: 8080 } }, { name: "n", port: 81, targetPort: { type: "1", strVal: "web" }, nodePort: 30001 }], selector: { app: "a" }, type: "NodePort", clusterIPs: ["10.0.0.1", "fd00::1"], ipFamilyPolicy: "PreferDualStack", sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } } },
        { metadata: metaJson, spec: { ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "n", port: 81, targetPort: "web", nodePort: 30001 }], selector: { app: "a" }, type: "NodePort", clusterIPs: ["10.0.0.1", "fd00::1"], ipFamilyPolicy: "PreferDualStack", sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } } },
      ],
      [
        "pods",
        {
          metadata: { ...meta, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: "n", uid: "u", controller: true }], managedFields: [{ manager: "kubectl", operation: "Update", fieldsType: "FieldsV1", fieldsV1: { Raw: Buffer.from('{"f:metadata":{"f:labels":{}}}').toString("base64") } }] },
          spec: {
            containers: [{ name: "c", image: "x", ports: [{ containerPort: 8080, protocol: "TCP" }], resources: { limits: { cpu: { string: "500m" }, memory: { string: "1Gi" } } }, readinessProbe: { handler: { httpGet: { path: "/", port: { type: "1", strVal: "http" } } }, periodSeconds: 5 } }],
            volumes: [{ name: "v", volumeSource: { configMap: { localObjectReference: { name: "c" }, defaultMode: 420 } } }],
            terminationGracePeriodSeconds: "0",
            automountServiceAccountToken: false,
            hostNetwork: false,
          },
          status: { phase: "Running", podIPs: [{ ip: "10.1.0.5" }], startTime: { seconds: "1700000001" } },
        },
        {
          metadata: { ...metaJson, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: "n", uid: "u", controller: true }], managedFields: [{ manager: "kubectl", operation: "Update", fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:labels": {} } } }] },
          spec: {
            containers: [{ name: "c", image: "x", ports: [{ containerPort: 8080, protocol: "TCP" }], resources: { limits: { cpu: "500m", memory: "1Gi" } }, readinessProbe: { httpGet: { path: "/", port: "http" }, periodSeconds: 5 } }],
            volumes: [{ name: "v", configMap: { name: "c", defaultMode: 420 } }],
            terminationGracePeriodSeconds: 0,
            automountServiceAccountToken: false,
          },
          status: { phase: "Running", podIPs: [{ ip: "10.1.0.5" }], startTime: "2023-11-14T22:13:21Z" },
        },
      ],
      ["nodes", { metadata: { name: "n1" }, spec: { podCIDRs: ["10.1.0.0/24"], unschedulable: true }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.1" }] } }, { metadata: { name: "n1" }, spec: { podCIDRs: ["10.1.0.0/24"], unschedulable: true }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.1" }] } }],
      [
        "endpointslices",
        { metadata: meta, addressType: "IPv4", endpoints: [{ addresses: ["10.1.0.5"], conditions: { ready: true, serving: false }, nodeName: "n1" }], ports: [{ name: "", port: 8080, protocol: "TCP" }] },
        { metadata: metaJson, addressType: "IPv4", endpoints: [{ addresses: ["10.1.0.5"], conditions: { ready: true, serving: false }, nodeName: "n1" }], ports: [{ name: "", port: 8080, protocol: "TCP" }] },
      ],
      [
        "networkpolicies",
        { metadata: meta, spec: { podSelector: { matchLabels: { app: "a" } }, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }], ports: [{ port: { type: "0", intVal: 80 }, endPort: 90 }] }], policyTypes: ["Ingress"] } },
        { metadata: metaJson, spec: { podSelector: { matchLabels: { app: "a" } }, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }], ports: [{ port: 80, endPort: 90 }] }], policyTypes: ["Ingress"] } },
      ],
    ];
    for (const [plural, proto, json] of cases) {
      const t = type(plural);
      expect(decodeProtobuf(encode(t, proto), t)).toEqual({ apiVersion: groupVersion(t), kind: t.kind, ...json } as never);
    }
  });

  test("zero values: kept for pointers and fields without omitempty, dropped for the rest", () => {
    const t = type("services");
    const o = decodeProtobuf(encode(t, { metadata: { name: "z", generateName: "", generation: "0", uid: "" }, spec: { ports: [{ port: 0, name: "" }], clusterIP: "", allocateLoadBalancerNodePorts: false, publishNotReadyAddresses: false } }), t);
    expect(o).toEqual({ apiVersion: "v1", kind: "Service", metadata: { name: "z" }, spec: { ports: [{ port: 0 }], allocateLoadBalancerNodePorts: false } });
  });

  test("malformed or foreign bodies are 400, 413 or 415 with a message naming what is wrong", () => {
    const svc = type("services");
    const good = encode(svc, { metadata: { name: "a" } });
    const cases: Array<[Uint8Array, number, RegExp]> = [
      [new Uint8Array(), 415, /magic/],
      [new TextEncoder().encode('{"kind":"Service"}'), 415, /magic/],
      [good.subarray(0, good.length - 1), 400, /envelope \(runtime\.Unknown\) is not valid protobuf/],
      [new Uint8Array([0x6b, 0x38, 0x73, 0x00, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), 400, /not valid protobuf/],
      [envelope(new Uint8Array([0x0a, 0x05, 0x0a]), { apiVersion: "v1", kind: "Service" }), 400, /Service \(v1\) is not valid protobuf/],
      [encode(type("pods"), { metadata: { name: "a" } }), 400, /"Pod" in version "v1", which cannot be handled as a Service/],
      [envelope(new Uint8Array(), { apiVersion: "v1", kind: "Service" }, { contentEncoding: "gzip" }), 415, /contentEncoding "gzip"/],
      [envelope(new Uint8Array(), { apiVersion: "v1", kind: "Service" }, { contentType: "application/json" }), 415, /contentType "application\/json"/],
      [encode(svc, { metadata: { name: "a", generation: "9007199254740993" } }), 400, /Service\.metadata\.generation: 9007199254740993 is beyond/],
      [encode(svc, { spec: { ports: [{ targetPort: { type: "7" } }] } }), 400, /Service\.spec\.ports\[0\]\.targetPort: IntOrString type 7/],
      [encode(svc, { metadata: { creationTimestamp: { seconds: "-99999999999" } } }), 400, /Service\.metadata\.creationTimestamp: .* not a time/],
      [encode(svc, { metadata: { managedFields: [{ fieldsV1: { Raw: Buffer.from("{").toString("base64") } }] } }), 400, /Service\.metadata\.managedFields\[0\]\.fieldsV1: not JSON/],
      [encode(svc, { metadata: { managedFields: [{ fieldsV1: { Raw: Buffer.from("[".repeat(100) + "]".repeat(100)).toString("base64") } }] } }), 400, /nested deeper than 64/],
    ];
    for (const [bytes, code, message] of cases) {
      const e = apiErrorOf(() => decodeProtobuf(bytes, svc));
      expect({ code: e.code, message: e.message }).toEqual({ code, message: expect.stringMatching(message) });
    }
    expect(apiErrorOf(() => decodeProtobuf(good, svc, 10)).code).toBe(413);
    // a kind this build has no schema for (a custom resource) cannot be decoded
    const crd: ResourceType = { ...svc, group: "example.com", kind: "Widget", plural: "widgets" };
    const e = apiErrorOf(() => decodeProtobuf(envelope(new Uint8Array(), { apiVersion: "example.com/v1", kind: "Widget" }), crd));
    expect({ code: e.code, reason: e.status().reason }).toEqual({ code: 415, reason: "UnsupportedMediaType" });
  });

  test("unknown fields nested as groups are skipped only to a depth of 32", () => {
    // field 99 as start-group n deep: not in the schema, so skipped, but each level recurses
    const groups = (n: number) => new Uint8Array([...Array(n).fill([0x9b, 0x06]).flat(), ...Array(n).fill([0x9c, 0x06]).flat()]);
    const svc = type("services");
    expect(decodeProtobuf(envelope(groups(20), { apiVersion: "v1", kind: "Service" }), svc)).toEqual({ apiVersion: "v1", kind: "Service", metadata: {} });
    const e = apiErrorOf(() => decodeProtobuf(envelope(groups(40), { apiVersion: "v1", kind: "Service" }), svc));
    expect({ code: e.code, message: e.message }).toEqual({ code: 400, message: expect.stringContaining("maximum recursion depth") });
  });
});
