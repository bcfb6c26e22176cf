// The test API server's storage against what kube-apiserver does: each expectation below is
// kube-apiserver's answer to the same request (codes, reasons and messages as it words them).
import { describe, expect, test } from "bun:test";
import { ApiError, Store, type WatchEvent } from "./store.ts";
import { apiErrorOf } from "./errors.ts";
import { newStore } from "./server.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { strategicMergePatch, mergePatch, applyPatch, sizeWithin } from "./patch.ts";
import type { KubeObject } from "./resources.ts";
import { attachServiceAllocator, parsePortRange, parseServiceCidrs } from "./services.ts";

const setup = (history?: number) => {
  const s = newStore(history);
  return { s, svc: s.type("", "services")!, pod: s.type("", "pods")!, node: s.type("", "nodes")!, ns: s.type("", "namespaces")!, eps: s.type("discovery.k8s.io", "endpointslices")! };
};
const svcObj = (name: string, extra: Partial<KubeObject> = {}): KubeObject => ({ metadata: { name, labels: { app: name } }, spec: { ports: [{ port: 80 }] }, ...extra });

describe("selectors", () => {
  test("label selector operators", () => {
    const l = { app: "web", tier: "front" };
    expect(parseLabelSelector("app=web")(l)).toBe(true);
    expect(parseLabelSelector("app==web,tier!=back")(l)).toBe(true);
    expect(parseLabelSelector("app in (web, db),tier notin (back)")(l)).toBe(true);
    expect(parseLabelSelector("app notin (web)")(l)).toBe(false);
    expect(parseLabelSelector("tier")(l)).toBe(true);
    expect(parseLabelSelector("!tier")(l)).toBe(false);
    expect(parseLabelSelector("zone!=a")(l)).toBe(true); // != matches a missing label, as in kube
    expect(parseLabelSelector("")(l)).toBe(true);
  });

  test("a bad label selector names the requirement", () => {
    expect(() => parseLabelSelector("app=(web")).toThrow(/unable to parse requirement: "app=\(web"/);
    expect(() => parseLabelSelector("a b c")).toThrow(/unable to parse requirement/);
  });

  test("field selectors: supported fields only", () => {
    const f = parseFieldSelector("spec.nodeName=n1,metadata.name!=x", ["metadata.name", "spec.nodeName"]);
    expect(f({ "metadata.name": "p", "spec.nodeName": "n1" })).toBe(true);
    expect(f({ "metadata.name": "x", "spec.nodeName": "n1" })).toBe(false);
    expect(() => parseFieldSelector("spec.bogus=1", ["metadata.name"])).toThrow("field label not supported: spec.bogus");
  });
});

describe("create, update, delete", () => {
  test("create fills in metadata; a second create of the name is AlreadyExists", () => {
    const { s, svc } = setup();
    const o = s.create(svc, "default", svcObj("web"));
    expect(o.metadata).toMatchObject({ name: "web", namespace: "default", generation: 1, resourceVersion: String(s.rev) });
    expect(o.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(o.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(o).toMatchObject({ apiVersion: "v1", kind: "Service", status: { loadBalancer: {} } });
    const e = apiErrorOf(() => s.create(svc, "default", svcObj("web")));
    expect(e.status()).toMatchObject({ code: 409, reason: "AlreadyExists", message: 'services "web" already exists', details: { name: "web", kind: "services" } });
  });

  test("create: a missing namespace is NotFound; a namespace differing from the path is BadRequest; generateName", () => {
    const { s, svc, eps } = setup();
    expect(apiErrorOf(() => s.create(svc, "nope", svcObj("web"))).status()).toMatchObject({ code: 404, reason: "NotFound", message: 'namespaces "nope" not found' });
    expect(apiErrorOf(() => s.create(svc, "default", { metadata: { name: "x", namespace: "kube-system" } })).code).toBe(400);
    const g = s.create(eps, "default", { metadata: { generateName: "web-" }, addressType: "IPv4", endpoints: [] });
    expect(g.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
    expect(apiErrorOf(() => s.create(svc, "default", { metadata: {} })).status()).toMatchObject({ code: 422, reason: "Invalid" });
  });

  test("update with a stale resourceVersion is a Conflict; without one it is unconditional", () => {
    const { s, svc } = setup();
    const a = s.create(svc, "default", svcObj("web"));
    const b = s.update(svc, "default", "web", { ...a, spec: { ports: [{ port: 81 }] } });
    expect(b.metadata.generation).toBe(2);
    const e = apiErrorOf(() => s.update(svc, "default", "web", { ...a, spec: { ports: [{ port: 82 }] } }));
    expect(e.status()).toMatchObject({
      code: 409,
      reason: "Conflict",
      message: 'Operation cannot be fulfilled on services "web": the object has been modified; please apply your changes to the latest version and try again',
    });
    const c = s.update(svc, "default", "web", { metadata: { name: "web", labels: { v: "2" } }, spec: { ports: [{ port: 82 }] } });
    expect(c.metadata.uid).toBe(a.metadata.uid);
    expect(c.metadata.creationTimestamp).toBe(a.metadata.creationTimestamp);
    expect(apiErrorOf(() => s.update(svc, "default", "other", svcObj("other"))).code).toBe(404);
    expect(apiErrorOf(() => s.update(svc, "default", "web", svcObj("other"))).code).toBe(400);
  });

  test("status is written through the status subresource only", () => {
    const { s, svc } = setup();
    const a = s.create(svc, "default", { ...svcObj("lb"), status: { loadBalancer: { ingress: [{ ip: "192.0.2.1" }] } } });
    expect(a.status).toEqual({ loadBalancer: {} }); // as Service's PrepareForCreate
    const b = s.update(svc, "default", "lb", { ...a, status: { loadBalancer: { ingress: [{ ip: "192.0.2.1" }] } } });
    expect(b).toBe(a); // nothing the main resource may change changed: no write
    const c = s.update(svc, "default", "lb", { ...a, spec: { ports: [{ port: 1 }] }, status: { loadBalancer: { ingress: [{ ip: "192.0.2.1" }] } } }, "status");
    expect(c.status).toEqual({ loadBalancer: { ingress: [{ ip: "192.0.2.1" }] } });
    expect(c.spec).toEqual(a.spec);
    expect(c.metadata.generation).toBe(1); // a status write is no spec change
  });

  test("a write that changes nothing makes no revision", () => {
    const { s, svc } = setup();
    const a = s.create(svc, "default", svcObj("web"));
    const rev = s.rev;
    expect(s.update(svc, "default", "web", a)).toBe(a);
    expect(s.rev).toBe(rev);
  });

  test("delete returns the object; preconditions; a pod on a node is deleted gracefully", () => {
    const { s, svc, pod } = setup();
    const a = s.create(svc, "default", svcObj("web"));
    expect(apiErrorOf(() => s.delete(svc, "default", "web", { preconditions: { resourceVersion: "1" } })).status()).toMatchObject({ code: 409, reason: "Conflict" });
    expect(apiErrorOf(() => s.delete(svc, "default", "web", { preconditions: { uid: "x" } })).message).toContain("Precondition failed: UID in precondition: x");
    const d = s.delete(svc, "default", "web");
    expect(d.metadata.uid).toBe(a.metadata.uid);
    expect(apiErrorOf(() => s.get(svc, "default", "web")).status()).toMatchObject({ code: 404, message: 'services "web" not found' });
    s.create(pod, "default", { metadata: { name: "p" }, spec: { nodeName: "n1" } });
    const t = s.delete(pod, "default", "p");
    expect(t.metadata.deletionTimestamp).toBeString();
    expect(s.get(pod, "default", "p").metadata.deletionGracePeriodSeconds).toBe(30);
    s.delete(pod, "default", "p", { gracePeriodSeconds: 0 });
    expect(apiErrorOf(() => s.get(pod, "default", "p")).code).toBe(404);
    s.create(pod, "default", { metadata: { name: "unbound" }, spec: {} });
    s.delete(pod, "default", "unbound");
    expect(apiErrorOf(() => s.get(pod, "default", "unbound")).code).toBe(404);
  });
});

describe("update rules (old against new) and status writes, as kube-apiserver's ValidateXUpdate", () => {
  const causes = (f: () => unknown) => (apiErrorOf(f).status() as { code: number; details?: { causes?: Array<{ field: string }> } });
  const fieldsOf = (f: () => unknown) => {
    const st = causes(f);
    return { code: st.code, fields: (st.details?.causes ?? []).map((c) => c.field) };
  };

  test("a Node's pod CIDRs may be set once, never changed", () => {
    const { s, node } = setup();
    s.create(node, undefined, { metadata: { name: "a" }, spec: {} });
    // from "" to valid: what the node IPAM controller does
    const a = s.update(node, undefined, "a", { metadata: { name: "a" }, spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] } });
    expect(a.spec).toEqual({ podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] });
    expect(fieldsOf(() => s.update(node, undefined, "a", { metadata: { name: "a" }, spec: { podCIDR: "10.244.2.0/24", podCIDRs: ["10.244.2.0/24"] } }))).toEqual({ code: 422, fields: ["spec.podCIDRs", "spec.podCIDR"] });
    expect(fieldsOf(() => s.update(node, undefined, "a", { metadata: { name: "a" }, spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24", "fd00::/64"] } }))).toEqual({ code: 422, fields: ["spec.podCIDRs"] });
    expect(fieldsOf(() => s.update(node, undefined, "a", { metadata: { name: "a" }, spec: {} }))).toEqual({ code: 422, fields: ["spec.podCIDRs", "spec.podCIDR"] });
    expect(s.get(node, undefined, "a").spec).toEqual(a.spec);
    // other fields still change
    expect(s.update(node, undefined, "a", { metadata: { name: "a" }, spec: { ...(a.spec as object), unschedulable: true } }).spec).toMatchObject({ unschedulable: true });
  });

  test("an EndpointSlice's addressType never changes", () => {
    const { s, eps } = setup();
    const e = s.create(eps, "default", { metadata: { name: "e" }, addressType: "IPv4", endpoints: [] });
    const st = causes(() => s.update(eps, "default", "e", { ...e, addressType: "IPv6" }));
    expect(st).toMatchObject({ code: 422, message: 'EndpointSlice.discovery.k8s.io "e" is invalid: addressType: Invalid value: "IPv6": field is immutable' });
    expect(s.update(eps, "default", "e", { ...e, endpoints: [{ addresses: ["10.0.0.1"] }] }).addressType).toBe("IPv4");
  });

  test("status writes are validated: Node addresses, Service loadBalancer", () => {
    const { s, node, svc } = setup();
    const n = s.create(node, undefined, { metadata: { name: "a" } });
    for (const [status, field] of [
      [{ addresses: "zzz" }, "status.addresses"],
      [{ addresses: ["10.0.0.1"] }, "status.addresses[0]"],
      [{ addresses: [{ type: "Bogus", address: "10.0.0.1" }] }, "status.addresses[0].type"],
      [{ addresses: [{ type: "InternalIP", address: 1 }] }, "status.addresses[0].address"],
      [{ addresses: [{ type: "InternalIP", address: "10.0.0.1" }, { type: "InternalIP", address: "10.0.0.1" }] }, "status.addresses[1]"],
      ["zzz", "status"],
    ] as const) {
      expect(fieldsOf(() => s.update(node, undefined, "a", { ...n, status }, "status"))).toEqual({ code: 422, fields: [field] });
    }
    const good = { addresses: [{ type: "InternalIP", address: "10.0.0.1" }, { type: "Hostname", address: "a" }] };
    expect(s.update(node, undefined, "a", { ...n, status: good }, "status").status).toEqual(good);
    const v = s.create(svc, "default", svcObj("lb"));
    for (const [status, field] of [
      [{ loadBalancer: "zzz" }, "status.loadBalancer"],
      [{ loadBalancer: { ingress: "zzz" } }, "status.loadBalancer.ingress"],
      [{ loadBalancer: { ingress: [{ ip: "300.1.1.1" }] } }, "status.loadBalancer.ingress[0].ip"],
      [{ loadBalancer: { ingress: [{ hostname: "1.2.3.4" }] } }, "status.loadBalancer.ingress[0].hostname"],
      [{ loadBalancer: { ingress: [{ hostname: "lb.example.com", ipMode: "VIP" }] } }, "status.loadBalancer.ingress[0].ipMode"],
      [{ loadBalancer: { ingress: [{ ip: "192.0.2.1", ipMode: "Tunnel" }] } }, "status.loadBalancer.ingress[0].ipMode"],
      [{ loadBalancer: { ingress: [{ ip: "192.0.2.1", ports: [{ port: 0, protocol: "TCP" }] }] } }, "status.loadBalancer.ingress[0].ports[0].port"],
    ] as const) {
      expect(fieldsOf(() => s.update(svc, "default", "lb", { ...v, status }, "status"))).toEqual({ code: 422, fields: [field] });
    }
    const lb = { loadBalancer: { ingress: [{ ip: "192.0.2.1", ipMode: "Proxy", ports: [{ port: 80, protocol: "TCP" }] }, { hostname: "lb.example.com" }] } };
    expect(s.update(svc, "default", "lb", { ...v, status: lb }, "status").status).toEqual(lb);
  });

  test("a Terminating Namespace stays Terminating; one not being deleted is Active", () => {
    const { s, ns, pod } = setup();
    s.create(ns, undefined, { metadata: { name: "x" } });
    expect(fieldsOf(() => s.update(ns, undefined, "x", { metadata: { name: "x" }, status: { phase: "Terminating" } }, "status"))).toEqual({ code: 422, fields: ["status.phase"] });
    s.create(pod, "x", { metadata: { name: "p" }, spec: { nodeName: "n1" } });
    const t = s.delete(ns, undefined, "x");
    expect(t.status).toEqual({ phase: "Terminating" });
    expect(causes(() => s.update(ns, undefined, "x", { metadata: { name: "x" }, status: { phase: "Active" } }, "status"))).toMatchObject({ code: 422, message: 'Namespace "x" is invalid: status.phase: Invalid value: "Active": may only be \'Terminating\' if `deletionTimestamp` is not empty' });
    expect(fieldsOf(() => s.update(ns, undefined, "x", { metadata: { name: "x" }, status: {} }, "status"))).toEqual({ code: 422, fields: ["status.phase"] });
    expect(s.get(ns, undefined, "x").status).toEqual({ phase: "Terminating" });
    const c = s.update(ns, undefined, "x", { metadata: { name: "x" }, status: { phase: "Terminating", conditions: [] } }, "status");
    expect(c.status).toEqual({ phase: "Terminating", conditions: [] });
  });
});

describe("namespace deletion, as kube-apiserver and the namespace controller", () => {
  /** a store whose Services allocate from one address and one node port */
  const tight = () => {
    const t = setup();
    attachServiceAllocator(t.s, { serviceCIDRs: parseServiceCidrs("10.96.0.0/30"), nodePorts: parsePortRange("30000-30000"), random: () => 0 });
    return { ...t, cm: t.s.type("", "configmaps")! };
  };
  const np = (name: string): KubeObject => ({ metadata: { name }, spec: { type: "NodePort", ports: [{ port: 80 }] } });

  test("the Namespace goes Terminating, each object in it is deleted (hooks free what it held), then it goes; watchers see it all", () => {
    const { s, svc, ns, cm, pod } = tight();
    s.create(ns, undefined, { metadata: { name: "x" } });
    expect(s.create(svc, "x", np("web")).spec).toMatchObject({ clusterIP: "10.96.0.1", ports: [{ nodePort: 30000 }] });
    s.create(cm, "x", { metadata: { name: "c" } });
    s.create(pod, "x", { metadata: { name: "p" }, spec: {} });
    s.create(cm, "default", { metadata: { name: "stays" } });
    const seen: string[] = [];
    for (const t of [ns, svc, cm, pod]) s.watch(t, { from: s.rev }, (e) => seen.push(`${e.type} ${e.object.kind} ${e.object.metadata.name}${e.object.metadata.deletionTimestamp ? " terminating" : ""}`));
    const d = s.delete(ns, undefined, "x");
    expect(d.metadata.deletionTimestamp).toBeString();
    expect(d.status).toEqual({ phase: "Terminating" });
    expect(seen[0]).toBe("MODIFIED Namespace x terminating");
    expect(seen.slice(1, -1).sort()).toEqual(["DELETED ConfigMap c", "DELETED Pod p", "DELETED Service web"]);
    expect(seen.at(-1)).toBe("DELETED Namespace x terminating");
    expect(apiErrorOf(() => s.get(ns, undefined, "x")).code).toBe(404);
    for (const t of [svc, cm, pod]) expect(s.list(t, { namespace: "x" }).items).toEqual([]);
    expect(s.get(cm, "default", "stays").metadata.name).toBe("stays");
    // the address and the only node port are free again; a new Namespace x starts empty
    expect(s.create(svc, "default", np("again")).spec).toMatchObject({ clusterIP: "10.96.0.1", ports: [{ nodePort: 30000 }] });
    s.create(ns, undefined, { metadata: { name: "x" } });
    expect(s.list(cm, { namespace: "x" }).items).toEqual([]);
  });

  test("a pod terminating on its node keeps the Namespace Terminating, refusing new content, until the pod is gone", () => {
    const { s, ns, pod, cm } = tight();
    s.create(ns, undefined, { metadata: { name: "x" } });
    s.create(pod, "x", { metadata: { name: "p" }, spec: { nodeName: "n1" } });
    s.delete(ns, undefined, "x");
    expect(s.get(ns, undefined, "x").status).toEqual({ phase: "Terminating" });
    expect(s.get(pod, "x", "p").metadata.deletionTimestamp).toBeString();
    expect(apiErrorOf(() => s.create(cm, "x", { metadata: { name: "late" } })).status()).toMatchObject({
      code: 403,
      reason: "Forbidden",
      message: 'configmaps "late" is forbidden: unable to create new content in namespace x because it is being terminated',
    });
    // a second delete changes nothing
    const rev = s.rev;
    s.delete(ns, undefined, "x");
    expect(s.rev).toBe(rev);
    // the kubelet's final delete
    s.delete(pod, "x", "p", { gracePeriodSeconds: 0 });
    expect(apiErrorOf(() => s.get(ns, undefined, "x")).code).toBe(404);
    expect(apiErrorOf(() => s.create(cm, "x", { metadata: { name: "late" } })).status()).toMatchObject({ code: 404, reason: "NotFound", message: 'namespaces "x" not found' });
  });

  test("default, kube-system and kube-public may not be deleted", () => {
    const { s, ns, svc } = tight();
    s.create(svc, "default", np("web"));
    for (const name of ["default", "kube-system", "kube-public"]) {
      expect(apiErrorOf(() => s.delete(ns, undefined, name)).status()).toMatchObject({ code: 403, reason: "Forbidden", message: `namespaces "${name}" is forbidden: this namespace may not be deleted` });
      expect(s.get(ns, undefined, name).status).toEqual({ phase: "Active" });
    }
    expect(s.get(svc, "default", "web").metadata.name).toBe("web");
  });

  test("a client cannot set or clear deletionTimestamp by an update", () => {
    const { s, svc, ns } = tight();
    const a = s.create(svc, "default", svcObj("web"));
    const u = s.update(svc, "default", "web", { ...a, metadata: { ...a.metadata, deletionTimestamp: "2020-01-01T00:00:00Z", deletionGracePeriodSeconds: 0 } });
    expect(u.metadata.deletionTimestamp).toBeUndefined();
    expect(u.metadata.deletionGracePeriodSeconds).toBeUndefined();
    s.create(ns, undefined, { metadata: { name: "x" } });
    s.create(svc, "x", svcObj("held"));
    s.create(s.type("", "pods")!, "x", { metadata: { name: "p" }, spec: { nodeName: "n1" } });
    const t = s.delete(ns, undefined, "x");
    const { deletionTimestamp: _, ...meta } = t.metadata;
    expect(s.update(ns, undefined, "x", { ...t, metadata: meta }).metadata.deletionTimestamp).toBe(t.metadata.deletionTimestamp);
  });
});

describe("dryRun: checked and answered as a real write, nothing kept", () => {
  const tight = () => {
    const t = setup();
    attachServiceAllocator(t.s, { serviceCIDRs: parseServiceCidrs("10.96.0.0/30"), nodePorts: parsePortRange("30000-30000"), random: () => 0 });
    return t;
  };
  const np = (name: string, extra: object = {}): KubeObject => ({ metadata: { name }, spec: { type: "NodePort", ports: [{ port: 80 }], ...extra } });

  test("create: defaulted and allocated in the answer, but not stored, not held, no event, no revision", () => {
    const { s, svc } = tight();
    const events: WatchEvent[] = [];
    s.watch(svc, { from: s.rev }, (e) => events.push(e));
    const rev = s.rev;
    const d = s.create(svc, "default", np("dry"), { dryRun: true });
    expect(d.spec).toMatchObject({ clusterIP: "10.96.0.1", ipFamilies: ["IPv4"], ports: [{ nodePort: 30000, protocol: "TCP" }] });
    expect(d.metadata.uid).toBeString();
    expect(d.metadata.resourceVersion).toBeUndefined();
    expect(apiErrorOf(() => s.get(svc, "default", "dry")).code).toBe(404);
    expect([s.rev, events]).toEqual([rev, []]);
    // what it would have taken is free: a real create gets the same
    expect(s.create(svc, "default", np("real")).spec).toMatchObject({ clusterIP: "10.96.0.1", ports: [{ nodePort: 30000 }] });
    // and a dry run is refused as the real request would be: the only node port is taken
    expect(apiErrorOf(() => s.create(svc, "default", np("dry2"), { dryRun: true })).message).toContain("failed to allocate a nodePort: range is full");
    expect(apiErrorOf(() => s.create(svc, "default", np("real"), { dryRun: true })).reason).toBe("AlreadyExists");
  });

  test("update and delete: answered, nothing changes, nothing freed", () => {
    const { s, svc, ns } = tight();
    const a = s.create(svc, "default", np("web"));
    const rev = s.rev;
    const events: WatchEvent[] = [];
    s.watch(svc, { from: s.rev }, (e) => events.push(e));
    // to ClusterIP: a real update would free the node port
    const u = s.update(svc, "default", "web", { ...a, metadata: { ...a.metadata, labels: { x: "y" } }, spec: { ...(a.spec as object), type: "ClusterIP", ports: [{ port: 80 }] } }, undefined, { dryRun: true });
    expect(u.metadata.labels).toEqual({ x: "y" });
    expect((u.spec as any).ports[0].nodePort).toBeUndefined();
    expect(s.delete(svc, "default", "web", { dryRun: true }).metadata.uid).toBe(a.metadata.uid);
    expect(s.get(svc, "default", "web")).toEqual(a);
    expect([s.rev, events]).toEqual([rev, []]);
    // the node port is still held
    expect(apiErrorOf(() => s.create(svc, "default", np("other"))).message).toContain("failed to allocate a nodePort: range is full");
    s.create(ns, undefined, { metadata: { name: "x" } });
    expect(s.delete(ns, undefined, "x", { dryRun: true }).status).toEqual({ phase: "Terminating" });
    expect(s.get(ns, undefined, "x").status).toEqual({ phase: "Active" });
  });
});

describe("list", () => {
  test("namespaces, selectors, order", () => {
    const { s, svc, pod, ns } = setup();
    s.create(ns, undefined, { metadata: { name: "prod" } });
    for (const n of ["c", "a", "b"]) s.create(svc, "default", svcObj(n));
    s.create(svc, "prod", svcObj("z"));
    expect(s.list(svc).items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(["default/a", "default/b", "default/c", "prod/z"]);
    expect(s.list(svc, { namespace: "prod" }).items.length).toBe(1);
    expect(s.list(svc, { labelSelector: "app in (a,z)" }).items.map((o) => o.metadata.name)).toEqual(["a", "z"]);
    s.create(pod, "default", { metadata: { name: "p1" }, spec: { nodeName: "n1" } });
    s.create(pod, "default", { metadata: { name: "p2" }, spec: { nodeName: "n2" } });
    expect(s.list(pod, { fieldSelector: "spec.nodeName=n2" }).items.map((o) => o.metadata.name)).toEqual(["p2"]);
    expect(apiErrorOf(() => s.list(pod, { fieldSelector: "spec.hostname=x" })).status()).toMatchObject({ code: 400, message: "field label not supported: spec.hostname" });
  });

  test("pages are one consistent snapshot: writes after the first page do not show", () => {
    const { s, svc } = setup();
    for (let i = 0; i < 5; i++) s.create(svc, "default", svcObj(`s${i}`));
    const p1 = s.list(svc, { limit: 2 });
    expect(p1.items.map((o) => o.metadata.name)).toEqual(["s0", "s1"]);
    expect(p1.remainingItemCount).toBe(3);
    s.delete(svc, "default", "s3");
    s.create(svc, "default", svcObj("s2a"));
    s.update(svc, "default", "s4", { metadata: { name: "s4", labels: { changed: "yes" } }, spec: {} });
    const p2 = s.list(svc, { limit: 2, continue: p1.continue });
    const p3 = s.list(svc, { limit: 2, continue: p2.continue });
    expect([...p2.items, ...p3.items].map((o) => o.metadata.name)).toEqual(["s2", "s3", "s4"]);
    expect(p3.items[0]!.metadata.labels).toEqual({ app: "s4" });
    expect(p3.continue).toBeUndefined();
    expect(p2.resourceVersion).toBe(p1.resourceVersion);
  });

  test("a continue token from before a compaction is 410 Expired; a bad one is 400", () => {
    const { s, svc } = setup(3);
    for (let i = 0; i < 3; i++) s.create(svc, "default", svcObj(`s${i}`));
    const p1 = s.list(svc, { limit: 1 });
    for (let i = 3; i < 8; i++) s.create(svc, "default", svcObj(`s${i}`));
    const e = apiErrorOf(() => s.list(svc, { limit: 1, continue: p1.continue }));
    expect(e.status()).toMatchObject({ code: 410, reason: "Expired" });
    expect(e.message).toStartWith("The provided continue parameter is too old to display a consistent list result.");
    expect(apiErrorOf(() => s.list(svc, { continue: "garbage" })).code).toBe(400);
  });

  test("resourceVersion: Exact serves the past, a future one is 504 Too large", () => {
    const { s, svc } = setup();
    s.create(svc, "default", svcObj("a"));
    const rv = String(s.rev);
    s.create(svc, "default", svcObj("b"));
    expect(s.list(svc, { resourceVersion: rv, resourceVersionMatch: "Exact" }).items.length).toBe(1);
    expect(s.list(svc, { resourceVersion: rv }).items.length).toBe(2); // NotOlderThan
    expect(apiErrorOf(() => s.list(svc, { resourceVersion: String(s.rev + 10) })).status()).toMatchObject({ code: 504, reason: "Timeout" });
    expect(apiErrorOf(() => s.list(svc, { resourceVersion: "x" })).code).toBe(400);
  });
});

describe("watch", () => {
  test("from a resourceVersion: the writes after it, then live ones", () => {
    const { s, svc } = setup();
    s.create(svc, "default", svcObj("a"));
    const rv = s.rev;
    s.create(svc, "default", svcObj("b"));
    const seen: string[] = [];
    const stop = s.watch(svc, { from: rv }, (e) => seen.push(`${e.type} ${e.object.metadata.name} ${e.object.metadata.resourceVersion}`));
    s.delete(svc, "default", "a");
    stop();
    s.create(svc, "default", svcObj("c"));
    expect(seen).toEqual([`ADDED b ${rv + 1}`, `DELETED a ${rv + 2}`]);
  });

  test("without a resourceVersion: the current objects as ADDED first", () => {
    const { s, svc } = setup();
    s.create(svc, "default", svcObj("a"));
    const seen: WatchEvent[] = [];
    s.watch(svc, {}, (e) => seen.push(e));
    expect(seen.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED a"]);
  });

  test("an object entering or leaving a selector is ADDED or DELETED", () => {
    const { s, pod } = setup();
    s.create(pod, "default", { metadata: { name: "p" }, spec: {} });
    const seen: string[] = [];
    s.watch(pod, { fieldSelector: "status.phase=Running", from: s.rev }, (e) => seen.push(`${e.type} ${e.object.metadata.resourceVersion}`));
    const running = s.update(pod, "default", "p", { metadata: { name: "p" }, status: { phase: "Running" } }, "status");
    const done = s.update(pod, "default", "p", { metadata: { name: "p" }, status: { phase: "Succeeded" } }, "status");
    expect(seen).toEqual([`ADDED ${running.metadata.resourceVersion}`, `DELETED ${done.metadata.resourceVersion}`]);
  });

  test("from a compacted resourceVersion: 410 too old resource version", () => {
    const { s, svc } = setup();
    s.create(svc, "default", svcObj("a"));
    const rv = s.rev - 1;
    s.compact();
    expect(apiErrorOf(() => s.watch(svc, { from: rv }, () => {})).status()).toMatchObject({ code: 410, reason: "Expired", message: `too old resource version: ${rv} (${s.rev + 1})` });
  });

  test("the history is bounded in bytes too: the oldest writes go first, a resume from before them is 410", () => {
    const s = newStore(undefined, undefined, 100_000);
    const cm = s.type("", "configmaps")!;
    s.create(cm, "default", { metadata: { name: "big" }, data: { a: "" } });
    const rv0 = s.rev;
    for (let i = 0; i < 20; i++) s.update(cm, "default", "big", { metadata: { name: "big" }, data: { a: String(i).repeat(10_000) } });
    // each update holds a copy of about 10 kB: only the last ten or so fit in 100 kB
    expect(s.compacted).toBeGreaterThan(rv0 + 5);
    expect(apiErrorOf(() => s.watch(cm, { from: rv0 }, () => {})).code).toBe(410);
    const seen: string[] = [];
    s.watch(cm, { from: s.rev - 3 }, (e) => seen.push(`${e.type} ${e.object.metadata.resourceVersion}`));
    expect(seen).toEqual([1, 2, 3].map((k) => `MODIFIED ${s.rev - 3 + k}`));
  });

  test("a write refused by beforeCommit (a journal that cannot take it) changes nothing", () => {
    const { s, svc } = setup();
    attachServiceAllocator(s);
    const seen: string[] = [];
    s.watch(svc, {}, (e) => seen.push(e.type));
    const rev = s.rev;
    s.beforeCommit = () => {
      throw new ApiError(500, "InternalError", "disk full");
    };
    expect(apiErrorOf(() => s.create(svc, "default", svcObj("a", { spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } }))).code).toBe(500);
    expect(s.rev).toBe(rev);
    expect(s.list(svc).items).toEqual([]);
    expect(seen).toEqual([]);
    // and what the Service's create took is free again
    s.beforeCommit = undefined;
    expect((s.create(svc, "default", svcObj("b", { spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } })).spec as { clusterIP?: string }).clusterIP).toBe("10.96.0.10");
  });

  test("a store restarted from a snapshot keeps objects and revisions, not history", () => {
    const { s, svc } = setup();
    s.create(svc, "default", svcObj("a"));
    const r = new Store(s.allTypes(), 100, s.snapshot());
    expect(r.rev).toBe(s.rev);
    expect(r.get(svc, "default", "a")).toEqual(s.get(svc, "default", "a"));
    expect(apiErrorOf(() => r.watch(svc, { from: s.rev - 1 }, () => {})).code).toBe(410);
    r.create(svc, "default", svcObj("b"));
    expect(Number(r.get(svc, "default", "b").metadata.resourceVersion)).toBe(s.rev + 1);
  });
});

describe("patch", () => {
  test("JSON merge patch: null removes", () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] })).toEqual({ a: 1, b: { d: 3, e: 4 }, f: [1] });
  });

  test("strategic merge patch as kubectl apply sends it: ports by port, $setElementOrder, $patch delete", () => {
    const cur = { spec: { ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "dns", port: 53 }], selector: { app: "web" } } };
    const patch = { spec: { "$setElementOrder/ports": [{ port: 53 }, { port: 81 }], ports: [{ name: "http", port: 81, targetPort: 8080 }, { $patch: "delete", port: 80 }], selector: { tier: "x" } } };
    expect(strategicMergePatch(cur, patch)).toEqual({ spec: { ports: [{ name: "dns", port: 53 }, { name: "http", port: 81, targetPort: 8080 }], selector: { app: "web", tier: "x" } } });
    expect(strategicMergePatch({ spec: { podCIDRs: ["10.0.0.0/24"] } }, { spec: { podCIDRs: ["fd00::/64"] } })).toEqual({ spec: { podCIDRs: ["10.0.0.0/24", "fd00::/64"] } });
    expect(strategicMergePatch({ metadata: { finalizers: ["a", "b"] } }, { metadata: { "$deleteFromPrimitiveList/finalizers": ["a"] } })).toEqual({ metadata: { finalizers: ["b"] } });
    expect(strategicMergePatch({ spec: { a: 1, b: 2 } }, { spec: { $patch: "replace", c: 3 } })).toEqual({ spec: { c: 3 } });
  });

  test("JSON patch, and the errors", () => {
    expect(applyPatch("application/json-patch+json", { a: [1] }, '[{"op":"add","path":"/a/-","value":2}]')).toEqual({ a: [1, 2] });
    expect(() => applyPatch("application/json-patch+json", { a: 1 }, '[{"op":"test","path":"/a","value":2}]')).toThrow(ApiError);
    expect(() => applyPatch("application/yaml", {}, "{}")).toThrow(/unknown format/);
    expect(() => applyPatch("application/merge-patch+json", {}, "{")).toThrow(/error decoding patch/);
  });

  test("a JSON patch whose copies double the object is refused after bounded work, naming the op", () => {
    // 30 copies of /metadata into itself: 2^30 times the object if each ran
    const ops = JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ op: "copy", from: "/metadata", path: `/metadata/annotations/x${i}` })));
    const t0 = performance.now();
    const e = apiErrorOf(() => applyPatch("application/json-patch+json", { metadata: { name: "a", annotations: { a: "x" } } }, ops));
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(e).toMatchObject({ code: 413, reason: "RequestEntityTooLarge" });
    expect(e?.message).toMatch(/operation 1\d \(copy\)/);
    // a budget shared by the values ops add: many copies of a small value within it pass
    const few = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ op: "copy", from: "/a", path: `/b${i}` })));
    expect(Object.keys(applyPatch("application/json-patch+json", { a: "x".repeat(1000) }, few) as object)).toHaveLength(101);
  });

  test("a JSON patch of more than 10,000 operations is refused (kube-apiserver's cap)", () => {
    const ops = (n: number) => JSON.stringify(Array.from({ length: n }, () => ({ op: "test", path: "/a", value: 1 })));
    expect(applyPatch("application/json-patch+json", { a: 1 }, ops(10_000))).toEqual({ a: 1 });
    expect(apiErrorOf(() => applyPatch("application/json-patch+json", { a: 1 }, ops(10_001)))).toMatchObject({ code: 413, message: expect.stringMatching(/maximum operations in a JSON patch is 10000, got: 10001/) });
  });

  test("a patch of any type whose result is larger than the body limit is refused", () => {
    const big = "x".repeat(700_000);
    const cur = { data: { a: big, b: big, c: big } };
    for (const type of ["application/merge-patch+json", "application/strategic-merge-patch+json"]) {
      expect(apiErrorOf(() => applyPatch(type, cur, JSON.stringify({ data: { d: big, e: big } })))).toMatchObject({ code: 413, reason: "RequestEntityTooLarge" });
      expect(applyPatch(type, cur, JSON.stringify({ data: { a: null, d: big } }))).toEqual({ data: { b: big, c: big, d: big } });
    }
    expect(apiErrorOf(() => applyPatch("application/json-patch+json", cur, JSON.stringify([{ op: "add", path: "/data/d", value: big }, { op: "add", path: "/data/e", value: big }])))).toMatchObject({ code: 413 });
  });

  test("the size walk stops once past its budget", () => {
    const v = { a: ["xy", 10, null], b: { c: true } };
    expect(sizeWithin(v, 1000)).toBeGreaterThanOrEqual(JSON.stringify(v).length);
    expect(sizeWithin(v, 1000)).toBeLessThan(JSON.stringify(v).length + 10);
    expect(sizeWithin(Array.from({ length: 1000 }, () => "x".repeat(100)), 500)).toBe(501);
  });
});

describe("garbage collection by ownerReferences (kube-controller-manager's collector)", () => {
  const owned = (name: string, ...owners: KubeObject[]): KubeObject => ({ metadata: { name, ownerReferences: owners.map((o) => ({ apiVersion: "v1", kind: o.kind ?? "", name: o.metadata.name!, uid: o.metadata.uid! })) }, data: {} });

  test("an owner's deletion deletes what it owned, down the chain; watchers see each go", () => {
    const { s, node } = setup();
    const cm = s.type("", "configmaps")!;
    const n1 = s.create(node, undefined, { metadata: { name: "n1" } });
    const a = s.create(cm, "default", owned("a", n1));
    s.create(cm, "default", owned("b", a));
    s.create(cm, "default", { metadata: { name: "free" } });
    const seen: string[] = [];
    s.watch(cm, { from: s.rev }, (e) => seen.push(`${e.type} ${e.object.metadata.name}`));
    s.delete(node, undefined, "n1");
    expect(seen).toEqual(["DELETED a", "DELETED b"]);
    expect(s.list(cm).items.map((o) => o.metadata.name)).toEqual(["free"]);
  });

  test("an object with another owner alive stays; Orphan leaves them all; dry run deletes nothing", () => {
    const { s, node } = setup();
    const cm = s.type("", "configmaps")!;
    const n1 = s.create(node, undefined, { metadata: { name: "n1" } });
    const n2 = s.create(node, undefined, { metadata: { name: "n2" } });
    s.create(cm, "default", owned("both", n1, n2));
    s.create(cm, "default", owned("orphan", n2));
    s.delete(node, undefined, "n1", { dryRun: true });
    s.delete(node, undefined, "n1");
    expect(s.list(cm).items.map((o) => o.metadata.name)).toEqual(["both", "orphan"]);
    s.delete(node, undefined, "n2", { propagationPolicy: "Orphan" });
    expect(s.list(cm).items.map((o) => o.metadata.name)).toEqual(["both", "orphan"]);
  });

  test("an object whose owners never existed is collected shortly after its write; an owner of a kind not served is taken to exist", async () => {
    const { s, node } = setup();
    const cm = s.type("", "configmaps")!;
    const n1 = s.create(node, undefined, { metadata: { name: "n1" } });
    const ghost = { kind: "Node", metadata: { name: "ghost", uid: "00000000-0000-4000-8000-000000000000" } } as KubeObject;
    s.create(cm, "default", owned("dangling", ghost));
    s.create(cm, "default", owned("owned", n1));
    s.create(cm, "default", { metadata: { name: "rs-owned", ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: "11111111-0000-4000-8000-000000000000" }] }, data: {} });
    // re-owned by hand to an owner that does not exist
    const later = s.create(cm, "default", owned("later", n1));
    s.update(cm, "default", "later", { ...later, ...owned("later", ghost) });
    await Bun.sleep(1);
    expect(s.list(cm).items.map((o) => o.metadata.name).sort()).toEqual(["owned", "rs-owned"]);
  });

  test("a store restarted from a snapshot still knows who owns what", () => {
    const { s, node } = setup();
    const cm = s.type("", "configmaps")!;
    const n1 = s.create(node, undefined, { metadata: { name: "n1" } });
    s.create(cm, "default", owned("a", n1));
    const r = new Store(s.allTypes(), 100, s.snapshot());
    r.delete(r.type("", "nodes")!, undefined, "n1");
    expect(r.list(r.type("", "configmaps")!).items).toEqual([]);
  });
});
