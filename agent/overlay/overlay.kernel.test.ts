// The overlay against real kernels: three node namespaces, n1 and n2 on one underlay subnet
// (a bridge in namespace ul), n3 on another behind router r; each node has a pod namespace.
// Plans are applied by Overlay instances in this process (a socket per node namespace), and
// what the kernel holds is read back with ip and bridge; packets cross between the pods.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { useLab, waitFor } from "../../test/harness/index.ts";
import { Netlink } from "../sys/netlink.ts";
import { deleteRoute, RTPROT_SKEIN, txChecksum } from "../sys/rtnl.ts";
import { Overlay, type OverlayLog } from "./overlay.ts";
import type { CleanupItem } from "./cleanup.ts";
import { planOverlay, type OverlayPeer, type OverlayPlan, type SelfInfo } from "./plan.ts";

const lab = useLab("ov");

interface Node {
  name: string;
  n: number;
  underlay: string;
  subnet: string;
  mac: string;
}
const nodes: Node[] = [
  { name: "n1", n: 1, underlay: "192.168.50.11", subnet: "192.168.50.0/24", mac: "0a:58:00:00:00:01" },
  { name: "n2", n: 2, underlay: "192.168.50.12", subnet: "192.168.50.0/24", mac: "0a:58:00:00:00:02" },
  { name: "n3", n: 3, underlay: "192.168.60.13", subnet: "192.168.60.0/24", mac: "0a:58:00:00:00:03" },
];
const cidrs = (n: number) => [`10.244.${n}.0/24`, `fd00:10:244:${n}::/64`];
const selfOf = (x: Node, o: Partial<SelfInfo> = {}): SelfInfo => ({ name: x.name, podCIDRs: cidrs(x.n), underlay: x.underlay, underlaySubnet: x.subnet, underlayDev: "eth0", underlayMtu: 1500, mode: "auto", vtepMac: x.mac, ...o });
const peerOf = (x: Node): OverlayPeer => ({ name: x.name, podCIDRs: cidrs(x.n), underlay: x.underlay, vtepMac: x.mac });
const planFor = (x: Node, peers = nodes) => planOverlay(selfOf(x), peers.filter((p) => p !== x).map(peerOf));

const logs: Array<{ level: string; obj: object; msg: string }> = [];
const log: OverlayLog = {
  info: (obj, msg) => logs.push({ level: "info", obj, msg }),
  warn: (obj, msg) => logs.push({ level: "warn", obj, msg }),
};

/** a cleanup item as one line: what would be done, to what, and why when left alone */
const said = (i: CleanupItem) => `${i.action} ${i.kind} ${i.name}${i.reason ? `: ${i.reason}` : ""}`;

const sh = async (ns: string, ...argv: string[]) => (await lab.exec(ns, argv)).stdout;
const json = async <T>(ns: string, ...argv: string[]): Promise<T> => JSON.parse((await sh(ns, ...argv)) || "[]") as T;

interface Held {
  routes: string[];
  link: Record<string, unknown> | undefined;
  neighbours: string[];
  fdb: string[];
  addrs: string[];
}

/** What the kernel of node `ns` holds of skein's, as ip and bridge print it. */
async function kernel(ns: string): Promise<Held> {
  const routes = [
    ...(await json<Array<Record<string, unknown>>>(ns, "ip", "-j", "-4", "route", "show", "table", "main", "proto", "86")),
    ...(await json<Array<Record<string, unknown>>>(ns, "ip", "-j", "-6", "route", "show", "table", "main", "proto", "86")),
  ].map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${(r.flags as string[]).includes("onlink") ? " onlink" : ""}`);
  const hasVx = (await lab.exec(ns, ["ip", "link", "show", "skein.vxlan"], { allowFail: true })).exitCode === 0;
  if (!hasVx) return { routes: routes.sort(), link: undefined, neighbours: [], fdb: [], addrs: [] };
  const neighbours = (await json<Array<Record<string, unknown>>>(ns, "ip", "-j", "neigh", "show", "dev", "skein.vxlan"))
    .filter((n) => (n.state as string[]).includes("PERMANENT"))
    .map((n) => `${n.dst} ${n.lladdr}`);
  const fdb = (await json<Array<Record<string, unknown>>>(ns, "bridge", "-j", "fdb", "show", "dev", "skein.vxlan")).map((f) => `${f.mac} ${f.dst} ${f.state}`);
  const [l] = await json<Array<{ operstate: string; flags: string[]; mtu: number; address: string; linkinfo: { info_kind: string; info_data: Record<string, unknown> } }>>(ns, "ip", "-j", "-d", "link", "show", "skein.vxlan");
  const d = l!.linkinfo.info_data;
  const addrs = (await json<Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>>(ns, "ip", "-j", "addr", "show", "dev", "skein.vxlan"))[0]!.addr_info.filter((a) => a.scope !== "link").map((a) => `${a.local}/${a.prefixlen}`);
  const link = { up: l!.flags.includes("UP"), mtu: l!.mtu, mac: l!.address, kind: l!.linkinfo.info_kind, id: d.id, port: d.port, local: d.local, link: d.link, learning: d.learning, group: d.group ?? d.remote };
  return { routes: routes.sort(), link, neighbours: neighbours.sort(), fdb: fdb.sort(), addrs: addrs.sort() };
}

/** What `plan` says the kernel must hold, in kernel()'s terms. */
function expected(plan: OverlayPlan): Held {
  return {
    routes: plan.routes.map((r) => `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`).sort(),
    link: plan.vxlan && { up: true, mtu: plan.vxlan.mtu, mac: plan.vxlan.mac, kind: "vxlan", id: 1, port: 4789, local: plan.vxlan.local, link: "eth0", learning: false, group: undefined },
    neighbours: plan.neighbours.map((n) => `${n.ip} ${n.mac}`).sort(),
    fdb: plan.fdb.map((f) => `${f.mac} ${f.dst} permanent`).sort(),
    addrs: [...(plan.vxlan?.addrs ?? [])].sort(),
  };
}

const txPackets = async (ns: string) => (await json<Array<{ stats64: { tx: { packets: number } } }>>(ns, "ip", "-s", "-j", "link", "show", "skein.vxlan"))[0]!.stats64.tx.packets;

const overlays = new Map<string, Overlay>();
const open = (ns: string, o: { checkEveryMs?: number } = {}) => {
  const ov = Overlay.open({ log, netnsPath: lab.path(ns), checkEveryMs: o.checkEveryMs ?? 0 });
  overlays.get(ns)?.close();
  overlays.set(ns, ov);
  return ov;
};
afterAll(() => overlays.forEach((o) => o.close()));

describe("overlay in three node namespaces", () => {
  beforeAll(async () => {
    for (const ns of ["ul", "r", "n1", "n2", "n3"]) lab.host(ns);
    await sh("ul", "ip", "link", "add", "br0", "type", "bridge");
    await sh("ul", "ip", "link", "set", "br0", "up");
    const port = async (ns: string, ifname: string, peerName: string, addr: string) => {
      await sh("ul", "ip", "link", "add", peerName, "type", "veth", "peer", "name", ifname, "netns", lab.name(ns));
      await sh("ul", "ip", "link", "set", peerName, "master", "br0", "up");
      await sh(ns, "ip", "addr", "add", addr, "dev", ifname);
      await sh(ns, "ip", "link", "set", ifname, "up");
    };
    await port("n1", "eth0", "p1", "192.168.50.11/24");
    await port("n2", "eth0", "p2", "192.168.50.12/24");
    await port("r", "e0", "pr", "192.168.50.1/24");
    await sh("r", "ip", "link", "add", "e1", "type", "veth", "peer", "name", "eth0", "netns", lab.name("n3"));
    await sh("r", "ip", "addr", "add", "192.168.60.1/24", "dev", "e1");
    await sh("r", "ip", "link", "set", "e1", "up");
    await sh("n3", "ip", "addr", "add", "192.168.60.13/24", "dev", "eth0");
    await sh("n3", "ip", "link", "set", "eth0", "up");
    await sh("r", "sysctl", "-qw", "net.ipv4.ip_forward=1");
    for (const x of nodes) {
      const gw = x.n === 3 ? "192.168.60.1" : "192.168.50.1";
      await sh(x.name, "ip", "route", "add", "default", "via", gw);
      await sh(x.name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      // a pod: a namespace of its own behind a veth, its node the gateway
      const pod = `p${x.n}`;
      lab.host(pod);
      await sh(x.name, "ip", "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", lab.name(pod));
      await sh(x.name, "ip", "addr", "add", `10.244.${x.n}.1/24`, "dev", "pod0");
      await sh(x.name, "ip", "addr", "add", `fd00:10:244:${x.n}::1/64`, "dev", "pod0", "nodad");
      await sh(x.name, "ip", "link", "set", "pod0", "up");
      await sh(pod, "ip", "addr", "add", `10.244.${x.n}.10/24`, "dev", "eth0");
      await sh(pod, "ip", "addr", "add", `fd00:10:244:${x.n}::10/64`, "dev", "eth0", "nodad");
      await sh(pod, "ip", "link", "set", "eth0", "up");
      await sh(pod, "ip", "route", "add", "default", "via", `10.244.${x.n}.1`);
      await sh(pod, "ip", "-6", "route", "add", "default", "via", `fd00:10:244:${x.n}::1`);
    }
  });

  test("each node's kernel holds exactly its plan; applying it again writes nothing", async () => {
    for (const x of nodes) {
      const plan = planFor(x);
      const r = open(x.name).apply(plan);
      expect(r.failed).toEqual([]);
      expect(r.changes).toBeGreaterThan(0);
      expect(await kernel(x.name)).toEqual(expected(plan));
      expect(overlays.get(x.name)!.apply(plan).changes).toBe(0);
    }
    // n1 reaches n2 directly, n3 over VXLAN; IPv6 pod CIDRs always over VXLAN
    expect((await kernel("n1")).routes).toEqual([
      "10.244.2.0/24 via 192.168.50.12 dev eth0",
      "10.244.3.0/24 via 10.244.3.0 dev skein.vxlan onlink",
      "fd00:10:244:2::/64 via fd00:10:244:2:: dev skein.vxlan onlink",
      "fd00:10:244:3::/64 via fd00:10:244:3:: dev skein.vxlan onlink",
    ]);
    const nl = Netlink.open(lab.path("n1"));
    try {
      expect(txChecksum(nl, "skein.vxlan")).toBe(false);
    } finally {
      nl.close();
    }
  });

  test("pods talk across: directly between n1 and n2 (no VXLAN packet), over VXLAN to n3", async () => {
    const before = await Promise.all(nodes.map((x) => txPackets(x.name)));
    expect(await lab.ping("p1", "10.244.2.10")).toBe(true);
    expect(await lab.ping("p2", "10.244.1.10")).toBe(true);
    expect([await txPackets("n1"), await txPackets("n2")]).toEqual([before[0]!, before[1]!]);
    await lab.serve("p3", { name: "pod3", tcp: 8080, udp: 8081 });
    const tcp = await lab.connect("p1", "tcp", "10.244.3.10", 8080);
    expect(tcp).toMatchObject({ ok: true, answer: "pod3 10.244.1.10" });
    expect((await lab.connect("p2", "udp", "10.244.3.10", 8081)).answer).toBe("pod3 10.244.2.10");
    // a single 2 s ping failed here 2 runs in 9: the first IPv6 packet can be lost, most
    // likely to neighbour discovery on these hand-wired pods' links (their gateways are not
    // pinned, as skein's CNI pins them); it must get through within the deadline
    expect(await waitFor("p3 → p1 over VXLAN, IPv6", () => lab.ping("p3", "fd00:10:244:1::10", 1), 6000, 0)).toBe(true);
    expect(await txPackets("n1")).toBeGreaterThan(before[0]!);
    expect(await txPackets("n3")).toBeGreaterThan(before[2]!);
  });

  test("what someone else deletes or changes comes back within 2 s", async () => {
    for (const x of nodes.slice(1)) open(x.name).apply(planFor(x));
    const ov = open("n1");
    ov.apply(planFor(nodes[0]!));
    const want = expected(planFor(nodes[0]!));
    const same = async () => JSON.stringify(await kernel("n1")) === JSON.stringify(want);
    const breaks: string[][] = [
      ["ip", "route", "del", "10.244.3.0/24"],
      ["ip", "-6", "route", "del", "fd00:10:244:2::/64"],
      ["bridge", "fdb", "del", "0a:58:00:00:00:03", "dev", "skein.vxlan", "dst", "192.168.60.13"],
      ["ip", "neigh", "del", "10.244.3.0", "dev", "skein.vxlan"],
      ["ip", "route", "del", "10.244.2.0/24"],
      ["ip", "addr", "del", "10.244.1.0/32", "dev", "skein.vxlan"],
      ["ip", "neigh", "replace", "10.244.3.0", "lladdr", "0a:58:00:00:00:99", "dev", "skein.vxlan", "nud", "permanent"],
      ["bridge", "fdb", "replace", "0a:58:00:00:00:03", "dev", "skein.vxlan", "dst", "192.168.50.99", "self", "permanent"],
      ["ip", "link", "set", "skein.vxlan", "down"],
      ["ip", "link", "del", "skein.vxlan"],
    ];
    for (const argv of breaks) {
      const t0 = performance.now();
      const repairs = ov.repairs;
      await sh("n1", ...argv);
      // restored by a repair (the kernel may be right again before a listing could see it wrong)
      await waitFor(`n1 to restore after: ${argv.join(" ")}`, async () => ov.repairs > repairs && (await same()), 2000, 20);
      logs.push({ level: "measure", obj: { argv, ms: Math.round(performance.now() - t0) }, msg: "repaired" });
    }
    expect(await lab.ping("p1", "10.244.3.10")).toBe(true);
    expect(ov.repairs).toBeGreaterThanOrEqual(breaks.length);
    if (process.env.OVDEBUG) console.log(JSON.stringify(logs.filter((l) => l.level !== "info"), null, 0));
  });

  test("a link set down and up again within one poll: what the kernel dropped unheard is back within 1 s", async () => {
    for (const x of nodes.slice(1)) open(x.name).apply(planFor(x));
    // the periodic comparison is off (open()): only the link's notifications can start one
    const ov = open("n1");
    const plan = planFor(nodes[0]!);
    ov.apply(plan);
    const want = JSON.stringify(expected(plan));
    for (const dev of ["eth0", "skein.vxlan"]) {
      const t0 = performance.now();
      // one batch: both messages are read by the same poll, the last one telling the link up as before
      await lab.exec("n1", ["ip", "-batch", "-"], { stdin: `link set ${dev} down\nlink set ${dev} up\n` });
      await sh("n1", "ip", "route", "replace", "default", "via", "192.168.50.1");
      await waitFor(`n1's overlay whole after ${dev} down and up`, async () => JSON.stringify(await kernel("n1")) === want, 1000, 20);
      logs.push({ level: "measure", obj: { dev, ms: Math.round(performance.now() - t0) }, msg: "whole after a flap" });
    }
    expect(await lab.ping("p1", "10.244.2.10")).toBe(true);
  });

  test("a route of someone else to a peer's pod CIDR is left alone; once gone, skein's comes back", async () => {
    const ov = open("n1");
    ov.apply(planFor(nodes[0]!));
    await sh("n1", "ip", "route", "replace", "10.244.3.0/24", "via", "192.168.50.1", "proto", "static");
    // the change is heard and compared: the foreign route stays, and it is logged as a conflict
    await waitFor("the conflict to be logged", () => logs.some((l) => l.msg.includes("not skein's") && (l.obj as { dst?: string }).dst === "10.244.3.0/24"), 2000, 20);
    expect(ov.check()).toEqual([]);
    expect(ov.apply(planFor(nodes[0]!)).conflicts).toEqual(["10.244.3.0/24"]);
    const r = await json<Array<{ gateway: string; protocol: string }>>("n1", "ip", "-j", "route", "show", "10.244.3.0/24");
    expect(r).toMatchObject([{ gateway: "192.168.50.1", protocol: "static" }]);
    await sh("n1", "ip", "route", "del", "10.244.3.0/24", "proto", "static");
    await waitFor("skein's route to come back", async () => (await kernel("n1")).routes.includes("10.244.3.0/24 via 10.244.3.0 dev skein.vxlan onlink"), 2000, 20);
  });

  test("a peer that leaves the plan takes its route, neighbour and FDB entry along", async () => {
    const ov = open("n1");
    const without3 = planFor(nodes[0]!, nodes.slice(0, 2));
    expect(ov.apply(without3).changes).toBe(5); // 2 routes, 2 neighbours, 1 FDB entry
    const k = await kernel("n1");
    expect(k).toEqual(expected(without3));
    expect(JSON.stringify(k)).not.toContain("0a:58:00:00:00:03");
    expect(await lab.ping("p1", "10.244.3.10", 1)).toBe(false);
    ov.apply(planFor(nodes[0]!));
    expect(await lab.ping("p1", "10.244.3.10")).toBe(true);
  });

  test("mode direct: the device goes, direct routes stay, off-link peers get no route; mode vxlan: on-link peers go over VXLAN", async () => {
    const ov = open("n2");
    const direct = planOverlay(selfOf(nodes[1]!, { mode: "direct" }), [peerOf(nodes[0]!), peerOf(nodes[2]!)]);
    ov.apply(direct);
    expect(await kernel("n2")).toEqual({ routes: ["10.244.1.0/24 via 192.168.50.11 dev eth0"], link: undefined, neighbours: [], fdb: [], addrs: [] });
    expect(await lab.ping("p2", "10.244.1.10")).toBe(true);
    // and mode vxlan: the direct route is replaced in place by one over VXLAN
    const vxlan = planOverlay(selfOf(nodes[1]!, { mode: "vxlan" }), [peerOf(nodes[0]!), peerOf(nodes[2]!)]);
    const before = await txPackets("n1").catch(() => 0);
    expect(ov.apply(vxlan).failed).toEqual([]);
    expect(await kernel("n2")).toEqual(expected(vxlan));
    expect((await kernel("n2")).routes).toContain("10.244.1.0/24 via 10.244.1.0 dev skein.vxlan onlink");
    expect(await lab.ping("p2", "10.244.1.10")).toBe(true);
    expect(await txPackets("n2")).toBeGreaterThan(0);
    expect(await txPackets("n1")).toBe(before); // n1 still answers directly
    ov.apply(planFor(nodes[1]!));
    expect(await kernel("n2")).toEqual(expected(planFor(nodes[1]!)));
  });

  test("a skein.vxlan that is not as planned (VNI, port, learning) is replaced", async () => {
    const ov = open("n2");
    ov.close();
    await sh("n2", "ip", "link", "del", "skein.vxlan");
    await sh("n2", "ip", "link", "add", "skein.vxlan", "type", "vxlan", "id", "7", "dstport", "8472", "local", "192.168.50.12", "dev", "eth0");
    const fresh = open("n2");
    const r = fresh.apply(planFor(nodes[1]!));
    expect(r.failed).toEqual([]);
    expect(await kernel("n2")).toEqual(expected(planFor(nodes[1]!)));
    expect(await lab.ping("p2", "10.244.3.10")).toBe(true);
  });

  test("a skein.vxlan that is not a VXLAN device is someone else's: left alone, direct routes still made; once it goes, skein's is made", async () => {
    overlays.get("n2")?.close();
    await sh("n2", "ip", "link", "del", "skein.vxlan");
    await sh("n2", "ip", "link", "add", "skein.vxlan", "type", "bridge");
    const bridge = async () => (await json<Array<{ ifindex: number; linkinfo?: { info_kind: string } }>>("n2", "ip", "-d", "-j", "link", "show", "skein.vxlan")).map((l) => `${l.ifindex} ${l.linkinfo?.info_kind}`);
    const was = await bridge();
    expect(was[0]).toEndWith(" bridge");
    const addrs = await sh("n2", "ip", "-j", "addr", "show", "dev", "skein.vxlan");
    const fdb = await sh("n2", "bridge", "fdb", "show", "dev", "skein.vxlan");
    const ov = open("n2");
    const plan = planFor(nodes[1]!);
    const warned = logs.length;
    const r = ov.apply(plan);
    expect(r.failed).toContain("skein.vxlan: the name is taken by a bridge that is not skein's (left alone)");
    expect(logs.slice(warned).filter((l) => l.level === "warn" && (l.obj as { kind?: string }).kind === "bridge")).toHaveLength(1);
    expect(await bridge()).toEqual(was);
    expect(await sh("n2", "ip", "-j", "addr", "show", "dev", "skein.vxlan")).toBe(addrs);
    expect(await sh("n2", "bridge", "fdb", "show", "dev", "skein.vxlan")).toBe(fdb);
    // the direct route is made, those over VXLAN are not
    expect((await kernel("n2")).routes).toEqual(["10.244.1.0/24 via 192.168.50.11 dev eth0"]);
    expect(await lab.ping("p2", "10.244.1.10")).toBe(true);
    // cleanup and its dry run leave it too, and say so
    expect(ov.describeCleanup().map(said)).toEqual(["remove route 10.244.1.0/24", "leave link skein.vxlan: it is a bridge, not a VXLAN device: not skein's"]);
    const warned2 = logs.length;
    const cleaner = Overlay.open({ log, netnsPath: lab.path("n2"), watch: false });
    try {
      expect(cleaner.cleanup().map(said)).toEqual(["remove route 10.244.1.0/24"]);
      expect(logs.slice(warned2).map((l) => l.msg)).toEqual(["link skein.vxlan left alone: it is a bridge, not a VXLAN device: not skein's"]);
    } finally {
      cleaner.close();
    }
    expect(await bridge()).toEqual(was);
    // a plan without VXLAN leaves it as well
    ov.apply(planOverlay(selfOf(nodes[1]!, { mode: "direct" }), [peerOf(nodes[0]!), peerOf(nodes[2]!)]));
    expect(await bridge()).toEqual(was);
    // the comparisons go on trying; once the bridge is gone, skein's device is made
    expect(ov.apply(plan).failed.length).toBeGreaterThan(0);
    await sh("n2", "ip", "link", "del", "skein.vxlan");
    await waitFor("skein's device and the plan in place", async () => JSON.stringify(await kernel("n2")) === JSON.stringify(expected(plan)), 2000, 20);
    expect(await lab.ping("p2", "10.244.3.10")).toBe(true);
  });

  test("the periodic comparison puts back what no notification was read for", async () => {
    overlays.get("n2")?.close();
    // notifications are not read within the test: only the periodic comparison can repair
    const ov = Overlay.open({ log, netnsPath: lab.path("n2"), pollMs: 600_000, checkEveryMs: 200 });
    overlays.set("n2", ov);
    ov.apply(planFor(nodes[1]!));
    await sh("n2", "ip", "route", "del", "10.244.3.0/24");
    await waitFor("the route to come back", async () => (await kernel("n2")).routes.includes("10.244.3.0/24 via 10.244.3.0 dev skein.vxlan onlink"), 2000, 20);
  });

  test("what could not be written is retried: an underlay link that appears after the apply", async () => {
    lab.host("late");
    const ov = open("late");
    const x: Node = { name: "n9", n: 9, underlay: "192.168.80.9", subnet: "192.168.80.0/24", mac: "0a:58:00:00:00:09" };
    const plan = planFor(x, [...nodes, x]);
    const r = ov.apply(plan);
    expect(r.failed).toContain("underlay link eth0 does not exist");
    await sh("late", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1");
    await sh("late", "ip", "addr", "add", "192.168.80.9/24", "dev", "eth0");
    await sh("late", "ip", "link", "set", "eth0", "up");
    await waitFor("the plan to be in place", async () => JSON.stringify(await kernel("late")) === JSON.stringify(expected(plan)), 3000, 50);
  });

  test("cleanup removes the device and every route of skein's, and nothing else", async () => {
    const ov = open("n3");
    ov.apply(planFor(nodes[2]!));
    await sh("n3", "ip", "route", "add", "10.99.0.0/16", "via", "192.168.60.1", "proto", "static");
    const held = await kernel("n3");
    const listed = ov.describeCleanup();
    // each route, the device, and what goes with it: its addresses, FDB and neighbour entries
    const names = (kind: string, along?: boolean) => listed.filter((i) => i.kind === kind && i.action === "remove" && !!i.with === !!along).map((i) => i.name).sort();
    expect(names("route")).toEqual(held.routes.map((r) => r.split(" ")[0]!).sort());
    expect(names("route")).toHaveLength(4);
    expect(names("link")).toEqual(["skein.vxlan"]);
    expect(names("address", true)).toEqual(held.addrs);
    expect(names("fdb", true)).toEqual(held.fdb.map((f) => f.replace(/ (\S+) permanent$/, " dst $1")).sort());
    expect(names("neighbour", true)).toEqual(held.neighbours.map((n) => n.replace(" ", " lladdr ")).sort());
    expect(ov.cleanup()).toEqual(listed);
    expect(await kernel("n3")).toEqual({ routes: [], link: undefined, neighbours: [], fdb: [], addrs: [] });
    expect(await sh("n3", "ip", "route", "show", "10.99.0.0/16")).toContain("via 192.168.60.1");
    expect(ov.describeCleanup()).toEqual([]);
    // and nothing comes back: cleanup stops the repair
    expect(ov.check()).toEqual([]);
  });
});

describe("overlay at scale", () => {
  test("1,000 VXLAN peers: applied, compared and repaired in bounded time (figures printed)", async () => {
    lab.host("big");
    lab.host("bigp");
    await sh("big", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", lab.name("bigp"));
    await sh("big", "ip", "addr", "add", "192.168.70.2/24", "dev", "eth0");
    await sh("big", "ip", "link", "set", "eth0", "up");
    const me: SelfInfo = { name: "big", podCIDRs: ["10.31.0.0/24"], underlay: "192.168.70.2", underlaySubnet: "192.168.70.0/24", underlayDev: "eth0", underlayMtu: 1500, mode: "auto", vtepMac: "0a:58:00:00:ff:ff" };
    const peers: OverlayPeer[] = Array.from({ length: 1000 }, (_, i) => ({
      name: `peer-${String(i).padStart(4, "0")}`,
      podCIDRs: [`10.${32 + (i >> 8)}.${i & 255}.0/24`],
      underlay: `10.1.${i >> 7}.${(i & 127) + 1}`,
      vtepMac: `0a:58:01:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
    }));
    const plan = planOverlay(me, peers);
    expect(plan.routes).toHaveLength(1000);
    const ov = open("big");
    const first = ov.apply(plan);
    expect(first.failed).toEqual([]);
    expect(first.changes).toBe(1 + 1 + 1 + 3000); // the device, up, its address; routes, neighbours, FDB entries
    const again = ov.apply(plan);
    expect(again.changes).toBe(0);
    const held = await kernel("big");
    expect([held.routes.length, held.neighbours.length, held.fdb.length]).toEqual([1000, 1000, 1000]);

    // a route deleted behind the overlay's back, from this process, so the time counts the
    // overlay alone (its poll, the comparison, the write)
    const nl = Netlink.open(lab.path("big"));
    let repairMs: number;
    try {
      const before = ov.repairs;
      const t0 = performance.now();
      expect(deleteRoute(nl, "10.33.1.0/24", RTPROT_SKEIN)).toBe(true);
      await waitFor("the route to come back", () => ov.repairs > before, 2000, 2);
      repairMs = performance.now() - t0;
    } finally {
      nl.close();
    }
    expect((await kernel("big")).routes).toContain("10.33.1.0/24 via 10.33.1.0 dev skein.vxlan onlink");
    const t1 = performance.now();
    ov.cleanup();
    const cleanupMs = performance.now() - t1;
    console.log(`1,000 VXLAN peers: apply ${first.ms.toFixed(0)} ms (${first.changes} changes), apply again ${again.ms.toFixed(1)} ms, repair of a deleted route ${repairMs.toFixed(0)} ms, cleanup ${cleanupMs.toFixed(0)} ms`);
    expect(first.ms).toBeLessThan(5000);
    expect(repairMs).toBeLessThan(2000);
  });
});
