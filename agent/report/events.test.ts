import { describe, expect, test } from "bun:test";
import { waitFor } from "../../test/harness/index.ts";
import { FakeKube, recordingLog } from "./fake-kube.case.ts";
import { EventRecorder, MAX_MESSAGE, messageFor, reasonFor, type RecorderOptions } from "./events.ts";
import { clusterReporter } from "./index.ts";
import type { ObjectRef } from "./types.ts";

const svc: ObjectRef = { kind: "Service", namespace: "shop", name: "web", uid: "svc-uid", resourceVersion: "42" };
/** the Service refused again: a new version of it */
let version = 100;
const next = (): ObjectRef => ({ ...svc, resourceVersion: String(version++) });

function setup(o: Partial<RecorderOptions> = {}) {
  const kube = new FakeKube();
  const { log, lines } = recordingLog();
  const clock = { ms: Date.parse("2026-11-29T10:00:00Z") };
  const r = new EventRecorder({ kube, nodeName: "n1", log, now: () => clock.ms, ...o });
  /** waits until the recorder has handled everything given */
  const settle = () => waitFor("the queue drained", () => (r as unknown as { running?: Promise<void> }).running === undefined, 2000, 2);
  return { kube, lines, clock, r, settle };
}

describe("Event recorder", () => {
  test("a Warning Event on the object, as kubectl describe shows it", async () => {
    const s = setup();
    s.r.warn(svc, "InvalidService", "spec.clusterIP: \"10.96.0.010\" has a leading zero; left out");
    await s.settle();
    const [e] = s.kube.events();
    expect(s.kube.writes()).toHaveLength(1);
    expect(s.kube.writes()[0]!.path).toBe("/api/v1/namespaces/shop/events");
    expect(e).toMatchObject({
      apiVersion: "v1",
      kind: "Event",
      metadata: { namespace: "shop" },
      involvedObject: { kind: "Service", namespace: "shop", name: "web", uid: "svc-uid", apiVersion: "v1", resourceVersion: "42" },
      reason: "InvalidService",
      type: "Warning",
      source: { component: "skein-agent", host: "n1" },
      reportingComponent: "skein.io/agent",
      reportingInstance: "n1",
      count: 1,
      firstTimestamp: "2026-11-29T10:00:00Z",
      lastTimestamp: "2026-11-29T10:00:00Z",
    });
    expect(e!.metadata.name).toMatch(/^web\.[0-9a-f]+\.[0-9a-f]{8}$/);
  });

  test("a cluster-scoped object's Event goes to default; API versions by kind", async () => {
    const s = setup();
    s.r.warn({ kind: "Node", name: "n9", uid: "n9-uid" }, "InvalidNode", "x");
    s.r.warn({ kind: "NetworkPolicy", namespace: "a", name: "p" }, "UnsupportedPolicy", "y");
    await s.settle();
    const [node, pol] = s.kube.events();
    expect(node!.metadata.namespace).toBe("default");
    expect(node!.involvedObject).toEqual({ kind: "Node", name: "n9", uid: "n9-uid", apiVersion: "v1" });
    expect(pol!.involvedObject).toEqual({ kind: "NetworkPolicy", namespace: "a", name: "p", apiVersion: "networking.k8s.io/v1" });
  });

  test("a repeat within 10 minutes bumps count and lastTimestamp; another message, or later, is a new Event", async () => {
    const s = setup();
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    s.clock.ms += 60_000;
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    expect(s.kube.events()).toHaveLength(1);
    expect(s.kube.events()[0]).toMatchObject({ count: 2, firstTimestamp: "2026-11-29T10:00:00Z", lastTimestamp: "2026-11-29T10:01:00Z" });
    const patch = s.kube.writes().at(-1)!;
    expect(patch).toMatchObject({ method: "PATCH", contentType: "application/merge-patch+json", body: { count: 2, lastTimestamp: "2026-11-29T10:01:00Z" } });
    // another message, another object (a new uid: the Service made anew), another reason
    s.r.warn(next(), "InvalidService", "worse");
    s.r.warn({ ...svc, uid: "svc-uid-2" }, "InvalidService", "bad");
    await s.settle();
    expect(s.kube.events()).toHaveLength(3);
    // ten minutes after its last repeat the same one is a new Event
    s.clock.ms += 600_000;
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    expect(s.kube.events()).toHaveLength(4);
    expect(s.kube.events()[3]!.count).toBe(1);
  });

  test("repeats given while a write is under way are one update with their count", async () => {
    const s = setup();
    for (let i = 0; i < 5; i++) s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    s.clock.ms += 1000;
    for (let i = 0; i < 7; i++) s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    // the first of each burst is written at once, the rest wait for it as one update
    expect(s.kube.writes().map((c) => c.method)).toEqual(["POST", "PATCH", "PATCH", "PATCH"]);
    expect(s.kube.events()).toHaveLength(1);
    expect(s.kube.events()[0]!.count).toBe(12);
  });

  test("the same version of an object again (the informer listing anew) is no new occurrence", async () => {
    const s = setup();
    s.r.warn(svc, "InvalidService", "bad");
    s.r.warn(svc, "InvalidService", "bad");
    await s.settle();
    s.clock.ms += 1000;
    s.r.warn(svc, "InvalidService", "bad");
    await s.settle();
    expect(s.kube.writes().map((c) => c.method)).toEqual(["POST"]);
    // a new version refused for the same reason is
    s.r.warn({ ...svc, resourceVersion: "43" }, "InvalidService", "bad");
    await s.settle();
    expect(s.kube.events()[0]!.count).toBe(2);
  });

  test("an Event gone meanwhile is made anew", async () => {
    const s = setup();
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    for (const k of [...s.kube.objects.keys()]) s.kube.objects.delete(k);
    s.clock.ms += 1000;
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    expect(s.kube.writes().map((c) => c.method)).toEqual(["POST", "PATCH", "POST"]);
    expect(s.kube.events()).toHaveLength(1);
  });

  test("at most 25 writes a minute with a burst of 10; the rest are counted and dropped", async () => {
    const s = setup();
    const bad = (i: number): ObjectRef => ({ kind: "Service", namespace: "flood", name: `s${i}`, uid: `u${i}` });
    for (let i = 0; i < 100; i++) {
      s.r.warn(bad(i), "InvalidService", "bad");
      await s.settle();
    }
    expect(s.kube.writes()).toHaveLength(10);
    expect(s.r.dropped).toBe(90);
    // a minute on: 25 more, never more
    s.clock.ms += 60_000;
    for (let i = 100; i < 200; i++) {
      s.r.warn(bad(i), "InvalidService", "bad");
      await s.settle();
    }
    expect(s.kube.writes()).toHaveLength(20);
    // (the bucket holds at most the burst: a quiet minute buys 10, not 25)
    for (let m = 0; m < 4; m++) {
      for (let i = 0; i < 25; i++) {
        s.clock.ms += 2400;
        s.r.warn(bad(1000 + m * 100 + i), "InvalidService", "bad");
        await s.settle();
      }
    }
    // over four minutes at the refill rate every one gets through: 25 a minute
    expect(s.kube.writes()).toHaveLength(120);
    expect(s.r.dropped).toBe(180);
    // a few log lines for 180 drops, not one each
    expect(s.lines.filter((l) => l.includes("Events dropped")).length).toBeLessThanOrEqual(2);
  });

  test("a repeat dropped by the limit is counted in the next update", async () => {
    const s = setup({ burst: 1, perMinute: 1 });
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    expect(s.r.dropped).toBe(1);
    s.clock.ms += 60_000;
    s.r.warn(next(), "InvalidService", "bad");
    await s.settle();
    expect(s.kube.events()[0]!.count).toBe(3);
  });

  test("never blocks the caller: a hanging API holds at most a bounded queue", async () => {
    const s = setup();
    s.kube.hang = true;
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) s.r.warn({ kind: "Service", namespace: "x", name: `s${i}` }, "InvalidService", "bad");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(s.r.dropped).toBeGreaterThanOrEqual(10_000 - 65);
    const t1 = Date.now();
    await s.r.stop();
    expect(Date.now() - t1).toBeLessThan(2500);
  });

  test("a refused write is logged and the next Event goes on", async () => {
    const s = setup();
    s.kube.failures.push(403);
    s.r.warn(svc, "InvalidService", "a");
    s.r.warn(svc, "InvalidService", "b");
    await s.settle();
    expect(s.r.failed).toBe(1);
    expect(s.kube.events().map((e) => e.message)).toEqual(["b"]);
    expect(s.lines.some((l) => l.includes("cannot write an Event") && l.includes("403"))).toBe(true);
  });

  test("messages are bounded; the object's own name is left to the Event", () => {
    expect(messageFor(svc, "Service shop/web: spec.clusterIP: bad", "left-out")).toBe("spec.clusterIP: bad; left out: nothing of it is programmed");
    expect(messageFor(svc, "Service shop/web: spec.clusterIP: bad", "kept")).toBe("spec.clusterIP: bad; the earlier version stays in force");
    expect(messageFor(svc, "x".repeat(10_000), "kept").length).toBe(MAX_MESSAGE);
    expect(reasonFor("Service", "left-out")).toBe("InvalidService");
    expect(reasonFor("NetworkPolicy", "kept")).toBe("UnsupportedPolicy");
    expect(reasonFor("NetworkPolicy", "closed")).toBe("PolicyClosed");
    expect(reasonFor("Pod", "left-out")).toBeUndefined();
    expect(reasonFor("Node", "kept")).toBe("InvalidNode");
  });

  test("Event names stay valid names for the longest object names", async () => {
    const s = setup();
    const long = `${"a".repeat(199)}.${"b".repeat(53)}`;
    s.r.warn({ kind: "NetworkPolicy", namespace: "x", name: long }, "UnsupportedPolicy", "m");
    await s.settle();
    const name = s.kube.events()[0]!.metadata.name as string;
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
  });

  test("the reporter turns refusals into Events only for the kinds skein explains", async () => {
    const kube = new FakeKube();
    const rep = clusterReporter({ kube, nodeName: "n1", log: recordingLog().log });
    rep.refused(svc, "Service shop/web: spec.clusterIP: bad", "left-out");
    rep.refused({ kind: "Pod", namespace: "shop", name: "p" }, "Pod shop/p: status.podIP: bad", "left-out");
    rep.refused({ kind: "NetworkPolicy", namespace: "shop", name: "np" }, "NetworkPolicy shop/np: spec.ingress: 600 entries: at most 512", "closed");
    await waitFor("two Events", () => kube.events().length === 2);
    await rep.stop();
    expect(kube.events().map((e) => `${e.involvedObject.kind} ${e.reason}: ${e.message}`)).toEqual([
      "Service InvalidService: spec.clusterIP: bad; left out: nothing of it is programmed",
      "NetworkPolicy PolicyClosed: spec.ingress: 600 entries: at most 512; skein cannot apply it as written: the pods it selects are isolated with nothing allowed until it can (fail closed)",
    ]);
  });
});
