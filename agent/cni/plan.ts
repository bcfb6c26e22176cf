// Pure planning of the routed pod wiring: which links, addresses, routes and neighbours ADD
// creates, as data. links.ts carries the plan out (netlink in-process, or `ip -batch`, for
// which renderIpBatch gives the text). No I/O here.
//
// Routed model: a veth per pod, no bridge. The pod's default route points at a link-local
// gateway whose MAC is pinned by a permanent neighbour entry to the host side's fixed MAC,
// so the pod never ARPs for its gateway: no proxy-ARP delay, and nothing depends on the
// node's own routes to the gateway address.
import { parseIp, type Family } from "../ipam/cidr.ts";

export const GATEWAY4 = "169.254.1.1";
export const GATEWAY6 = "fe80::1";
/** every host-side veth carries this MAC (it only ever talks to its own pod) */
export const HOST_MAC = "ee:ee:ee:ee:ee:ee";

export interface PodAddress {
  ip: string;
  family: Family;
}

export type LinkOp =
  | { op: "veth"; name: string; mac: string; mtu: number; peer: { name: string; mac: string; mtu: number; netnsPath: string } }
  /** a sysctl under /proc/sys/net of the namespace the op runs in */
  | { op: "sysctl"; key: string; value: string }
  | { op: "up"; dev: string }
  | { op: "addr"; dev: string; ip: string; prefix: number; nodad: boolean }
  /** `keep`: a route to the same destination that exists (another interface's) stays, and this one is not made */
  | { op: "route"; family: Family; dst?: string; prefix: number; gateway?: string; dev: string; scopeLink: boolean; keep?: boolean }
  | { op: "neigh"; dev: string; ip: string; mac: string };

export interface WiringPlan {
  hostIf: string;
  podIf: string;
  podMac: string;
  /** in the node's namespace */
  host: LinkOp[];
  /** in the pod's namespace */
  pod: LinkOp[];
}

// Bun's native hasher: node:crypto would cost a CNI exec several ms of start-up.
const sha256Hex = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/** Stable per (container, interface), so DEL finds the link even when the netns is gone. */
export function hostVethName(containerId: string, ifname: string): string {
  return `sk${sha256Hex(`${containerId}/${ifname}`).slice(0, 13)}`;
}

/** A locally administered MAC derived from the pod's IPv4 address, as Kubernetes' kubenet did. */
export function podMac(addrs: PodAddress[], containerId: string, ifname: string): string {
  const v4 = addrs.find((a) => a.family === 4);
  let tail: number[];
  if (v4) {
    tail = [...Array(4)].map((_, i) => Number((parseIp(v4.ip).value >> BigInt(24 - 8 * i)) & 0xffn));
  } else {
    const h = sha256Hex(`${containerId}/${ifname}`);
    tail = [0, 2, 4, 6].map((i) => parseInt(h.slice(i, i + 2), 16));
  }
  return ["0a", "58", ...tail.map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

export const hostPrefix = (a: PodAddress) => `${a.ip}/${a.family === 4 ? 32 : 128}`;
export const gatewayOf = (f: Family) => (f === 4 ? GATEWAY4 : GATEWAY6);

export function planAdd(p: { containerId: string; ifname: string; netnsPath: string; mtu: number; addrs: PodAddress[] }): WiringPlan {
  const hostIf = hostVethName(p.containerId, p.ifname);
  const mac = podMac(p.addrs, p.containerId, p.ifname);
  const host: LinkOp[] = [{ op: "veth", name: hostIf, mac: HOST_MAC, mtu: p.mtu, peer: { name: p.ifname, mac, mtu: p.mtu, netnsPath: p.netnsPath } }];
  // Duplicate address detection would hold the host side's link-local address tentative for
  // a second or more, and neighbour discovery toward the pod waits for it: the pod's first
  // IPv6 packets would be lost. The address is unique by construction (one pod per link).
  if (p.addrs.some((a) => a.family === 6)) host.push({ op: "sysctl", key: `ipv6/conf/${hostIf}/accept_dad`, value: "0" });
  host.push({ op: "up", dev: hostIf });
  for (const a of p.addrs) host.push({ op: "route", family: a.family, dst: a.ip, prefix: a.family === 4 ? 32 : 128, dev: hostIf, scopeLink: true });

  const pod: LinkOp[] = [
    { op: "up", dev: "lo" },
    { op: "up", dev: p.ifname },
  ];
  for (const a of p.addrs) {
    const gw = gatewayOf(a.family);
    pod.push({ op: "addr", dev: p.ifname, ip: a.ip, prefix: a.family === 4 ? 32 : 128, nodad: a.family === 6 });
    pod.push({ op: "neigh", dev: p.ifname, ip: gw, mac: HOST_MAC });
    // A pod attached before, through another interface (a second network), keeps its routes:
    // replacing them would move its traffic here, and this attachment's DEL would cut it off.
    if (a.family === 4) pod.push({ op: "route", family: 4, dst: gw, prefix: 32, dev: p.ifname, scopeLink: true, keep: true });
    pod.push({ op: "route", family: a.family, prefix: 0, gateway: gw, dev: p.ifname, scopeLink: false, keep: true });
  }
  return { hostIf, podIf: p.ifname, podMac: mac, host, pod };
}

/** The `ip -batch` line for an op (sysctl ops have none: the caller writes them). */
export function renderIpBatch(o: LinkOp): string | undefined {
  switch (o.op) {
    case "veth":
      return `link add ${o.name} mtu ${o.mtu} address ${o.mac} type veth peer name ${o.peer.name} mtu ${o.peer.mtu} address ${o.peer.mac} netns ${o.peer.netnsPath}`;
    case "sysctl":
      return undefined;
    case "up":
      return `link set ${o.dev} up`;
    case "addr":
      return `addr add ${o.ip}/${o.prefix} dev ${o.dev}${o.nodad ? " nodad" : ""}`;
    case "route":
      return `route ${o.keep ? "add" : "replace"} ${o.dst ? `${o.dst}/${o.prefix}` : "default"}${o.gateway ? ` via ${o.gateway}` : ""} dev ${o.dev}${o.scopeLink ? " scope link" : ""}`;
    case "neigh":
      return `neigh replace ${o.ip} lladdr ${o.mac} dev ${o.dev} nud permanent`;
  }
}
