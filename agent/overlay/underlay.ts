// This node's underlay: the interface holding the address it is reached at, the subnet of
// that address (the peers on it are reached by direct routes) and the interface's MTU (the
// pods' MTU follows it).
import { bigintToIp, parseIp } from "../ipam/cidr.ts";
import type { Netlink } from "../sys/netlink.ts";
import { listAddresses, listLinks } from "../sys/rtnl.ts";

export interface Underlay {
  dev: string;
  subnet: string;
  mtu: number;
}

/** The network of `ip`/`prefix` as a CIDR ("192.168.50.11", 24 → "192.168.50.0/24"). */
export function subnetOf(ip: string, prefix: number): string {
  const { value, family } = parseIp(ip);
  const bits = family === 4 ? 32 : 128;
  const host = (1n << BigInt(bits - prefix)) - 1n;
  return `${bigintToIp(value & ~host, family)}/${prefix}`;
}

/** The interface holding `ip` in the namespace `nl` talks to, or undefined when none does. */
export function underlayOf(nl: Netlink, ip: string): Underlay | undefined {
  const a = listAddresses(nl).find((x) => x.address === ip);
  if (!a) return undefined;
  const link = listLinks(nl).find((l) => l.index === a.index);
  if (!link?.name || !link.mtu) return undefined;
  return { dev: link.name, subnet: subnetOf(ip, a.prefix), mtu: link.mtu };
}
