// The one strict reader of addresses and CIDRs: every address or CIDR skein reads (Service and
// EndpointSlice fields, Node addresses and pod CIDRs, the CNI configuration, the node file,
// agent flags) goes through here. Kubernetes refuses since 1.22 what a lenient parser reads
// otherwise (CVE-2021-29923: "010.0.0.1" read as octal is 8.0.0.1), so a value has exactly
// one accepted spelling and is refused, never reinterpreted:
// - IPv4: four decimal parts 0-255 without leading zeros;
// - IPv6: the canonical text of RFC 5952 (ipaddr.js's toRFC5952String), no zone index, no
//   IPv4-mapped address (::ffff:a.b.c.d: the IPv4 address is the one spelling of it);
// - CIDR: such an address, "/", a decimal prefix length without leading zero within the
//   family's bits, and the address is the network's own (no host bits): every CIDR skein
//   reads names a network (pod, cluster, service, NodePort address ranges);
// - nothing around it (no whitespace), ASCII only, and at most MAX_TEXT characters.
// Since a value that passes is canonical, the text read is the text kept: one address has
// one spelling from here on.
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

/** The longest text looked at: an IPv6 CIDR is at most 43 characters. A bound keeps
 * ipaddr.js's regular expressions off strings of any length. */
export const MAX_TEXT = 64;

export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressError";
  }
}

export interface Cidr {
  family: Family;
  /** the network address's bytes, 4 or 16 */
  bytes: number[];
  prefix: number;
  /** the CIDR's text, which is canonical */
  text: string;
}

/** A value as an error message shows it: JSON, cut short when long. */
export function quote(v: unknown): string {
  let s: string;
  try {
    s = typeof v === "string" ? JSON.stringify(v.length > 48 ? v.slice(0, 48) : v) : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  if (typeof v === "string" && v.length > 48) return `${s.slice(0, -1)}…" (${v.length} characters)`;
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

const bitsOf = (f: Family) => (f === 4 ? 32 : 128);

/** Why a dotted text is no IPv4 address; asked once ipaddr.js has refused it. */
function ipv4Problem(s: string): string {
  const parts = s.split(".");
  if (parts.length !== 4) return "must be four decimal parts";
  for (const p of parts) if (!/^[0-9]+$/.test(p)) return `${JSON.stringify(p)} is not a decimal number`;
  for (const p of parts) if (p.length > 1 && p[0] === "0") return "leading zero";
  return "each part must be 0-255";
}

/** An address read, or why not: `what` it failed to be and the detail. */
type Read = { family: Family; v6?: ipaddr.IPv6 } | { what: string; detail?: string };

const V4: Read = Object.freeze({ family: 4 });

function readAddress(v: unknown): Read {
  // the common case first, at the cost of one ipaddr.js call: the agent reads 100,000
  // endpoint addresses at 10k services
  if (typeof v === "string" && v.length <= 15 && ipaddr.IPv4.isValidFourPartDecimal(v)) return V4;
  const bad = textProblem(v);
  if (bad) return { what: "IP address", detail: bad };
  const s = v as string;
  if (s.includes("/")) return { what: "IP address", detail: "a CIDR where an address is expected" };
  if (s.includes(":")) {
    if (s.includes("%")) return { what: "IPv6 address", detail: "zone index not allowed" };
    // ipaddr.js reads "::a.b.c.d" (IPv4-compatible) as IPv4-mapped: say what was written
    if (s.includes(".")) return { what: "IPv6 address", detail: "an IPv4 address written inside IPv6, IPv4-mapped or -compatible: write the IPv4 address itself" };
    let a: ipaddr.IPv6;
    try {
      a = ipaddr.IPv6.parse(s);
    } catch {
      return { what: "IPv6 address" };
    }
    if (a.isIPv4MappedAddress()) return { what: "IPv6 address", detail: `IPv4-mapped: write the IPv4 address ${a.toIPv4Address().toString()}` };
    const canonical = a.toRFC5952String();
    if (canonical !== s) return { what: "IPv6 address", detail: `not in canonical form, which is ${canonical}` };
    return { family: 6, v6: a };
  }
  if (s.includes(".")) return { what: "IPv4 address", detail: ipv4Problem(s) };
  return { what: "IP address" };
}

/** Why the text is refused whatever it is meant to be, or undefined. */
function textProblem(v: unknown): string | undefined {
  if (v === undefined) return "missing";
  if (typeof v !== "string") return `not a string but ${Array.isArray(v) ? "a list" : v === null ? "null" : typeof v === "object" ? "an object" : `a ${typeof v}`}`;
  if (v === "") return "empty";
  if (v.length > MAX_TEXT) return `too long: at most ${MAX_TEXT} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(v)) return "whitespace or control characters";
  if (/[^\x20-\x7e]/.test(v)) return "characters other than ASCII";
  return undefined;
}

const detail = (r: { detail?: string }) => (r.detail ? ` (${r.detail})` : "");

/**
 * Checks an address strictly and returns its family; with `family`, the address must be of
 * that family. The text checked is the text to keep (it is canonical).
 */
export function addressFamily(v: unknown, family?: Family): Family {
  return read(v, family).family;
}

function read(v: unknown, family: Family | undefined): { family: Family; v6?: ipaddr.IPv6 } {
  const r = readAddress(v);
  if (!("family" in r)) throw new AddressError(`${quote(v)} is not a valid ${r.what}${detail(r)}`);
  if (family !== undefined && r.family !== family) throw new AddressError(`${quote(v)} is not an IPv${family} address`);
  return r;
}

function bytesOf(s: string, r: { family: Family; v6?: ipaddr.IPv6 }): number[] {
  return r.family === 4 ? ipaddr.IPv4.parse(s).toByteArray() : (r.v6 ?? ipaddr.IPv6.parse(s)).toByteArray();
}

/** The bytes (4 or 16) of an address checked strictly. */
export function addressBytes(v: unknown, family?: Family): number[] {
  return bytesOf(v as string, read(v, family));
}

/** The canonical text of the address in `b` at `at` (4 bytes for family 4, 16 for 6): dotted
 * quad, or RFC 5952 (what the readers here accept, and what compiler/state.ts writes). */
export function addressFromBytes(b: ArrayLike<number>, at: number, family: Family): string {
  if (family === 4) return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  return ipaddr.fromByteArray(Array.from({ length: 16 }, (_, i) => b[at + i]!)).toString();
}

/** Reads a CIDR strictly: canonical address, prefix length in range, no host bits set. */
export function parseCidr(v: unknown, family?: Family): Cidr {
  const bad = textProblem(v);
  if (bad) throw new AddressError(`${quote(v)} is not a valid CIDR (${bad})`);
  const s = v as string;
  const slash = s.indexOf("/");
  if (slash < 0) throw new AddressError(`${quote(s)} is not a valid CIDR (no "/" and prefix length)`);
  const addr = s.slice(0, slash);
  const len = s.slice(slash + 1);
  const r = readAddress(addr);
  if (!("family" in r)) throw new AddressError(`${quote(s)} is not a valid CIDR (${r.detail ? `${r.what}: ${r.detail}` : `not an ${r.what}`})`);
  const f = r.family;
  const ipv = `IPv${f} CIDR`;
  if (!/^[0-9]+$/.test(len)) throw new AddressError(`${quote(s)} is not a valid ${ipv} (the prefix length must be a decimal number)`);
  if (len.length > 1 && len[0] === "0") throw new AddressError(`${quote(s)} is not a valid ${ipv} (prefix length with a leading zero)`);
  const prefix = Number(len);
  if (prefix > bitsOf(f)) throw new AddressError(`${quote(s)} is not a valid ${ipv} (the prefix length must be 0-${bitsOf(f)})`);
  if (family !== undefined && f !== family) throw new AddressError(`${quote(s)} is not an IPv${family} CIDR`);
  const bytes = bytesOf(addr, r);
  const network = bytes.map((b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff));
  if (network.some((b, i) => b !== bytes[i])) {
    throw new AddressError(`${quote(s)} is not a network: it has host bits set (the network is ${addressFromBytes(network, 0, f)}/${prefix})`);
  }
  return { family: f, bytes, prefix, text: s };
}

/**
 * Why an address may not be a Service's external IP or an endpoint, as Kubernetes validates
 * those fields (ValidateNonSpecialIP, ValidateEndpointIP), or undefined: traffic for such an
 * address would stay on the node or its link, where a Service must not send it. The address
 * must have been read (canonical text, so prefixes of the text are prefixes of the address).
 */
export function specialUse(ip: string): string | undefined {
  if (!ip.includes(":")) {
    if (ip === "0.0.0.0") return "unspecified (0.0.0.0)";
    if (ip.startsWith("127.")) return "loopback (127.0.0.0/8)";
    if (ip.startsWith("169.254.")) return "link-local (169.254.0.0/16)";
    if (ip.startsWith("224.0.0.")) return "link-local multicast (224.0.0.0/24)";
    return undefined;
  }
  if (ip === "::") return "unspecified (::)";
  if (ip === "::1") return "loopback (::1)";
  const b = ipaddr.IPv6.parse(ip).toByteArray();
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return "link-local (fe80::/10)";
  if (b[0] === 0xff && (b[1]! & 0x0f) === 0x02) return "link-local multicast (ff02::/16)";
  return undefined;
}

/**
 * Why an address cannot be where a node is reached (a tunnel endpoint, a public address), or
 * undefined: it must name one host, so not what specialUse names, nor any multicast address
 * or the broadcast address (a tunnel there would spray a node's traffic over its link).
 */
export function unicastProblem(ip: string): string | undefined {
  const special = specialUse(ip);
  if (special) return special;
  if (!ip.includes(":")) {
    if (ip === "255.255.255.255") return "the broadcast address";
    const first = Number(ip.slice(0, ip.indexOf(".")));
    if (first >= 224 && first <= 239) return "multicast (224.0.0.0/4)";
    return undefined;
  }
  if (ip.startsWith("ff")) return "multicast (ff00::/8)";
  return undefined;
}

/** Whether two CIDRs share an address (one holds the other). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.prefix, b.prefix);
  for (let i = 0; i * 8 < bits; i++) {
    const keep = Math.min(8, bits - 8 * i);
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((a.bytes[i]! & mask) !== (b.bytes[i]! & mask)) return false;
  }
  return true;
}
