import { afterEach, describe, expect, test } from "bun:test";
import { waitFor } from "../../test/harness/index.ts";
import { FakeKube, recordingLog } from "./fake-kube.case.ts";
import { BOUNDS, SkeinNodeWriter, boundedStatus, type WriterOptions } from "./skeinnode.ts";
import type { NodeReport } from "./types.ts";

const report = (o: Partial<NodeReport> = {}): NodeReport => ({
  ready: true,
  reasons: [],
  mode: "vxlan",
  version: "0.1.0",
  addresses: { underlay: "192.168.50.11", podCIDRs: ["10.244.1.0/24"] },
  peers: { total: 3, reachable: 2, unreachable: ["n3"] },
  tableGeneration: 17,
  ...o,
});

const writers: SkeinNodeWriter[] = [];
afterEach(async () => {
  for (const w of writers.splice(0)) await w.stop();
});

/** A writer on a fake API with fast limits; `state` is what the agent reports, `clock` shifts its time. */
function setup(o: Partial<WriterOptions> = {}, uid: string | null = "node-uid-1") {
  const kube = new FakeKube();
  const { log, lines } = recordingLog();
  const state: { report: NodeReport; uid: string | undefined } = { report: report(), uid: uid ?? undefined };
  const clock = { offset: 0 };
  const w = new SkeinNodeWriter({ kube, nodeName: "n1", log, minIntervalMs: 20, checkMs: 10, heartbeatMs: 60_000, crdRetryMs: 60_000, backoffMs: 20, maxBackoffMs: 80, now: () => Date.now() + clock.offset, ...o });
  writers.push(w);
  const start = () => w.start({ report: () => state.report, nodeUid: () => state.uid });
  const object = () => kube.objects.get("skeinnodes/n1");
  const statusWrites = () => kube.writes((c) => c.path.endsWith("/status"));
  return { kube, lines, state, clock, w, start, object, statusWrites };
}

describe("SkeinNode writer", () => {
  test("makes the object owned by its Node and writes its status through the status subresource", async () => {
    const s = setup();
    s.start();
    await waitFor("the status written", () => s.object()?.status);
    const o = s.object()!;
    expect(o.metadata.name).toBe("n1");
    expect(o.metadata.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Node", name: "n1", uid: "node-uid-1" }]);
    expect(o.spec).toEqual({});
    const st = o.status;
    expect(st).toMatchObject({ ready: true, reasons: [], mode: "vxlan", version: "0.1.0", peersSummary: "2/3", tableGeneration: 17, peers: { total: 3, reachable: 2, unreachable: ["n3"] }, addresses: { underlay: "192.168.50.11", podCIDRs: ["10.244.1.0/24"] } });
    expect(st.lastError).toBeUndefined();
    expect(st.lastUpdate).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(st.conditions).toEqual([{ type: "Ready", status: "True", reason: "AgentReady", message: expect.any(String), lastTransitionTime: st.lastUpdate }]);
    const [patch] = s.statusWrites();
    expect(patch).toMatchObject({ method: "PATCH", path: "/apis/skein.io/v1alpha1/skeinnodes/n1/status", contentType: "application/merge-patch+json" });
  });

  test("no owner, no object: nothing is written until the Node has been read", async () => {
    const s = setup({}, null);
    s.start();
    await Bun.sleep(100);
    expect(s.kube.calls).toEqual([]);
    s.state.uid = "u2";
    await waitFor("the status written", () => s.object()?.status);
    expect(s.object()!.metadata.ownerReferences[0].uid).toBe("u2");
  });

  test("writes on a change and as a heartbeat, never more often than the least interval", async () => {
    const s = setup({ minIntervalMs: 100, heartbeatMs: 60_000 });
    s.start();
    await waitFor("the first write", () => s.statusWrites().length === 1);
    // nothing changed: no write, however often the agent says it may have
    for (let i = 0; i < 10; i++) {
      s.w.changed();
      await Bun.sleep(15);
    }
    expect(s.statusWrites().length).toBe(1);
    // a flood of changes: at most one write per interval
    const t0 = Date.now();
    for (let i = 0; i < 40; i++) {
      s.state.report = report({ tableGeneration: 100 + i });
      s.w.changed();
      await Bun.sleep(10);
    }
    await waitFor("the last generation written", () => s.object()!.status.tableGeneration === 139);
    const writes = s.statusWrites();
    const elapsed = Date.now() - t0;
    expect(writes.length - 1).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 1);
    for (let i = 1; i < writes.length; i++) expect(writes[i]!.at - writes[i - 1]!.at).toBeGreaterThanOrEqual(95);
    // a minute later the same status is written again: its lastUpdate says the agent lives
    const before = s.object()!.status.lastUpdate;
    const n = s.statusWrites().length;
    s.clock.offset = 61_000;
    await waitFor("the heartbeat", () => s.statusWrites().length === n + 1);
    expect(s.object()!.status.lastUpdate > before).toBe(true);
  });

  test("a peer change nobody announced is found by the periodic look", async () => {
    const s = setup();
    s.start();
    await waitFor("the first write", () => s.object()?.status);
    s.state.report = report({ peers: { total: 3, reachable: 3, unreachable: [] } });
    await waitFor("the peers written", () => s.object()!.status.peersSummary === "3/3");
    expect(s.object()!.status.peers.unreachable).toEqual([]);
  });

  test("the Ready condition's lastTransitionTime moves only when it flips; a restarted writer keeps it", async () => {
    const s = setup();
    s.start();
    await waitFor("the first write", () => s.object()?.status);
    const t1 = s.object()!.status.conditions[0].lastTransitionTime;
    s.clock.offset = 5000;
    s.state.report = report({ tableGeneration: 18 });
    await waitFor("generation 18", () => s.object()!.status.tableGeneration === 18);
    expect(s.object()!.status.conditions[0].lastTransitionTime).toBe(t1);
    s.clock.offset = 10_000;
    s.state.report = report({ ready: false, reasons: ["the cluster is not listed yet", "the pod network waits: x"], tableGeneration: 18 });
    await waitFor("not ready", () => s.object()!.status.ready === false);
    const c = s.object()!.status.conditions[0];
    expect(c).toMatchObject({ status: "False", reason: "AgentNotReady", message: "the cluster is not listed yet; the pod network waits: x" });
    expect(c.lastTransitionTime > t1).toBe(true);
    expect(s.object()!.status.reasons).toEqual(["the cluster is not listed yet", "the pod network waits: x"]);
    // a new agent (same object) that finds it not ready either keeps the time it flipped
    await s.w.stop();
    const again = new SkeinNodeWriter({ kube: s.kube, nodeName: "n1", log: recordingLog().log, minIntervalMs: 20, checkMs: 10, now: () => Date.now() + 20_000 });
    writers.push(again);
    const n = s.statusWrites().length;
    again.start({ report: () => report({ ready: false, reasons: ["starting"], tableGeneration: 0 }), nodeUid: () => "node-uid-1" });
    await waitFor("the new writer's write", () => s.statusWrites().length > n);
    expect(s.object()!.status.conditions[0].lastTransitionTime).toBe(c.lastTransitionTime);
    expect(s.object()!.status.reasons).toEqual(["starting"]);
  });

  test("a CRD not installed: one log line, no request until the retry, then written once it is", async () => {
    const s = setup({ crdRetryMs: 60_000 });
    s.kube.crd = false;
    s.start();
    await waitFor("the create refused", () => s.kube.calls.some((c) => c.method === "POST"));
    await Bun.sleep(150);
    // a GET and a POST, once: changes and periodic looks wait for the retry
    s.state.report = report({ tableGeneration: 99 });
    s.w.changed();
    await Bun.sleep(100);
    expect(s.kube.calls.map((c) => c.method)).toEqual(["GET", "POST"]);
    expect(s.lines.filter((l) => l.includes("CRD is not installed")).length).toBe(1);
    // a minute later it is still missing: asked again, not logged again
    s.clock.offset = 61_000;
    await waitFor("asked again", () => s.kube.calls.length === 4);
    expect(s.kube.calls.map((c) => c.method)).toEqual(["GET", "POST", "GET", "POST"]);
    await Bun.sleep(50);
    expect(s.lines.filter((l) => l.includes("CRD is not installed")).length).toBe(1);
    s.kube.crd = true;
    s.clock.offset = 122_000;
    await waitFor("written once the CRD is there", () => s.object()?.status?.tableGeneration === 99);
    expect(s.lines.filter((l) => l.includes("CRD is not installed")).length).toBe(1);
    expect(s.lines.some((l) => l.includes("SkeinNode written"))).toBe(true);
  });

  test("a conflict re-reads the object and writes again; an object deleted meanwhile is made anew", async () => {
    const s = setup();
    s.start();
    await waitFor("the first write", () => s.object()?.status);
    s.kube.failures.push(409);
    s.state.report = report({ tableGeneration: 20 });
    s.w.changed();
    await waitFor("generation 20 written", () => s.object()!.status.tableGeneration === 20);
    const after409 = s.kube.calls.slice(-3).map((c) => `${c.method} ${c.path.split("/").slice(-2).join("/")}`);
    expect(after409).toEqual(["PATCH n1/status", "GET skeinnodes/n1", "PATCH n1/status"]);
    s.kube.objects.delete("skeinnodes/n1");
    s.state.report = report({ tableGeneration: 21 });
    s.w.changed();
    await waitFor("made anew", () => s.object()?.status?.tableGeneration === 21);
    expect(s.object()!.metadata.ownerReferences[0].uid).toBe("node-uid-1");
  });

  test("a Node made anew (another uid) becomes the owner", async () => {
    const s = setup();
    s.start();
    await waitFor("the first write", () => s.object()?.status);
    await s.w.stop();
    const again = new SkeinNodeWriter({ kube: s.kube, nodeName: "n1", log: recordingLog().log, minIntervalMs: 20, checkMs: 10 });
    writers.push(again);
    again.start({ report: () => report(), nodeUid: () => "node-uid-2" });
    await waitFor("the owner replaced", () => s.object()!.metadata.ownerReferences[0].uid === "node-uid-2");
    expect(s.object()!.metadata.ownerReferences.length).toBe(1);
  });

  test("an owner someone else put on the running agent's SkeinNode is put right at its next write", async () => {
    const s = setup();
    s.start();
    await waitFor("the first write", () => s.object()?.status);
    // owned by a Node that does not exist: kube's garbage collector would delete the object,
    // and a wrong Node that is deleted would take this node's SkeinNode with it
    s.object()!.metadata.ownerReferences = [{ apiVersion: "v1", kind: "Node", name: "other", uid: "other-uid" }];
    s.state.report = report({ tableGeneration: 30 });
    s.w.changed();
    await waitFor("generation 30 written", () => s.object()!.status.tableGeneration === 30);
    await waitFor("the owner put right", () => s.object()!.metadata.ownerReferences[0].uid === "node-uid-1");
    expect(s.object()!.metadata.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Node", name: "n1", uid: "node-uid-1" }]);
  });

  test("other errors back off, doubling up to the cap", async () => {
    const s = setup({ backoffMs: 40, maxBackoffMs: 160 });
    s.kube.failures.push(500, 500, 500, 500, 500);
    s.start();
    await waitFor("written after the failures", () => s.object()?.status, 5000);
    const gets = s.kube.calls.filter((c) => c.method === "GET").map((c) => c.at);
    expect(gets.length).toBe(6);
    const gaps = gets.slice(1).map((t, i) => t - gets[i]!);
    for (const [i, want] of [40, 80, 160, 160, 160].entries()) expect(gaps[i]!).toBeGreaterThanOrEqual(want - 5);
    expect(gaps[4]!).toBeLessThan(400);
    expect(s.lines.filter((l) => l.includes("cannot write the SkeinNode")).length).toBe(5);
  });

  test("every string and list is bounded", () => {
    const long = "x".repeat(5000);
    const st = boundedStatus(
      report({
        ready: false,
        reasons: Array.from({ length: 30 }, (_, i) => `${i} ${long}`),
        peers: { total: 200, reachable: 250, unreachable: Array.from({ length: 100 }, (_, i) => `node-${i}-${long}`) },
        lastError: long,
        version: long,
        addresses: { underlay: long, public: long, podCIDRs: Array.from({ length: 40 }, () => "10.0.0.0/24") },
        tableGeneration: -3,
      }),
    );
    expect(st.reasons.length).toBe(BOUNDS.reasons);
    for (const r of st.reasons) expect(r.length).toBeLessThanOrEqual(BOUNDS.reason);
    expect(st.reasons.at(-1)).toBe("21 more reasons");
    expect(st.peers.unreachable.length).toBe(BOUNDS.unreachable);
    for (const n of st.peers.unreachable) expect(n.length).toBeLessThanOrEqual(BOUNDS.name);
    expect(st.lastError!.length).toBe(BOUNDS.lastError);
    expect(st.lastError!.endsWith("…")).toBe(true);
    expect(st.version.length).toBeLessThanOrEqual(BOUNDS.short);
    expect(st.addresses.podCIDRs.length).toBe(BOUNDS.podCIDRs);
    // reachable never above total; counts never negative
    expect(st.peers).toMatchObject({ total: 200, reachable: 200 });
    expect(st.peersSummary).toBe("200/200");
    expect(st.tableGeneration).toBe(0);
    // when ready there are no reasons whatever the report says
    expect(boundedStatus(report({ reasons: ["stale"] })).reasons).toEqual([]);
  });

  test("a lastError that clears is removed from the object", async () => {
    const s = setup();
    s.state.report = report({ ready: false, reasons: ["x"], lastError: "nft refused" });
    s.start();
    await waitFor("the error written", () => s.object()?.status?.lastError === "nft refused");
    s.state.report = report();
    s.w.changed();
    await waitFor("the error gone", () => s.object()!.status.ready === true);
    expect("lastError" in s.object()!.status).toBe(false);
  });

  test("a snapshot that throws is a failure like another: logged, backed off, tried again", async () => {
    const s = setup();
    let broken = 2;
    s.w.start({
      report: () => {
        if (broken-- > 0) throw new Error("not yet");
        return report();
      },
      nodeUid: () => "node-uid-1",
    });
    await waitFor("written once it no longer throws", () => s.object()?.status);
    expect(s.lines.filter((l) => l.includes("cannot write the SkeinNode") && l.includes("not yet")).length).toBe(2);
  });

  test("stop returns without waiting for a request that hangs, and nothing is asked after it", async () => {
    const s = setup();
    s.kube.hang = true;
    s.start();
    await waitFor("a request under way", () => s.kube.calls.length === 1);
    const t0 = Date.now();
    await s.w.stop();
    expect(Date.now() - t0).toBeLessThan(2500);
    s.kube.hang = false;
    s.w.changed();
    await Bun.sleep(100);
    expect(s.kube.calls.length).toBe(1);
  });
});
