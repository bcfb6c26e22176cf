// Address arithmetic for pod CIDRs. Parsing is compiler/address.ts's (strict: one spelling
// per address, no host bits); this file turns a CIDR into the bigint range IPAM walks, names
// what is never handed out, and refuses pod CIDRs that cannot work.
import { AddressError, addressBytes, addressFromBytes, cidrsOverlap, parseCidr as strictCidr, type Cidr, type Family } from "../../compiler/address.ts";

export type { Family };

export interface Pool {
  /** the CIDR as configured, e.g. "10.244.1.0/24" (canonical: nothing else is accepted) */
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

/** A refused address or CIDR; its message quotes the value and says why. */
export class CidrError extends AddressError {}

const bitsOf = (f: Family) => (f === 4 ? 32 : 128);

function toBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigintToIp(v: bigint, family: Family): string {
  const n = bitsOf(family) / 8;
  const bytes: number[] = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return addressFromBytes(bytes, 0, family);
}

function strict<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof AddressError && !(e instanceof CidrError)) throw new CidrError(e.message);
    throw e;
  }
}

/** An address, read strictly (compiler/address.ts). */
export function parseIp(s: string): { value: bigint; family: Family } {
  const bytes = strict(() => addressBytes(s));
  return { value: toBigint(bytes), family: bytes.length === 4 ? 4 : 6 };
}

/** A CIDR that must name a network, read strictly (compiler/address.ts). */
export function parseCidr(s: string): { network: bigint; prefix: number; family: Family; cidr: string } {
  const c = strict(() => strictCidr(s));
  return { network: toBigint(c.bytes), prefix: c.prefix, family: c.family, cidr: c.text };
}

/**
 * Ranges a pod CIDR may not touch. Pods are routed to by address and reach their gateway in
 * the link-local range (agent/cni/plan.ts): a pod address there, or one the kernel treats as
 * loopback, multicast, broadcast or "no address", cannot work.
 */
const NOT_FOR_PODS: Array<[Cidr, string]> = [
  [strictCidr("0.0.0.0/8"), "the unspecified range 0.0.0.0/8"],
  [strictCidr("127.0.0.0/8"), "loopback 127.0.0.0/8"],
  [strictCidr("169.254.0.0/16"), "link-local 169.254.0.0/16, where the pods' gateway lives"],
  [strictCidr("224.0.0.0/4"), "multicast 224.0.0.0/4"],
  [strictCidr("255.255.255.255/32"), "the broadcast address 255.255.255.255"],
  [strictCidr("::/128"), "the unspecified address ::"],
  [strictCidr("::1/128"), "loopback ::1"],
  // written as bytes: the strict reader refuses IPv4-mapped text, as it should
  [{ family: 6, bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0], prefix: 96, text: "::ffff:0:0/96" }, "IPv4-mapped ::ffff:0:0/96"],
  [strictCidr("fe80::/10"), "link-local fe80::/10, where the pods' gateway lives"],
  [strictCidr("ff00::/8"), "multicast ff00::/8"],
];

/**
 * The pool IPAM hands addresses from, from a pod CIDR read strictly. Never handed out: the
 * network address, the first host address (kept for the node, as the reference host-local
 * plugin keeps its gateway) and, in IPv4, the broadcast address. A CIDR that covers every
 * address, touches a range of NOT_FOR_PODS or leaves no address to hand out is refused.
 */
export function poolFromCidr(s: string): Pool {
  const c = strict(() => strictCidr(s));
  if (c.prefix === 0) throw new CidrError(`${JSON.stringify(s)} cannot be a pod CIDR: it covers every address`);
  for (const [bad, what] of NOT_FOR_PODS) {
    if (cidrsOverlap(c, bad)) throw new CidrError(`${JSON.stringify(s)} cannot be a pod CIDR: it overlaps ${what}`);
  }
  const { prefix, family, text: cidr } = c;
  const network = toBigint(c.bytes);
  const size = 1n << BigInt(bitsOf(family) - prefix);
  const last = family === 4 ? network + size - 2n : network + size - 1n;
  const first = network + 2n;
  if (last < first) throw new CidrError(`${JSON.stringify(cidr)} cannot be a pod CIDR: it is too small, leaving no address after ${family === 4 ? "network, gateway and broadcast" : "network and gateway"}`);
  return { cidr, family, prefix, network, first, last, gateway: network + 1n };
}

/** Pools from a list of pod CIDRs (as a Node's spec.podCIDRs): at most one per family. */
export function poolsFromCidrs(cidrs: string[]): Pool[] {
  const pools = cidrs.map(poolFromCidr);
  if (pools.length > 2 || new Set(pools.map((p) => p.family)).size !== pools.length) {
    throw new CidrError(`at most one pod CIDR per address family, not ${cidrs.join(", ")}`);
  }
  return pools;
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
