// Address arithmetic for pod CIDRs. Parsing is ipaddr.js's; this file only turns a CIDR into
// the bigint range IPAM walks, and names what is never handed out.
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

export interface Pool {
  /** the CIDR as configured, normalised, e.g. "10.244.1.0/24" */
  cidr: string;
  family: Family;
  prefix: number;
  network: bigint;
  /** first and last address that may be handed to a pod */
  first: bigint;
  last: bigint;
  /** the address reserved for the node itself (future gateway / tunnel source) */
  gateway: bigint;
}

export class CidrError extends Error {}

const bitsOf = (f: Family) => (f === 4 ? 32 : 128);

export function ipToBigint(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  let v = 0n;
  for (const b of addr.toByteArray()) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigintToIp(v: bigint, family: Family): string {
  const n = bitsOf(family) / 8;
  const bytes: number[] = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function parseIp(s: string): { value: bigint; family: Family } {
  if (!ipaddr.isValid(s)) throw new CidrError(`${JSON.stringify(s)} is not an IP address`);
  const a = ipaddr.parse(s);
  // An IPv4-mapped IPv6 address is an IPv4 address for every purpose here.
  const addr = a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a;
  return { value: ipToBigint(addr), family: addr.kind() === "ipv4" ? 4 : 6 };
}

/** Parses a CIDR that must name a network (no host bits set). */
export function parseCidr(s: string): { network: bigint; prefix: number; family: Family; cidr: string } {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(s);
  } catch {
    throw new CidrError(`${JSON.stringify(s)} is not a CIDR`);
  }
  const [addr, prefix] = parsed;
  const family: Family = addr.kind() === "ipv4" ? 4 : 6;
  const bits = bitsOf(family);
  const value = ipToBigint(addr);
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  const network = value & ~hostMask;
  if (network !== value) {
    throw new CidrError(`${JSON.stringify(s)} has host bits set (the network is ${bigintToIp(network, family)}/${prefix})`);
  }
  return { network, prefix, family, cidr: `${bigintToIp(network, family)}/${prefix}` };
}

/**
 * The pool IPAM hands addresses from. Never handed out: the network address, the first host
 * address (kept for the node, as the reference host-local plugin keeps its gateway) and, in
 * IPv4, the broadcast address.
 */
export function poolFromCidr(s: string): Pool {
  const { network, prefix, family, cidr } = parseCidr(s);
  const size = 1n << BigInt(bitsOf(family) - prefix);
  const last = family === 4 ? network + size - 2n : network + size - 1n;
  const first = network + 2n;
  if (last < first) throw new CidrError(`${cidr} is too small for pods: it leaves no address after network, gateway and broadcast`);
  return { cidr, family, prefix, network, first, last, gateway: network + 1n };
}

export function poolContains(p: Pool, v: bigint): boolean {
  return v >= p.first && v <= p.last;
}

export function poolSize(p: Pool): bigint {
  return p.last - p.first + 1n;
}

/** Whether address `ip` lies in `cidr` (both validated; families must agree). */
export function cidrContains(cidr: string, ip: string): boolean {
  const n = parseCidr(cidr);
  const a = parseIp(ip);
  if (a.family !== n.family) return false;
  const bits = n.family === 4 ? 32 : 128;
  return a.value >> BigInt(bits - n.prefix) === n.network >> BigInt(bits - n.prefix);
}
