// Verdicts counted per policy: the kernel counts per element of the allow sets (connections
// allowed: their packets until established, later ones are accepted before any lookup) and
// per identity of the drop sets (packets dropped); this reads those counters through netlink
// dumps of the four sets alone (nft would fetch every element of the table first, ring slots
// included: agent/sys/nftdump.ts) and attributes them to the policies that made each element
// or isolate each identity (pure).
import { BLOCKED, type AllowElement, type PolicyTables } from "../../compiler/policy/types.ts";
import { setElements, type NftDumper } from "./adopt.ts";
import { identityBits, markShift, type Marks } from "./marks.ts";

/** BLOCKED's name where a policy's would be: drops of addresses blocked for failing closed. */
export const BLOCKED_POLICY = "skein:blocked";

export interface Count {
  packets: number;
  bytes: number;
}

/** An allow element's identity and port ranges as the kernel holds them, with its counter. */
export type AllowReading = Omit<AllowElement, "policies"> & Count;

export interface PolicyReadings {
  allowIn: AllowReading[];
  allowOut: AllowReading[];
  /** identity → drops at its ingress / egress */
  dropIn: Map<number, Count>;
  dropOut: Map<number, Count>;
}

export interface PolicyCounts {
  allowedPackets: number;
  allowedBytes: number;
  droppedPackets: number;
  droppedBytes: number;
}

// marks are registers in host order, and so are they in a set of marks; in a set of
// concatenations with intervals nft turns them to network order (its ranges compare bytes)
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const u32 = (b: Uint8Array, at: number, little = LE) => new DataView(b.buffer, b.byteOffset + at, 4).getUint32(0, little);

/** An allow set's element key (mark . mark . inet_proto . inet_service, each in 4 bytes, in
 * network order). */
export function decodeAllowKey(key: Uint8Array, end: Uint8Array | undefined, marks: Marks): Omit<AllowReading, "packets" | "bytes"> | undefined {
  const last = end ?? key;
  if (key.length !== 16 || last.length !== 16) return undefined;
  const sR = markShift(marks.mark);
  const sI = markShift(identityBits(marks));
  const R = marks.mark >>> 0;
  const I = identityBits(marks);
  const port = (b: Uint8Array) => (b[12]! << 8) | b[13]!;
  return {
    src: (u32(key, 0, false) & R) >>> sR,
    srcLast: (u32(last, 0, false) & R) >>> sR,
    dst: (u32(key, 4, false) & I) >>> sI,
    dstLast: (u32(last, 4, false) & I) >>> sI,
    proto: key[8]!,
    protoLast: last[8]!,
    port: port(key),
    portLast: port(last),
  };
}

/** Whether `key` is an allow set key exactly as skein writes one: marks within their bits,
 * protocol and port in their bytes of the 4 each takes, nothing else set. */
export function allowKeyExact(key: Uint8Array, marks: Marks): boolean {
  if (key.length !== 16) return false;
  return (u32(key, 0, false) & ~(marks.mark >>> 0)) === 0 && (u32(key, 4, false) & ~identityBits(marks)) === 0 && key[9] === 0 && key[10] === 0 && key[11] === 0 && key[14] === 0 && key[15] === 0;
}

/** The counters of pol_allow_in/out and pol_drop_in/out in `inet skein`. */
export function readPolicyCounters(nl: NftDumper, marks: Marks): PolicyReadings {
  const elems = (set: string) => setElements(nl, set);
  const allow = (set: string) => {
    const out: AllowReading[] = [];
    for (const e of elems(set)) {
      const k = decodeAllowKey(e.key, e.keyEnd, marks);
      if (k) out.push({ ...k, packets: e.counter?.packets ?? 0, bytes: e.counter?.bytes ?? 0 });
    }
    return out;
  };
  const drop = (set: string, mask: number) => {
    const out = new Map<number, Count>();
    for (const e of elems(set)) if (e.key.length === 4) out.set((u32(e.key, 0) & mask) >>> markShift(mask), { packets: e.counter?.packets ?? 0, bytes: e.counter?.bytes ?? 0 });
    return out;
  };
  return { allowIn: allow("pol_allow_in"), allowOut: allow("pol_allow_out"), dropIn: drop("pol_drop_in", identityBits(marks)), dropOut: drop("pol_drop_out", marks.mark >>> 0) };
}

const spanKey = (e: Omit<AllowReading, "packets" | "bytes">) => `${e.src}-${e.srcLast}.${e.dst}-${e.dstLast}.${e.proto}-${e.protoLast}.${e.port}-${e.portLast}`;

/**
 * Per policy (namespace/name, and BLOCKED_POLICY): connections allowed, counted on each
 * policy an element lists (an element two policies allow counts for both), and packets
 * dropped at an isolated identity, counted on each policy that isolates it in that direction.
 * Readings of elements or identities `tables` does not have (an older compile) are left out.
 */
export function countersByPolicy(tables: PolicyTables, r: PolicyReadings): Map<string, PolicyCounts> {
  const out = new Map<string, PolicyCounts>();
  const at = (p: string) => {
    let c = out.get(p);
    if (!c) out.set(p, (c = { allowedPackets: 0, allowedBytes: 0, droppedPackets: 0, droppedBytes: 0 }));
    return c;
  };
  for (const [elements, readings] of [[tables.allowIngress, r.allowIn], [tables.allowEgress, r.allowOut]] as const) {
    const byKey = new Map(elements.map((e) => [spanKey(e), e.policies]));
    for (const x of readings) {
      for (const p of byKey.get(spanKey(x)) ?? []) {
        const c = at(p);
        c.allowedPackets += x.packets;
        c.allowedBytes += x.bytes;
      }
    }
  }
  const ids = new Map(tables.identities.map((i) => [i.id, i]));
  for (const [readings, by] of [[r.dropIn, "ingressBy"], [r.dropOut, "egressBy"]] as const) {
    for (const [id, n] of readings) {
      const policies = id === BLOCKED ? [BLOCKED_POLICY] : (ids.get(id)?.[by] ?? []);
      for (const p of policies) {
        const c = at(p);
        c.droppedPackets += n.packets;
        c.droppedBytes += n.bytes;
      }
    }
  }
  return out;
}
