// The pod network between nodes, end to end: five virtual nodes on the lab underlay
// (testing/multinode.ts: n1 and n2 on one subnet, n3 behind router r1, n4 and n5 behind one
// NAT router whose public address forwards UDP 4789 to n4), an agent in each with gossip over
// a real nats-server on the control-plane host, pods wired by skein's CNI, and real packets.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { readFileSync } from "node:fs";
import { Encoder } from "cbor-x/encode";
import { encodeRecord, vtepMacFor, type NodeRecord } from "../agent/gossip/record.ts";
import { inNetns, runAsync } from "../agent/sys/exec.ts";
import { buildUnderlay, linkCounters, packetsBetween, reachability, readCounters, resetCounters, startCluster, NAT_PUBLIC, type Cluster, type ClusterPod } from "../testing/multinode.ts";
import { NatsCluster } from "../testing/nats.ts";
import { builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("mn");
const tmp = useTempDir("mn");
let c: Cluster;
let nats: NatsCluster;
const BUCKET = "skein-nodes";
// short enough for a test to see a record expire, long enough for a loaded machine
const GOSSIP = ["--heartbeat-ms", "500", "--peer-ttl-ms", "3000"];
const KV = resolve(import.meta.dir, "fixtures/nats-kv.ts");

beforeAll(async () => {
  const u = await buildUnderlay(lab);
  nats = await NatsCluster.start({ netns: lab.path("cp"), host: u.controlPlane.address });
  c = await startCluster({
    underlay: u,
    dir: tmp,
    pods: 2,
    natsUrls: nats.urls,
    // no health port, so no health probes: the device and router counters below must see
    // only this file's packets (a probe to a VXLAN peer in the middle of a count was one too
    // many); the probes have test/operate.e2e.test.ts
    agentFlags: (_n, x) => ["--nats-url", x.natsUrls.join(","), ...GOSSIP, "--health-port", "0"],
  });
  for (const p of c.pods.values()) await lab.serve(p.name, { name: p.name, tcp: 8080, udp: 8080 });
}, 120_000);

afterAll(async () => {
  await c?.stop();
  await nats?.close();
});

/** What skein holds in a node's kernel for the pod network: routes of its protocol, and the
 * FDB and neighbour entries on its VXLAN device. */
async function overlayState(node: string): Promise<{ routes: Array<Record<string, unknown>>; fdb: string[]; neigh: string[] }> {
  const j = async (argv: string[]) => JSON.parse((await lab.exec(node, argv)).stdout || "[]") as Array<Record<string, unknown>>;
  const routes = (await j(["ip", "-j", "route", "show", "proto", "0x56"])).map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, onlink: ((r.flags as string[] | undefined) ?? []).includes("onlink") }));
  const hasVxlan = (await lab.exec(node, ["ip", "link", "show", "skein.vxlan"], { allowFail: true })).exitCode === 0;
  const fdb = hasVxlan ? (await j(["bridge", "-j", "fdb", "show", "dev", "skein.vxlan"])).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort() : [];
  const neigh = hasVxlan ? (await j(["ip", "-j", "neigh", "show", "dev", "skein.vxlan"])).map((n) => `${n.dst} ${n.lladdr}`).sort() : [];
  return { routes: routes.sort((a, b) => String(a.dst).localeCompare(String(b.dst))), fdb, neigh };
}

const podCIDR = (node: string) => c.underlay.node(node).podCIDR;

/** Waits until `node` routes to exactly these nodes' pod CIDRs. */
async function routesTo(node: string, peers: string[], timeoutMs = 10_000) {
  const want = peers.map(podCIDR).sort();
  return waitFor(`${node} routes to ${peers.join(", ")}`, async () => {
    const got = (await overlayState(node)).routes.map((r) => r.dst as string);
    return got.join() === want.join() && got;
  }, timeoutMs, 100);
}

const podsOf = (...nodes: string[]) => [...c.pods.values()].filter((p) => nodes.includes(p.node));

async function kv(cmd: string, key?: string, value?: Uint8Array): Promise<unknown> {
  const argv = [process.execPath, KV, nats.url, BUCKET, cmd, ...(key ? [key] : []), ...(value ? [Buffer.from(value).toString("base64")] : [])];
  const r = await runAsync(inNetns(lab.path("cp"), argv), { timeoutMs: 15_000 });
  return JSON.parse(r.stdout);
}

describe("the pod network between nodes", () => {
  test("every node routes to every other node's pod CIDR: directly on a shared subnet, else over VXLAN to the peer's underlay or, across the NAT, to its public address", async () => {
    const all = ["n1", "n2", "n3", "n4", "n5"];
    for (const n of all) await routesTo(n, all.filter((x) => x !== n));
    const n1 = await overlayState("n1");
    expect(n1.routes).toEqual([
      { dst: podCIDR("n2"), gateway: "192.168.50.12", dev: "eth0", onlink: false },
      { dst: podCIDR("n3"), gateway: "10.244.3.0", dev: "skein.vxlan", onlink: true },
      { dst: podCIDR("n4"), gateway: "10.244.4.0", dev: "skein.vxlan", onlink: true },
      { dst: podCIDR("n5"), gateway: "10.244.5.0", dev: "skein.vxlan", onlink: true },
    ]);
    // the nodes behind the NAT are reached at its public address; n3 at its own
    expect(n1.fdb).toEqual([`${vtepMacFor("n3")} 192.168.60.13`, `${vtepMacFor("n4")} ${NAT_PUBLIC}`, `${vtepMacFor("n5")} ${NAT_PUBLIC}`].sort());
    expect(n1.neigh).toEqual([`10.244.3.0 ${vtepMacFor("n3")}`, `10.244.4.0 ${vtepMacFor("n4")}`, `10.244.5.0 ${vtepMacFor("n5")}`].sort());
    // n4 and n5 share the NAT's public address: one site, private addresses to each other
    const n4 = await overlayState("n4");
    expect(n4.routes.find((r) => r.dst === podCIDR("n5"))).toEqual({ dst: podCIDR("n5"), gateway: "10.99.0.15", dev: "eth0", onlink: false });
    expect(n4.fdb).toContain(`${vtepMacFor("n1")} 192.168.50.11`);
    // pods' MTU leaves room for VXLAN's headers
    // (sysfs is the machine's under nsenter: ask netlink)
    expect(JSON.parse((await lab.exec(podsOf("n1")[0]!.name, ["ip", "-j", "link", "show", "eth0"])).stdout)[0].mtu).toBe(1450);
    expect(JSON.parse(readFileSync(`${c.nodeDir("n1")}/node.json`, "utf8")).mtu).toBe(1450);
  }, 30_000);

  test("pods of n1..n4 reach each other all to all, TCP and UDP, seen with their own addresses (no masquerade between pods)", async () => {
    const pods = podsOf("n1", "n2", "n3", "n4");
    for (const proto of ["tcp", "udp"] as const) {
      // the first packets across may wait for the tunnel's path; then every pair must answer
      await waitFor(`first ${proto} across the NAT`, async () => (await lab.connect(podsOf("n1")[0]!.name, proto, podsOf("n4")[0]!.ip, 8080, 1000)).ok, 10_000);
      const m = await reachability(lab, { from: pods, to: pods, address: (p) => p.ip, proto, port: 8080, timeoutMs: 2000 });
      const bad = m.filter((r) => !r.ok || r.answer !== `${r.to} ${c.pods.get(r.from)!.ip}`);
      expect(bad.map((r) => `${r.from}→${r.to} ${proto}: ${r.answer || r.error}`)).toEqual([]);
      expect(m.length).toBe(pods.length * (pods.length - 1));
    }
  }, 120_000);

  test("n1 and n2 talk directly (nothing on the VXLAN device); n1 and n3 through it", async () => {
    const [a] = podsOf("n1");
    const before = await linkCounters(lab, "n1", "skein.vxlan");
    for (const p of podsOf("n2")) for (const proto of ["tcp", "udp"] as const) expect((await lab.connect(a!.name, proto, p.ip, 8080)).ok).toBe(true);
    const mid = await linkCounters(lab, "n1", "skein.vxlan");
    expect(mid.tx.packets).toBe(before.tx.packets);
    expect(mid.rx.packets).toBe(before.rx.packets);
    for (const p of podsOf("n3")) for (const proto of ["tcp", "udp"] as const) expect((await lab.connect(a!.name, proto, p.ip, 8080)).ok).toBe(true);
    const after = await linkCounters(lab, "n1", "skein.vxlan");
    expect(after.tx.packets).toBeGreaterThan(mid.tx.packets);
    expect(after.rx.packets).toBeGreaterThan(mid.rx.packets);
  }, 30_000);

  test("across the NAT: the tunnel to n4 goes through the public address's port forward; n4 and n5 talk privately, the router forwards none of it", async () => {
    await resetCounters(lab, "nat");
    const [a] = podsOf("n1");
    const [d] = podsOf("n4");
    expect((await lab.connect(a!.name, "tcp", d!.ip, 8080)).answer).toBe(`${d!.name} ${a!.ip}`);
    const n4s = podsOf("n4");
    const n5s = podsOf("n5");
    for (const x of n4s) for (const y of n5s) for (const proto of ["tcp", "udp"] as const) {
      expect((await lab.connect(x.name, proto, y.ip, 8080)).answer).toBe(`${y.name} ${x.ip}`);
      expect((await lab.connect(y.name, proto, x.ip, 8080)).answer).toBe(`${x.name} ${y.ip}`);
    }
    const k = await readCounters(lab, "nat");
    // VXLAN from n1 arrives at n4 through the forward; only UDP 4789 crosses the router
    expect(packetsBetween(k, "192.168.50.11", "10.99.0.14", { proto: "udp", dport: 4789 })).toBeGreaterThan(0);
    // besides the agents' own connections to the control plane, only UDP 4789 crosses the router
    expect(k.forwarded.filter((f) => f.proto !== "udp" && f.src !== c.underlay.controlPlane.address && f.dst !== c.underlay.controlPlane.address)).toEqual([]);
    expect(packetsBetween(k, "10.99.0.14", "10.99.0.15")).toBe(0);
    expect(k.forwarded.filter((f) => f.src.startsWith("10.244.") || f.dst.startsWith("10.244."))).toEqual([]);
  }, 30_000);
});

describe("Services across nodes", () => {
  let clusterIP = "";
  let nodePort = 0;
  let backend: ClusterPod;
  beforeAll(async () => {
    backend = podsOf("n3")[0]!;
    const svc = await c.api.create("/api/v1/namespaces/default/services", {
      metadata: { name: "far" },
      spec: { type: "NodePort", ports: [{ name: "t", port: 80, targetPort: 8080, protocol: "TCP" }, { name: "u", port: 80, targetPort: 8080, protocol: "UDP" }] },
    });
    clusterIP = svc.spec.clusterIP;
    nodePort = svc.spec.ports[0].nodePort;
    expect(svc.spec.ports[1].nodePort).toBeGreaterThan(0);
    await c.api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
      metadata: { name: "far-1", labels: { "kubernetes.io/service-name": "far" } },
      addressType: "IPv4",
      endpoints: [{ addresses: [backend.ip], conditions: { ready: true }, nodeName: "n3" }],
      ports: [{ name: "t", port: 8080, protocol: "TCP" }, { name: "u", port: 8080, protocol: "UDP" }],
    });
    // UDP's node port is another than TCP's: serve the UDP NodePort test through the TCP one
  });

  test("a ClusterIP whose backend is on n3 answers from pods on every other node, TCP and UDP, seeing the pod's own address", async () => {
    for (const p of podsOf("n1", "n2", "n4")) {
      for (const proto of ["tcp", "udp"] as const) {
        const r = await waitFor(`${p.name} → ${clusterIP} ${proto}`, async () => {
          const x = await lab.connect(p.name, proto, clusterIP, 80, 1000);
          return x.ok && x;
        }, 10_000);
        expect(r.answer).toBe(`${backend.name} ${p.ip}`);
      }
    }
  }, 60_000);

  test("the ClusterIP answers from the nodes themselves, and the NodePort from every node and from an outside host", async () => {
    for (const n of ["n1", "n2", "n4"]) {
      const r = await waitFor(`node ${n} → ${clusterIP}`, async () => {
        const x = await lab.connect(n, "tcp", clusterIP, 80, 1000);
        return x.ok && x;
      }, 10_000);
      // the node's connection enters the tunnel from outside the pod network: it leaves with
      // the node's tunnel address, so the reply comes back through the tunnel (also across the NAT)
      expect(r.answer).toBe(`${backend.name} 10.244.${c.underlay.node(n).index}.0`);
    }
    for (const target of ["n1", "n2", "n3"]) {
      const addr = c.underlay.node(target).address;
      for (const from of ["out", "n1", "n2"]) {
        const r = await waitFor(`${from} → ${addr}:${nodePort}`, async () => {
          const x = await lab.connect(from, "tcp", addr, nodePort, 1000);
          return x.ok && x;
        }, 10_000);
        expect(r.answer.startsWith(`${backend.name} `)).toBe(true);
      }
    }
  }, 90_000);
});

describe("kernel state skein owns", () => {
  test("a deleted route, FDB entry, neighbour and the VXLAN device itself come back", async () => {
    const want = await overlayState("n1");
    await lab.exec("n1", ["ip", "route", "del", podCIDR("n3")]);
    await lab.exec("n1", ["bridge", "fdb", "del", vtepMacFor("n4"), "dev", "skein.vxlan", "dst", NAT_PUBLIC]);
    await lab.exec("n1", ["ip", "neigh", "del", "10.244.5.0", "dev", "skein.vxlan"]);
    await waitFor("n1's overlay repaired", async () => JSON.stringify(await overlayState("n1")) === JSON.stringify(want), 5000, 100);
    await lab.exec("n1", ["ip", "link", "del", "skein.vxlan"]);
    await waitFor("n1's VXLAN device and everything on it back", async () => JSON.stringify(await overlayState("n1")) === JSON.stringify(want), 5000, 100);
    expect((await waitFor("n1 → n3 again", async () => (await lab.connect(podsOf("n1")[0]!.name, "tcp", podsOf("n3")[0]!.ip, 8080, 1000)).ok, 5000))).toBe(true);
  }, 30_000);
});

describe("gossip", () => {
  test("hostile records are refused and logged; the datapath of every node stays as it was", async () => {
    const nodes = ["n1", "n2", "n3", "n4", "n5"];
    const before = await Promise.all(nodes.map(overlayState));
    const good = (o: Partial<NodeRecord>): NodeRecord => ({ node: "n2", podCIDRs: [podCIDR("n2")], underlay: "192.168.50.12", vtepMac: vtepMacFor("n2"), version: "x", seq: 1e9, startedAt: Date.now(), ...o });
    const marks = new Map(nodes.map((n) => [n, c.agents.get(n)!.out.text.length]));
    // garbage; wrong types; n2 claiming n1's pod CIDR; a node the API does not know; a tunnel to elsewhere with a bad MAC
    await kv("put", "n2", new TextEncoder().encode("\u0000garbage\uffff"));
    await kv("put", "n2", new Encoder({ useRecords: false }).encode({ ...good({}), seq: "many" }));
    await kv("put", "n2", encodeRecord(good({ podCIDRs: [podCIDR("n1")], underlay: "192.168.50.66" })));
    await kv("put", "ghost", encodeRecord(good({ node: "ghost", podCIDRs: ["10.244.99.0/24"], underlay: "192.168.50.99" })));
    for (const n of nodes.filter((x) => x !== "n2")) {
      // each agent heard them and said why it refused them
      const out = c.agents.get(n)!.out;
      await out.until("ghost", 5000, marks.get(n));
      const said = out.text.slice(marks.get(n));
      expect(said).toContain("node record refused");
      expect(said).toContain("differ from the Node's spec.podCIDRs");
      expect(said).toContain("no Node of that name");
    }
    // n2's own heartbeat puts its real record back; nothing changed anywhere meanwhile or after
    await waitFor("n2's record back", async () => {
      const b = (await kv("get", "n2")) as string | null;
      return b !== null && Buffer.from(b, "base64").includes(Buffer.from("192.168.50.12"));
    }, 5000);
    expect(await Promise.all(nodes.map(overlayState))).toEqual(before);
    await kv("purge", "ghost");
  }, 60_000);

  test("a bus writer cannot point a node's traffic elsewhere, nor take the underlay, the API server or another node's pods with a Node and a record of its own", async () => {
    const nodes = ["n1", "n2", "n3", "n4", "n5"];
    const before = await Promise.all(nodes.map(overlayState));
    const rec = (o: Partial<NodeRecord>): NodeRecord => ({ node: "n3", podCIDRs: [podCIDR("n3")], underlay: "192.168.60.13", vtepMac: vtepMacFor("n3"), version: "x", seq: 1e9, startedAt: Date.now(), ...o });
    const marks = new Map(nodes.map((n) => [n, c.agents.get(n)!.out.text.length]));
    // n3's record with the outside host as its tunnel endpoint, then with multicast and loopback ones
    await kv("put", "n3", encodeRecord(rec({ underlay: "192.168.50.200" })));
    await kv("put", "n3", new Encoder({ useRecords: false }).encode(rec({ underlay: "224.0.0.1" })));
    await kv("put", "n3", new Encoder({ useRecords: false }).encode(rec({ public: "127.0.0.1" })));
    for (const n of nodes.filter((x) => x !== "n3")) {
      const out = c.agents.get(n)!.out;
      expect(await out.until("is none of the Node's addresses", 5000, marks.get(n))).toBe("found");
      expect(await out.until("224.0.0.1", 5000, marks.get(n))).toBe("found");
    }
    // Nodes with records of their own (as a holder of both API and bus credentials could make):
    // one claiming n3's pod CIDR, one the underlay subnet where the API server lives
    const thief = { metadata: { name: "a-thief" }, spec: { podCIDR: podCIDR("n3"), podCIDRs: [podCIDR("n3")] }, status: { addresses: [{ type: "InternalIP", address: "192.168.60.77" }] } };
    const sneak = { metadata: { name: "sneak" }, spec: { podCIDR: "192.168.50.0/25", podCIDRs: ["192.168.50.0/25"] }, status: { addresses: [{ type: "InternalIP", address: "192.168.60.78" }] } };
    for (const [node, ip] of [[thief, "192.168.60.77"], [sneak, "192.168.60.78"]] as const) {
      await c.api.create("/api/v1/nodes", node);
      await kv("put", node.metadata.name, encodeRecord(rec({ node: node.metadata.name, podCIDRs: node.spec.podCIDRs, underlay: ip, vtepMac: vtepMacFor(node.metadata.name) })));
    }
    await c.agents.get("n1")!.out.until("neither is routed", 5000, marks.get("n1"));
    // n1 keeps its way to the API server and routes neither claim; n3's pod CIDR is contested: no one gets it
    await waitFor("n1 drops the contested CIDR", async () => !(await overlayState("n1")).routes.some((r) => r.dst === podCIDR("n3")), 5000, 100);
    const n1 = await overlayState("n1");
    expect(n1.routes.map((r) => r.dst)).not.toContain("192.168.50.0/25");
    expect((await lab.exec("n1", ["ip", "-j", "route", "get", c.underlay.controlPlane.address])).stdout).toContain('"dev":"eth0"');
    // gone again: n3 is routed as before, and nothing else changed anywhere
    for (const n of ["a-thief", "sneak"]) {
      await c.api.request("DELETE", `/api/v1/nodes/${n}`);
      await kv("purge", n);
    }
    await waitFor("every node as before", async () => JSON.stringify(await Promise.all(nodes.map(overlayState))) === JSON.stringify(before), 10_000, 200);
  }, 60_000);

  test("a node joining is reachable from every other within 2 s of its agent starting; when it stops, its record expires and every node drops it", async () => {
    const u = c.underlay;
    const n6 = await u.addNode({ name: "n6", index: 6, segment: "a", host: 16 });
    await c.api.create("/api/v1/nodes", (await import("../testing/multinode.ts")).nodeSpec(n6));
    const t0 = performance.now();
    await c.startAgent("n6");
    await Promise.all(["n1", "n2", "n3", "n4", "n5"].map((n) => waitFor(`${n} routes to n6`, async () => (await overlayState(n)).routes.some((r) => r.dst === n6.podCIDR), 5000, 50)));
    const ms = performance.now() - t0;
    console.log(`n6 programmed on every node ${ms.toFixed(0)} ms after its agent was started`);
    expect(ms).toBeLessThan(2000);
    const p = await c.addPod("n6", "n6-p1");
    await lab.serve(p.name, { name: p.name, tcp: 8080, udp: 8080 });
    for (const from of [podsOf("n1")[0]!, podsOf("n3")[0]!, podsOf("n4")[0]!]) {
      const r = await waitFor(`${from.name} → n6-p1`, async () => {
        const x = await lab.connect(from.name, "udp", p.ip, 8080, 1000);
        return x.ok && x;
      }, 5000);
      expect(r.answer).toBe(`n6-p1 ${from.ip}`);
    }
    // killed: no goodbye, the record just stops being refreshed
    await c.stopAgent("n6", { signal: "SIGKILL" });
    const t1 = performance.now();
    await Promise.all(["n1", "n2", "n3", "n4", "n5"].map((n) => waitFor(`${n} drops n6`, async () => !(await overlayState(n)).routes.some((r) => r.dst === n6.podCIDR), 8000, 100)));
    console.log(`n6 dropped everywhere ${(performance.now() - t1).toFixed(0)} ms after its agent was killed (TTL 3000 ms)`);
    await c.removePod("n6-p1");
  }, 60_000);

  test("NATS down: traffic flows and no peer expires; a node added meanwhile joins from its Node object; after the restart every record is back within 2 s, also from a server that lost its state", async () => {
    const a = podsOf("n1")[0]!;
    const far = podsOf("n4")[0]!;
    const all = ["n1", "n2", "n3", "n4", "n5"];
    const states = await Promise.all(all.map(overlayState));
    await nats.stop(0);
    // longer than a TTL: nothing expires while the bus is down
    const until = performance.now() + 4000;
    while (performance.now() < until) {
      expect((await lab.connect(a.name, "tcp", far.ip, 8080, 1000)).ok).toBe(true);
      expect((await overlayState("n1")).routes).toEqual(states[0]!.routes);
    }
    const n7 = await c.underlay.addNode({ name: "n7", index: 7, segment: "b", host: 17 });
    await c.api.create("/api/v1/nodes", (await import("../testing/multinode.ts")).nodeSpec(n7));
    await c.startAgent("n7");
    await Promise.all(all.map((n) => waitFor(`${n} routes to n7 from its Node object`, async () => (await overlayState(n)).routes.some((r) => r.dst === n7.podCIDR), 5000, 100)));
    const p = await c.addPod("n7", "n7-p1");
    await lab.serve(p.name, { name: p.name, tcp: 8080 });
    expect((await waitFor("n1 → n7 while NATS is down", async () => (await lab.connect(a.name, "tcp", p.ip, 8080, 1000)).ok, 5000))).toBe(true);

    // back with its state: every agent accepts n7's record within 2 s
    const marks = new Map([...all, "n7"].map((n) => [n, c.agents.get(n)!.out.text.length]));
    await nats.start(0);
    const t0 = performance.now();
    await waitFor("n7's record in the bucket", async () => ((await kv("keys")) as string[]).includes("n7"), 5000, 50);
    // the peer book's line for an accepted record: {…"key":"n7","underlay":…,"msg":"node record accepted"}
    const heard = await Promise.all(all.map((n) => c.agents.get(n)!.out.until('"key":"n7","underlay"', 5000, marks.get(n))));
    expect(heard).toEqual(all.map(() => "found"));
    const ms = performance.now() - t0;
    console.log(`after the NATS restart every agent had n7's record in ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(2000);

    // back without its state: the heartbeats fill the bucket again, and no route went meanwhile
    await nats.restart(0, { wipe: true });
    const t1 = performance.now();
    await waitFor("every record back in the emptied bucket", async () => ((await kv("keys")) as string[]).join() === [...all, "n7"].sort().join(), 5000, 100);
    console.log(`the emptied bucket held every record again ${(performance.now() - t1).toFixed(0)} ms after the restart`);
    for (const n of all) expect((await overlayState(n)).routes.map((r) => r.dst)).toContain(n7.podCIDR);
    expect((await lab.connect(a.name, "tcp", p.ip, 8080, 2000)).ok).toBe(true);
  }, 90_000);
});

describe("cleanup", () => {
  test("skein cleanup on a node whose agent stopped removes its routes, VXLAN device, FDB and neighbour entries, and tables; --dry-run lists them first", async () => {
    await c.stopAgent("n5");
    const before = await overlayState("n5");
    expect(before.routes.length).toBeGreaterThan(0);
    // no namespace goes (the lab's are skt-*): only the node's own datapath and state files
    const cmd = [builtSkein(), "cleanup", "--no-namespaces", "--node-file", `${c.nodeDir("n5")}/node.json`, "--data-dir", `${c.nodeDir("n5")}/ipam`];
    const dry = await lab.exec("n5", [...cmd, "--dry-run"]);
    for (const r of before.routes) expect(dry.stdout).toContain(`would remove route ${r.dst as string}`);
    expect(dry.stdout).toContain("would remove link skein.vxlan");
    expect(await overlayState("n5")).toEqual(before);
    const done = await lab.exec("n5", cmd);
    expect(done.stdout).toContain("removed link skein.vxlan");
    expect(await overlayState("n5")).toEqual({ routes: [], fdb: [], neigh: [] });
    expect((await lab.exec("n5", ["nft", "list", "tables"])).stdout).not.toContain("skein");
    expect((await lab.exec("n5", ["ip", "link", "show", "skein.vxlan"], { allowFail: true })).exitCode).not.toBe(0);
  }, 30_000);
});
