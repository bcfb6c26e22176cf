import { describe, expect, test } from "bun:test";
import { humanLine, ipamEntry, planForeignRoutes, planHostVeths, planNamespaces, planTables, reported } from "./cleanup-plan.ts";
import { planOverlayCleanup, type KernelSnapshot } from "../overlay/cleanup.ts";
import { notOurHostVeth } from "../cni/links.ts";
import { HOST_MAC } from "../cni/plan.ts";
import { RTPROT_SKEIN } from "../sys/devices.ts";
import type { LinkMsg, RouteMsg } from "../sys/rtnl.ts";

const link = (index: number, name: string, o: Partial<LinkMsg> = {}): LinkMsg => ({ kind: "link", deleted: false, index, flags: 1, name, ...o });
const route = (dst: string, o: Partial<RouteMsg> = {}): RouteMsg => ({ kind: "route", deleted: false, family: dst.includes(":") ? 6 : 4, dst, table: 254, protocol: 3, scope: 0, type: 1, flags: 0, ...o });
const snap = (o: Partial<KernelSnapshot>): KernelSnapshot => ({ links: [], routes: [], addresses: [], neighbours: [], ...o });
const line = (i: { action: string; kind: string; name: string; with?: string }) => `${i.action} ${i.kind} ${i.name}${i.with ? ` with ${i.with}` : ""}`;

describe("tables", () => {
  test("skein's by their marks: the agent's marks comment, the CNI's fingerprint, the reference's dormant flag", () => {
    const items = planTables([
      { name: "skein", flags: 0, comment: "skein marks: packet 0x0000ffff conntrack 0xffff0000" },
      { name: "skein_cni", flags: 0, comment: "skein-masq-0123456789abcdef" },
      { name: "skein_ref", flags: 1 },
      { name: "filter", flags: 0, comment: "skein marks: packet 0x0000ffff conntrack 0xffff0000" },
    ]);
    expect(items.map(line)).toEqual(["remove table inet skein", "remove table inet skein_cni", "remove table inet skein_ref"]);
  });

  test("a table with skein's name but not its mark is left alone, saying why; others' tables are not even listed", () => {
    const items = planTables([
      { name: "skein", flags: 0 },
      { name: "skein_cni", flags: 0, comment: "mine" },
      { name: "skein_ref", flags: 0 },
      { name: "keepme", flags: 0 },
    ]);
    expect(items.map((i) => `${i.action} ${i.name}`)).toEqual(["leave inet skein", "leave inet skein_cni", "leave inet skein_ref"]);
    expect(items[0]!.reason).toContain("a comment recording skein's mark ranges");
    expect(items[1]!.reason).toContain('"mine"');
    expect(items[2]!.reason).toContain("dormant");
  });

  test("a name such as __proto__ is nobody's table of skein's", () => {
    expect(planTables([{ name: "__proto__", flags: 1 }, { name: "constructor", flags: 0 }])).toEqual([]);
  });
});

describe("host veths", () => {
  const ours = { name: "sk0123456789abc", type: "veth", mac: HOST_MAC, netnsid: 0 };
  test("the CNI's: name, veth, its fixed address and the peer in another namespace, all four", () => {
    expect(notOurHostVeth(ours)).toBeUndefined();
    expect(notOurHostVeth({ ...ours, name: "sk0123456789abcd" })).toContain("name");
    expect(notOurHostVeth({ ...ours, name: "eth0" })).toContain("name");
    expect(notOurHostVeth({ ...ours, type: "bridge" })).toBe("it is a bridge, not a veth");
    expect(notOurHostVeth({ ...ours, mac: "02:00:00:00:00:01" })).toBe(`its address is 02:00:00:00:00:01, not ${HOST_MAC}`);
    expect(notOurHostVeth({ ...ours, netnsid: undefined })).toBe("its peer is in this namespace, not in a pod's");
  });

  test("each removed with its pod routes (not the IPv6 link-local one); a look-alike left alone; other links not listed", () => {
    const s = snap({
      links: [link(1, "lo"), link(2, "eth0", { type: "veth" }), link(7, "sk0123456789abc", { type: "veth", mac: HOST_MAC, netnsid: 0 }), link(8, "skfedcba987654a", { type: "veth", mac: HOST_MAC })],
      routes: [route("10.244.1.5/32", { oif: 7 }), route("fd00:10:244:1::5/128", { oif: 7 }), route("fe80::/64", { oif: 7, protocol: 2 }), route("10.244.1.6/32", { oif: 8 }), route("0.0.0.0/0", { oif: 2 })],
    });
    const items = planHostVeths(s);
    expect(items.map(line)).toEqual([
      "remove link sk0123456789abc",
      "remove route 10.244.1.5/32 with link sk0123456789abc",
      "remove route fd00:10:244:1::5/128 with link sk0123456789abc",
      "leave link skfedcba987654a",
    ]);
    expect(items[3]!.reason).toBe("its peer is in this namespace, not in a pod's: not a pod's host veth of skein's");
  });
});

describe("overlay", () => {
  test("routes of skein's protocol in any table, the VXLAN device with its addresses, FDB entries and permanent neighbours", () => {
    const s = snap({
      links: [link(2, "eth0"), link(5, "skein.vxlan", { type: "vxlan" })],
      routes: [route("10.244.2.0/24", { protocol: RTPROT_SKEIN, oif: 2 }), route("10.244.3.0/24", { protocol: RTPROT_SKEIN, oif: 5 }), route("10.244.9.0/24", { protocol: RTPROT_SKEIN, table: 100 }), route("192.168.50.0/24", { protocol: 2, oif: 2 })],
      addresses: [
        { kind: "addr", deleted: false, family: 4, index: 5, prefix: 32, address: "10.244.1.0" },
        { kind: "addr", deleted: false, family: 6, index: 5, prefix: 64, address: "fe80::1" },
        { kind: "addr", deleted: false, family: 4, index: 2, prefix: 24, address: "192.168.50.11" },
      ],
      neighbours: [
        { kind: "neigh", deleted: false, family: "bridge", index: 5, state: 0x80, flags: 2, ip: "192.168.60.13", mac: "0a:58:00:00:00:03" },
        { kind: "neigh", deleted: false, family: 4, index: 5, state: 0x80, flags: 0, ip: "10.244.3.0", mac: "0a:58:00:00:00:03" },
        { kind: "neigh", deleted: false, family: 6, index: 5, state: 0x40, flags: 0, ip: "ff02::16", mac: "33:33:00:00:00:16" },
        { kind: "neigh", deleted: false, family: 4, index: 2, state: 0x80, flags: 0, ip: "192.168.50.1", mac: "02:00:00:00:00:01" },
      ],
    });
    expect(planOverlayCleanup(s).map(line)).toEqual([
      "remove route 10.244.2.0/24",
      "remove route 10.244.3.0/24",
      "remove route 10.244.9.0/24 table 100",
      "remove link skein.vxlan",
      "remove address 10.244.1.0/32 with link skein.vxlan",
      "remove fdb 0a:58:00:00:00:03 dst 192.168.60.13 with link skein.vxlan",
      "remove neighbour 10.244.3.0 lladdr 0a:58:00:00:00:03 with link skein.vxlan",
    ]);
  });

  test("a skein.vxlan that is not VXLAN is left alone with everything on it; skein's routes still go", () => {
    const s = snap({
      links: [link(5, "skein.vxlan", { type: "bridge" })],
      routes: [route("10.244.2.0/24", { protocol: RTPROT_SKEIN, oif: 5 })],
      neighbours: [{ kind: "neigh", deleted: false, family: "bridge", index: 5, state: 0x80, flags: 2, ip: "192.168.60.13", mac: "0a:58:00:00:00:03" }],
    });
    const items = planOverlayCleanup(s);
    expect(items.map(line)).toEqual(["remove route 10.244.2.0/24", "leave link skein.vxlan"]);
    expect(items[1]!.reason).toBe("it is a bridge, not a VXLAN device: not skein's");
  });
});

describe("foreign routes in the pod network", () => {
  test("reported as left alone: not of skein's protocol, inside a pod or cluster CIDR, not through a link removed, not the local table", () => {
    const s = snap({
      links: [link(2, "eth0"), link(7, "sk0123456789abc")],
      routes: [
        route("10.244.1.200/32", { protocol: 4, oif: 2 }),
        route("10.244.1.5/32", { oif: 7 }),
        route("10.244.2.0/24", { protocol: RTPROT_SKEIN, oif: 2 }),
        route("10.0.0.0/8", { protocol: 4, oif: 2 }),
        route("10.244.1.0/32", { table: 255, protocol: 2, type: 2, oif: 5 }),
        route("192.168.50.0/24", { protocol: 2, oif: 2 }),
        route("fd00:10:244:1::7/128", { protocol: 4, oif: 2 }),
      ],
    });
    const items = planForeignRoutes(s, ["10.244.1.0/24", "10.244.0.0/16", "fd00:10:244::/48", "not a cidr"], new Set([7]));
    expect(items.map(line)).toEqual(["leave route 10.244.1.200/32", "leave route fd00:10:244:1::7/128"]);
    expect(items[0]!.reason).toBe(`its protocol is 4, not skein's ${RTPROT_SKEIN} (10.244.1.200/32 dev eth0): not skein's`);
  });

  test("without pod CIDRs (no node file) none is reported", () => {
    expect(planForeignRoutes(snap({ routes: [route("10.244.1.200/32", { protocol: 4 })] }), [], new Set())).toEqual([]);
  });
});

describe("namespaces", () => {
  test("by prefix; the one cleanup runs in is left alone; an empty prefix selects nothing", () => {
    const items = planNamespaces(["skt-a-n1", "skt-a-n2", "skdemo-x", "other"], ["skt-", "skdemo-", ""], "skt-a-n1");
    expect(items.map((i) => `${i.action} ${i.name}`)).toEqual(["leave skt-a-n1", "remove skt-a-n2", "remove skdemo-x"]);
    expect(planNamespaces(["other"], [""], undefined)).toEqual([]);
  });
});

describe("IPAM directory entries", () => {
  test("the store (and an interrupted write's file), its lock, the per-container lock directory; anything else is other", () => {
    expect(ipamEntry("skein.cbor")).toEqual({ what: "store", network: "skein" });
    expect(ipamEntry("skein.cbor.tmp-4242")).toEqual({ what: "store", network: "skein" });
    expect(ipamEntry("skein.lock")).toEqual({ what: "lock", network: "skein" });
    expect(ipamEntry("containers")).toEqual({ what: "containers" });
    for (const n of ["skein.cbor.tmp-", "skein.cbor.tmp-0", ".cbor", "-x.cbor", "notes.txt", "skein.cbor.bak"]) expect(ipamEntry(n).what).toBe("other");
  });
});

describe("report lines", () => {
  test("human lines and JSON entries", () => {
    const item = { kind: "fdb" as const, name: "0a:58:00:00:00:03 dst 192.168.60.13", action: "remove" as const, with: "link skein.vxlan", ref: { index: 5 } };
    expect(humanLine(reported(item, "would-remove"))).toBe("would remove FDB entry 0a:58:00:00:00:03 dst 192.168.60.13 (with link skein.vxlan)");
    expect(reported(item, "removed")).toEqual({ kind: "fdb", name: "0a:58:00:00:00:03 dst 192.168.60.13", action: "removed", with: "link skein.vxlan" });
    const left = { kind: "link" as const, name: "skein.vxlan", action: "leave" as const, reason: "it is a bridge" };
    expect(humanLine(reported(left, "left-alone"))).toBe("left alone: link skein.vxlan: it is a bridge");
    expect(humanLine(reported({ kind: "table", name: "inet skein", action: "remove" }, "failed", "EPERM"))).toBe("failed to remove nftables table inet skein: EPERM");
  });
});
