// Pure planning of the routed pod wiring: which links, addresses, routes and neighbours ADD
// creates, as `ip -batch` lines, and what CHECK expects to find. No I/O here.
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

export interface WiringPlan {
  hostIf: string;
  podIf: string;
  podMac: string;
  /** `ip -batch` lines for the node's namespace: create the pair */
  hostCreate: string[];
  /** sysctls (relative to /proc/sys/net) to set on the host side between create and up */
  hostSysctls: Array<[string, string]>;
  /** `ip -batch` lines for the node's namespace: bring the host side up and route to the pod */
  host: string[];
  /** `ip -batch` lines for the pod's namespace */
  pod: string[];
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
  const hostCreate = [`link add ${hostIf} mtu ${p.mtu} address ${HOST_MAC} type veth peer name ${p.ifname} mtu ${p.mtu} address ${mac} netns ${p.netnsPath}`];
  // Duplicate address detection would hold the host side's link-local address tentative for
  // a second or more, and neighbour discovery toward the pod waits for it: the pod's first
  // IPv6 packets would be lost. The address is unique by construction (one pod per link).
  const hostSysctls: Array<[string, string]> = p.addrs.some((a) => a.family === 6) ? [[`ipv6/conf/${hostIf}/accept_dad`, "0"]] : [];
  const host = [
    ...(hostSysctls.length ? [] : hostCreate),
    `link set ${hostIf} up`,
    ...p.addrs.map((a) => `route replace ${hostPrefix(a)} dev ${hostIf} scope link`),
  ];
  const pod = [`link set lo up`, `link set ${p.ifname} up`];
  for (const a of p.addrs) {
    const gw = gatewayOf(a.family);
    pod.push(`addr add ${hostPrefix(a)} dev ${p.ifname}${a.family === 6 ? " nodad" : ""}`);
    pod.push(`neigh replace ${gw} lladdr ${HOST_MAC} dev ${p.ifname} nud permanent`);
    if (a.family === 4) pod.push(`route add ${gw} dev ${p.ifname} scope link`);
    pod.push(`route add default via ${gw} dev ${p.ifname}`);
  }
  return { hostIf, podIf: p.ifname, podMac: mac, hostCreate: hostSysctls.length ? hostCreate : [], hostSysctls, host, pod };
}
