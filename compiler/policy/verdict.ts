// What the policy datapath (POLICY.md "The datapath") decides for the first packet of a new
// connection forwarded on the node whose tables these are: the same lookups the nft chains
// make, in the same order, over the same PolicyTables. For tests (equivalence with the
// oracle) and for explaining a decision (`skein trace`).
import { addressBytes, type Family } from "../address.ts";
import { BLOCKED, IP_PROTOCOL, VIA_SERVICE, WORLD, type AllowElement, type PolicyTables } from "./types.ts";
import type { Protocol } from "../state.ts";

export interface Connection {
  src: string;
  dst: string;
  /** a protocol name or an IP protocol number */
  proto: Protocol | number;
  /** destination port (0 for protocols without ports) */
  port: number;
  /** the connection was DNAT-ed by the service datapath (reached dst through a Service) */
  viaService?: boolean;
  /** a pod reaching itself through a Service (the hairpin set) */
  hairpin?: boolean;
}

function value(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

interface Index {
  pods: Map<string, number>;
  ranges: { family: Family; first: bigint; last: bigint; id: number }[];
}
// tables are not changed once made: their index is kept beside them
const indexes = new WeakMap<PolicyTables, Index>();

function indexOf(tables: PolicyTables): Index {
  let x = indexes.get(tables);
  if (!x) {
    x = {
      pods: new Map(tables.pods.map((p) => [p.ip, p.id])),
      ranges: tables.ranges.map((r) => ({ family: r.family, first: value(addressBytes(r.first)), last: value(addressBytes(r.last)), id: r.id })),
    };
    indexes.set(tables, x);
  }
  return x;
}

/** The identity of an address: a pod's (the pods map is looked up first), else the range
 * holding it, else WORLD. */
export function identityOf(tables: PolicyTables, ip: string): number {
  const x = indexOf(tables);
  const pod = x.pods.get(ip);
  if (pod !== undefined) return pod;
  const bytes = addressBytes(ip);
  const family: Family = bytes.length === 4 ? 4 : 6;
  const v = value(bytes);
  for (const r of x.ranges) if (r.family === family && r.first <= v && v <= r.last) return r.id;
  return WORLD;
}

/** The allow element holding (src, dst, proto, port), if any (elements never overlap). */
export function allows(set: AllowElement[], src: number, dst: number, proto: number, port: number): AllowElement | undefined {
  return set.find((e) => e.src <= src && src <= e.srcLast && e.dst <= dst && dst <= e.dstLast && e.proto <= proto && proto <= e.protoLast && e.port <= port && port <= e.portLast);
}

/** An identity for people: its id and name, or the reserved one's name. */
export function describe(tables: PolicyTables, id: number): string {
  if (id === WORLD) return "WORLD";
  if (id === VIA_SERVICE) return "VIA_SERVICE";
  if (id === BLOCKED) return "BLOCKED";
  const i = tables.identities.find((x) => x.id === id);
  return i ? `${id} (${i.name})` : String(id);
}

export function verdict(tables: PolicyTables, c: Connection): { allowed: boolean; why: string } {
  if (c.src === c.dst && !c.viaService) return { allowed: true, why: "a pod reaching its own address is not forwarded" };
  if (c.viaService && (c.hairpin || c.src === c.dst)) return { allowed: true, why: "a pod reaching itself through a Service (hairpin) is allowed" };
  const proto = typeof c.proto === "number" ? c.proto : IP_PROTOCOL[c.proto];
  const src = identityOf(tables, c.src);
  const dst = identityOf(tables, c.dst);
  const what = `${describe(tables, src)} → ${describe(tables, dst)} proto ${proto} port ${c.port}`;
  const why: string[] = [];
  if (tables.isolatedEgress.includes(src)) {
    const e = allows(tables.allowEgress, src, dst, proto, c.port);
    if (!e) return { allowed: false, why: `${what}: egress of the source is isolated and nothing allows it` };
    why.push(`egress allowed by ${e.policies.join(", ")}`);
  }
  if (tables.isolatedIngress.includes(dst)) {
    let e = allows(tables.allowIngress, src, dst, proto, c.port);
    if (!e && c.viaService) e = allows(tables.allowIngress, VIA_SERVICE, dst, proto, c.port);
    if (!e) return { allowed: false, why: `${what}: ingress of the destination is isolated and nothing allows it` };
    why.push(`ingress allowed by ${e.policies.join(", ")}${e.src <= VIA_SERVICE && VIA_SERVICE <= e.srcLast && !(e.src <= src && src <= e.srcLast) ? " (through a Service)" : ""}`);
  }
  return { allowed: true, why: `${what}: ${why.length ? why.join("; ") : "neither end isolated here"}` };
}
