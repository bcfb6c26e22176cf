// The demo scheduler: its filters, choice and message as plain functions, then against an
// in-process test API server through the same KubeClient the demo uses.
import { afterAll, describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../../agent/watch/kube.ts";
import { TestApiServer } from "../apiserver/server.ts";
import { waitFor } from "../../test/harness/index.ts";
import { choose, fitErrorMessage, loadOf, matchesNodeAffinity, pending, Scheduler, taintsOf, tolerates, unfit } from "./scheduler.ts";
import type { Obj } from "./informer.ts";

const node = (name: string, o: { labels?: Record<string, string>; taints?: unknown[]; unschedulable?: boolean; ready?: string } = {}): Obj => ({
  metadata: { name, labels: o.labels ?? {} },
  spec: { ...(o.taints ? { taints: o.taints } : {}), ...(o.unschedulable ? { unschedulable: true } : {}) },
  status: o.ready ? { conditions: [{ type: "Ready", status: o.ready }] } : {},
});
const pod = (name: string, spec: Record<string, unknown> = {}, extra: Record<string, any> = {}): Obj => ({ metadata: { name, namespace: "default", ...extra.metadata }, spec: { containers: [{ name: "c", image: "any" }], ...spec }, status: extra.status ?? {} });

describe("filters", () => {
  test("toleration matching as v1 Toleration.ToleratesTaint", () => {
    const taint = { key: "k", value: "v", effect: "NoSchedule" };
    expect(tolerates({ key: "k", operator: "Equal", value: "v", effect: "NoSchedule" }, taint)).toBe(true);
    expect(tolerates({ key: "k", value: "v" }, taint)).toBe(true); // operator defaults to Equal, any effect
    expect(tolerates({ key: "k", value: "w" }, taint)).toBe(false);
    expect(tolerates({ key: "k", operator: "Exists" }, taint)).toBe(true);
    expect(tolerates({ operator: "Exists" }, taint)).toBe(true); // empty key + Exists: everything
    expect(tolerates({ key: "k", operator: "Exists", effect: "NoExecute" }, taint)).toBe(false);
    expect(tolerates({ key: "other", operator: "Exists" }, taint)).toBe(false);
    expect(tolerates({ key: "k", operator: "Lt", value: "v" }, taint)).toBe(false);
    expect(tolerates({ key: "k" }, { key: "k", effect: "NoSchedule" })).toBe(true); // empty value equals empty value
  });

  test("a node's Ready condition False or Unknown stands for the lifecycle controller's taints; none: schedulable", () => {
    expect(taintsOf(node("a"))).toEqual([]);
    expect(taintsOf(node("a", { ready: "True" }))).toEqual([]);
    expect(taintsOf(node("a", { ready: "False" }))).toEqual([{ key: "node.kubernetes.io/not-ready", effect: "NoSchedule" }]);
    expect(taintsOf(node("a", { ready: "Unknown" }))).toEqual([{ key: "node.kubernetes.io/unreachable", effect: "NoSchedule" }]);
    expect(unfit(pod("p", { tolerations: [{ key: "node.kubernetes.io/not-ready", operator: "Exists" }] }), node("a", { ready: "False" }))).toBeUndefined();
  });

  test("each node's first failing filter, in kube-scheduler's order; PreferNoSchedule does not filter", () => {
    expect(unfit(pod("p"), node("a", { unschedulable: true, taints: [{ key: "x", effect: "NoSchedule" }] }))).toBe("node(s) were unschedulable");
    expect(unfit(pod("p", { tolerations: [{ key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" }] }), node("a", { unschedulable: true }))).toBeUndefined();
    expect(unfit(pod("p", { nodeSelector: { zone: "b" } }), node("a", { taints: [{ key: "gpu", value: "yes", effect: "NoExecute" }] }))).toBe("node(s) had untolerated taint {gpu: yes}");
    expect(unfit(pod("p"), node("a", { taints: [{ key: "soft", effect: "PreferNoSchedule" }] }))).toBeUndefined();
    // a hostile entry is no toleration, not a failure
    expect(unfit(pod("p", { tolerations: [null, 7] }), node("a", { taints: [{ key: "x", effect: "NoSchedule" }] }))).toBe("node(s) had untolerated taint {x: }");
    expect(unfit(pod("p", { nodeSelector: { zone: "b" } }), node("a", { labels: { zone: "a" } }))).toBe("node(s) didn't match Pod's node affinity/selector");
    expect(unfit(pod("p", { nodeSelector: { zone: "a" } }), node("a", { labels: { zone: "a", other: "x" } }))).toBeUndefined();
  });

  test("required node affinity: any term, every expression; matchFields on the name; an empty term matches nothing", () => {
    const aff = (terms: unknown[]) => pod("p", { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } });
    const n = node("n1", { labels: { zone: "a", cores: "8" } });
    expect(matchesNodeAffinity(aff([{ matchExpressions: [{ key: "zone", operator: "In", values: ["a", "b"] }, { key: "cores", operator: "Gt", values: ["4"] }] }]), n)).toBe(true);
    expect(matchesNodeAffinity(aff([{ matchExpressions: [{ key: "cores", operator: "Lt", values: ["4"] }] }, { matchFields: [{ key: "metadata.name", operator: "In", values: ["n1"] }] }]), n)).toBe(true);
    expect(matchesNodeAffinity(aff([{ matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }] }]), n)).toBe(false);
    expect(matchesNodeAffinity(aff([{ matchExpressions: [{ key: "gpu", operator: "DoesNotExist" }, { key: "zone", operator: "Exists" }] }]), n)).toBe(true);
    expect(matchesNodeAffinity(aff([{}]), n)).toBe(false);
  });

  test("pending: unbound, for default-scheduler, not terminating, not gated, not finished", () => {
    expect(pending(pod("p"))).toBe(true);
    expect(pending(pod("p", { schedulerName: "default-scheduler" }))).toBe(true);
    expect(pending(pod("p", { schedulerName: "other" }))).toBe(false);
    expect(pending(pod("p", { nodeName: "n1" }))).toBe(false);
    expect(pending(pod("p", { schedulingGates: [{ name: "g" }] }))).toBe(false);
    expect(pending(pod("p", {}, { metadata: { deletionTimestamp: "2026-01-01T00:00:00Z" } }))).toBe(false);
    expect(pending(pod("p", {}, { status: { phase: "Failed" } }))).toBe(false);
  });
});

describe("choice and message", () => {
  test("the fitting node with the fewest non-terminated pods, ties by name", () => {
    const nodes = [node("c"), node("b"), node("a")];
    expect(choose(pod("p"), nodes, new Map())).toEqual({ node: "a" });
    const pods = [pod("x", { nodeName: "a" }), pod("y", { nodeName: "b" }), pod("z", { nodeName: "c" }, { status: { phase: "Succeeded" } })];
    expect(loadOf(pods, new Map())).toEqual(new Map([["a", 1], ["b", 1]]));
    expect(choose(pod("p"), nodes, loadOf(pods, new Map()))).toEqual({ node: "c" });
    // a binding the cache does not show yet counts
    expect(choose(pod("p"), nodes, loadOf([...pods, pod("w")], new Map([["default/w", "c"]])))).toEqual({ node: "a" });
  });

  test("kube-scheduler's FitError wording: a sorted histogram of reasons", () => {
    const nodes = [node("a", { labels: { zone: "x" } }), node("b", { taints: [{ key: "k", value: "v", effect: "NoSchedule" }] }), node("c", { taints: [{ key: "k", value: "v", effect: "NoSchedule" }] })];
    expect(choose(pod("p", { nodeSelector: { zone: "y" } }), nodes, new Map())).toEqual({
      message: "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    });
    expect(fitErrorMessage(0, [])).toBe("no nodes available to schedule pods");
  });
});

describe("Scheduler against the test API server", () => {
  const s = TestApiServer.start({ tokens: ["t"] });
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig());
  const api = new KubeClient(kc);
  const logs: string[] = [];
  const sched = new Scheduler(api, (m) => logs.push(m));
  afterAll(async () => {
    await sched.stop();
    await s.stop();
  });
  const ns = "/api/v1/namespaces/default";
  const create = (o: Obj) => api.request<Obj>("POST", `${ns}/pods`, { body: o });
  const get = (name: string) => api.request<Obj>("GET", `${ns}/pods/${name}`);
  const boundTo = (name: string) => waitFor(`pod ${name} bound`, async () => (await get(name)).spec?.nodeName as string | undefined, 10_000);

  test("unbound pods are bound, spread over the nodes; each gets PodScheduled=True and a Scheduled event", async () => {
    for (const n of ["n1", "n2", "n3"]) await api.request("POST", "/api/v1/nodes", { body: node(n) });
    await sched.start();
    for (let i = 0; i < 6; i++) await create(pod(`web-${i}`));
    const nodes = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => boundTo(`web-${i}`)));
    expect(nodes.sort()).toEqual(["n1", "n1", "n2", "n2", "n3", "n3"]);
    const p = await get("web-0");
    expect(p.status.conditions).toContainEqual(expect.objectContaining({ type: "PodScheduled", status: "True" }));
    const events = await waitFor("Scheduled event", async () => {
      const l = await api.request<{ items: Obj[] }>("GET", `${ns}/events`, { query: { fieldSelector: "involvedObject.name=web-0,reason=Scheduled" } });
      return l.items[0];
    });
    expect(events).toMatchObject({ type: "Normal", reportingComponent: "default-scheduler", source: { component: "default-scheduler" }, message: `Successfully assigned default/web-0 to ${p.spec.nodeName}` });
    // a pod of another scheduler is left alone
    await create(pod("theirs", { schedulerName: "other" }));
    await create(pod("after"));
    await boundTo("after");
    expect((await get("theirs")).spec.nodeName).toBeUndefined();
  });

  test("nodeSelector and taints pick the node; a pod nothing fits gets Unschedulable, then is bound when a node comes", async () => {
    await api.request("PATCH", "/api/v1/nodes/n1", { body: { metadata: { labels: { disk: "ssd" } } }, contentType: "application/merge-patch+json" });
    await api.request("PATCH", "/api/v1/nodes/n2", { body: { spec: { taints: [{ key: "dedicated", value: "db", effect: "NoSchedule" }] } }, contentType: "application/merge-patch+json" });
    await create(pod("ssd", { nodeSelector: { disk: "ssd" } }));
    expect(await boundTo("ssd")).toBe("n1");
    await create(pod("db", { nodeSelector: { disk: "ssd" }, tolerations: [{ key: "dedicated", operator: "Equal", value: "db", effect: "NoSchedule" }] }));
    expect(await boundTo("db")).toBe("n1");
    await create(pod("gpu", { nodeSelector: { gpu: "yes" } }));
    const cond = await waitFor("Unschedulable condition", async () => {
      const c = ((await get("gpu")).status.conditions ?? []).find((c: any) => c.type === "PodScheduled");
      return c?.status === "False" ? c : undefined;
    });
    expect(cond).toMatchObject({ reason: "Unschedulable", message: "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling." });
    const rv = (await get("gpu")).metadata!.resourceVersion;
    // nothing new to say: no more writes while nothing changes (other pods come and go)
    await create(pod("unrelated"));
    await boundTo("unrelated");
    expect((await get("gpu")).metadata!.resourceVersion).toBe(rv);
    const failed = await api.request<{ items: Obj[] }>("GET", `${ns}/events`, { query: { fieldSelector: "involvedObject.name=gpu,reason=FailedScheduling" } });
    expect(failed.items.map((e) => [e.type, e.message])).toEqual([["Warning", cond.message]]);
    await api.request("POST", "/api/v1/nodes", { body: node("n4", { labels: { gpu: "yes" } }) });
    expect(await boundTo("gpu")).toBe("n4");
    expect(((await get("gpu")).status.conditions ?? []).find((c: any) => c.type === "PodScheduled")).toMatchObject({ status: "True" });
  });
});
