// The Table printers: kube-apiserver's columns and cell formats for each kind served.
import { describe, expect, test } from "bun:test";
import { formatLabelSelector, humanDuration, servicePorts, tableOf, wantsTable, watchTableEvent } from "./printers.ts";
import { ApiError } from "./store.ts";
import type { KubeObject } from "./resources.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const ago = (s: number) => new Date(NOW - s * 1000).toISOString().replace(/\.\d+Z$/, "Z");
const obj = (kind: string, name: string, rest: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): KubeObject => ({ kind, metadata: { name, namespace: "default", creationTimestamp: ago(90), resourceVersion: "7", ...meta }, ...rest });
const table = (kind: string, objs: KubeObject[]) => tableOf(kind, objs, { version: "v1", now: NOW }) as { columnDefinitions: Array<{ name: string; priority: number }>; rows: Array<{ cells: unknown[]; object?: any }> };
const headers = (kind: string) => {
  const cols = table(kind, []).columnDefinitions;
  return { normal: cols.filter((c) => c.priority === 0).map((c) => c.name.toUpperCase()), wide: cols.filter((c) => c.priority > 0).map((c) => c.name.toUpperCase()) };
};

describe("columns kubectl shows", () => {
  test("per kind", () => {
    expect(headers("Namespace").normal).toEqual(["NAME", "STATUS", "AGE"]);
    expect(headers("Node")).toEqual({ normal: ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], wide: ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"] });
    expect(headers("Pod")).toEqual({ normal: ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], wide: ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] });
    expect(headers("Service")).toEqual({ normal: ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], wide: ["SELECTOR"] });
    expect(headers("EndpointSlice").normal).toEqual(["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    expect(headers("NetworkPolicy").normal).toEqual(["NAME", "POD-SELECTOR", "AGE"]);
    expect(headers("ConfigMap").normal).toEqual(["NAME", "DATA", "AGE"]);
    expect(headers("Widget").normal).toEqual(["NAME", "AGE"]);
  });
});

describe("cells", () => {
  test("Service: type, cluster IP, external IP, ports with node ports, selector", () => {
    const np = obj("Service", "np", { spec: { type: "NodePort", clusterIP: "10.96.0.10", clusterIPs: ["10.96.0.10"], selector: { b: "2", a: "1" }, ports: [{ port: 80, nodePort: 30080, protocol: "TCP" }, { port: 443, protocol: "TCP" }] } });
    expect(table("Service", [np]).rows[0]!.cells).toEqual(["np", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,443/TCP", "90s", "a=1,b=2"]);
    const lb = obj("Service", "lb", { spec: { type: "LoadBalancer", clusterIPs: ["10.96.0.11"], externalIPs: ["203.0.113.9"], ports: [{ port: 53, protocol: "UDP", nodePort: 30053 }] }, status: { loadBalancer: { ingress: [{ ip: "198.51.100.2" }, { hostname: "lb.example" }] } } });
    expect(table("Service", [lb]).rows[0]!.cells.slice(1, 5)).toEqual(["LoadBalancer", "10.96.0.11", "198.51.100.2,lb.example,203.0.113.9", "53:30053/UDP"]);
    const pending = obj("Service", "p", { spec: { type: "LoadBalancer", clusterIPs: ["10.96.0.12"] } });
    expect(table("Service", [pending]).rows[0]!.cells.slice(2, 5)).toEqual(["10.96.0.12", "<pending>", "<none>"]);
    const ext = obj("Service", "e", { spec: { type: "ExternalName", externalName: "example.com" } });
    expect(table("Service", [ext]).rows[0]!.cells.slice(1, 4)).toEqual(["ExternalName", "<none>", "example.com"]);
    const headless = obj("Service", "h", { spec: { type: "ClusterIP", clusterIP: "None", clusterIPs: ["None"], externalIPs: ["192.0.2.1", "192.0.2.2"] } });
    expect(table("Service", [headless]).rows[0]!.cells.slice(2, 4)).toEqual(["None", "192.0.2.1,192.0.2.2"]);
    expect(servicePorts([])).toBe("<none>");
  });

  test("EndpointSlice: three ports and endpoints, then + N more...", () => {
    const es = obj("EndpointSlice", "web-abc", { addressType: "IPv4", ports: [{ port: 80 }, { name: "x", port: null }, {}, { port: 9 }], endpoints: [{ addresses: ["10.0.0.1", "10.0.0.2"] }, { addresses: ["10.0.0.3"] }, { addresses: ["10.0.0.4", "10.0.0.5"] }] });
    expect(table("EndpointSlice", [es]).rows[0]!.cells).toEqual(["web-abc", "IPv4", "80,x,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", "90s"]);
    expect(table("EndpointSlice", [obj("EndpointSlice", "e", { addressType: "IPv6" })]).rows[0]!.cells.slice(2, 4)).toEqual(["<unset>", "<unset>"]);
  });

  test("Node: status, roles, version, addresses", () => {
    const n = obj("Node", "n1", { spec: { unschedulable: true }, status: { conditions: [{ type: "Ready", status: "True" }], addresses: [{ type: "InternalIP", address: "192.168.1.2" }], nodeInfo: { kubeletVersion: "v1.32.0", osImage: "Debian" } } }, { namespace: undefined, labels: { "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker" } });
    expect(table("Node", [n]).rows[0]!.cells).toEqual(["n1", "Ready,SchedulingDisabled", "control-plane,worker", "90s", "v1.32.0", "192.168.1.2", "<none>", "Debian", "<unknown>", "<unknown>"]);
    expect(table("Node", [obj("Node", "n2", { status: { conditions: [{ type: "Ready", status: "False" }] } })]).rows[0]!.cells.slice(1, 3)).toEqual(["NotReady", "<none>"]);
    expect(table("Node", [obj("Node", "n3")]).rows[0]!.cells[1]).toBe("Unknown");
  });

  test("Pod: ready count, status, restarts, IP and node", () => {
    const p = obj("Pod", "web", { spec: { nodeName: "n1", containers: [{ name: "a" }, { name: "b" }] }, status: { phase: "Running", podIP: "10.244.0.5", containerStatuses: [{ name: "a", ready: true, restartCount: 2, state: { running: {} }, lastState: { terminated: { finishedAt: ago(300) } } }, { name: "b", ready: false, restartCount: 1, state: { waiting: { reason: "CrashLoopBackOff" } } }] } });
    expect(table("Pod", [p]).rows[0]!.cells).toEqual(["web", "1/2", "CrashLoopBackOff", "3 (5m ago)", "90s", "10.244.0.5", "n1", "<none>", "<none>"]);
    const pending = obj("Pod", "p", { spec: { containers: [{ name: "a" }] }, status: { phase: "Pending" } });
    expect(table("Pod", [pending]).rows[0]!.cells.slice(1, 4)).toEqual(["0/1", "Pending", "0"]);
    const gone = obj("Pod", "g", { spec: { containers: [{ name: "a" }] }, status: { phase: "Running" } }, { deletionTimestamp: ago(0) });
    expect(table("Pod", [gone]).rows[0]!.cells[2]).toBe("Terminating");
  });

  test("Namespace, NetworkPolicy, ConfigMap", () => {
    expect(table("Namespace", [obj("Namespace", "x", { status: { phase: "Active" } })]).rows[0]!.cells).toEqual(["x", "Active", "90s"]);
    const np = obj("NetworkPolicy", "deny", { spec: { podSelector: { matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "In", values: ["b", "a"] }, { key: "env", operator: "DoesNotExist" }] } } });
    expect(table("NetworkPolicy", [np]).rows[0]!.cells).toEqual(["deny", "app=web,!env,tier in (a,b)", "90s"]);
    expect(formatLabelSelector({})).toBe("<none>");
    expect(table("ConfigMap", [obj("ConfigMap", "c", { data: { a: "1", b: "2" }, binaryData: { c: "" } })]).rows[0]!.cells).toEqual(["c", 3, "90s"]);
  });

  test("AGE as Go's HumanDuration", () => {
    const cases: Array<[number, string]> = [[-5, "<invalid>"], [-1, "0s"], [0, "0s"], [119, "119s"], [120, "2m"], [150, "2m30s"], [600, "10m"], [179 * 60, "179m"], [3 * 3600 + 60, "3h1m"], [8 * 3600, "8h"], [47 * 3600, "47h"], [50 * 3600, "2d2h"], [10 * 86400, "10d"], [800 * 86400, "2y70d"], [9 * 365 * 86400, "9y"]];
    for (const [s, want] of cases) expect(humanDuration(s * 1000)).toBe(want);
    expect(table("Namespace", [obj("Namespace", "x", {}, { creationTimestamp: undefined })]).rows[0]!.cells[2]).toBe("<unknown>");
  });
});

describe("objects and negotiation", () => {
  test("includeObject: metadata by default, the object, or none", () => {
    const s = obj("Service", "a", { spec: { type: "ClusterIP", ports: [] } });
    expect(table("Service", [s]).rows[0]!.object).toEqual({ kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: s.metadata });
    expect((tableOf("Service", [s], { version: "v1", includeObject: "Object" }) as any).rows[0].object).toBe(s);
    expect((tableOf("Service", [s], { version: "v1", includeObject: "None" }) as any).rows[0].object).toBeUndefined();
    expect(() => tableOf("Service", [s], { version: "v1", includeObject: "All" })).toThrow(ApiError);
    const e = watchTableEvent({ type: "MODIFIED", object: s }, "Service", { version: "v1" }) as any;
    expect(e.type).toBe("MODIFIED");
    expect(e.object).toMatchObject({ kind: "Table", metadata: { resourceVersion: "7" } });
    expect(e.object.rows).toHaveLength(1);
  });

  test("Accept: kubectl's header asks for v1; plain JSON does not; an unservable Table alone is 406", () => {
    expect(wantsTable("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")).toBe("v1");
    expect(wantsTable("application/json;as=Table;v=v1beta1;g=meta.k8s.io")).toBe("v1beta1");
    expect(wantsTable("application/json")).toBeUndefined();
    expect(wantsTable(undefined)).toBeUndefined();
    expect(wantsTable("application/json;as=Table;v=v2;g=meta.k8s.io, application/json")).toBeUndefined();
    expect(() => wantsTable("application/json;as=Table;v=v2;g=meta.k8s.io")).toThrow(ApiError);
  });
});
