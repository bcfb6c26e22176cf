// A Pod's binding subresource, as kube-apiserver's BindingREST serves it to a scheduler, and
// the pod update rule that leaves spec.nodeName to it.
import { afterAll, describe, expect, test } from "bun:test";
import { readWatchEvents, startServer } from "./testclient.ts";

const { s, request, failure } = startServer();
afterAll(() => s.stop());

const pod = (name: string, spec: Record<string, unknown> = {}) => ({ metadata: { name }, spec: { containers: [{ name: "c", image: "any" }], ...spec } });
const bind = (ns: string, name: string, node: string, meta: Record<string, unknown> = {}) => request("POST", `/api/v1/namespaces/${ns}/pods/${name}/binding`, { apiVersion: "v1", kind: "Binding", metadata: { name, ...meta }, target: { kind: "Node", name: node } });

describe("pods/binding", () => {
  test("discovery lists pods/binding and bindings, create only", async () => {
    const core = await request<{ resources: Array<{ name: string; kind: string; verbs: string[]; namespaced: boolean }> }>("GET", "/api/v1");
    expect(core.resources.find((r) => r.name === "pods/binding")).toEqual({ name: "pods/binding", singularName: "", namespaced: true, kind: "Binding", verbs: ["create"] } as never);
    expect(core.resources.find((r) => r.name === "bindings")).toMatchObject({ namespaced: true, kind: "Binding", verbs: ["create"] });
  });

  test("binds an unbound pod: spec.nodeName, PodScheduled=True, one MODIFIED event, Status Success 201", async () => {
    const created = await request("POST", "/api/v1/namespaces/default/pods", pod("b1"));
    const ctl = new AbortController();
    const r = await fetch(`${s.url}/api/v1/namespaces/default/pods?watch=true&resourceVersion=${created.metadata.resourceVersion}`, { headers: { authorization: "Bearer t" }, signal: ctl.signal, tls: { ca: s.certs.ca } } as RequestInit);
    const events = readWatchEvents(r.body!, 1);
    const res = await fetch(`${s.url}/api/v1/namespaces/default/pods/b1/binding`, { method: "POST", headers: { authorization: "Bearer t", "content-type": "application/json" }, body: JSON.stringify({ metadata: { name: "b1", annotations: { "x/y": "z" } }, target: { name: "n1" } }), tls: { ca: s.certs.ca } } as RequestInit);
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", code: 201 });
    const [e] = await events;
    ctl.abort();
    expect(e!.type).toBe("MODIFIED");
    expect(e!.object.spec.nodeName).toBe("n1");
    expect(e!.object.metadata.annotations).toEqual({ "x/y": "z" });
    expect(e!.object.status.conditions).toEqual([{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: expect.any(String) }]);
  });

  test("a bound pod: 409 already assigned; a gated pod: 409 non-empty schedulingGates", async () => {
    await request("POST", "/api/v1/namespaces/default/pods", pod("b2"));
    await bind("default", "b2", "n1");
    expect(await failure(bind("default", "b2", "n2"))).toEqual({ code: 409, message: 'Operation cannot be fulfilled on pods/binding "b2": pod b2 is already assigned to node "n1"' });
    expect((await request("GET", "/api/v1/namespaces/default/pods/b2")).spec.nodeName).toBe("n1");
    await request("POST", "/api/v1/namespaces/default/pods", pod("b3", { schedulingGates: [{ name: "wait" }] }));
    expect(await failure(bind("default", "b3", "n1"))).toEqual({ code: 409, message: 'Operation cannot be fulfilled on pods/binding "b3": pod b3 has non-empty .spec.schedulingGates' });
  });

  test("no such pod: 404; names that differ: 400; no target name: 500 as kube-apiserver; uid precondition: 409", async () => {
    expect(await failure(bind("default", "nope", "n1"))).toEqual({ code: 404, message: 'pods "nope" not found' });
    await request("POST", "/api/v1/namespaces/default/pods", pod("b4"));
    expect(await failure(request("POST", "/api/v1/namespaces/default/pods/b4/binding", { metadata: { name: "other" }, target: { name: "n1" } }))).toEqual({ code: 400, message: "name in URL does not match name in Binding object" });
    expect(await failure(request("POST", "/api/v1/namespaces/default/pods/b4/binding", { metadata: { name: "b4" }, target: { kind: "Pod" } }))).toEqual({ code: 500, message: '[target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>", target.name: Required value]' });
    expect((await failure(bind("default", "b4", "n1", { uid: "not-its-uid" }))).code).toBe(409);
    expect(await failure(request("PUT", "/api/v1/namespaces/default/pods/b4/binding", {}))).toMatchObject({ code: 405 });
    expect((await request("GET", "/api/v1/namespaces/default/pods/b4")).spec.nodeName).toBeUndefined();
  });

  test("the older bindings resource binds the pod its body names", async () => {
    await request("POST", "/api/v1/namespaces/default/pods", pod("b5"));
    await request("POST", "/api/v1/namespaces/default/bindings", { metadata: { name: "b5" }, target: { name: "n2" } });
    expect((await request("GET", "/api/v1/namespaces/default/pods/b5")).spec.nodeName).toBe("n2");
  });

  test("a terminating pod cannot be bound", async () => {
    await request("POST", "/api/v1/namespaces/default/pods", pod("b6"));
    const key = s.store.type("", "pods")!;
    // a pod being deleted that no node has: only reachable through the store (an unbound pod goes at once)
    const cur = s.store.get(key, "default", "b6");
    (s.store as unknown as { objects: Map<string, Map<string, unknown>> }).objects.get("/pods")!.set("default/b6", { ...cur, metadata: { ...cur.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" } });
    expect(await failure(bind("default", "b6", "n1"))).toEqual({ code: 409, message: 'Operation cannot be fulfilled on pods/binding "b6": pod b6 is being deleted, cannot be assigned to a host' });
  });
});

describe("pod updates and spec.nodeName", () => {
  test("an update may neither set nor change spec.nodeName (kube's ValidatePodUpdate); images may change", async () => {
    await request("POST", "/api/v1/namespaces/default/pods", pod("u1"));
    const set = await failure(request("PATCH", "/api/v1/namespaces/default/pods/u1", { spec: { nodeName: "n1" } }));
    expect(set.code).toBe(422);
    expect(set.message).toStartWith('Pod "u1" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`');
    expect(set.message).toContain('+ nodeName: "n1"');
    await bind("default", "u1", "n1");
    expect((await failure(request("PATCH", "/api/v1/namespaces/default/pods/u1", { spec: { nodeName: "n2" } }))).code).toBe(422);
    const img = await request("PATCH", "/api/v1/namespaces/default/pods/u1", { spec: { containers: [{ name: "c", image: "other" }] } });
    expect(img.spec).toEqual({ containers: [{ name: "c", image: "other" }], nodeName: "n1" });
    // labels are metadata: free to change
    expect((await request("PATCH", "/api/v1/namespaces/default/pods/u1", { metadata: { labels: { a: "b" } } })).metadata.labels).toEqual({ a: "b" });
  });
});
