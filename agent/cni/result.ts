// The ADD result in the shape the requested spec version defines. Chained plugins read it:
// portmap takes the pod's addresses, bandwidth finds the host veth through the interface
// list, so both interfaces are reported and the pod's carries its sandbox.
import type { Allocation } from "../ipam/allocator.ts";
import { parseIp } from "../ipam/cidr.ts";
import { gatewayOf, hostPrefix, HOST_MAC, type WiringPlan } from "./plan.ts";
import { compareVersions, type CniVersion } from "./spec.ts";

export interface CniResult {
  cniVersion: string;
  interfaces: Array<{ name: string; mac: string; mtu?: number; sandbox?: string }>;
  ips: Array<{ address: string; gateway: string; interface: number; version?: string }>;
  routes: Array<{ dst: string; gw: string }>;
  dns: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

export function buildResult(
  version: CniVersion,
  p: {
    plan: Pick<WiringPlan, "hostIf" | "podIf" | "podMac">;
    netns: string;
    mtu: number;
    allocations: Allocation[];
    dns?: CniResult["dns"];
    /** families whose default route stayed another interface's: this ADD installed none, so lists none */
    routesKept?: ReadonlySet<number>;
  },
): CniResult {
  const withMtu = compareVersions(version, "1.1.0") >= 0;
  const addrs = p.allocations.map((a) => ({ ip: a.ip, family: parseIp(a.ip).family }));
  return {
    cniVersion: version,
    interfaces: [
      { name: p.plan.hostIf, mac: HOST_MAC, ...(withMtu ? { mtu: p.mtu } : {}) },
      { name: p.plan.podIf, mac: p.plan.podMac, ...(withMtu ? { mtu: p.mtu } : {}), sandbox: p.netns },
    ],
    ips: addrs.map((a) => ({
      ...(version === "0.4.0" ? { version: String(a.family) } : {}),
      address: hostPrefix(a),
      gateway: gatewayOf(a.family),
      interface: 1,
    })),
    routes: addrs.filter((a) => !p.routesKept?.has(a.family)).map((a) => ({ dst: a.family === 4 ? "0.0.0.0/0" : "::/0", gw: gatewayOf(a.family) })),
    dns: p.dns ?? {},
  };
}
