// The demo EndpointSlice controller: desired slices and the writes to reach them as plain
// functions, then against an in-process test API server (and kubectl, for `expose`).
import { afterAll, describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../../agent/watch/kube.ts";
import { TestApiServer } from "../apiserver/server.ts";
import { useTempDir, waitFor } from "../../test/harness/index.ts";
import { runAsync } from "../../agent/sys/exec.ts";
import { addressTypes, SliceTracker, CONTROLLER, desiredEndpoints, EndpointSliceController, endpointPorts, managedService, MANAGED_BY, plan, SERVICE_NAME } from "./endpointslices.ts";
import { Scheduler } from "./scheduler.ts";
import type { Obj } from "./informer.ts";

const svc = (name: string, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}): Obj => ({
  metadata: { name, namespace: "default", uid: `uid-${name}`, labels },
  spec: { selector: { app: name }, ipFamilies: ["IPv4"], clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }], ...spec },
});
const pod = (name: string, o: { app?: string; ips?: string[]; ready?: boolean; node?: string; ports?: unknown[]; deleting?: boolean; phase?: string } = {}): Obj => ({
  metadata: { name, namespace: "default", uid: `uid-${name}`, labels: { app: o.app ?? "web" }, ...((o.deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) as Record<string, any>) },
  spec: { nodeName: o.node ?? "n1", containers: [{ name: "c", image: "any", ports: o.ports ?? [] }] },
  status: { phase: o.phase ?? "Running", ...(o.ips ? { podIP: o.ips[0], podIPs: o.ips.map((ip) => ({ ip })) } : {}), conditions: [{ type: "Ready", status: o.ready === false ? "False" : "True" }] },
});
const endpoints = (d: ReturnType<typeof desiredEndpoints>) => [...d].map(([t, g]) => [t, [...g.values()].map((x) => [x.ports.map((p) => `${p.name}:${p.port}`).join(","), x.endpoints.map((e) => `${e.targetRef.name}=${e.addresses.join("+")}${e.conditions.ready ? "" : " notready"}${e.conditions.serving ? "" : " notserving"}${e.conditions.terminating ? " terminating" : ""}`)])]);

describe("desired endpoints", () => {
  test("which Services: a selector, not ExternalName; families from ipFamilies, else clusterIP, else both", () => {
    expect(managedService(svc("a"))).toBe(true);
    expect(managedService(svc("a", { selector: undefined }))).toBe(false);
    expect(managedService(svc("a", { selector: {} }))).toBe(false);
    expect(managedService(svc("a", { type: "ExternalName", externalName: "x.example" }))).toBe(false);
    expect(addressTypes(svc("a", { ipFamilies: ["IPv6", "IPv4"] }))).toEqual(["IPv4", "IPv6"]);
    expect(addressTypes(svc("a", { ipFamilies: undefined, clusterIP: "fd00::10" }))).toEqual(["IPv6"]);
    expect(addressTypes(svc("a", { ipFamilies: undefined, clusterIP: "None" }))).toEqual(["IPv4", "IPv6"]);
  });

  test("ports per pod: a named targetPort by name and protocol, a number as is, none: the port; a pod without the name lacks that port", () => {
    const s = svc("web", { ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: "http" }, { name: "dns", port: 53, protocol: "UDP", targetPort: "dns" }, { name: "plain", port: 9000 }] });
    const p = pod("p", { ports: [{ name: "http", containerPort: 8080 }, { name: "dns", containerPort: 5353, protocol: "TCP" }] });
    expect(endpointPorts(s, p)).toEqual([{ name: "http", port: 8080, protocol: "TCP" }, { name: "plain", port: 9000, protocol: "TCP" }]);
    expect(endpointPorts(svc("web", { ports: [null, { port: 80 }] }), p)).toEqual([{ name: "", port: 80, protocol: "TCP" }]);
  });

  test("one endpoint per pod and family; ready, serving, terminating; no IP, finished or nodeless pods left out", () => {
    const s = svc("web", { ipFamilies: ["IPv4", "IPv6"] });
    const pods = [
      pod("a", { ips: ["10.244.1.2", "fd00::2"] }),
      pod("b", { ips: ["10.244.1.3"], ready: false }),
      pod("c", { ips: ["10.244.1.4"], deleting: true }),
      pod("d"),
      pod("e", { ips: ["10.244.1.6"], phase: "Succeeded" }),
      pod("f", { ips: ["10.244.1.7"], app: "other" }),
      pod("g", { ips: ["10.244.1.8"], node: "gone" }),
    ];
    const nodes = new Map([["n1", { metadata: { name: "n1", labels: { "topology.kubernetes.io/zone": "z1" } } }]]);
    expect(endpoints(desiredEndpoints(s, pods, nodes))).toEqual([
      ["IPv4", [["http:8080", ["a=10.244.1.2", "b=10.244.1.3 notready notserving", "c=10.244.1.4 notready terminating"]]]],
      ["IPv6", [["http:8080", ["a=fd00::2"]]]],
    ]);
    const a = desiredEndpoints(s, pods, nodes).get("IPv4")!.values().next().value!.endpoints[0]!;
    expect(a).toEqual({ addresses: ["10.244.1.2"], conditions: { ready: true, serving: true, terminating: false }, nodeName: "n1", zone: "z1", targetRef: { kind: "Pod", namespace: "default", name: "a", uid: "uid-a" } });
    // publishNotReadyAddresses: every endpoint ready and serving
    expect(endpoints(desiredEndpoints(svc("web", { publishNotReadyAddresses: true }), [pods[1]!]))).toEqual([["IPv4", [["http:8080", ["b=10.244.1.3"]]]]]);
  });

  test("pods with different resolved ports go to different groups", () => {
    const s = svc("web", { ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: "http" }] });
    const pods = [pod("a", { ips: ["10.0.0.1"], ports: [{ name: "http", containerPort: 8080 }] }), pod("b", { ips: ["10.0.0.2"], ports: [{ name: "http", containerPort: 9090 }] })];
    expect(endpoints(desiredEndpoints(s, pods))).toEqual([["IPv4", [["http:8080", ["a=10.0.0.1"]], ["http:9090", ["b=10.0.0.2"]]]]]);
  });
});

describe("plan", () => {
  const s = svc("web", {}, { tier: "front" });
  const many = (n: number) => Array.from({ length: n }, (_, i) => pod(`p${String(i).padStart(3, "0")}`, { ips: [`10.0.${i >> 8}.${i & 255}`] }));
  const created = (p: ReturnType<typeof plan>) => p.create.map((x, i) => ({ ...x, metadata: { ...x.metadata, name: `web-${i}`, uid: `s${i}`, resourceVersion: "1" } }));

  test("a new Service: slices of at most 100, labelled and owned; then nothing to write", () => {
    const p = plan(s, desiredEndpoints(s, many(250)), []);
    expect(p.create.map((x) => x.endpoints.length)).toEqual([100, 100, 50]);
    expect(p.create[0]!.metadata).toEqual({ generateName: "web-", namespace: "default", labels: { tier: "front", [SERVICE_NAME]: "web", [MANAGED_BY]: CONTROLLER }, ownerReferences: [{ apiVersion: "v1", kind: "Service", name: "web", uid: "uid-web", controller: true, blockOwnerDeletion: true }] });
    expect(p.create[0]!.ports).toEqual([{ name: "http", port: 8080, protocol: "TCP" }]);
    expect(plan(s, desiredEndpoints(s, many(250)), created(p))).toEqual({ create: [], update: [], delete: [] });
  });

  test("endpoints stay in their slice; a removed one updates only its slice; new ones fill room first", () => {
    const first = created(plan(s, desiredEndpoints(s, many(150)), []));
    const fewer = many(150).filter((x) => x.metadata!.name !== "p010");
    const p = plan(s, desiredEndpoints(s, fewer), first);
    expect(p.update.map((x) => [x.metadata!.name, x.endpoints.length])).toEqual([["web-0", 99]]);
    expect(p.create).toEqual([]);
    const more = plan(s, desiredEndpoints(s, [...fewer, pod("z", { ips: ["10.9.9.9"] })]), first);
    expect(more.update.map((x) => [x.metadata!.name, x.endpoints.length])).toEqual([["web-0", 100]]);
  });

  test("no endpoints: one placeholder slice, kept as it is; other owners' and other families' slices go", () => {
    const p = plan(s, desiredEndpoints(s, []), []);
    expect(p.create.map((x) => [x.addressType, x.endpoints, x.ports])).toEqual([["IPv4", [], []]]);
    const placeholder = created(p);
    expect(plan(s, desiredEndpoints(s, []), placeholder)).toEqual({ create: [], update: [], delete: [] });
    const stale = { ...placeholder[0]!, metadata: { ...placeholder[0]!.metadata, name: "web-old", uid: "old", ownerReferences: [{ apiVersion: "v1", kind: "Service", name: "web", uid: "before", controller: true }] } };
    const v6 = { ...placeholder[0]!, addressType: "IPv6", metadata: { ...placeholder[0]!.metadata, name: "web-v6", uid: "v6" } };
    expect(plan(s, desiredEndpoints(s, []), [...placeholder, stale, v6]).delete.map((x) => x.metadata!.name)).toEqual(["web-old", "web-v6"]);
  });

  test("a Service label change relabels its slices", () => {
    const first = created(plan(s, desiredEndpoints(s, many(3)), []));
    const relabelled = svc("web", {}, { tier: "back" });
    expect(plan(relabelled, desiredEndpoints(relabelled, many(3)), first).update.map((x) => x.metadata!.labels!.tier)).toEqual(["back"]);
  });
});

describe("SliceTracker", () => {
  const slice = (uid: string, generation: number): Obj => ({ metadata: { uid, generation } });
  test("a Service waits until the cache shows its writes: a created or updated slice at its generation, a deleted one gone", () => {
    const t = new SliceTracker();
    expect(t.caughtUp("default/web", [])).toBe(true);
    t.wrote("default/web", slice("a", 1));
    expect(t.caughtUp("default/web", [])).toBe(false); // created, not in the cache yet
    expect(t.caughtUp("default/other", [])).toBe(true);
    expect(t.caughtUp("default/web", [slice("a", 1)])).toBe(true);
    t.wrote("default/web", slice("a", 2));
    expect(t.caughtUp("default/web", [slice("a", 1)])).toBe(false); // an update the cache is behind
    expect(t.caughtUp("default/web", [slice("a", 3)])).toBe(true);
    t.deleted("default/web", slice("a", 3));
    expect(t.caughtUp("default/web", [slice("a", 3)])).toBe(false);
    expect(t.caughtUp("default/web", [])).toBe(true);
    t.wrote("default/gone", slice("b", 1));
    t.keep(new Set(["default/web"]));
    expect(t.caughtUp("default/gone", [])).toBe(true);
  });
});

describe("EndpointSliceController against the test API server", () => {
  const s = TestApiServer.start({ tokens: ["t"] });
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig());
  const api = new KubeClient(kc);
  const logs: string[] = [];
  const ctl = new EndpointSliceController(api, (m) => logs.push(m));
  afterAll(async () => {
    await ctl.stop();
    await s.stop();
  });
  const ns = "/api/v1/namespaces/default";
  const SL = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
  const slicesOf = async (service: string) => (await api.request<{ items: Obj[] }>("GET", SL, { query: { labelSelector: `${SERVICE_NAME}=${service}` } })).items;
  const merge = (path: string, body: unknown) => api.request<Obj>("PATCH", path, { body, contentType: "application/merge-patch+json" });
  const setStatus = (name: string, ip: string, ready: boolean) => merge(`${ns}/pods/${name}/status`, { status: { phase: "Running", podIP: ip, podIPs: [{ ip }], conditions: [{ type: "Ready", status: ready ? "True" : "False" }] } });
  /** the endpoints of the service's managed slices, as pod=conditions */
  const seen = async (service: string) =>
    (await slicesOf(service))
      .filter((x) => x.metadata!.labels?.[MANAGED_BY] === CONTROLLER)
      .flatMap((x) => (x.endpoints ?? []).map((e: any) => `${e.targetRef.name}:${e.addresses.join()}:${x.ports.map((p: any) => p.port).join()}:${["ready", "serving", "terminating"].filter((c) => e.conditions[c]).join("+")}`))
      .sort();
  const until = (what: string, service: string, want: string[]) => waitFor(what, async () => JSON.stringify(await seen(service)) === JSON.stringify(want) || undefined, 10_000).catch(async (e) => {
    throw new Error(`${(e as Error).message}; have ${JSON.stringify(await seen(service))}`);
  });

  test("slices follow pods: a placeholder, then ready, terminating, gone; a named port; out of the selector", async () => {
    for (const n of ["n1", "n2"]) await api.request("POST", "/api/v1/nodes", { body: { metadata: { name: n } } });
    const container = { name: "c", image: "any", ports: [{ name: "http", containerPort: 8080 }] };
    for (const [p, n] of [["web-1", "n1"], ["web-2", "n2"]]) await api.request("POST", `${ns}/pods`, { body: { metadata: { name: p, labels: { app: "web" } }, spec: { nodeName: n, containers: [container] } } });
    await api.request("POST", `${ns}/services`, { body: { metadata: { name: "web" }, spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }] } } });
    // another manager's slice for the same Service, and a Service without selector with its own slice
    const theirs = { metadata: { name: "web-theirs", labels: { [SERVICE_NAME]: "web", [MANAGED_BY]: "someone-else" } }, addressType: "IPv4", endpoints: [{ addresses: ["10.1.1.1"] }], ports: [{ name: "http", port: 1, protocol: "TCP" }] };
    const theirsRv = (await api.request<Obj>("POST", SL, { body: theirs })).metadata!.resourceVersion;
    await api.request("POST", `${ns}/services`, { body: { metadata: { name: "manual" }, spec: { ports: [{ port: 80 }] } } });
    await api.request("POST", SL, { body: { metadata: { name: "manual-1", labels: { [SERVICE_NAME]: "manual" } }, addressType: "IPv4", endpoints: [{ addresses: ["10.1.1.2"] }], ports: [{ port: 80, protocol: "TCP" }] } });

    await ctl.start();
    const placeholder = await waitFor("placeholder slice", async () => (await slicesOf("web")).find((x) => x.metadata!.labels?.[MANAGED_BY] === CONTROLLER));
    expect(placeholder).toMatchObject({ addressType: "IPv4", endpoints: [], ports: [], metadata: { generateName: "web-", ownerReferences: [{ kind: "Service", name: "web", controller: true, blockOwnerDeletion: true }] } });

    await setStatus("web-1", "10.244.1.5", false);
    await until("web-1 not ready", "web", ["web-1:10.244.1.5:8080:"]);
    await setStatus("web-1", "10.244.1.5", true);
    await setStatus("web-2", "10.244.2.5", true);
    await until("both ready", "web", ["web-1:10.244.1.5:8080:ready+serving", "web-2:10.244.2.5:8080:ready+serving"]);
    const managed = (await slicesOf("web")).filter((x) => x.metadata!.labels?.[MANAGED_BY] === CONTROLLER);
    expect(managed).toHaveLength(1);
    expect(managed[0]!.endpoints[0]).toEqual({ addresses: ["10.244.1.5"], conditions: { ready: true, serving: true, terminating: false }, nodeName: "n1", targetRef: { kind: "Pod", namespace: "default", name: "web-1", uid: expect.any(String) } });

    // nothing changed for it: no write
    const rv = managed[0]!.metadata!.resourceVersion;
    await merge(`${ns}/pods/web-2`, { metadata: { annotations: { touched: "1" } } });
    await api.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n3" } } });
    // a Service made after those changes: once its slice is there, the controller has had a pass that saw them
    await api.request("POST", `${ns}/services`, { body: { metadata: { name: "probe" }, spec: { selector: { app: "probe" }, ports: [{ port: 80 }] } } });
    await waitFor("probe's placeholder", async () => (await slicesOf("probe")).length > 0 || undefined);
    expect((await slicesOf("web")).find((x) => x.metadata!.name === managed[0]!.metadata!.name)!.metadata!.resourceVersion).toBe(rv);

    // deleted: terminating (the bound pod stays until its node lets it go), then gone
    await api.request("DELETE", `${ns}/pods/web-1`);
    await until("web-1 terminating", "web", ["web-1:10.244.1.5:8080:serving+terminating", "web-2:10.244.2.5:8080:ready+serving"]);
    await api.request("DELETE", `${ns}/pods/web-1`, { query: { gracePeriodSeconds: 0 } });
    await until("web-1 gone", "web", ["web-2:10.244.2.5:8080:ready+serving"]);

    // a label change takes web-2 out of the selector: back to a placeholder
    await merge(`${ns}/pods/web-2`, { metadata: { labels: { app: "other" } } });
    await until("web-2 out", "web", []);
    expect((await slicesOf("web")).filter((x) => x.metadata!.labels?.[MANAGED_BY] === CONTROLLER).map((x) => x.endpoints.length)).toEqual([0]);

    // the other manager's slice and the selectorless Service's slice were never touched
    expect((await api.request<Obj>("GET", `${SL}/web-theirs`)).metadata!.resourceVersion).toBe(theirsRv);
    expect((await slicesOf("manual")).map((x) => x.metadata!.name)).toEqual(["manual-1"]);
  });

  test("a deleted Service's slices are collected with it", async () => {
    await api.request("DELETE", `${ns}/services/web`);
    await waitFor("web's slices collected", async () => (await slicesOf("web")).every((x) => x.metadata!.labels?.[MANAGED_BY] !== CONTROLLER) || undefined);
    expect((await slicesOf("web")).map((x) => x.metadata!.name)).toEqual(["web-theirs"]);
  });
});

describe("kubectl run and expose", () => {
  const s = TestApiServer.start({ tokens: ["t"] });
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig());
  const api = new KubeClient(kc);
  const sched = new Scheduler(api, () => {});
  const ctl = new EndpointSliceController(api, () => {});
  const dir = useTempDir("ctl-kubectl");
  afterAll(async () => {
    await sched.stop();
    await ctl.stop();
    await s.stop();
  });
  const kubectl = Bun.which("kubectl");

  test.skipIf(!kubectl)("kubectl run is bound by the scheduler; kubectl expose pod gets a slice once the pod is Ready", async () => {
    await Bun.write(`${dir}/kubeconfig`, s.kubeconfig());
    const k = (...args: string[]) => runAsync([kubectl!, "--kubeconfig", `${dir}/kubeconfig`, "--cache-dir", `${dir}/cache`, ...args]);
    await api.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" } } });
    await Promise.all([sched.start(), ctl.start()]);
    await k("run", "web", "--image=any", "--port=8080");
    const ns = "/api/v1/namespaces/default";
    await waitFor("web bound", async () => (await api.request<Obj>("GET", `${ns}/pods/web`)).spec.nodeName === "n1" || undefined, 10_000);
    await k("expose", "pod", "web", "--port=80");
    const service = await api.request<Obj>("GET", `${ns}/services/web`);
    // what kubectl 1.32 asks for: the pod's containerPort is not looked at when --port is given
    expect(service.spec.ports).toEqual([{ port: 80, protocol: "TCP", targetPort: 80 }]);
    await api.request("PATCH", `${ns}/pods/web/status`, { body: { status: { phase: "Running", podIP: "10.244.0.7", podIPs: [{ ip: "10.244.0.7" }], conditions: [{ type: "Ready", status: "True" }] } }, contentType: "application/merge-patch+json" });
    const slice = await waitFor("web's slice", async () => (await api.request<{ items: Obj[] }>("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", { query: { labelSelector: `${SERVICE_NAME}=web` } })).items.find((x) => x.endpoints?.length), 10_000);
    expect(slice.endpoints.map((e: any) => [e.targetRef.name, e.addresses, e.conditions.ready])).toEqual([["web", ["10.244.0.7"], true]]);
    expect(slice.ports).toEqual([{ name: "", port: 80, protocol: "TCP" }]);
  });
});
