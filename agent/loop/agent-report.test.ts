// The agent's side of its reports (agent/report): the snapshot it hands the SkeinNode writer,
// a look after every sync, and the objects it refuses handed on with their reference.
// (The writer and recorder themselves: agent/report/*.test.ts; against `skein apiserver`:
// test/skeinnode.e2e.test.ts.)
import { afterAll, expect, test } from "bun:test";
import pino from "pino";
import { KubeConfig } from "@kubernetes/client-node";
import { TestApiServer } from "../../testing/apiserver/server.ts";
import { KubeClient } from "../watch/kube.ts";
import { Agent, type AgentDeps } from "./agent.ts";
import type { NodeSource, ObjectRef, Outcome, Reporter } from "../report/types.ts";
import type { SyncResult } from "../datapath/datapath.ts";
import { useTempDir, waitFor } from "../../test/harness/index.ts";
import { VERSION } from "../version.ts";

const tmp = useTempDir("agentreport");
const server = TestApiServer.start({ tokens: ["t"] });
const servers = [server];
const agents: Agent[] = [];
afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const s of servers) await s.stop();
});

class RecordingReporter implements Reporter {
  source: NodeSource | undefined;
  changes = 0;
  refusals: Array<{ ref: ObjectRef; message: string; outcome: Outcome }> = [];
  stopped = false;
  start(s: NodeSource): void {
    this.source = s;
  }
  changed(): void {
    this.changes++;
  }
  refused(ref: ObjectRef, message: string, outcome: Outcome): void {
    this.refusals.push({ ref, message, outcome });
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

const ok = (): SyncResult => ({ kind: "delta", lines: 1, ringOps: 0, ms: 0 });
const datapath = { apply: ok, sync: ok, policy: ok, setLocalCIDRs() {}, drift: () => [] } as unknown as AgentDeps["datapath"];

test("the SkeinNode's snapshot, a look after each sync, and refused objects with their reference", async () => {
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const kube = new KubeClient(kc);
  const node = (await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] } } })) as { metadata: { uid: string } };
  const report = new RecordingReporter();
  const agent = new Agent(
    { nodeName: "n1", clusterCIDRs: ["10.244.0.0/16"], serviceCIDRs: [], nodePortAddresses: [], ringFactor: 10, coalesceMs: 5, nodeFile: `${tmp}/node.json`, flushUdp: false },
    { log: pino({ level: "silent" }), datapath, kube, report },
  );
  agents.push(agent);
  // before anything is listed: not ready, and why
  expect(agent.nodeReport()).toMatchObject({ ready: false, reasons: ["the cluster is not listed yet"], tableGeneration: 0 });
  await agent.start();
  expect(report.source).toBeDefined();
  await waitFor("the first sync looked at", () => report.changes > 0);
  const src = report.source!;
  expect(src.nodeUid()).toBe(node.metadata.uid);
  expect(src.report()).toEqual({ ready: true, reasons: [], mode: "none", version: VERSION, addresses: { underlay: "192.0.2.10", podCIDRs: ["10.244.3.0/24"] }, peers: { total: 0, reachable: 0, unreachable: [] }, tableGeneration: 1 });
  // an address skein reads strictly that the API server took
  const svc = (await kube.request("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "odd" }, spec: { externalIPs: ["10.1.2.030"], ports: [{ port: 80 }] } } })) as { metadata: { uid: string; resourceVersion: string } };
  await waitFor("the Service refused", () => report.refusals.length > 0);
  expect(report.refusals[0]).toEqual({
    ref: { kind: "Service", namespace: "default", name: "odd", uid: svc.metadata.uid, resourceVersion: svc.metadata.resourceVersion },
    message: expect.stringContaining("spec.externalIPs[0]"),
    outcome: "left-out",
  });
  const before = report.changes;
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "fine" }, spec: { clusterIP: "10.96.0.9", ports: [{ port: 80 }] } } });
  await waitFor("the next sync looked at", () => report.changes > before);
  expect(src.report().tableGeneration).toBeGreaterThan(1);
  await agent.stop();
  expect(report.stopped).toBe(true);
});

test("peers: the other Nodes with pod CIDRs and the network's peers, reachable when their probe answered (without one: when a path leads there)", async () => {
  // a cluster of its own: only the Nodes made here
  const own = TestApiServer.start({ tokens: ["t"] });
  servers.push(own);
  const kc = new KubeConfig();
  kc.loadFromString(own.kubeconfig());
  const kube = new KubeClient(kc);
  const mk = (name: string, podCIDRs: string[]) => kube.request("POST", "/api/v1/nodes", { body: { metadata: { name }, spec: { podCIDRs }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.20" }] } } });
  await mk("m1", ["10.244.20.0/24"]);
  // e: its record expired (not a peer any more); f: no pod CIDRs, so nothing to reach
  await mk("e", ["10.244.21.0/24"]);
  await mk("f", []);
  const path = (how: "direct" | "vxlan" | "none") => [{ how, why: "" }];
  const peer = (name: string, how: "direct" | "vxlan" | "none", probe?: boolean) => ({ name, source: "gossip" as const, podCIDRs: [], underlay: "192.0.2.1", paths: path(how), ...(probe === undefined ? {} : { probe: { address: "10.244.0.0", ok: probe, at: 0 } }) });
  let planned = true;
  const network: NonNullable<AgentDeps["network"]> = {
    start() {},
    async stop() {},
    setNode() {},
    podMtu: () => 1450,
    status: () => ({ mode: "vxlan", self: { underlay: "192.0.2.20", underlayDev: "eth0", public: "203.0.113.20", podCIDRs: ["10.244.20.0/24"], podMtu: 1450 }, gossip: "live", planned, ...(planned ? {} : { waiting: "no interface of this node holds the underlay address 192.0.2.20" }), peers: [peer("a", "vxlan", true), peer("b", "vxlan", false), peer("c", "direct"), peer("d", "none")] }),
  };
  const report = new RecordingReporter();
  const agent = new Agent(
    { nodeName: "m1", clusterCIDRs: [], serviceCIDRs: [], nodePortAddresses: [], ringFactor: 10, coalesceMs: 5, nodeFile: `${tmp}/node-m1.json`, flushUdp: false },
    { log: pino({ level: "silent" }), datapath, kube, report, network },
  );
  agents.push(agent);
  await agent.start();
  await waitFor("the first sync looked at", () => report.changes > 0);
  expect(agent.nodeReport()).toMatchObject({ ready: true, mode: "vxlan", addresses: { underlay: "192.0.2.20", public: "203.0.113.20", podCIDRs: ["10.244.20.0/24"] }, peers: { total: 5, reachable: 2, unreachable: ["b", "d", "e"] } });
  planned = false;
  expect(agent.nodeReport()).toMatchObject({ ready: false, reasons: ["the pod network waits: no interface of this node holds the underlay address 192.0.2.20"] });
});
