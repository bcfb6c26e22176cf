// The multi-node tests' underlay on its own, without skein: who reaches whom, with which
// source address, through which router, and what the routers' counters say about it.
import { beforeAll, describe, expect, test } from "bun:test";
import { listNetns } from "../agent/sys/netns.ts";
import { buildUnderlay, linkCounters, NAT_PUBLIC, nodeSpec, packetsBetween, readCounters, resetCounters, type Underlay } from "../testing/multinode.ts";
import { SKEIN, useLab, waitFor } from "./harness/index.ts";

const lab = useLab("underlay");
const other = useLab("ulbuild");
let u: Underlay;
const portServers: Array<Awaited<ReturnType<typeof lab.spawn>>> = [];
const PORT = 7000;
const addr = (n: string) => u.node(n).address;

/** The answer of a probe server (its name and the source address it saw), once it comes. */
async function reach(from: string, proto: "tcp" | "udp", host: string, port = PORT): Promise<{ name: string; peer: string }> {
  const r = await waitFor(`${from} → ${proto} ${host}:${port}`, async () => {
    const c = await lab.connect(from, proto, host, port, 1000);
    return c.ok && c.answer;
  }, 5000, 50);
  const [name, peer] = r.split(" ");
  return { name: name!, peer: peer!.replace(/^::ffff:/, "") };
}

async function unreachable(from: string, proto: "tcp" | "udp", host: string, port = PORT): Promise<boolean> {
  return !(await lab.connect(from, proto, host, port, 500)).ok;
}

beforeAll(async () => {
  const t0 = performance.now();
  u = await buildUnderlay(lab, { nodes: ["n1", "n2", "n3", "n4", "n5"] });
  console.log(`underlay of ${u.nodes.length} nodes built in ${(performance.now() - t0).toFixed(0)} ms`);
  await Promise.all([...u.nodes.map((n) => n.ns), "out"].map((h) => lab.serve(h, { name: h, tcp: PORT, udp: PORT })));
  // kept, to be stopped before a VXLAN device needs the port
  for (const n of ["n4", "n5"]) portServers.push(await lab.spawn(n, [SKEIN, "probe", "serve", "--name", `${n}-vxlan`, "--udp", "4789"], { ready: "ready" }));
}, 30_000);

describe("the multi-node underlay", () => {
  test("every node has its address, a default route via its router, and forwarding on", async () => {
    expect(u.nodes.map((n) => [n.name, n.address, n.subnet, n.gateway, n.public ?? null])).toEqual([
      ["n1", "192.168.50.11", "192.168.50.0/24", "192.168.50.1", null],
      ["n2", "192.168.50.12", "192.168.50.0/24", "192.168.50.1", null],
      ["n3", "192.168.60.13", "192.168.60.0/24", "192.168.60.1", null],
      ["n4", "10.99.0.14", "10.99.0.0/24", "10.99.0.1", NAT_PUBLIC],
      ["n5", "10.99.0.15", "10.99.0.0/24", "10.99.0.1", NAT_PUBLIC],
    ]);
    for (const n of u.nodes) {
      expect((await lab.exec(n.ns, ["ip", "-4", "-o", "addr", "show", "dev", n.dev])).stdout).toContain(`inet ${n.address}/24`);
      expect((await lab.exec(n.ns, ["ip", "route", "show", "default"])).stdout.trim()).toBe(`default via ${n.gateway} dev ${n.dev}`);
      expect((await lab.exec(n.ns, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])).stdout.split(/\s+/).filter(Boolean)).toEqual(["1", "1"]);
    }
  });

  test("n1 and n2 share a subnet: they reach each other directly, r1 forwards nothing between them (TCP and UDP)", async () => {
    await resetCounters(lab, "r1");
    for (const proto of ["tcp", "udp"] as const) {
      expect(await reach("n1", proto, addr("n2"))).toEqual({ name: "n2", peer: addr("n1") });
      expect(await reach("n2", proto, addr("n1"))).toEqual({ name: "n1", peer: addr("n2") });
    }
    expect(packetsBetween(await readCounters(lab, "r1"), addr("n1"), addr("n2"))).toBe(0);
  });

  test("n3 is on another subnet: n1 and n3 reach each other through r1, which counts it (TCP and UDP)", async () => {
    await resetCounters(lab, "r1");
    for (const proto of ["tcp", "udp"] as const) {
      expect(await reach("n1", proto, addr("n3"))).toEqual({ name: "n3", peer: addr("n1") });
      expect(await reach("n3", proto, addr("n1"))).toEqual({ name: "n1", peer: addr("n3") });
    }
    const c = await readCounters(lab, "r1");
    expect(packetsBetween(c, addr("n1"), addr("n3"), { proto: "tcp", dport: PORT })).toBeGreaterThanOrEqual(2);
    expect(packetsBetween(c, addr("n1"), addr("n3"), { proto: "udp", dport: PORT })).toBeGreaterThanOrEqual(2);
    expect(c.links["eth0>eth1"]!.packets).toBeGreaterThan(0);
    expect(c.links["eth1>eth0"]!.packets).toBeGreaterThan(0);
  });

  test("nodes behind the NAT go out masqueraded: n1 and n3 see the public address (TCP and UDP)", async () => {
    await resetCounters(lab, "nat");
    for (const proto of ["tcp", "udp"] as const) {
      for (const from of ["n4", "n5"]) {
        expect(await reach(from, proto, addr("n1"))).toEqual({ name: "n1", peer: NAT_PUBLIC });
        expect(await reach(from, proto, addr("n3"))).toEqual({ name: "n3", peer: NAT_PUBLIC });
      }
    }
    const c = await readCounters(lab, "nat");
    expect(packetsBetween(c, addr("n4"), addr("n1"), { proto: "udp", dport: PORT })).toBeGreaterThanOrEqual(1);
    expect(c.links["eth1>eth0"]!.packets).toBeGreaterThan(0);
    expect(c.portForward.packets).toBe(0);
  });

  test("the private side is not routed from outside: n1 cannot reach n4's underlay address, only the port forward", async () => {
    expect(await unreachable("n1", "tcp", addr("n4"))).toBe(true);
    expect(await unreachable("n1", "udp", NAT_PUBLIC)).toBe(true);
    expect(await unreachable("n1", "tcp", NAT_PUBLIC)).toBe(true);
  });

  test("UDP 4789 to the public address reaches n4 through the port forward, from both subnets", async () => {
    await resetCounters(lab, "nat");
    expect(await reach("n1", "udp", NAT_PUBLIC, 4789)).toEqual({ name: "n4-vxlan", peer: addr("n1") });
    expect(await reach("n3", "udp", NAT_PUBLIC, 4789)).toEqual({ name: "n4-vxlan", peer: addr("n3") });
    const c = await readCounters(lab, "nat");
    expect(packetsBetween(c, addr("n1"), addr("n4"), { proto: "udp", dport: 4789 })).toBeGreaterThanOrEqual(1);
    expect(packetsBetween(c, addr("n3"), addr("n4"), { proto: "udp", dport: 4789 })).toBeGreaterThanOrEqual(1);
    expect(c.portForward.packets).toBeGreaterThanOrEqual(2);
  });

  test("n4 and n5 reach each other by their private addresses; the NAT router forwards nothing between them (TCP and UDP)", async () => {
    await resetCounters(lab, "nat");
    for (const proto of ["tcp", "udp"] as const) {
      expect(await reach("n4", proto, addr("n5"))).toEqual({ name: "n5", peer: addr("n4") });
      expect(await reach("n5", proto, addr("n4"))).toEqual({ name: "n4", peer: addr("n5") });
    }
    expect(await reach("n5", "udp", addr("n4"), 4789)).toEqual({ name: "n4-vxlan", peer: addr("n5") });
    const c = await readCounters(lab, "nat");
    expect(packetsBetween(c, addr("n4"), addr("n5"))).toBe(0);
    expect(c.forwarded).toEqual([]);
    expect(c.local).toEqual([]);
  });

  test("the outside host reaches n1, n2 (same subnet) and n3 (through r1), TCP and UDP", async () => {
    for (const proto of ["tcp", "udp"] as const) {
      for (const n of ["n1", "n2", "n3"]) expect(await reach("out", proto, addr(n))).toEqual({ name: n, peer: u.outside.address });
      expect(await reach("n3", proto, u.outside.address)).toEqual({ name: "out", peer: addr("n3") });
    }
  });

  test("the control-plane host is reachable from every node (the API server and NATS will listen there)", async () => {
    await lab.serve("cp", { name: "cp", tcp: 6443 });
    for (const n of u.nodes) expect((await reach(n.ns, "tcp", u.controlPlane.address, 6443)).name).toBe("cp");
  });

  test("the port forward can be moved to n5, and removed", async () => {
    try {
      await u.setPortForward("n5");
      expect(u.portForward).toBe("n5");
      expect((await reach("n2", "udp", NAT_PUBLIC, 4789)).name).toBe("n5-vxlan");
      await u.setPortForward(undefined);
      expect(await unreachable("n2", "udp", NAT_PUBLIC, 4789)).toBe(true);
    } finally {
      await u.setPortForward("n4");
    }
    expect((await reach("n2", "udp", NAT_PUBLIC, 4789)).name).toBe("n4-vxlan");
    await expect(u.setPortForward("n1")).rejects.toThrow(/not behind the NAT/);
  });

  test("a node added later joins its subnet; a removed one is gone", async () => {
    const n6 = await u.addNode({ name: "n6", index: 6, segment: "b", host: 16, mtu: 1400 });
    expect(n6).toMatchObject({ address: "192.168.60.16", gateway: "192.168.60.1", podCIDR: "10.244.6.0/24", mtu: 1400 });
    expect((await lab.exec("n6", ["ip", "-o", "link", "show", "eth0"])).stdout).toContain(" mtu 1400 ");
    expect((await lab.exec("n1", ["ip", "-o", "link", "show", "eth0"])).stdout).toContain(" mtu 1500 ");
    await lab.serve("n6", { name: "n6", tcp: PORT });
    expect(await reach("n1", "tcp", n6.address)).toEqual({ name: "n6", peer: addr("n1") });
    expect(await reach("n4", "tcp", n6.address)).toEqual({ name: "n6", peer: NAT_PUBLIC });
    await expect(u.addNode({ name: "n7", index: 7, segment: "b", host: 16 })).rejects.toThrow(/taken/);
    u.removeNode("n6");
    expect(listNetns()).not.toContain(lab.name("n6"));
    expect(() => u.node("n6")).toThrow(/no node "n6"/);
    expect(await unreachable("n1", "tcp", n6.address)).toBe(true);
    // its name, address and index are free again
    const again = await u.addNode({ name: "n6", index: 6, segment: "b", host: 16 });
    u.removeNode(again.name);
  });

  test("another host joins segment b and reaches the control plane through r1; link counters count what it sent", async () => {
    expect(await u.addHost("nats2", "b", 42)).toBe("192.168.60.42");
    await expect(u.addHost("Bad_Name", "a", 43)).rejects.toThrow(/must match/);
    await expect(u.addHost("nats3", "a", 11)).rejects.toThrow(/taken/);
    await expect(u.addHost("n1", "a", 44)).rejects.toThrow(/taken/);
    const before = await linkCounters(lab, "nats2", "eth0");
    await lab.serve("cp", { name: "cp-udp", udp: 6000 });
    expect(await reach("nats2", "udp", u.controlPlane.address, 6000)).toEqual({ name: "cp-udp", peer: "192.168.60.42" });
    const after = await linkCounters(lab, "nats2", "eth0");
    expect(after.tx.packets).toBeGreaterThan(before.tx.packets);
    expect(after.rx.packets).toBeGreaterThan(before.rx.packets);
    await expect(linkCounters(lab, "nats2", "skein.vxlan")).rejects.toThrow();
  });

  test("nodeSpec: the Node object a test registers for a node", () => {
    expect(nodeSpec(u.node("n4"))).toEqual({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n4", labels: { "kubernetes.io/hostname": "n4" }, annotations: { "skein.io/public-ip": NAT_PUBLIC } },
      spec: { podCIDR: "10.244.4.0/24", podCIDRs: ["10.244.4.0/24"] },
      status: { addresses: [{ type: "InternalIP", address: "10.99.0.14" }, { type: "Hostname", address: "n4" }] },
    });
    expect(nodeSpec(1, { labels: { "skein.io/site": "a" } })).toMatchObject({ metadata: { name: "n1", labels: { "skein.io/site": "a" } }, status: { addresses: [{ type: "InternalIP", address: "192.168.50.11" }, { type: "Hostname", address: "n1" }] } });
    expect((nodeSpec(1).metadata as Record<string, unknown>).annotations).toBeUndefined();
  });
});

describe("a hand-made VXLAN over the underlay (what the overlay will program)", () => {
  // vx0 on n1, n3, n4, n5 with static FDB and neighbour entries: n1 and n3 send to n4 at the
  // public address (the port forward), n4 to n1 and n3 at their own, n4 and n5 privately
  const mac = (i: number) => `02:00:00:00:00:0${i}`;
  const inner = (i: number) => `10.200.0.${i}`;
  const peers: Record<string, Array<[number, string]>> = {
    n1: [[4, NAT_PUBLIC], [3, "192.168.60.13"]],
    n3: [[4, NAT_PUBLIC], [1, "192.168.50.11"]],
    n4: [[1, "192.168.50.11"], [3, "192.168.60.13"], [5, "10.99.0.15"]],
    n5: [[4, "10.99.0.14"]],
  };

  test("carries TCP and UDP both ways across the NAT, through r1, and privately behind the NAT; the routers see only UDP 4789", async () => {
    for (const s of portServers.splice(0)) {
      s.proc.kill();
      await s.proc.exited;
    }
    try {
      for (const [n, list] of Object.entries(peers)) {
        const i = u.node(n).index;
        const lines = [`link add vx0 address ${mac(i)} type vxlan id 42 local ${addr(n)} dstport 4789 nolearning dev eth0`, `addr add ${inner(i)}/24 dev vx0`, "link set vx0 up"];
        for (const [j] of list) lines.push(`neigh add ${inner(j)} lladdr ${mac(j)} dev vx0 nud permanent`);
        await lab.exec(n, ["ip", "-batch", "-"], { stdin: lines.join("\n") + "\n" });
        for (const [j, endpoint] of list) await lab.exec(n, ["bridge", "fdb", "add", mac(j), "dev", "vx0", "dst", endpoint, "self", "permanent"]);
      }
      await Promise.all([resetCounters(lab, "nat"), resetCounters(lab, "r1")]);
      for (const [a, b] of [["n1", "n4"], ["n3", "n4"], ["n5", "n4"]]) {
        for (const proto of ["tcp", "udp"] as const) {
          expect(await reach(a!, proto, inner(u.node(b!).index))).toEqual({ name: b!, peer: inner(u.node(a!).index) });
          expect(await reach(b!, proto, inner(u.node(a!).index))).toEqual({ name: a!, peer: inner(u.node(b!).index) });
        }
      }
      const nat = await readCounters(lab, "nat");
      expect(packetsBetween(nat, addr("n1"), addr("n4"), { proto: "udp", dport: 4789 })).toBeGreaterThanOrEqual(8);
      expect(packetsBetween(nat, addr("n3"), addr("n4"), { proto: "udp", dport: 4789 })).toBeGreaterThanOrEqual(8);
      expect(nat.portForward.packets).toBeGreaterThan(0);
      expect(packetsBetween(nat, addr("n4"), addr("n5"))).toBe(0);
      expect(nat.forwarded.filter((f) => f.dport !== 4789)).toEqual([]);
      const r1 = await readCounters(lab, "r1");
      expect(packetsBetween(r1, addr("n3"), NAT_PUBLIC, { proto: "udp", dport: 4789 }) + packetsBetween(r1, addr("n3"), addr("n4"), { proto: "udp", dport: 4789 })).toBeGreaterThan(0);
      expect(r1.forwarded.filter((f) => f.dport !== 4789)).toEqual([]);
    } finally {
      for (const n of Object.keys(peers)) await lab.exec(n, ["ip", "link", "del", "vx0"], { allowFail: true });
    }
  });
});

describe("building and tearing down", () => {
  test("an underlay of 5 nodes builds and is torn down completely", async () => {
    const t0 = performance.now();
    await buildUnderlay(other);
    const built = performance.now() - t0;
    const t1 = performance.now();
    const removed = other.destroy();
    const down = performance.now() - t1;
    console.log(`underlay of 5 nodes: built in ${built.toFixed(0)} ms, torn down in ${down.toFixed(0)} ms`);
    expect(removed.map((n) => n.slice(other.prefix.length)).sort()).toEqual(["cp", "n1", "n2", "n3", "n4", "n5", "nat", "out", "r1", "ul"]);
    expect(listNetns().filter((n) => n.startsWith(other.prefix))).toEqual([]);
  });
});
