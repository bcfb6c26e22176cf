import { expect, test } from "bun:test";
import { hostVethName, planAdd, podMac, renderIpBatch } from "./plan.ts";

test("host veth names are stable, short enough and distinct per interface", () => {
  const a = hostVethName("c1", "eth0");
  expect(a).toMatch(/^sk[0-9a-f]{13}$/);
  expect(hostVethName("c1", "eth0")).toBe(a);
  expect(hostVethName("c1", "net1")).not.toBe(a);
});

test("pod MACs are locally administered and follow the IPv4 address", () => {
  expect(podMac([{ ip: "10.244.1.5", family: 4 }], "c", "eth0")).toBe("0a:58:0a:f4:01:05");
  expect(podMac([{ ip: "fd00::5", family: 6 }], "c", "eth0")).toMatch(/^0a:58(:[0-9a-f]{2}){4}$/);
});

const ipLines = (ops: Parameters<typeof renderIpBatch>[0][]) => ops.map(renderIpBatch).filter((l) => l !== undefined);

test("an IPv4 pod: a pinned gateway, a /32 both ways, as ip -batch would say it", () => {
  const p = planAdd({ containerId: "c", ifname: "eth0", netnsPath: "/var/run/netns/p", mtu: 1450, addrs: [{ ip: "10.244.1.5", family: 4 }] });
  expect(p.host.some((o) => o.op === "sysctl")).toBe(false);
  expect(ipLines(p.host)).toEqual([
    `link add ${p.hostIf} mtu 1450 address ee:ee:ee:ee:ee:ee type veth peer name eth0 mtu 1450 address 0a:58:0a:f4:01:05 netns /var/run/netns/p`,
    `link set ${p.hostIf} up`,
    `route replace 10.244.1.5/32 dev ${p.hostIf} scope link`,
  ]);
  expect(ipLines(p.pod)).toEqual([
    "link set lo up",
    "link set eth0 up",
    "addr add 10.244.1.5/32 dev eth0",
    "neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent",
    "route add 169.254.1.1/32 dev eth0 scope link",
    "route add default via 169.254.1.1 dev eth0",
  ]);
});

test("a dual-stack pod: DAD off on the host side between create and up", () => {
  const p = planAdd({ containerId: "c", ifname: "eth0", netnsPath: "/n", mtu: 1500, addrs: [{ ip: "10.244.1.5", family: 4 }, { ip: "fd00::5", family: 6 }] });
  expect(p.host.map((o) => o.op).slice(0, 3)).toEqual(["veth", "sysctl", "up"]);
  expect(p.host[1]).toEqual({ op: "sysctl", key: `ipv6/conf/${p.hostIf}/accept_dad`, value: "0" });
  expect(ipLines(p.pod)).toContain("addr add fd00::5/128 dev eth0 nodad");
  expect(ipLines(p.pod)).toContain("route add default via fe80::1 dev eth0");
});
