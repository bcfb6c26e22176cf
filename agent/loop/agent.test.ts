// The agent loop against the test API server on loopback, with a recording datapath: what
// it programs, when, and what it keeps when things go wrong. (The kernel side is in
// test/agent.e2e.test.ts.)
import { afterAll, expect, test } from "bun:test";
import pino from "pino";
import { KubeConfig } from "@kubernetes/client-node";
import { TestApiServer } from "../../testing/apiserver/server.ts";
import { KubeClient } from "../watch/kube.ts";
import { Agent, nodePortIPs, type AgentOptions, type KernelWatch, type MasqueradeKeeper } from "./agent.ts";
import type { Findings } from "../datapath/owner.ts";
import type { Listing } from "../datapath/adopt.ts";
import type { Tables, UnitChange } from "../../compiler/tables.ts";
import type { SyncResult } from "../datapath/datapath.ts";
import { useTempDir, waitFor } from "../../test/harness/index.ts";

const tmp = useTempDir("agentloop");
const servers: TestApiServer[] = [];
const agents: Agent[] = [];
afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const s of servers) await s.stop();
});

import type { PolicyTables } from "../../compiler/policy/types.ts";
import type { PolicyReadings } from "../datapath/policy-counters.ts";

class FakeDatapath {
  calls: Array<{ kind: "apply" | "sync"; services: number; frontends: number; full?: boolean; rebuild?: boolean }> = [];
  /** what drift() reports: the kernel's table against the model */
  differs: string[] = [];
  drifts = 0;
  failNext = false;
  last: Tables | undefined;
  localCIDRs: string[] = [];
  setLocalCIDRs(c: string[]): void {
    this.localCIDRs = c;
  }
  /** the policy tables handed over, and whether at once */
  policies: Array<{ tables: PolicyTables; now: boolean; rewrite: boolean }> = [];
  policy(tables: PolicyTables, now = true, rewrite = false): SyncResult {
    this.policies.push({ tables, now, rewrite });
    return { kind: now ? "delta" : "none", lines: 0, ringOps: 0, ms: 0 };
  }
  /** syncs to refuse from now on */
  failing = 0;
  private result(kind: SyncResult["kind"]): SyncResult {
    if (this.failing > 0) {
      this.failing--;
      throw new Error("nftables rejected the transaction: injected");
    }
    if (this.failNext) {
      this.failNext = false;
      throw new Error("nftables rejected the transaction: injected");
    }
    return { kind, lines: 1, ringOps: 0, ms: 0 };
  }
  apply(changes: UnitChange[], all: () => Tables): SyncResult {
    this.last = all();
    this.calls.push({ kind: "apply", services: changes.length, frontends: this.last.frontends.length });
    return this.result("delta");
  }
  sync(t: Tables, o: { full?: boolean; rebuild?: boolean } = {}): SyncResult {
    this.last = t;
    this.calls.push({ kind: "sync", services: -1, frontends: t.frontends.length, full: o.full, rebuild: o.rebuild });
    return this.result("full");
  }
  drift(): string[] {
    this.drifts++;
    return this.differs;
  }
}

/** The kernel side as the agent sees it: findings to hand out, a ruleset generation. */
class FakeKernel implements KernelWatch {
  next: Findings = { skein: [], cni: [], doubt: [] };
  gen = 1;
  known = 1;
  settles = 0;
  poll(): Findings {
    const f = this.next;
    this.next = { skein: [], cni: [], doubt: [] };
    return f;
  }
  checks = 0;
  changed(): boolean {
    this.checks++;
    return this.gen !== this.known;
  }
  settle(): void {
    this.known = this.gen;
    this.settles++;
  }
  doubts: string[] = [];
  doubt(why: string): void {
    this.doubts.push(why);
  }
  /** a listing waits for this, when set */
  gate: Promise<void> | undefined;
  lists = 0;
  async list(): Promise<undefined> {
    this.lists++;
    await this.gate;
    return undefined;
  }
  async reference(): Promise<Listing> {
    return { terse: [], sets: new Map() };
  }
}

class FakeMasquerade implements MasqueradeKeeper {
  sets: string[][] = [];
  forced = 0;
  missing = true;
  set(pod: string[], cluster: string[]): void {
    this.sets.push([...pod, "|", ...cluster]);
  }
  ensure(force?: boolean): string | undefined {
    if (force) this.forced++;
    if (!force && !this.missing) return undefined;
    this.missing = false;
    return force ? "was changed by another process" : "was missing";
  }
}

const lines: string[] = [];
const log = pino({ level: "debug" }, { write: (s: string) => void lines.push(s) });

async function setup(o: Partial<AgentOptions> = {}, found?: "adopted" | "replace", kernel?: FakeKernel, masquerade?: FakeMasquerade, policyCounters?: () => PolicyReadings) {
  const server = TestApiServer.start({ tokens: ["t"] });
  servers.push(server);
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const kube = new KubeClient(kc);
  const dp = new FakeDatapath();
  const opts: AgentOptions = { nodeName: "n1", clusterCIDRs: ["10.244.0.0/16"], serviceCIDRs: [], nodePortAddresses: [], ringFactor: 10, coalesceMs: 20, nodeFile: `${tmp}/node-${servers.length}.json`, flushUdp: false, ...o };
  const agent = new Agent(opts, { log, datapath: dp, kube, found, kernel, masquerade, policyCounters });
  agents.push(agent);
  return { server, kube, dp, agent };
}

let nodePorts = 30000;
const svc = (name: string, ip: string) => ({ metadata: { name }, spec: { clusterIP: ip, type: "NodePort", ports: [{ port: 80, nodePort: nodePorts++ }] } });

test("nothing is programmed before every resource is listed; then one sync with everything", async () => {
  const { server, kube, dp, agent } = await setup();
  for (let i = 0; i < 20; i++) await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc(`s${i}`, `10.96.0.${i + 1}`) });
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }, { type: "Hostname", address: "n1" }] } } });
  void server;
  await agent.start();
  await waitFor("the first sync", () => dp.calls.length > 0);
  // every Service in the first update, ClusterIP and NodePort frontends
  expect(dp.calls[0]!.frontends).toBe(40);
  // the NodePort frontends listen on the Node's InternalIP
  expect(dp.last!.frontends.filter((f) => f.kind === "nodeport").map((f) => f.ip)).toEqual(Array(20).fill("192.0.2.10"));
  expect(JSON.parse(await Bun.file(`${tmp}/node-${servers.length}.json`).text())).toEqual({ nodeName: "n1", podCIDRs: ["10.244.3.0/24"], clusterCIDRs: ["10.244.0.0/16"] });
});

test("a new Node address moves the NodePorts, recompiling only the Services with one; the pod CIDRs go to the datapath", async () => {
  const { kube, dp, agent } = await setup();
  for (let i = 0; i < 4; i++) await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc(`np${i}`, `10.96.4.${i + 1}`) });
  for (let i = 0; i < 3; i++) await kube.request("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: `c${i}` }, spec: { clusterIP: `10.96.5.${i + 1}`, ports: [{ port: 80 }] } } });
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] } } });
  await agent.start();
  await waitFor("the first sync", () => dp.calls.length > 0);
  expect(dp.localCIDRs).toEqual(["10.244.3.0/24"]);
  const before = dp.calls.length;
  await kube.request("PATCH", "/api/v1/nodes/n1/status", { body: { status: { addresses: [{ type: "InternalIP", address: "192.0.2.11" }] } }, contentType: "application/merge-patch+json" });
  await waitFor("the NodePorts moved", () => dp.last!.frontends.filter((f) => f.kind === "nodeport").every((f) => f.ip === "192.0.2.11"));
  expect(dp.calls.slice(before).map((c) => [c.kind, c.services])).toEqual([["apply", 4]]);
});

test("a burst of writes goes in as few updates; an invalid write keeps the good version", async () => {
  const { server, kube, dp, agent } = await setup({ coalesceMs: 50 });
  await agent.start();
  await waitFor("listed", () => lines.some((l) => l.includes("cluster state listed")));
  const before = dp.calls.length;
  await Promise.all([...Array(30).keys()].map((i) => kube.request("POST", "/api/v1/namespaces/default/services", { body: svc(`b${i}`, `10.96.1.${i + 1}`) })));
  await waitFor("all 30 programmed", () => dp.last && dp.last.frontends.filter((f) => f.kind === "cluster").length === 30);
  expect(dp.calls.length - before).toBeLessThanOrEqual(3);
  // planted past the field rules kube-apiserver applies (Store.checkFields), to prove that the
  // agent refuses such a Service itself and keeps the good version
  server.store.checkFields = false;
  await kube.request("PATCH", "/api/v1/namespaces/default/services/b0", { body: { spec: { ports: [{ port: 70000 }] } }, contentType: "application/merge-patch+json" });
  await waitFor("the rejection logged", () => lines.some((l) => l.includes("Service default/b0") && l.includes("70000")));
  expect(dp.last!.frontends.some((f) => f.ip === "10.96.1.1" && f.port === 80)).toBe(true);
});

test("two Services on one external address: the conflict is logged once, and again when it ends", async () => {
  const { kube, dp, agent } = await setup();
  const ext = (name: string, ip: string) => ({ metadata: { name }, spec: { clusterIP: ip, externalIPs: ["203.0.113.50"], ports: [{ port: 80 }] } });
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: ext("xa", "10.96.6.1") });
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: ext("xb", "10.96.6.2") });
  await agent.start();
  const said = (what: string) => lines.filter((l) => l.includes(what)).length;
  const conflict = "Service default/xb: external frontend 203.0.113.50 TCP/80 is already served by Service default/xa";
  await waitFor("the conflict logged", () => said(conflict) === 1);
  // another change, another sync: not logged again
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "other" }, spec: { clusterIP: "10.96.6.3", ports: [{ port: 80 }] } } });
  await waitFor("the other Service programmed", () => dp.last!.frontends.some((f) => f.ip === "10.96.6.3"));
  expect(said(conflict)).toBe(1);
  await kube.request("DELETE", "/api/v1/namespaces/default/services/xa");
  await waitFor("the end of the conflict logged", () => lines.some((l) => l.includes(`resolved: ${conflict}`)));
  expect(dp.last!.frontends.filter((f) => f.ip === "203.0.113.50").length).toBe(1);
});

test("a refused update keeps the tables in force, is logged, and the next update is whole: a bank switch when the kernel agrees with the model", async () => {
  const kernel = new FakeKernel();
  const { kube, dp, agent } = await setup({}, undefined, kernel);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  dp.failNext = true;
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc("x", "10.96.2.1") });
  await waitFor("the failure logged", () => lines.some((l) => l.includes("applying the tables failed")));
  await waitFor("a whole-table retry", () => dp.calls.at(-1)!.kind === "sync" && dp.calls.length >= 3, 5000);
  // the kernel was compared with the model first, and agreed: every ring anew in a bank switch
  expect(dp.drifts).toBe(1);
  expect(dp.calls.at(-1)).toMatchObject({ kind: "sync", full: false, rebuild: true });
  expect(agent.lastError).toBeUndefined();
  expect(dp.last!.frontends.some((f) => f.ip === "10.96.2.1")).toBe(true);
  // and the one after is a delta again
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc("y", "10.96.2.2") });
  await waitFor("the next update", () => dp.last!.frontends.some((f) => f.ip === "10.96.2.2"));
  expect(dp.calls.at(-1)!.kind).toBe("apply");
});

test("a refused update when the kernel's table differs from the model: the retry is a new table", async () => {
  const kernel = new FakeKernel();
  const { kube, dp, agent } = await setup({}, undefined, kernel);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  const before = dp.calls.length;
  dp.differs = ["table inet skein is missing"];
  dp.failNext = true;
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc("z", "10.96.2.3") });
  await waitFor("a cold retry", () => dp.calls.length >= before + 2, 5000);
  expect(dp.calls.slice(before).map((c) => [c.kind, c.full ?? false])).toEqual([["apply", false], ["sync", true]]);
  expect(lines.some((l) => l.includes("differs from the model: making it new"))).toBe(true);
});

test("a change by someone else that the listener names makes the next sync a new table at once, without a comparison", async () => {
  const kernel = new FakeKernel();
  const masq = new FakeMasquerade();
  const { kube, dp, agent } = await setup({}, undefined, kernel, masq);
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] } } });
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  // the masquerade table from the Node's pod CIDRs and the cluster CIDRs
  expect(masq.sets).toEqual([["10.244.3.0/24", "|", "10.244.0.0/16"]]);
  expect(masq.missing).toBe(false);
  const before = dp.calls.length;
  kernel.next = { skein: ["deleted the table by nft (pid 42)"], cni: ["deleted the table by nft (pid 42)"], doubt: [] };
  const t0 = performance.now();
  await waitFor("a new table", () => dp.calls.length > before, 2000, 10);
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(dp.calls.at(-1)).toMatchObject({ kind: "sync", full: true });
  expect(dp.drifts).toBe(0);
  // once when first written (what was done to it while no agent ran is not known), once now
  expect(masq.forced).toBe(2);
  expect(lines.some((l) => l.includes("restoring the whole table") && l.includes("pid 42"))).toBe(true);
  expect(lines.some((l) => l.includes("the masquerade table was changed by another process: restored"))).toBe(true);
});

test("a doubt, and the periodic check when the ruleset changed, compare the table (a bank switch when it agrees, a new table when not); a quiet ruleset is not read", async () => {
  const kernel = new FakeKernel();
  const { dp, agent } = await setup({ verifyMs: 100 }, undefined, kernel);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  const before = dp.calls.length;
  // quiet: several periodic checks ask for the generation and read nothing
  await waitFor("three periodic checks", () => kernel.checks >= 3, 2000, 10);
  expect(dp.drifts).toBe(0);
  // a doubt: compared, agrees: what no comparison reads (rule text, ring slots) is written
  // anew in a bank switch, never a new table
  kernel.next = { skein: [], cni: [], doubt: ["the kernel dropped nftables notifications"] };
  await waitFor("compared", () => dp.drifts === 1, 2000, 10);
  await waitFor("a bank switch", () => dp.calls.length === before + 1, 2000, 10);
  expect(dp.calls.at(-1)).toMatchObject({ kind: "sync", full: false, rebuild: true });
  // the ruleset changed unheard: the periodic check compares, finds a difference, repairs
  dp.differs = ["elements of svc4: 1 missing (10.96.0.1 . tcp . 80)"];
  kernel.gen++;
  await waitFor("repaired", () => dp.calls.length > before + 1, 2000, 10);
  expect(dp.calls.at(-1)).toMatchObject({ kind: "sync", full: true });
  expect(kernel.settles).toBeGreaterThanOrEqual(2);
});

test("adopted tables are replaced whole by the first sync; an unadoptable table cold", async () => {
  const a = await setup({}, "adopted");
  await a.agent.start();
  await waitFor("first sync", () => a.dp.calls.length > 0);
  expect(a.dp.calls[0]).toMatchObject({ kind: "sync", full: false });
  const b = await setup({}, "replace");
  await b.agent.start();
  await waitFor("first sync", () => b.dp.calls.length > 0);
  expect(b.dp.calls[0]).toMatchObject({ kind: "sync", full: true });
});

test("NodePort addresses: the Node's, filtered by --nodeport-addresses", () => {
  const node = { name: "n", podCIDRs: [], addresses: ["192.0.2.10", "198.51.100.7", "2001:db8::7"], internalIPs: [] };
  expect(nodePortIPs(node, [])).toEqual(["192.0.2.10", "198.51.100.7", "2001:db8::7"]);
  expect(nodePortIPs(node, ["198.51.100.0/24", "2001:db8::/64"])).toEqual(["198.51.100.7", "2001:db8::7"]);
  expect(nodePortIPs(undefined, [])).toEqual([]);
});

test("a Node whose pod CIDRs cannot work is refused with a warning naming it and the field; the node file and NodePort addresses stay", async () => {
  const { kube, dp, agent, server } = await setup();
  const file = `${tmp}/node-${servers.length}.json`;
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] } } });
  await agent.start();
  await waitFor("the node file", () => dp.localCIDRs.length > 0);
  const written = await Bun.file(file).text();
  // planted past the field rules kube-apiserver applies (Store.checkFields): the agent
  // refuses such a Node itself
  server.store.checkFields = false;
  for (const [path, patch, field] of [
    ["/status", { status: { addresses: [{ type: "InternalIP", address: "192.0.2.011" }] } }, "status.addresses[0].address"],
    ["", { spec: { podCIDRs: ["169.254.0.0/16"] } }, "spec.podCIDRs[0]"],
  ] as const) {
    await kube.request("PATCH", `/api/v1/nodes/n1${path}`, { body: patch, contentType: "application/merge-patch+json" });
    const warning = await waitFor("the warning", () => lines.find((l) => l.includes(`"level":40`) && l.includes(`Node n1: ${field}: `)));
    expect(warning).toContain(JSON.stringify(field === "spec.podCIDRs[0]" ? "169.254.0.0/16" : "192.0.2.011").slice(1, -1));
  }
  expect(await Bun.file(file).text()).toBe(written);
  expect(dp.localCIDRs).toEqual(["10.244.3.0/24"]);
  expect(dp.last!.frontends.filter((f) => f.kind === "nodeport").every((f) => f.ip === "192.0.2.10")).toBe(true);
});

test("what the listener names cuts a retry's backoff short", async () => {
  const kernel = new FakeKernel();
  const { kube, dp, agent } = await setup({}, undefined, kernel);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  // three failures in a row: the next retry waits 4 s
  dp.failing = 3;
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc("bk", "10.96.2.9") });
  await waitFor("three failed tries", () => dp.failing === 0 && lines.filter((l) => l.includes("applying the tables failed")).length >= 3, 8000, 10);
  const before = dp.calls.length;
  kernel.next = { skein: ["deleted the table by nft (pid 42)"], cni: [], doubt: [] };
  const t0 = performance.now();
  await waitFor("the repair", () => dp.calls.length > before, 3000, 10);
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(dp.calls.at(-1)).toMatchObject({ kind: "sync", full: true });
}, 15_000);

test("a comparison whose listing a sync overtook is dropped (the listing is older than the model) and made again", async () => {
  const kernel = new FakeKernel();
  const { kube, dp, agent } = await setup({}, undefined, kernel);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  const gate = Promise.withResolvers<void>();
  kernel.gate = gate.promise;
  kernel.next = { skein: [], cni: [], doubt: ["the kernel dropped nftables notifications"] };
  await waitFor("the listing under way", () => kernel.lists === 1, 2000, 10);
  // a sync while the table is being listed
  const before = dp.calls.length;
  await kube.request("POST", "/api/v1/namespaces/default/services", { body: svc("ov", "10.96.2.20") });
  await waitFor("the update applied", () => dp.calls.length > before, 2000, 10);
  gate.resolve();
  // not compared with the newer model, but listed again at the next poll
  await waitFor("the doubt kept for the next poll", () => kernel.doubts.length === 1, 2000, 10);
  expect(dp.drifts).toBe(0);
  kernel.gate = undefined;
  kernel.next = { skein: [], cni: [], doubt: kernel.doubts.splice(0) };
  await waitFor("compared then", () => dp.drifts === 1, 2000, 10);
});

test("doubts whose comparison finds nothing rewrite the tables at most once a minute (a neighbour writing nftables all the time would keep them coming)", async () => {
  const kernel = new FakeKernel();
  const masq = new FakeMasquerade();
  const { dp, agent } = await setup({}, undefined, kernel, masq);
  await agent.start();
  await waitFor("first sync", () => dp.calls.length > 0);
  const before = dp.calls.length;
  const forced = masq.forced;
  for (let i = 1; i <= 3; i++) {
    kernel.next = { skein: [], cni: [], doubt: [`the ruleset went from generation ${i} to ${i + 2} over one committed transaction of skein's`] };
    await waitFor(`comparison ${i}`, () => dp.drifts === i, 2000, 10);
  }
  // then a change the listener names, to see every sync up to it
  kernel.next = { skein: ["deleted the table by nft (pid 42)"], cni: [], doubt: [] };
  await waitFor("the new table", () => dp.calls.some((c, i) => i >= before && c.full), 2000, 10);
  expect(dp.calls.slice(before).map((c) => (c.full ? "new table" : c.rebuild ? "rewrite" : c.kind))).toEqual(["rewrite", "new table"]);
  expect(masq.forced).toBe(forced + 1);
  // the policy too: replaced whole with the rewrite, and waiting for the new table's skeleton
  expect(dp.policies.slice(-2).map((p) => [p.now, p.rewrite])).toEqual([[true, true], [false, false]]);
});

const NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";
/** A Pod created and given its address, as a kubelet would (the status is its subresource). */
async function addPod(kube: KubeClient, name: string, ip: string, labels: Record<string, string>, nodeName = "n1") {
  await kube.request("POST", "/api/v1/namespaces/default/pods", { body: { metadata: { name, labels }, spec: { nodeName, containers: [{ name: "c", image: "i" }] } } });
  await kube.request("PATCH", `/api/v1/namespaces/default/pods/${name}/status`, { body: { status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } }, contentType: "application/merge-patch+json" });
}
const denyWeb = { metadata: { name: "web-from-api" }, spec: { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "api" } } }], ports: [{ port: 8080 }] }] } };

test("NetworkPolicy: Pods of every node, Namespaces and policies compiled and handed to the datapath; an invalid update keeps the valid version; a label change moves the address", async () => {
  const { server, kube, dp, agent } = await setup();
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] } } });
  for (const [name, ip, app, node] of [["web", "10.244.3.5", "web", "n1"], ["api", "10.244.4.6", "api", "n2"], ["other", "10.244.4.7", "other", "n2"], ["other2", "10.244.4.8", "other", "n2"]] as const) {
    await addPod(kube, name, ip, { app }, node);
  }
  await kube.request("POST", NP, { body: denyWeb });
  await agent.start();
  await waitFor("the policy in the datapath", () => dp.policies.at(-1)?.tables.allowIngress.length === 1);
  const t = dp.policies.at(-1)!.tables;
  const id = (ip: string) => t.pods.find((p) => p.ip === ip)!.id;
  expect(t.isolatedIngress).toContain(id("10.244.3.5"));
  expect(t.allowIngress[0]).toMatchObject({ src: id("10.244.4.6"), dst: id("10.244.3.5"), proto: 6, port: 8080, portLast: 8080, policies: ["default/web-from-api"] });
  // the first policy goes in with the first sync's table (there was none before it)
  expect(dp.policies[0]!.tables.allowIngress.length).toBe(1);
  // planted past the API server's own validation: the agent refuses it and keeps the last good version
  server.store.checkFields = false;
  await kube.request("PATCH", `${NP}/web-from-api`, { body: { spec: { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["192.168.0.0/16"] } }] }] } }, contentType: "application/merge-patch+json" });
  await waitFor("the rejection logged", () => lines.some((l) => l.includes("NetworkPolicy default/web-from-api") && l.includes("except")));
  expect(dp.policies.at(-1)!.tables.allowIngress).toEqual(t.allowIngress);
  // a label change into labels another pod has, out of labels another pod keeps: the address
  // moves, nothing else changes
  const n = dp.policies.length;
  await kube.request("PATCH", "/api/v1/namespaces/default/pods/other", { body: { metadata: { labels: { app: "api" } } }, contentType: "application/merge-patch+json" });
  await waitFor("the address moved", () => dp.policies.length > n && dp.policies.at(-1)!.tables.pods.find((p) => p.ip === "10.244.4.7")!.id === id("10.244.4.6"));
  expect(dp.policies.at(-1)!.tables.allowIngress).toBe(t.allowIngress);
});

test("NetworkPolicy drops are logged per policy, once per period, with the packets dropped since the last", async () => {
  let dropped = 0;
  let tables: PolicyTables | undefined;
  const counters = (): PolicyReadings => {
    const web = tables?.pods.find((p) => p.ip === "10.244.3.5")?.id ?? 0;
    return { allowIn: [], allowOut: [], dropIn: new Map([[web, { packets: dropped, bytes: dropped * 60 }]]), dropOut: new Map() };
  };
  const { kube, dp, agent } = await setup({ policyReportMs: 50 }, undefined, undefined, undefined, counters);
  await kube.request("POST", "/api/v1/nodes", { body: { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] } } });
  await addPod(kube, "web", "10.244.3.5", { app: "web" });
  await kube.request("POST", NP, { body: denyWeb });
  await agent.start();
  await waitFor("the policy compiled", () => (tables = dp.policies.at(-1)?.tables) !== undefined);
  const drops = () => lines.filter((l) => l.includes("NetworkPolicy default/web-from-api dropped"));
  dropped = 7;
  await waitFor("7 drops logged", () => drops().some((l) => l.includes("dropped 7 packets")));
  dropped = 10;
  await waitFor("3 more logged", () => drops().some((l) => l.includes("dropped 3 packets")));
  const seen = drops().length;
  await Bun.sleep(200); // periods pass with nothing new dropped: nothing more is logged
  expect(drops().length).toBe(seen);
});
