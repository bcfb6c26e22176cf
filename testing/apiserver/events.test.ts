// Events: core v1 and events.k8s.io/v1 as two views of the same objects, kube's field
// selectors for them, its validation of each version, and the Table kubectl prints.
import { afterAll, describe, expect, test } from "bun:test";
import type { TestApiServer } from "./server.ts";
import { waitFor } from "../../test/harness/index.ts";
import { startServer } from "./testclient.ts";
import { eventFromCore, eventToCore, legacyEventErrors, strictEventErrors } from "./events.ts";
import { attachEvents } from "./event-ttl.ts";
import { newStore } from "./server.ts";
import { tableOf } from "./printers.ts";
import type { KubeObject } from "./resources.ts";

const servers: TestApiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});
function start() {
  const c = startServer();
  servers.push(c.s);
  return { k: { request: c.request }, status: c.failure };
}

const coreEvent = (name: string, involved: Record<string, unknown>, rest: Record<string, unknown> = {}) => ({
  apiVersion: "v1",
  kind: "Event",
  metadata: { name, namespace: "default" },
  involvedObject: { namespace: "default", ...involved },
  reason: "InvalidService",
  message: "spec.clusterIP: not an address",
  type: "Warning",
  source: { component: "skein-agent", host: "n1" },
  reportingComponent: "skein.io/agent",
  reportingInstance: "n1",
  firstTimestamp: "2026-11-29T10:00:00Z",
  lastTimestamp: "2026-11-29T10:01:00Z",
  count: 2,
  ...rest,
});

describe("Events", () => {
  const { k, status } = start();

  test("a core v1 Event is served as events.k8s.io/v1 under that version's names, and back", async () => {
    await k.request("POST", "/api/v1/namespaces/default/events", coreEvent("web.1", { kind: "Service", name: "web", uid: "u-1", apiVersion: "v1" }));
    const v1 = await k.request<Record<string, any>>("GET", "/apis/events.k8s.io/v1/namespaces/default/events/web.1");
    expect(v1).toMatchObject({ apiVersion: "events.k8s.io/v1", kind: "Event", regarding: { kind: "Service", name: "web" }, note: "spec.clusterIP: not an address", reportingController: "skein.io/agent", deprecatedSource: { component: "skein-agent", host: "n1" }, deprecatedCount: 2, deprecatedLastTimestamp: "2026-11-29T10:01:00Z", eventTime: null });
    expect(v1.involvedObject).toBeUndefined();
    // what Go writes for core v1's fields without omitempty
    const core = await k.request<Record<string, any>>("GET", "/api/v1/namespaces/default/events/web.1");
    expect(core).toMatchObject({ eventTime: null, reportingInstance: "n1" });
    // one object: a write through one version is what the other reads
    const now = "2026-11-29T10:02:00.000000Z";
    const created = await k.request<Record<string, any>>("POST", "/apis/events.k8s.io/v1/namespaces/default/events", {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: "pol.1", namespace: "default" },
      eventTime: now,
      reportingController: "skein.io/agent",
      reportingInstance: "n1",
      action: "Compile",
      reason: "UnsupportedPolicy",
      regarding: { kind: "NetworkPolicy", namespace: "default", name: "deny", apiVersion: "networking.k8s.io/v1" },
      note: "endPort is not supported",
      type: "Warning",
    });
    expect(created.apiVersion).toBe("events.k8s.io/v1");
    const asCore = await k.request<Record<string, any>>("GET", "/api/v1/namespaces/default/events/pol.1");
    expect(asCore).toMatchObject({ apiVersion: "v1", involvedObject: { kind: "NetworkPolicy", name: "deny" }, message: "endPort is not supported", reportingComponent: "skein.io/agent", eventTime: now, source: {} });
    const list = await k.request<{ kind: string; apiVersion: string; items: Array<{ metadata: { name: string } }> }>("GET", "/apis/events.k8s.io/v1/events");
    expect({ kind: list.kind, apiVersion: list.apiVersion, names: list.items.map((i) => i.metadata.name) }).toEqual({ kind: "EventList", apiVersion: "events.k8s.io/v1", names: ["pol.1", "web.1"] });
    await k.request("DELETE", "/apis/events.k8s.io/v1/namespaces/default/events/pol.1");
    expect((await status(k.request("GET", "/api/v1/namespaces/default/events/pol.1"))).code).toBe(404);
  });

  test("field selectors: kube's for core v1 (what kubectl describe asks), the renamed ones for events.k8s.io", async () => {
    await k.request("POST", "/api/v1/namespaces/default/events", coreEvent("pod.1", { kind: "Pod", name: "p", uid: "u-p" }, { type: "Normal", reason: "Started" }));
    const names = async (path: string, fieldSelector: string) => (await k.request<{ items: Array<{ metadata: { name: string } }> }>("GET", path, undefined, { fieldSelector })).items.map((i) => i.metadata.name);
    expect(await names("/api/v1/namespaces/default/events", "involvedObject.name=p,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u-p")).toEqual(["pod.1"]);
    expect(await names("/api/v1/events", "type=Warning")).toEqual(["web.1"]);
    expect(await names("/api/v1/events", "source=skein-agent,reason!=Started")).toEqual(["web.1"]);
    expect(await names("/api/v1/events", "reportingComponent=skein.io/agent")).toEqual(["pod.1", "web.1"]);
    expect(await names("/apis/events.k8s.io/v1/events", "regarding.kind=Pod")).toEqual(["pod.1"]);
    expect(await names("/apis/events.k8s.io/v1/events", "reportingController=skein.io/agent,type=Warning")).toEqual(["web.1"]);
    // "source" is core v1's only, as in kube
    expect(await status(k.request("GET", "/apis/events.k8s.io/v1/events", undefined, { fieldSelector: "source=x" }))).toEqual({ code: 400, message: expect.stringContaining("field label not supported: source") });
    expect(await status(k.request("GET", "/api/v1/events", undefined, { fieldSelector: "regarding.kind=Pod" }))).toEqual({ code: 400, message: expect.stringContaining("field label not supported: regarding.kind") });
  });

  test("validation: the legacy rules for core v1, the strict ones for events.k8s.io/v1, each naming the field", async () => {
    let r = await status(k.request("POST", "/api/v1/namespaces/default/events", coreEvent("bad.1", { kind: "Pod", name: "p", namespace: "other" })));
    expect(r).toEqual({ code: 422, message: expect.stringContaining('involvedObject.namespace: Invalid value: "other": does not match event.namespace') });
    r = await status(k.request("POST", "/api/v1/namespaces/default/events", coreEvent("bad.2", { kind: "Pod", name: "p" }, { count: "many" })));
    expect(r).toEqual({ code: 422, message: expect.stringContaining("count: Invalid value") });
    r = await status(k.request("POST", "/apis/events.k8s.io/v1/namespaces/default/events", { metadata: { name: "bad.3" }, regarding: { kind: "Pod", namespace: "default", name: "p" }, reason: "X", type: "Bad" }));
    expect(r).toEqual({ code: 422, message: 'Event.events.k8s.io "bad.3" is invalid: [eventTime: Required value, type: Invalid value: "": has invalid value: Bad]' });
    r = await status(k.request("POST", "/apis/events.k8s.io/v1/namespaces/default/events", { metadata: { name: "bad.4" }, eventTime: "2026-11-29T10:00:00.000000Z", regarding: { kind: "Pod", namespace: "default", name: "p" }, reason: "X", type: "Normal" }));
    expect(r.message).toBe('Event.events.k8s.io "bad.4" is invalid: [reportingController: Required value, reportingInstance: Required value, action: Required value]');
  });

  test("kubectl's Table: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (and the wide columns)", async () => {
    const t = await k.request<{ columnDefinitions: Array<{ name: string; priority: number }>; rows: Array<{ cells: unknown[] }> }>("GET", "/api/v1/namespaces/default/events/web.1", undefined, undefined, { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" });
    expect(t.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name)).toEqual(["Last Seen", "Type", "Reason", "Object", "Message"]);
    expect(t.rows[0]!.cells.slice(1, 4)).toEqual(["Warning", "InvalidService", "service/web"]);
  });
});

describe("printEvent", () => {
  const NOW = Date.parse("2026-11-29T10:05:00Z");
  const cells = (o: Record<string, unknown>) => (tableOf("Event", [o as KubeObject], { version: "v1", now: NOW }) as { rows: Array<{ cells: unknown[] }> }).rows[0]!.cells;

  test("times, count, object and source as kube prints them", () => {
    const e = { ...coreEvent("e", { kind: "Pod", name: "p", fieldPath: "spec.containers{c}" }) };
    expect(cells(e)).toEqual(["4m", "Warning", "InvalidService", "pod/p", "spec.containers{c}", "skein-agent, n1", "spec.clusterIP: not an address", "5m", 2, "e"]);
    // new-style: eventTime only, count 1, the source from the reporting fields
    const n = { metadata: { name: "n" }, eventTime: "2026-11-29T10:04:30.000000Z", involvedObject: { kind: "Node" }, reportingComponent: "skein.io/agent", reportingInstance: "n1", message: " x " };
    expect(cells(n)).toEqual(["30s", "", "", "node", "", "skein.io/agent, n1", "x", "30s", 1, "n"]);
    // a series: its count and last observation
    const s = { ...n, series: { count: 7, lastObservedTime: "2026-11-29T10:04:50.000000Z" } };
    expect([cells(s)[0], cells(s)[8]]).toEqual(["10s", 7]);
    // an events.k8s.io/v1 object prints as its core form
    expect(cells(eventFromCore(e as KubeObject))).toEqual(cells(e));
  });
});

describe("conversion and rules", () => {
  test("events.k8s.io/v1 → core → events.k8s.io/v1 keeps every field", () => {
    const v1 = { apiVersion: "events.k8s.io/v1", kind: "Event", metadata: { name: "a" }, eventTime: "2026-11-29T10:00:00.000000Z", series: { count: 2, lastObservedTime: "2026-11-29T10:00:01.000000Z" }, reportingController: "c", reportingInstance: "i", action: "A", reason: "R", regarding: { kind: "Pod" }, related: { kind: "Node" }, note: "n", type: "Normal", deprecatedSource: { component: "x" }, deprecatedFirstTimestamp: "2026-11-29T10:00:00Z", deprecatedLastTimestamp: "2026-11-29T10:00:00Z", deprecatedCount: 3 };
    expect(eventFromCore(eventToCore(v1 as KubeObject))).toEqual(v1 as KubeObject);
  });

  test("legacy rules: a namespaced involved object in the Event's namespace; cluster-scoped ones in default", () => {
    const ok = { metadata: { namespace: "default" }, involvedObject: { kind: "Node", name: "n1" } };
    expect(legacyEventErrors(ok)).toEqual([]);
    expect(legacyEventErrors({ ...ok, metadata: { namespace: "x" } }).map((e) => e.field)).toEqual(["involvedObject.namespace"]);
    // a new-style Event sent through core v1 still needs the reporting fields, named as core v1 names them
    expect(legacyEventErrors({ ...ok, eventTime: "2026-11-29T10:00:00Z" }).map((e) => e.field)).toEqual(["reportingComponent", "reportingInstance", "action", "reason"]);
    expect(legacyEventErrors({ ...ok, eventTime: "yesterday" }).map((e) => e.field)).toEqual(["eventTime"]);
  });

  test("strict rules: the deprecated fields must be unset; a series has a count of at least 2", () => {
    const base = { metadata: { namespace: "default" }, involvedObject: { kind: "Node" }, eventTime: "2026-11-29T10:00:00Z", reportingComponent: "a/b", reportingInstance: "i", action: "A", reason: "R", type: "Normal" };
    expect(strictEventErrors(base)).toEqual([]);
    expect(strictEventErrors({ ...base, count: 3, source: { host: "h" }, series: { count: 1 } }).map((e) => e.field)).toEqual(["series.count", "series.lastObservedTime", "count", "source"]);
    expect(strictEventErrors({ ...base, reportingComponent: "not a name!" }).map((e) => e.field)).toEqual(["reportingController"]);
  });
});

describe("the Event TTL (kube-apiserver's --event-ttl)", () => {
  test("an Event goes ttl after its last write; a write renews it; one loaded at start is judged by its own times", () => {
    const store = newStore();
    const t = store.type("", "events")!;
    let clock = Date.parse("2026-11-29T10:00:00Z");
    const sweep = attachEvents(store, 3600, () => clock);
    const ev = (name: string, last: string) => ({ metadata: { name }, involvedObject: { kind: "Node", name: "n1" }, reason: "R", lastTimestamp: last });
    store.create(t, "default", ev("a", "2026-11-29T10:00:00Z"));
    store.create(t, "default", ev("b", "2026-11-29T10:00:00Z"));
    clock += 1800_000;
    // b written again half an hour later: its hour starts again
    store.update(t, "default", "b", { ...store.get(t, "default", "b"), count: 2 });
    clock += 1800_000 + 1000;
    expect(sweep()).toBe(1);
    expect(store.list(t).items.map((o) => o.metadata.name)).toEqual(["b"]);
    clock += 1800_000;
    expect(sweep()).toBe(1);
    // a restarted server knows no write times: an Event's own lastTimestamp (or eventTime) says
    const again = newStore();
    const t2 = again.type("", "events")!;
    // (times far ahead of the wall clock: the objects' creationTimestamp, set as they are
    // created here, counts too and must be the older time)
    again.create(t2, "default", ev("old", "2099-11-29T08:00:00Z"));
    again.create(t2, "default", ev("new", "2099-11-29T11:30:00Z"));
    const sweep2 = attachEvents(again, 3600, () => Date.parse("2099-11-29T12:00:00Z"));
    expect(sweep2()).toBe(1);
    expect(again.list(t2).items.map((o) => o.metadata.name)).toEqual(["new"]);
    // 0 keeps them for ever
    expect(attachEvents(again, 0, () => Date.parse("2199-01-01T00:00:00Z"))()).toBe(0);
  });

  test("a server sweeps them while it runs", async () => {
    const c = startServer({ eventTtlSeconds: 1 });
    servers.push(c.s);
    await c.request("POST", "/api/v1/namespaces/default/events", coreEvent("short.1", { kind: "Pod", name: "p" }));
    expect((await c.request("GET", "/api/v1/events")).items).toHaveLength(1);
    await waitFor("the Event is swept", async () => (await c.request("GET", "/api/v1/events")).items.length === 0, 10_000, 100);
  });
});
