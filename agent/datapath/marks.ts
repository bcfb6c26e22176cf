// Which bits of the packet mark and of the conntrack mark are skein's. Other software on a node
// marks packets too (service meshes, WireGuard, policy routing, a kube-proxy or another CNI
// left during a migration), so skein writes only inside its own ranges and keeps every other
// bit as it found it, the way kube-proxy sets and tests only its masquerade bit. Pure.
//
// Packet mark: carries a target's id from its target chain to the ring lookup, shifted into
// the range (`meta mark set meta mark & ~RANGE | id << shift`; the ring maps are keyed by
// `meta mark & RANGE`). Only the first packet of a connection walks those chains, and it keeps
// skein's bits through the rest of the hooks and the routing decision, as kube-proxy's
// 0x4000 stays on the packets it marks: a rule elsewhere that matches the mark must mask
// skein's range out (`ip rule ... fwmark 0x1/0x1`, `meta mark & 0x1 == 0x1`).
//
// Default 0xffff0000, the upper 16 bits: 65,535 target ids, and clear of the bits in use below
// them: Istio (0x539 for TPROXY, 0xfff in ambient mode), wg-quick (fwmark 0xca6c),
// kube-proxy and flannel (0x4000 masquerade, 0x8000 drop), Cilium's 0x0f00, the AWS VPC CNI
// (0x80). No 16 contiguous bits avoid everyone: the upper half is where Calico (its
// default mark mask is 0xffff0000, configurable), Cilium's identity bits, Tailscale
// (0xff0000) and Weave (0x20000, 0x40000) live; next to those, move skein with --mark-mask.
//
// Conntrack mark: the highest bit of the range is the masquerade flag; the bits below it carry
// a new connection's destination identity for network policy (policy-text.ts), the packet mark
// range its source identity (free again in the filter hooks: the service path uses it only
// from its target chains to the ring lookup, in nat prerouting). Default 0xffff0000: the
// masquerade flag 0x80000000 and 15 identity bits (32,767 ids, fewer than the packet range's
// 65,535, so the conntrack range is what limits identities); wg-quick (0xca6c), Istio ambient
// (0xfff) and the AWS VPC CNI (0x80) use low bits. At least MIN_CT_MARK_BITS: the flag and as
// many identity bits as the packet range has at least, 255 ids (252 past the reserved ones),
// few enough already for a cluster whose pods differ in labels; a range narrower than that
// would leave policy unusable rather than merely small.

export interface Marks {
  /** packet mark bits that carry the target id (contiguous) */
  mark: number;
  /** conntrack mark bits (contiguous); the highest is the masquerade flag */
  ctMark: number;
}

export const DEFAULT_MARKS: Readonly<Marks> = Object.freeze({ mark: 0xffff0000, ctMark: 0xffff0000 });

/** Fewer bits than this leave room for too few services (255) to be a sensible choice. */
export const MIN_MARK_BITS = 8;
/** The masquerade flag and 8 identity bits (see above). */
export const MIN_CT_MARK_BITS = MIN_MARK_BITS + 1;

export const hex32 = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

const bits = (mask: number) => {
  let n = 0;
  for (let m = mask >>> 0; m; m >>>= 1) n += m & 1;
  return n;
};

/** Position of the lowest bit of a non-zero mask. */
export const markShift = (mask: number) => 31 - Math.clz32(mask & -mask);

/** The largest target id the range holds. */
export const maxId = (mask: number) => (mask >>> 0) >>> markShift(mask);

/** The highest bit of the conntrack range: the masquerade flag. */
export const masqBit = (m: Marks) => (0x80000000 >>> Math.clz32(m.ctMark)) >>> 0;

/** The conntrack bits that carry a destination identity: the range below its masquerade flag. */
export const identityBits = (m: Marks) => (m.ctMark & ~masqBit(m)) >>> 0;

/** The largest identity both ranges hold (source in the packet mark, destination in the
 * conntrack mark). */
export const maxIdentity = (m: Marks) => Math.min(maxId(m.mark), maxId(identityBits(m)));

/** Why `mask` cannot be a range of `what` (undefined when it can). */
export function maskProblem(mask: number, minBits: number): string | undefined {
  if (!Number.isInteger(mask) || mask <= 0 || mask > 0xffffffff) return "must be a non-zero 32-bit value";
  const low = (mask & -mask) >>> 0;
  if (((mask + low) >>> 0) & mask) return `${hex32(mask)} is not one run of contiguous bits`;
  if (bits(mask) < minBits) return `${hex32(mask)} has ${bits(mask)} bit${bits(mask) === 1 ? "" : "s"}; at least ${minBits} are needed`;
  return undefined;
}

/**
 * A mask as given on the command line: hex (0x, up to 8 digits) or decimal without leading
 * zeros, nothing else (no signs, exponents, octal, spaces), then checked as a range.
 */
export function parseMask(text: string, minBits: number): number {
  const t = String(text);
  let n: number;
  if (/^0x[0-9a-f]{1,8}$/i.test(t)) n = parseInt(t.slice(2), 16);
  else if (/^(0|[1-9][0-9]{0,9})$/.test(t)) n = Number(t);
  else throw new Error(`${JSON.stringify(t)} is not a mask (hex 0x… up to 32 bits, or decimal)`);
  const why = maskProblem(n, minBits);
  if (why) throw new Error(why);
  return n;
}

/** Checks a whole configuration; throws naming the field. */
export function checkMarks(m: Marks): Marks {
  const p = maskProblem(m.mark, MIN_MARK_BITS);
  if (p) throw new Error(`packet mark range: ${p}`);
  const c = maskProblem(m.ctMark, MIN_CT_MARK_BITS);
  if (c) throw new Error(`conntrack mark range: ${c}`);
  return m;
}

/**
 * The packet mark value that selects target `id`'s ring. An id the range cannot hold is an
 * error, never cut down to fit: a wrapped id would select another target's ring.
 */
export function markValue(m: Marks, id: number, what: string): number {
  const top = maxId(m.mark);
  if (!Number.isInteger(id) || id < 1 || id > top) {
    throw new Error(`target ${id} (${what}) does not fit the packet mark range ${hex32(m.mark)}, which holds ids 1-${top}: give --mark-mask more bits`);
  }
  return (id << markShift(m.mark)) >>> 0;
}

/** The table comment that records the ranges (adopt.ts compares it with its own). */
export const marksComment = (m: Marks) => `skein marks: packet ${hex32(m.mark)} conntrack ${hex32(m.ctMark)}`;

export function marksFromComment(comment: string | undefined): Marks | undefined {
  const r = /^skein marks: packet (0x[0-9a-f]{8}) conntrack (0x[0-9a-f]{8})$/.exec(comment ?? "");
  return r ? { mark: parseInt(r[1]!.slice(2), 16), ctMark: parseInt(r[2]!.slice(2), 16) } : undefined;
}

export const sameMarks = (a: Marks, b: Marks) => a.mark >>> 0 === b.mark >>> 0 && a.ctMark >>> 0 === b.ctMark >>> 0;
