import { describe, expect, test } from "bun:test";
import { planOverlay, type OverlayPeer, type SelfInfo } from "./plan.ts";

const self: SelfInfo = {
  name: "n1",
  podCIDRs: ["10.244.1.0/24"],
  underlay: "192.168.50.11",
  underlaySubnet: "192.168.50.0/24",
  underlayDev: "eth0",
  underlayMtu: 1500,
  mode: "auto",
  vtepMac: "0a:00:00:00:00:01",
};

const peer = (n: number, o: Partial<OverlayPeer> = {}): OverlayPeer => ({
  name: `n${n}`,
  podCIDRs: [`10.244.${n}.0/24`],
  underlay: `192.168.50.${10 + n}`,
  vtepMac: `0a:00:00:00:00:${n.toString(16).padStart(2, "0")}`,
  ...o,
});

const pathOf = (plan: ReturnType<typeof planOverlay>, name: string) => plan.paths.filter((p) => p.peer === name);

describe("planOverlay", () => {
  test("a peer on the underlay subnet is routed directly, with no VXLAN entries", () => {
    const plan = planOverlay(self, [peer(2)]);
    expect(plan.routes).toEqual([{ dst: "10.244.2.0/24", via: "192.168.50.12", dev: "eth0", onlink: false }]);
    expect(plan.neighbours).toEqual([]);
    expect(plan.fdb).toEqual([]);
    expect(pathOf(plan, "n2")).toMatchObject([{ how: "direct", endpoint: "192.168.50.12", cidr: "10.244.2.0/24" }]);
  });

  test("a peer on another subnet goes over VXLAN to its underlay address", () => {
    const plan = planOverlay(self, [peer(3, { underlay: "192.168.60.13" })]);
    expect(plan.routes).toEqual([{ dst: "10.244.3.0/24", via: "10.244.3.0", dev: "skein.vxlan", onlink: true }]);
    expect(plan.neighbours).toEqual([{ dev: "skein.vxlan", ip: "10.244.3.0", mac: "0a:00:00:00:00:03" }]);
    expect(plan.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:03", dst: "192.168.60.13" }]);
    expect(pathOf(plan, "n3")).toMatchObject([{ how: "vxlan", endpoint: "192.168.60.13" }]);
  });

  test("a peer of another site with a public address is reached through that address, even on the same subnet", () => {
    const plan = planOverlay(self, [peer(4, { underlay: "10.99.0.14", public: "192.168.50.100" }), peer(2, { public: "192.168.50.2" })]);
    expect(plan.fdb).toEqual([
      { dev: "skein.vxlan", mac: "0a:00:00:00:00:02", dst: "192.168.50.2" },
      { dev: "skein.vxlan", mac: "0a:00:00:00:00:04", dst: "192.168.50.100" },
    ]);
    expect(plan.paths.map((p) => p.how)).toEqual(["vxlan", "vxlan"]);
  });

  test("two nodes with one public address are one site: private addresses, direct when on-link", () => {
    const me: SelfInfo = { ...self, name: "n4", podCIDRs: ["10.244.4.0/24"], underlay: "10.99.0.14", underlaySubnet: "10.99.0.0/24", public: "192.168.50.100", vtepMac: "0a:00:00:00:00:04" };
    const plan = planOverlay(me, [peer(5, { underlay: "10.99.0.15", public: "192.168.50.100" }), peer(1, { underlay: "192.168.50.11" })]);
    expect(plan.routes).toEqual([
      { dst: "10.244.1.0/24", via: "10.244.1.0", dev: "skein.vxlan", onlink: true },
      { dst: "10.244.5.0/24", via: "10.99.0.15", dev: "eth0", onlink: false },
    ]);
    expect(plan.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:01", dst: "192.168.50.11" }]);
    // the same pair off-link (another private subnet behind the same NAT): VXLAN to the private address
    const far = planOverlay(me, [peer(5, { underlay: "10.98.0.15", public: "192.168.50.100" })]);
    expect(far.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:05", dst: "10.98.0.15" }]);
  });

  test("an explicit site label makes a pair one site; different labels do not", () => {
    const me = { ...self, site: "dc1" };
    const same = planOverlay(me, [peer(2, { public: "203.0.113.2", site: "dc1" })]);
    expect(same.routes[0]).toEqual({ dst: "10.244.2.0/24", via: "192.168.50.12", dev: "eth0", onlink: false });
    const other = planOverlay(me, [peer(2, { public: "203.0.113.2", site: "dc2" })]);
    expect(other.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:02", dst: "203.0.113.2" }]);
    // an empty label is no site
    const empty = planOverlay({ ...self, site: "" }, [peer(2, { public: "203.0.113.2", site: "" })]);
    expect(empty.fdb[0]?.dst).toBe("203.0.113.2");
  });

  test("mode vxlan puts on-link peers on VXLAN too", () => {
    const plan = planOverlay({ ...self, mode: "vxlan" }, [peer(2)]);
    expect(plan.routes).toEqual([{ dst: "10.244.2.0/24", via: "10.244.2.0", dev: "skein.vxlan", onlink: true }]);
    expect(plan.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:02", dst: "192.168.50.12" }]);
    expect(plan.paths[0]).toMatchObject({ how: "vxlan", why: "mode vxlan" });
  });

  test("mode direct: no device, no route to a peer off-link, and the path says why", () => {
    const plan = planOverlay({ ...self, mode: "direct" }, [peer(2), peer(3, { underlay: "192.168.60.13" })]);
    expect(plan.vxlan).toBeUndefined();
    expect(plan.podMtu).toBe(1500);
    expect(plan.routes).toEqual([{ dst: "10.244.2.0/24", via: "192.168.50.12", dev: "eth0", onlink: false }]);
    expect(pathOf(plan, "n3")).toEqual([{ peer: "n3", cidr: "10.244.3.0/24", how: "none", why: "mode direct: 192.168.60.13 is not on 192.168.50.0/24" }]);
  });

  test("IPv6 pod CIDRs go over VXLAN on an IPv4 underlay, IPv4 ones of the same peer directly", () => {
    const me = { ...self, podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] };
    const plan = planOverlay(me, [peer(2, { podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"] })]);
    expect(plan.vxlan?.addrs).toEqual(["10.244.1.0/32", "fd00:10:244:1::/128"]);
    expect(plan.routes).toEqual([
      { dst: "10.244.2.0/24", via: "192.168.50.12", dev: "eth0", onlink: false },
      { dst: "fd00:10:244:2::/64", via: "fd00:10:244:2::", dev: "skein.vxlan", onlink: true },
    ]);
    expect(plan.neighbours).toEqual([{ dev: "skein.vxlan", ip: "fd00:10:244:2::", mac: "0a:00:00:00:00:02" }]);
    expect(plan.fdb).toEqual([{ dev: "skein.vxlan", mac: "0a:00:00:00:00:02", dst: "192.168.50.12" }]);
    // in direct mode the IPv6 one has no way
    const direct = planOverlay({ ...me, mode: "direct" }, [peer(2, { podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"] })]);
    expect(direct.paths.map((p) => p.how)).toEqual(["direct", "none"]);
  });

  test("podMtu and the device leave room for the VXLAN header", () => {
    const plan = planOverlay({ ...self, underlayMtu: 9000 }, []);
    expect(plan.podMtu).toBe(8950);
    expect(plan.vxlan).toEqual({ name: "skein.vxlan", vni: 1, port: 4789, local: "192.168.50.11", dev: "eth0", mtu: 8950, mac: "0a:00:00:00:00:01", addrs: ["10.244.1.0/32"] });
  });

  test("deterministic: the order of the peers given does not matter", () => {
    const peers = [peer(5, { underlay: "192.168.60.15" }), peer(2), peer(3, { underlay: "192.168.60.13" }), peer(4)];
    const a = planOverlay(self, peers);
    const b = planOverlay(self, [...peers].reverse());
    expect(b).toEqual(a);
    expect(a.paths.map((p) => p.peer)).toEqual(["n2", "n3", "n4", "n5"]);
  });

  test("claims that would hurt others get no route: overlapping CIDRs, own CIDR, a taken MAC, bad addresses", () => {
    const plan = planOverlay(self, [
      peer(2),
      peer(3, { podCIDRs: ["10.244.2.128/25"], underlay: "192.168.60.13" }), // inside n2's
      peer(6, { podCIDRs: ["10.244.1.0/24"] }), // this node's
      peer(7, { underlay: "192.168.60.17", vtepMac: "0a:00:00:00:00:01" }), // this node's MAC
      peer(8, { underlay: "192.168.60.18", vtepMac: "01:00:00:00:00:08" }), // multicast
      peer(9, { underlay: "not-an-ip" }),
      peer(10, { underlay: "fd00::10" }), // IPv6 endpoint, IPv4 underlay
      peer(11, { podCIDRs: ["10.244.11.1/24"] }), // host bits
    ]);
    // n2 and n3 claim overlapping CIDRs: which one owns them is not known here, so neither is routed
    expect(plan.routes).toEqual([]);
    expect(plan.fdb).toEqual([]);
    const whys = Object.fromEntries(plan.paths.filter((p) => p.how === "none").map((p) => [p.peer, p.why]));
    expect(whys.n2).toBe("pod CIDR 10.244.2.0/24 overlaps 10.244.2.128/25 of n3: neither is routed");
    expect(whys.n3).toBe("pod CIDR 10.244.2.128/25 overlaps 10.244.2.0/24 of n2: neither is routed");
    expect(whys.n6).toContain("overlaps 10.244.1.0/24 of this node");
    expect(whys.n7).toContain("already this node");
    expect(whys.n8).toContain("multicast");
    expect(whys.n9).toContain("not an IP address");
    expect(whys.n10).toContain("IPv6");
    expect(whys.n11).toContain("host bits");
  });

  test("a pod CIDR that would take what the node must reach gets no route: outside the pod network, in the Service range, over the underlay subnet, holding a node's or the API server's address", () => {
    const guarded = { ...self, clusterCIDRs: ["10.244.0.0/16"], serviceCIDRs: ["10.96.0.0/16"], protect: ["192.168.70.5"] };
    const plan = planOverlay(guarded, [
      peer(2),
      peer(3, { podCIDRs: ["10.96.0.0/24"], underlay: "192.168.60.13" }), // the Service range (and outside the pod network)
      peer(4, { podCIDRs: ["10.245.4.0/24"], underlay: "192.168.60.14" }), // outside the pod network
      peer(5, { podCIDRs: ["192.168.50.0/25"], underlay: "192.168.60.15" }), // this node's underlay subnet
      peer(6, { podCIDRs: ["192.168.70.0/24"], underlay: "192.168.60.16" }), // the API server
      peer(7, { podCIDRs: ["192.168.60.0/24"], underlay: "192.168.61.17" }), // n3..n6's underlay addresses
      peer(8, { podCIDRs: ["10.244.8.0/24", "fd00:8::/64"], underlay: "192.168.60.18" }), // IPv6: no IPv6 pod network given, not checked
    ]);
    const whys = Object.fromEntries(plan.paths.filter((p) => p.how === "none").map((p) => [`${p.peer} ${p.cidr}`, p.why]));
    expect(whys).toEqual({
      "n3 10.96.0.0/24": "pod CIDR 10.96.0.0/24 is outside the pod network 10.244.0.0/16",
      "n4 10.245.4.0/24": "pod CIDR 10.245.4.0/24 is outside the pod network 10.244.0.0/16",
      "n5 192.168.50.0/25": "pod CIDR 192.168.50.0/25 is outside the pod network 10.244.0.0/16",
      "n6 192.168.70.0/24": "pod CIDR 192.168.70.0/24 is outside the pod network 10.244.0.0/16",
      "n7 192.168.60.0/24": "pod CIDR 192.168.60.0/24 is outside the pod network 10.244.0.0/16",
    });
    expect(plan.routes.map((r) => r.dst)).toEqual(["10.244.2.0/24", "10.244.8.0/24", "fd00:8::/64"]);
    // without --cluster-cidr the other guards still hold
    const open = planOverlay({ ...guarded, clusterCIDRs: [] }, [
      peer(3, { podCIDRs: ["10.96.0.0/24"], underlay: "192.168.60.13" }),
      peer(5, { podCIDRs: ["192.168.50.0/25"], underlay: "192.168.60.15" }),
      peer(6, { podCIDRs: ["192.168.70.0/24"], underlay: "192.168.60.16" }),
      peer(7, { podCIDRs: ["192.168.60.0/24"], underlay: "192.168.61.17" }),
      peer(9, { podCIDRs: ["203.0.113.0/24"], underlay: "192.168.60.19", public: "203.0.113.9" }), // its own public address
    ]);
    expect(Object.fromEntries(open.paths.map((p) => [p.peer, p.why]))).toEqual({
      n3: "pod CIDR 10.96.0.0/24 overlaps the Service range 10.96.0.0/16",
      n5: "pod CIDR 192.168.50.0/25 overlaps this node's underlay subnet 192.168.50.0/24",
      n6: "pod CIDR 192.168.70.0/24 holds 192.168.70.5, an address this node must reach (API server, NATS)",
      n7: "pod CIDR 192.168.60.0/24 holds 192.168.60.13, n3's address",
      n9: "pod CIDR 203.0.113.0/24 holds 203.0.113.9, n9's address",
    });
    expect(open.routes).toEqual([]);
  });

  test("a peer listed twice or named like this node is left out", () => {
    const plan = planOverlay(self, [peer(2), peer(2, { underlay: "192.168.50.99" }), { ...peer(9), name: "n1" }]);
    expect(plan.routes).toHaveLength(1);
    expect(plan.paths.filter((p) => p.how === "none").map((p) => p.why)).toEqual(["this node itself", "a second peer of this name"]);
  });

  test("this node's own facts are checked", () => {
    expect(() => planOverlay({ ...self, underlaySubnet: "192.168.60.0/24" }, [])).toThrow("not in the underlay subnet");
    expect(() => planOverlay({ ...self, vtepMac: "AA:00:00:00:00:01" }, [])).toThrow("lower-case");
  });
});
