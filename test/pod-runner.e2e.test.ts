// The demo cluster's pod runner (its kubelet and container runtime) against the test API
// server, with skein's CNI plugin in a node namespace: a Pod bound to the node gets a
// namespace, an address, a server on its container ports and a Running status; deleted, it
// loses all of them and its object goes; a CNI configuration that is not there yet is an
// Event and a retry, not a lost pod.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { renameSync, writeFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { listNetns } from "../agent/sys/netns.ts";
import { KubeClient } from "../agent/watch/kube.ts";
import { TestApiServer } from "../testing/apiserver/server.ts";
import { PodRunner, podNetnsName } from "../testing/cluster/pod-runner.ts";
import { hostLinks, pluginDir, useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("prun");
const tmp = useTempDir("prun");
let server: TestApiServer;
let k: KubeClient;
let runner: PodRunner;
/** what the runner logged, shown when a test fails */
const logs: string[] = [];
const conflistFile = `${tmp}/10-skein.conflist`;
const writeConflist = () => {
  writeFileSync(`${conflistFile}.tmp`, JSON.stringify({ cniVersion: "1.0.0", name: "skein", plugins: [{ type: "skein", podCIDRs: ["10.244.7.0/24"], dataDir: `${tmp}/ipam`, nodeFile: `${tmp}/none.json` }] }));
  renameSync(`${conflistFile}.tmp`, conflistFile);
};
const pods = "/api/v1/namespaces/default/pods";
const pod = (name: string, ports: number[]) => ({ metadata: { name, labels: { app: name } }, spec: { nodeName: "node", containers: [{ name: "c", image: "any", ports: ports.map((p) => ({ containerPort: p })) }] } });
const get = (name: string) => k.request<any>("GET", `${pods}/${name}`);

beforeAll(async () => {
  lab.host("node");
  // the node's own address, which its probes to the pods come from
  lab.host("peer");
  lab.wire({ ns: "node", addr: "192.0.2.7/24" }, { ns: "peer", addr: "192.0.2.8/24" });
  server = TestApiServer.start({ tokens: ["t"] });
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  k = new KubeClient(kc);
  await k.request("POST", "/api/v1/nodes", { body: { metadata: { name: "node" }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.7" }] } } });
  runner = new PodRunner({ client: k, node: "node", nodeNs: "node", lab, conflistFile, cniPath: [pluginDir(tmp)], logDir: tmp, log: (s) => logs.push(s) });
  await runner.start();
});

afterAll(async () => {
  await runner?.stop();
  await server?.stop();
});

test("the node is posted Ready, as a kubelet does", async () => {
  const node = await k.request<any>("GET", "/api/v1/nodes/node");
  expect(node.status.conditions).toContainEqual(expect.objectContaining({ type: "Ready", status: "True", reason: "KubeletReady" }));
});

test("a pod bound to the node before its CNI configuration exists: an Event, then it runs once the configuration is there", async () => {
  await k.request("POST", pods, { body: pod("early", [9090]) });
  const ev = await waitFor("a FailedCreatePodSandBox Event", async () => (await k.request<any>("GET", "/api/v1/namespaces/default/events")).items.find((e: any) => e.reason === "FailedCreatePodSandBox" && e.involvedObject.name === "early"), 10_000);
  expect(ev.message).toContain(conflistFile);
  expect((await get("early")).status.phase ?? "Pending").toBe("Pending");
  writeConflist();
  const p = await waitFor("early running", async () => (await get("early")).status?.phase === "Running" && get("early"), 20_000);
  const r = await lab.connect("node", "tcp", p.status.podIP, 9090);
  expect(r.answer.split(" ")[0]).toBe("early");
});

test("a bound pod runs: its namespace, an address from the pod CIDR, TCP and UDP on every container port answering with its name, status Running and Ready", async () => {
  const created = await k.request<any>("POST", pods, { body: pod("web", [8080, 8081]) });
  const p = await waitFor("web running", async () => {
    const x = await get("web");
    return x.status?.phase === "Running" && x;
  }, 15_000);
  expect(p.status.podIP).toMatch(/^10\.244\.7\.\d+$/);
  expect(p.status.podIPs).toEqual([{ ip: p.status.podIP }]);
  expect(p.status.hostIP).toBe("192.0.2.7");
  expect(p.status.conditions).toContainEqual(expect.objectContaining({ type: "Ready", status: "True" }));
  expect(p.status.containerStatuses).toEqual([expect.objectContaining({ name: "c", ready: true, state: { running: expect.any(Object) } })]);
  expect(listNetns()).toContain(lab.name(podNetnsName(created)));
  for (const port of [8080, 8081]) {
    for (const proto of ["tcp", "udp"] as const) {
      const r = await lab.connect("node", proto, p.status.podIP, port);
      expect(r.ok).toBe(true);
      expect(r.answer).toMatch(/^web \S+$/);
    }
  }
});

test("a pod deleted (gracefully, as kubectl delete does): its server, address and namespace go, then the object", async () => {
  const p = await get("web");
  const ns = lab.name(podNetnsName(p));
  const links = hostLinks(lab, "node").length;
  await k.request("DELETE", `${pods}/web`);
  await waitFor("web gone", async () => get("web").then(() => false, (e) => e.statusCode === 404), 15_000);
  expect(listNetns()).not.toContain(ns);
  expect(hostLinks(lab, "node").length).toBe(links - 1);
  expect((await lab.connect("node", "tcp", p.status.podIP, 8080, 500)).ok).toBe(false);
});

test("a pod of another node is not ours; one without ports runs without a server", async () => {
  await k.request("POST", pods, { body: { ...pod("elsewhere", [80]), spec: { ...pod("elsewhere", [80]).spec, nodeName: "other" } } });
  await k.request("POST", pods, { body: pod("quiet", []) });
  await waitFor("quiet running", async () => (await get("quiet")).status?.phase === "Running", 15_000);
  expect((await get("elsewhere")).status?.phase).not.toBe("Running");
});
