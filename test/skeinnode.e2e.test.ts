// What the agent makes visible in Kubernetes, end to end against `skein apiserver`: its
// SkeinNode (deploy/crds/skeinnode.yaml applied as an operator would), owned by its Node, whose
// status and printer columns say whether the node's network is healthy; Warning Events on the
// objects it cannot honour, repeats counted on one Event; and a flood of bad objects held to
// the rate limit (25 Event writes a minute, a burst of 10).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "yaml";
import { ApiDriver } from "../testing/apiserver/driver.ts";
import { spawnAgent, spawnApiServer, useLab, useTempDir, waitFor } from "./harness/index.ts";
import { metric, parseMetrics } from "../testing/prometheus-text.ts";

const lab = useLab("sknode");
const tmp = useTempDir("sknode");
const TOKEN = "skeinnode-e2e-token";
const api = new ApiDriver(`${tmp}/api.sock`, TOKEN);
const KUBECTL = Bun.which("kubectl");
const CRD = resolve(import.meta.dir, "../deploy/crds/skeinnode.yaml");
const SN = "/apis/skein.io/v1alpha1/skeinnodes";
const SVC = "/api/v1/namespaces/default/services";
const NETPOL = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";

let apiserver: Awaited<ReturnType<typeof lab.spawn>>;
let agent: Awaited<ReturnType<typeof lab.spawn>>;
let nodeUid = "";
/** when the agent started: every Event it wrote was written since */
let agentStart = 0;

interface Event {
  metadata: { name: string; namespace: string };
  involvedObject: { kind: string; name: string; namespace?: string; uid?: string; apiVersion?: string; resourceVersion?: string };
  reason: string;
  message: string;
  type: string;
  count: number;
  source?: { component?: string; host?: string };
  reportingComponent?: string;
  reportingInstance?: string;
}

/** Every Event this agent wrote, in every namespace. */
async function agentEvents(): Promise<Event[]> {
  const l = await api.request<{ items: Event[] }>("GET", "/api/v1/events");
  return l.items.filter((e) => e.source?.component === "skein-agent" && e.source.host === "node");
}

const eventOn = async (kind: string, name: string, reason: string) => (await agentEvents()).find((e) => e.involvedObject.kind === kind && e.involvedObject.name === name && e.reason === reason);

/** kubectl run where it reaches the API server (the node's namespace). */
async function kubectl(...args: string[]): Promise<string> {
  const r = await lab.exec("node", [KUBECTL!, "--kubeconfig", `${tmp}/kubeconfig`, "--cache-dir", `${tmp}/kcache`, ...args]);
  return r.stdout;
}

beforeAll(async () => {
  lab.host("cp");
  lab.host("node");
  lab.wire({ ns: "cp", addr: "198.18.1.1/24" }, { ns: "node", addr: "198.18.1.2/24" });
  apiserver = await spawnApiServer(lab, "cp", tmp, "198.18.1.1:6443", TOKEN, ["--bookmark-ms", "1000"]);
  // the CRD as an operator applies it, before the agents start
  for (const doc of readFileSync(CRD, "utf8").split(/^---$/m).map((d) => parse(d)).filter(Boolean)) await api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc);
  await waitFor("the SkeinNode resource served", async () => (await api.request("GET", SN)).items !== undefined, 5000);
  const node = await api.create("/api/v1/nodes", { metadata: { name: "node" }, spec: { podCIDRs: ["10.244.9.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.1.2" }] } });
  nodeUid = node.metadata.uid;
  // a peer whose agent never answers: on this node's subnet, so it has a path, but its
  // health probe goes unanswered
  await api.create("/api/v1/nodes", { metadata: { name: "ghost" }, spec: { podCIDRs: ["10.244.77.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.1.77" }] } });
  agentStart = Date.now();
  agent = await spawnAgent(lab, tmp, ["--health-interval", "1"]);
}, 60_000);

afterAll(() => {
  if (process.env.E2E_DEBUG) console.log("AGENT", agent?.out.text.slice(-5000));
  agent?.proc.kill("SIGKILL");
  apiserver?.proc.kill("SIGKILL");
});

describe("SkeinNode", () => {
  test("the agent's SkeinNode: owned by its Node, ready, its mode, generation and peers", async () => {
    const sn = await waitFor("the SkeinNode ready with tables", async () => {
      const o = await api.request("GET", `${SN}/node`).catch(() => undefined);
      return o?.status?.ready === true && o.status.tableGeneration > 0 ? o : undefined;
    }, 10_000);
    expect(sn.metadata.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Node", name: "node", uid: nodeUid }]);
    expect(sn.status).toMatchObject({ ready: true, reasons: [], mode: "auto", addresses: { underlay: "198.18.1.2", podCIDRs: ["10.244.9.0/24"] } });
    expect(sn.status.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(sn.status.conditions).toEqual([expect.objectContaining({ type: "Ready", status: "True" })]);
    expect(Date.parse(sn.status.lastUpdate)).toBeGreaterThan(agentStart - 2000);
    // the peer that never answers its probe is counted unreachable
    const probed = await waitFor("the ghost peer unreachable", async () => {
      const o = await api.request("GET", `${SN}/node`);
      return o.status.peersSummary === "0/1" ? o : undefined;
    }, 20_000);
    expect(probed.status.peers).toEqual({ total: 1, reachable: 0, unreachable: ["ghost"] });
  });

  test("a change reaches the status: a new Service raises the table generation", async () => {
    const before = (await api.request("GET", `${SN}/node`)).status.tableGeneration;
    await api.create(SVC, { metadata: { name: "plain" }, spec: { clusterIP: "10.96.0.20", ports: [{ port: 80 }] } });
    await waitFor("a later generation written", async () => (await api.request("GET", `${SN}/node`)).status.tableGeneration > before, 5000);
  });

  test("kubectl get skeinnodes shows the printer columns", async () => {
    if (!KUBECTL) throw new Error("kubectl is not installed (Debian kubernetes-client)");
    const out = await kubectl("get", "skeinnodes", "-o", "wide");
    const [head, row] = out.trim().split("\n");
    expect(head!.split(/\s{2,}/)).toEqual(["NAME", "READY", "MODE", "PEERS", "GENERATION", "ERROR", "AGE"]);
    expect(row).toMatch(/^node\s+true\s+auto\s+0\/1\s+\d+\s+/);
  });
});

describe("Events", () => {
  test("a Service with an address skein refuses gets a Warning Event naming the field", async () => {
    // kube-apiserver takes this address (its parser is sloppy); skein reads strictly
    const svc = await api.create(SVC, { metadata: { name: "odd" }, spec: { externalIPs: ["10.1.2.030"], ports: [{ port: 80 }] } });
    const e = await waitFor("the InvalidService Event", () => eventOn("Service", "odd", "InvalidService"), 5000);
    expect(e).toMatchObject({
      type: "Warning",
      metadata: { namespace: "default" },
      involvedObject: { kind: "Service", namespace: "default", name: "odd", uid: svc.metadata.uid, apiVersion: "v1", resourceVersion: svc.metadata.resourceVersion },
      source: { component: "skein-agent", host: "node" },
      reportingComponent: "skein.io/agent",
      reportingInstance: "node",
      count: 1,
    });
    expect(e!.message).toContain("spec.externalIPs[0]");
    expect(e!.message).toContain("left out");
    // kubectl shows it as users look for it
    if (KUBECTL) expect(await kubectl("get", "events", "--field-selector", "involvedObject.name=odd")).toMatch(/Warning\s+InvalidService\s+service\/odd/);
  });

  test("the same refusal again bumps the Event's count instead of making another", async () => {
    // a new version of the Service, refused with the same message
    await api.request("PATCH", `${SVC}/odd`, { metadata: { labels: { touched: "1" } } }, "application/merge-patch+json");
    await waitFor("count 2", async () => (await eventOn("Service", "odd", "InvalidService"))?.count === 2, 5000);
    expect((await agentEvents()).filter((e) => e.involvedObject.name === "odd")).toHaveLength(1);
  });

  test("a NetworkPolicy with a field skein does not know, and one past its bounds, get Events", async () => {
    await api.create(NETPOL, { metadata: { name: "unknown-field" }, spec: { podSelector: {}, ingress: [{ from: [{ podSelector: {} }], priority: 5 }] } });
    const unsupported = await waitFor("the UnsupportedPolicy Event", () => eventOn("NetworkPolicy", "unknown-field", "UnsupportedPolicy"), 5000);
    expect(unsupported!.message).toContain("spec.ingress[0].priority: unknown field");
    expect(unsupported!.involvedObject.apiVersion).toBe("networking.k8s.io/v1");
    await api.create(NETPOL, { metadata: { name: "too-big" }, spec: { podSelector: {}, ingress: Array.from({ length: 300 }, (_, i) => ({ ports: [{ port: 1000 + i }] })) } });
    const closed = await waitFor("the PolicyClosed Event", () => eventOn("NetworkPolicy", "too-big", "PolicyClosed"), 5000);
    expect(closed!.message).toContain("fail closed");
  });

  test("a flood of bad objects stays within 25 Event writes a minute (burst 10); the rest are dropped", async () => {
    const flood = 60;
    await Promise.all(Array.from({ length: flood }, (_, i) => api.create(SVC, { metadata: { name: `flood-${i}` }, spec: { externalIPs: [`10.2.0.0${i % 10}`], ports: [{ port: 80 }] } })));
    // every one was refused by the agent (so none is missing for another reason)
    await waitFor("the agent refused all of them", () => Array.from({ length: flood }, (_, i) => `Service default/flood-${i}"`).every((s) => agent.out.text.includes(s)), 10_000);
    await waitFor("the drops logged", () => agent.out.text.includes("Events dropped"), 5000);
    const elapsedMin = (Date.now() - agentStart) / 60_000;
    const events = await agentEvents();
    const floodEvents = events.filter((e) => e.involvedObject.name.startsWith("flood-"));
    // every Event write since the agent started (creates, and the one count bump) within the bucket
    const writes = events.length + events.reduce((n, e) => n + (e.count - 1), 0);
    expect(writes).toBeLessThanOrEqual(10 + Math.ceil(25 * elapsedMin));
    expect(floodEvents.length).toBeLessThan(flood);
    // and the agent's metrics say so
    const text = JSON.parse((await lab.exec("node", [process.execPath, resolve(import.meta.dir, "fixtures/http-get.ts"), "http://127.0.0.1:9465/metrics"])).stdout).body;
    const m = parseMetrics(text);
    expect(metric(m, "skein_events_total", { outcome: "dropped" })).toBeGreaterThan(0);
    expect(metric(m, "skein_events_total", { outcome: "written" })).toBeGreaterThanOrEqual(floodEvents.length);
    // the agent kept working through it: a good Service still programmed
    const before = (await api.request("GET", `${SN}/node`)).status.tableGeneration;
    await api.create(SVC, { metadata: { name: "after-flood" }, spec: { clusterIP: "10.96.0.21", ports: [{ port: 80 }] } });
    await waitFor("a later generation written", async () => (await api.request("GET", `${SN}/node`)).status.tableGeneration > before, 5000);
  });
});

describe("the Node's lifecycle", () => {
  test("the SkeinNode goes with its Node, and comes back owned by the Node made anew", async () => {
    await api.delete("/api/v1/nodes/node");
    // the garbage collector removes what the Node owned
    await waitFor("the SkeinNode gone", async () => (await api.request("GET", `${SN}/node`).then(() => false, (e: Error) => e.message.includes(" 404 "))), 10_000);
    const node = await api.create("/api/v1/nodes", { metadata: { name: "node" }, spec: { podCIDRs: ["10.244.9.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.1.2" }] } });
    expect(node.metadata.uid).not.toBe(nodeUid);
    const sn = await waitFor("the SkeinNode made anew", async () => {
      const o = await api.request("GET", `${SN}/node`).catch(() => undefined);
      return o?.status?.ready === true ? o : undefined;
    }, 10_000);
    expect(sn.metadata.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Node", name: "node", uid: node.metadata.uid }]);
  });
});
