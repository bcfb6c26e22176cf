// What `skein trace` and `GET /v1/trace` are asked: a source address (and port) and a
// destination address, port and protocol, read strictly from text a person or a client
// typed. Addresses go through compiler/address.ts (one spelling each); an IPv6 address with a
// port is written in brackets, [fd00::1]:80, as in URLs. Pure.
import { addressFamily, quote, type Family } from "../../compiler/address.ts";
import type { Protocol } from "../../compiler/state.ts";

export interface TraceQuery {
  src: string;
  /** absent: any source port (the trace then says which backends the port decides between) */
  sport?: number;
  dst: string;
  dport: number;
  proto: Protocol;
}

export class QueryError extends Error {}

/** The longest SRC or DST text looked at: "[" + 39 + "]:65535/sctp" is 52. */
export const MAX_ARG = 64;

const PROTOS: Record<string, Protocol> = { tcp: "TCP", udp: "UDP", sctp: "SCTP" };

function port(s: string, what: string): number {
  const n = /^[1-9][0-9]{0,4}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new QueryError(`${what}: ${quote(s)} is not a port (1-65535)`);
  return n;
}

function address(s: string, what: string): { ip: string; family: Family } {
  try {
    return { ip: s, family: addressFamily(s) };
  } catch (e) {
    throw new QueryError(`${what}: ${(e as Error).message}`);
  }
}

/** ADDR, ADDR:PORT or [ADDR6]:PORT; `needPort`: the port is required. */
function endpoint(text: string, what: string, needPort: boolean): { ip: string; family: Family; port?: number } {
  if (typeof text !== "string" || text === "") throw new QueryError(`${what}: missing`);
  if (text.length > MAX_ARG) throw new QueryError(`${what}: ${quote(text)} is too long (at most ${MAX_ARG} characters)`);
  let host: string;
  let p: string | undefined;
  if (text.startsWith("[")) {
    const m = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
    if (!m) throw new QueryError(`${what}: ${quote(text)} is not [IPv6 address]:port`);
    host = m[1]!;
    p = m[2];
    if (p === undefined && needPort) throw new QueryError(`${what}: ${quote(text)} has no port (write [address]:port)`);
    const a = address(host, what);
    if (a.family !== 6) throw new QueryError(`${what}: brackets are for IPv6 addresses, ${quote(host)} is IPv4`);
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      if (needPort) throw new QueryError(`${what}: ${quote(text)}: write an IPv6 address with a port in brackets, [address]:port`);
      host = text;
    } else if (colons === 1) {
      host = text.slice(0, text.indexOf(":"));
      p = text.slice(text.indexOf(":") + 1);
    } else {
      if (needPort) throw new QueryError(`${what}: ${quote(text)} has no port (write address:port)`);
      host = text;
    }
  }
  const a = address(host, what);
  return { ...a, ...(p !== undefined ? { port: port(p, what) } : {}) };
}

/** Reads SRC[:SPORT] and DST:PORT[/PROTO] (protocol tcp, udp or sctp; tcp when not given). */
export function parseQuery(srcText: string, dstText: string): TraceQuery {
  if (typeof dstText !== "string") throw new QueryError("destination: missing");
  let proto: Protocol = "TCP";
  let d = dstText;
  const slash = dstText.lastIndexOf("/");
  if (slash >= 0) {
    const name = dstText.slice(slash + 1);
    const p = PROTOS[name];
    if (!p) throw new QueryError(`destination: protocol ${quote(name.slice(0, MAX_ARG))} is not tcp, udp or sctp`);
    proto = p;
    d = dstText.slice(0, slash);
  }
  const src = endpoint(srcText, "source", false);
  const dst = endpoint(d, "destination", true);
  if (src.family !== dst.family) throw new QueryError(`source ${src.ip} is IPv${src.family} and destination ${dst.ip} IPv${dst.family}: a packet has one family`);
  return { src: src.ip, ...(src.port !== undefined ? { sport: src.port } : {}), dst: dst.ip, dport: dst.port!, proto };
}

/** The query as the command line writes it. */
export function queryText(q: TraceQuery): { src: string; dst: string } {
  const hp = (ip: string, p: number) => (ip.includes(":") ? `[${ip}]:${p}` : `${ip}:${p}`);
  return { src: q.sport === undefined ? q.src : hp(q.src, q.sport), dst: `${hp(q.dst, q.dport)}/${q.proto.toLowerCase()}` };
}
