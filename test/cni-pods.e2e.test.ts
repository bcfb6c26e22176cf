// Two pods on one node through skein's CNI plugin, driven the way a container runtime does.
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { DiskStore } from "../agent/ipam/disk-store.ts";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { hostLinks, pluginDir, runPlugin, useLab, useTempDir } from "./harness/index.ts";

const lab = useLab("pods");
const tmp = useTempDir("pods");
const NODE_IP = "198.18.0.1";
const OUTSIDE_IP = "198.18.0.2";

const conflist = (version: string, name = "podnet"): Conflist => ({
  cniVersion: version,
  name,
  plugins: [{ type: "skein", podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"], clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"], dataDir: `${tmp}/ipam` }],
});
let cni: CniRuntime;
const att = (pod: string) => ({ containerId: `ctr-${pod}`, netns: lab.path(pod), ifname: "eth0" });

beforeAll(() => {
  lab.host("node");
  lab.host("outside");
  lab.wire({ ns: "node", addr: `${NODE_IP}/24` }, { ns: "outside", addr: `${OUTSIDE_IP}/24` });
  cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
});

describe("two pods on one node", () => {
  const list = conflist("1.1.0");
  const ip: Record<string, string> = {};
  const ip6: Record<string, string> = {};

  beforeAll(async () => {
    for (const p of ["a", "b"]) {
      lab.host(p);
      const r = (await cni.add(list, att(p))) as { ips: Array<{ address: string }>; interfaces: Array<{ name: string; sandbox?: string }> };
      ip[p] = r.ips.find((i) => !i.address.includes(":"))!.address.split("/")[0]!;
      ip6[p] = r.ips.find((i) => i.address.includes(":"))!.address.split("/")[0]!;
      await lab.serve(p, { name: `pod-${p}`, tcp: 8080, udp: 8080 });
    }
    await lab.serve("outside", { name: "outside", tcp: 8080, udp: 8080 });
  });

  test("addresses come from the pod CIDRs, distinct, dual-stack", () => {
    expect(ip.a).toMatch(/^10\.244\.1\.\d+$/);
    expect(ip.b).toMatch(/^10\.244\.1\.\d+$/);
    expect(ip.a).not.toBe(ip.b);
    expect(ip6.a).toStartWith("fd00:10:244:1::");
  });

  test("pods ping each other and the node", async () => {
    expect(await lab.ping("a", ip.b!)).toBe(true);
    expect(await lab.ping("b", ip.a!)).toBe(true);
    expect(await lab.ping("a", NODE_IP)).toBe(true);
    expect(await lab.ping("a", ip6.b!)).toBe(true);
  });

  test("pods reach each other's TCP and UDP servers, and see the real source", async () => {
    for (const proto of ["tcp", "udp"] as const) {
      const r = await lab.connect("a", proto, ip.b!, 8080);
      expect(r.error).toBe("");
      expect(r.answer).toBe(`pod-b ${ip.a}`);
      const r6 = await lab.connect("b", proto, ip6.a!, 8080);
      expect(r6.answer).toBe(`pod-a ${ip6.b}`);
    }
  });

  test("the node reaches a pod over TCP", async () => {
    const r = await lab.connect("node", "tcp", ip.a!, 8080);
    expect(r.answer).toBe(`pod-a ${NODE_IP}`);
  });

  test("traffic leaving the cluster CIDR is masqueraded to the node's address", async () => {
    for (const proto of ["tcp", "udp"] as const) {
      const r = await lab.connect("a", proto, OUTSIDE_IP, 8080);
      expect(r.answer).toBe(`outside ${NODE_IP}`);
    }
  });

  test("CHECK passes on what ADD built", async () => {
    await cni.check(list, att("a"));
  });

  test("STATUS reports the plugin ready", () => {
    const r = runPlugin({ command: "STATUS", conf: { ...list.plugins[0], cniVersion: "1.1.0", name: list.name }, netnsOfPlugin: lab.path("node") });
    expect(r.exitCode).toBe(0);
  });

  test("a deleted masquerade table fails CHECK and the next ADD restores it", async () => {
    await lab.exec("node", ["nft", "delete", "table", "inet", "skein_cni"]);
    const err = await cni.check(list, att("a")).catch((e: Error) => e);
    expect((err as Error).message).toContain("masquerade table inet skein_cni is missing");
    lab.host("c");
    await cni.add(list, att("c"));
    await cni.check(list, att("a"));
    expect((await lab.connect("a", "tcp", OUTSIDE_IP, 8080)).answer).toBe(`outside ${NODE_IP}`);
    await cni.del(list, att("c"));
  });

  test("CHECK fails once the pod's address is removed by hand", async () => {
    await lab.exec("b", ["ip", "addr", "del", `${ip.b}/32`, "dev", "eth0"]);
    const err = await cni.check(list, att("b")).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`lacks address ${ip.b}/32`);
  });

  test("DEL removes the veth, the route and the allocation, and is idempotent", async () => {
    for (const p of ["a", "b"]) await cni.del(list, att(p));
    expect(hostLinks(lab, "node")).toEqual([]);
    const routes = (await lab.exec("node", ["ip", "route", "show"])).stdout;
    expect(routes).not.toContain(ip.a!);
    expect(routes).not.toContain(ip.b!);
    expect(Object.keys(new DiskStore(`${tmp}/ipam`, list.name).read().allocations)).toEqual([]);
    expect((await lab.exec("a", ["ip", "link", "show", "eth0"], { allowFail: true })).exitCode).not.toBe(0);
    await cni.del(list, att("a")); // again: nothing left, still success
  });

  test("DEL succeeds when the pod's namespace is already gone", async () => {
    lab.host("gone");
    await cni.add(list, att("gone"));
    const { deleteNetns } = await import("../agent/sys/netns.ts");
    deleteNetns(lab.name("gone"));
    expect(existsSync(lab.path("gone"))).toBe(false);
    await cni.del(list, att("gone"));
    expect(Object.keys(new DiskStore(`${tmp}/ipam`, list.name).read().allocations)).toEqual([]);
    expect(hostLinks(lab, "node")).toEqual([]);
  });
});

describe("every supported spec version", () => {
  for (const version of ["0.4.0", "1.0.0", "1.1.0"]) {
    test(`ADD, CHECK, DEL speak ${version}`, async () => {
      const list = conflist(version, `v${version.replaceAll(".", "")}`);
      const pod = `ver${version.replaceAll(".", "")}`;
      lab.host(pod);
      const r = (await cni.add(list, att(pod))) as { cniVersion: string; ips: Array<Record<string, unknown>>; interfaces: Array<Record<string, unknown>> };
      expect(r.cniVersion).toBe(version);
      expect(r.ips[0]!.interface).toBe(1);
      expect(r.interfaces[1]!.sandbox).toBe(lab.path(pod));
      if (version === "0.4.0") expect(r.ips[0]!.version).toBe("4");
      else expect(r.ips[0]!.version).toBeUndefined();
      await cni.check(list, att(pod));
      expect(await lab.ping(pod, NODE_IP)).toBe(true);
      await cni.del(list, att(pod));
      expect(hostLinks(lab, "node")).toEqual([]);
    });
  }
});

describe("the node file", () => {
  test("without podCIDRs in the config, ADD takes them from the node file the agent writes", async () => {
    const { writeNodeFile } = await import("../agent/ipam/node-file.ts");
    writeNodeFile(`${tmp}/node.json`, { nodeName: "node", podCIDRs: ["10.244.9.0/24"], clusterCIDRs: ["10.244.0.0/16"] });
    const list: Conflist = { cniVersion: "1.1.0", name: "nodefile", plugins: [{ type: "skein", nodeFile: `${tmp}/node.json`, dataDir: `${tmp}/ipam` }] };
    lab.host("nf");
    const r = (await cni.add(list, att("nf"))) as { ips: Array<{ address: string }> };
    expect(r.ips.map((i) => i.address)).toEqual([expect.stringMatching(/^10\.244\.9\.\d+\/32$/)]);
    expect(await lab.ping("nf", NODE_IP)).toBe(true);
    await cni.del(list, att("nf"));
  });
});

describe("GC", () => {
  test("releases every allocation and link not among the valid attachments", async () => {
    const list = conflist("1.1.0", "gcnet");
    for (const p of ["gc1", "gc2", "gc3"]) {
      lab.host(p);
      await cni.add(list, att(p));
    }
    await cni.gc(list, [{ containerID: "ctr-gc2", ifname: "eth0" }]);
    const left = Object.values(new DiskStore(`${tmp}/ipam`, list.name).read().allocations).map((a) => a.containerId);
    expect([...new Set(left)]).toEqual(["ctr-gc2"]);
    expect(hostLinks(lab, "node")).toHaveLength(1);
    expect(await lab.ping("gc2", NODE_IP)).toBe(true);
    expect(await lab.ping("gc1", NODE_IP, 1)).toBe(false);
    await cni.del(list, att("gc2"));
  });
});

describe("the ip fallback (SKEIN_NETLINK=off)", () => {
  test("wires, checks and removes a dual-stack pod the same way", async () => {
    const viaIp = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node"), env: { SKEIN_NETLINK: "off" } });
    const list = conflist("1.1.0", "ipnet");
    lab.host("viaip");
    const r = (await viaIp.add(list, att("viaip"))) as { ips: Array<{ address: string }> };
    const [v4, v6] = r.ips.map((i) => i.address.split("/")[0]!);
    await viaIp.check(list, att("viaip"));
    await cni.check(list, att("viaip")); // the netlink build agrees on what was built
    expect(await lab.ping("viaip", NODE_IP)).toBe(true);
    expect(await lab.ping("node", v4!)).toBe(true);
    await viaIp.del(list, att("viaip"));
    expect(hostLinks(lab, "node")).toEqual([]);
  });
});
