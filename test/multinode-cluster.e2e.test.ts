// The cluster fixture on the multi-node underlay: `skein apiserver` on the control-plane host,
// an agent in every node namespace, pods wired by skein's CNI. What works here without the
// overlay: every agent programs the Services, pods on one node reach each other and a
// ClusterIP whose backends are on their node. (Pods of different nodes need the overlay.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { listNetns } from "../agent/sys/netns.ts";
import { buildUnderlay, reachability, startCluster, type Cluster } from "../testing/multinode.ts";
import { useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("cluster");
const tmp = useTempDir("cluster");
let c: Cluster;
const natsSeen: string[] = [];
const SVC = "/api/v1/namespaces/default/services";
const EPS = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

beforeAll(async () => {
  const t0 = performance.now();
  const u = await buildUnderlay(lab);
  const t1 = performance.now();
  c = await startCluster({
    underlay: u,
    dir: tmp,
    pods: 2,
    namespaces: ["team-a"],
    natsUrls: ["nats://192.168.50.5:4222"],
    agentFlags: (n, x) => {
      natsSeen.push(`${n.name} ${x.natsUrls.join()}`);
      return n.name === "n3" ? ["--verify-interval", "7"] : [];
    },
  });
  console.log(`underlay ${(t1 - t0).toFixed(0)} ms; API server, 5 agents and 10 pods ${(performance.now() - t1).toFixed(0)} ms`);
  for (const p of c.pods.values()) await lab.serve(p.name, { name: p.name, tcp: 8080, udp: 8080 });
}, 90_000);

afterAll(async () => {
  await c?.stop();
});

describe("a cluster on the multi-node underlay", () => {
  test("every agent runs with its node's flags and wrote its node file with its Node's pod CIDR", () => {
    expect([...c.agents.keys()].sort()).toEqual(["n1", "n2", "n3", "n4", "n5"]);
    for (const n of c.underlay.nodes) {
      expect(JSON.parse(readFileSync(`${c.nodeDir(n.name)}/node.json`, "utf8"))).toMatchObject({ nodeName: n.name, podCIDRs: [n.podCIDR], clusterCIDRs: ["10.244.0.0/16"] });
      const argv = readFileSync(`/proc/${c.agents.get(n.name)!.proc.pid}/cmdline`, "utf8").split("\0");
      expect(argv).toContain(`--node-name`);
      expect(argv[argv.indexOf("--node-name") + 1]).toBe(n.name);
      expect(argv.includes("--verify-interval")).toBe(n.name === "n3");
    }
    expect(natsSeen.sort()).toEqual(["n1", "n2", "n3", "n4", "n5"].map((n) => `${n} nats://192.168.50.5:4222`));
  });

  test("the Namespaces asked for exist", async () => {
    expect((await c.api.request("GET", "/api/v1/namespaces/team-a")).metadata.name).toBe("team-a");
  });

  test("pods get addresses from their node's pod CIDR and are registered Running on it", async () => {
    expect(c.pods.size).toBe(10);
    for (const p of c.pods.values()) {
      const n = c.underlay.node(p.node);
      expect(p.ip.startsWith(`10.244.${n.index}.`)).toBe(true);
      const obj = await c.api.request("GET", `/api/v1/namespaces/default/pods/${p.name}`);
      expect(obj.spec.nodeName).toBe(p.node);
      expect(obj.status).toMatchObject({ phase: "Running", podIP: p.ip });
    }
  });

  test("pods on one node reach each other, TCP and UDP, behind the NAT too, seen with their own addresses", async () => {
    for (const n of c.underlay.nodes) {
      const here = [...c.pods.values()].filter((p) => p.node === n.name);
      for (const proto of ["tcp", "udp"] as const) {
        // the first probe may meet the pod's neighbour entry still being resolved
        await waitFor(`${here[0]!.name} → ${here[1]!.name} ${proto}`, async () => (await lab.connect(here[0]!.name, proto, here[1]!.ip, 8080, 1000)).ok);
        const m = await reachability(lab, { from: here, to: here, address: (p) => p.ip, proto, port: 8080 });
        expect(m.map((r) => [r.from, r.to, r.ok, r.answer])).toEqual(m.map((r) => [r.from, r.to, true, `${r.to} ${c.pods.get(r.from)!.ip}`]));
        expect(m.length).toBe(2);
      }
    }
  });

  test("Services are programmed on every node; a ClusterIP whose backend is on the client's node answers (TCP and UDP)", async () => {
    const nodes = c.underlay.nodes.map((n) => n.name);
    for (const [k, n] of nodes.entries()) {
      const backend = c.pods.get(`${n}-p2`)!;
      await c.api.create(SVC, { metadata: { name: `local-${n}` }, spec: { clusterIP: `10.96.0.${20 + k}`, ports: [{ name: "t", port: 80, targetPort: 8080 }, { name: "u", port: 53, protocol: "UDP", targetPort: 8080 }] } });
      await c.api.create(EPS, {
        metadata: { name: `local-${n}-1`, labels: { "kubernetes.io/service-name": `local-${n}` } },
        addressType: "IPv4",
        ports: [{ name: "t", port: 8080 }, { name: "u", port: 8080, protocol: "UDP" }],
        endpoints: [{ addresses: [backend.ip], conditions: { ready: true }, nodeName: n }],
      });
    }
    for (const [k, n] of nodes.entries()) {
      await waitFor(`every ClusterIP in ${n}'s map`, async () => {
        const map = (await lab.exec(n, ["nft", "list", "map", "inet", "skein", "svc4"])).stdout;
        return nodes.every((_, i) => map.includes(`10.96.0.${20 + i} `));
      }, 5000, 20);
      const client = c.pods.get(`${n}-p1`)!;
      for (const [proto, port] of [["tcp", 80], ["udp", 53]] as const) {
        const r = await waitFor(`${n}-p1 → 10.96.0.${20 + k}:${port}/${proto}`, async () => {
          const x = await lab.connect(client.name, proto, `10.96.0.${20 + k}`, port, 1000);
          return x.ok && x.answer;
        }, 5000, 20);
        expect(r).toBe(`${n}-p2 ${client.ip}`);
      }
    }
  }, 60_000);

  test("a node joins later: registered, its agent started, its pods wired", async () => {
    const n6 = await c.join({ name: "n6", index: 6, segment: "a", host: 16 }, { pods: 1 });
    expect(c.agents.has("n6")).toBe(true);
    expect(c.pods.get("n6-p1")!.ip.startsWith("10.244.6.")).toBe(true);
    expect((await c.api.request("GET", "/api/v1/nodes/n6")).spec.podCIDRs).toEqual([n6.podCIDR]);
  }, 30_000);

  test("a pod is removed: its host route, namespace and Pod object are gone", async () => {
    const p = await c.addPod("n5", "n5-tmp");
    expect((await lab.exec("n5", ["ip", "route", "show", p.ip])).stdout).toContain(p.ip);
    await c.removePod("n5-tmp");
    expect(c.pods.has("n5-tmp")).toBe(false);
    expect((await lab.exec("n5", ["ip", "route", "show", p.ip])).stdout.trim()).toBe("");
    expect(listNetns()).not.toContain(lab.name("n5-tmp"));
    await expect(c.api.request("GET", "/api/v1/namespaces/default/pods/n5-tmp")).rejects.toThrow(/404/);
    await expect(c.removePod("n5-tmp")).rejects.toThrow(/no pod/);
  });

  test("an agent stops cleanly and starts again", async () => {
    expect(await c.stopAgent("n2")).toBe(0);
    expect(c.agents.has("n2")).toBe(false);
    await expect(c.stopAgent("n2")).rejects.toThrow(/no agent/);
    const a = await c.startAgent("n2");
    expect(a.out.text).toContain("adopted the tables in the kernel");
    await expect(c.startAgent("n2")).rejects.toThrow(/runs already/);
  }, 30_000);

  test("stop ends every agent and the API server cleanly; the lab then goes away", async () => {
    const procs = [...c.agents.values()].map((a) => a.proc);
    const t0 = performance.now();
    await c.stop();
    const t1 = performance.now();
    expect(procs.map((p) => p.exitCode)).toEqual(procs.map(() => 0));
    expect(c.apiserver.proc.exitCode).toBe(0);
    expect(c.agents.size).toBe(0);
    const gone = lab.destroy();
    console.log(`${procs.length} agents and the API server stopped in ${(t1 - t0).toFixed(0)} ms; ${gone.length} namespaces removed in ${(performance.now() - t1).toFixed(0)} ms`);
    expect(gone.length).toBe(10 + 1 + 11);
  }, 30_000);
});
