// Decodes what the kernel answers to nftables dump requests (a table's chains, rules, sets,
// objects, flowtables, and a set's elements), for reading skein's table without nft: nft
// 1.0.6 fetches every set element of the table into its cache before it lists anything, the
// million ring slots of 10,000 services included, which takes it tens of seconds and
// gigabytes (docs/measurements.md). A dump asks the kernel for just the objects wanted. Pure and bounded, like
// nftmsg.ts: lengths are checked against the bytes at hand, unknown attributes are skipped.
import { addressFromBytes } from "../../compiler/address.ts";
import { attrs, str } from "./nftmsg.ts";

/** The kernel's verdict codes of a goto and a jump, as decodeElems gives them (signed) */
export const NFT_GOTO = -4;
export const NFT_JUMP = -3;
export const NFT_MSG = { GETTABLE: 1, GETCHAIN: 4, GETRULE: 7, GETSET: 10, GETSETELEM: 13, GETOBJ: 19, GETFLOWTABLE: 23 } as const;

const be32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset + at, 4).getUint32(0, false);
const bei32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset + at, 4).getInt32(0, false);

/** The attributes of one nftables message (after its 16-byte header and 4-byte nfgenmsg). */
function top(m: Uint8Array): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  attrs(m, 20, m.length, (t, at, end) => void out.set(t, [at, end]));
  return out;
}

/** The table an object belongs to (attribute 1 of every kind but a table itself). */
export function tableOf(m: Uint8Array): string {
  const t = top(m).get(1);
  return t ? str(m, t[0], t[1]) : "";
}

export interface DumpedTable {
  name: string;
  /** NFT_TABLE_F_*: 1 dormant, 2 owner, 4 persist */
  flags: number;
  userdata: Uint8Array;
}

export function decodeTable(m: Uint8Array): DumpedTable {
  const a = top(m);
  const s = (t: number) => (a.has(t) ? str(m, ...a.get(t)!) : "");
  const flags = a.has(2) && a.get(2)![1] - a.get(2)![0] >= 4 ? be32(m, a.get(2)![0]) : 0;
  const ud = a.get(6);
  return { name: s(1), flags, userdata: ud ? m.slice(ud[0], ud[1]) : new Uint8Array(0) };
}

export const TABLE_FLAGS: Record<number, string> = { 1: "dormant", 2: "owner", 4: "persist" };

/** The comment nft keeps in a table's user data (a type-length-value list; type 0 is it). */
export function udataComment(ud: Uint8Array): string | undefined {
  for (let o = 0; o + 2 <= ud.length; ) {
    const type = ud[o]!;
    const len = ud[o + 1]!;
    if (o + 2 + len > ud.length) return undefined;
    if (type === 0) return str(ud, o + 2, o + 2 + len);
    o += 2 + len;
  }
  return undefined;
}

export interface DumpedChain {
  name: string;
  /** base chains: hook number, priority, policy (NF_DROP 0, NF_ACCEPT 1) and type */
  hook?: number;
  prio?: number;
  policy?: number;
  type?: string;
}

export function decodeChain(m: Uint8Array): DumpedChain {
  const a = top(m);
  const c: DumpedChain = { name: a.has(3) ? str(m, ...a.get(3)!) : "" };
  const hook = a.get(4); // NFTA_CHAIN_HOOK: nested NFTA_HOOK_HOOKNUM (1), NFTA_HOOK_PRIORITY (2)
  if (hook) {
    attrs(m, hook[0], hook[1], (t, at, end) => {
      if (end - at < 4) return;
      if (t === 1) c.hook = be32(m, at);
      if (t === 2) c.prio = bei32(m, at);
    });
  }
  const policy = a.get(5);
  if (policy && policy[1] - policy[0] >= 4) c.policy = be32(m, policy[0]);
  const type = a.get(7);
  if (type) c.type = str(m, ...type);
  return c;
}

export interface DumpedRule {
  chain: string;
  /** NFTA_RULE_EXPRESSIONS as the kernel holds them, hex: what base chains are compared by */
  exprs: string;
  /** the chains its verdicts jump or go to */
  targets: string[];
}

export function decodeRule(m: Uint8Array): DumpedRule {
  const a = top(m);
  const chain = a.has(2) ? str(m, ...a.get(2)!) : "";
  const e = a.get(4);
  const bytes = e ? m.subarray(e[0], e[1]) : new Uint8Array(0);
  const targets: string[] = [];
  // a verdict's chain is a string attribute inside an immediate expression's data; rather
  // than decode every expression kind, walk the nesting and take NFTA_VERDICT_CHAIN (2)
  // wherever a NFTA_DATA_VERDICT (2) holds one
  const walk = (from: number, to: number, depth: number) => {
    if (depth > 8) return;
    attrs(m, from, to, (t, at, end) => {
      if (end - at < 4) return;
      const nested = attrs(m, at, end, () => {});
      if (nested) {
        let code: number | undefined;
        let name: string | undefined;
        attrs(m, at, end, (vt, vat, vend) => {
          if (vt === 1 && vend - vat === 4) code = bei32(m, vat);
          if (vt === 2) name = str(m, vat, vend);
        });
        if (t === 2 && name !== undefined && (code === -3 || code === -4) && /^[\w.-]+$/.test(name)) targets.push(name);
        walk(at, end, depth + 1);
      }
    });
  };
  if (e) walk(e[0], e[1], 0);
  return { chain, exprs: Buffer.from(bytes).toString("hex"), targets: [...new Set(targets)] };
}

export interface DumpedSet {
  name: string;
  /** NFTA_SET_FLAGS (nftmsg.ts NFT_SET_*: NFT_SET_MAP marks a map) */
  flags: number;
  /** the size it was declared with (NFTA_SET_DESC's SIZE), 0 when none */
  size: number;
}

export function decodeSet(m: Uint8Array): DumpedSet {
  const a = top(m);
  const f = a.get(3);
  const d = a.get(9);
  let size = 0;
  if (d) attrs(m, d[0], d[1], (t, at, end) => void (t === 1 && end - at >= 4 && (size = be32(m, at))));
  return { name: a.has(2) ? str(m, ...a.get(2)!) : "", flags: f && f[1] - f[0] >= 4 ? be32(m, f[0]) : 0, size };
}

export interface DumpedNamed {
  name: string;
}

/** An object (counter, quota…) or flowtable: attribute 2 names it in both. */
export function decodeNamed(m: Uint8Array): DumpedNamed {
  const a = top(m);
  return { name: a.has(2) ? str(m, ...a.get(2)!) : "" };
}

export interface DumpedElem {
  key: Uint8Array;
  /** the last key of an interval in a set of concatenations (NFTA_SET_ELEM_KEY_END) */
  keyEnd?: Uint8Array;
  /** a verdict map's element: the verdict's code and chain */
  verdict?: { code: number; chain?: string };
  /** the element's counter, in a set declared with `counter` */
  counter?: { packets: number; bytes: number };
}

const be64 = (b: Uint8Array, at: number) => Number(new DataView(b.buffer, b.byteOffset + at, 8).getBigUint64(0, false));

/** A counter expression (NFTA_EXPR_NAME "counter", NFTA_EXPR_DATA: bytes 1, packets 2). */
function counterExpr(m: Uint8Array, at: number, end: number): DumpedElem["counter"] {
  let name = "";
  const c = { packets: 0, bytes: 0 };
  attrs(m, at, end, (t, a, e) => {
    if (t === 1) name = str(m, a, e);
    if (t === 2) {
      attrs(m, a, e, (ct, ca, ce) => {
        if (ce - ca !== 8) return;
        if (ct === 1) c.bytes = be64(m, ca);
        if (ct === 2) c.packets = be64(m, ca);
      });
    }
  });
  return name === "counter" ? c : undefined;
}

/** The elements of one NFT_MSG_NEWSETELEM dump message. */
export function decodeElems(m: Uint8Array): DumpedElem[] {
  const out: DumpedElem[] = [];
  const list = top(m).get(3); // NFTA_SET_ELEM_LIST_ELEMENTS
  if (!list) return out;
  attrs(m, list[0], list[1], (_t, at, end) => {
    let key: Uint8Array | undefined;
    let keyEnd: Uint8Array | undefined;
    let verdict: DumpedElem["verdict"];
    let counter: DumpedElem["counter"];
    attrs(m, at, end, (t, eat, eend) => {
      if (t === 1 || t === 10) {
        // NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_KEY_END: nested NFTA_DATA_VALUE (1)
        attrs(m, eat, eend, (dt, dat, dend) => {
          if (dt !== 1) return;
          if (t === 1) key = m.slice(dat, dend);
          else keyEnd = m.slice(dat, dend);
        });
      } else if (t === 7) {
        // NFTA_SET_ELEM_EXPR: the one expression of the element
        counter ??= counterExpr(m, eat, eend);
      } else if (t === 11) {
        // NFTA_SET_ELEM_EXPRESSIONS: a list (NFTA_LIST_ELEM 1) of expressions
        attrs(m, eat, eend, (lt, lat, lend) => {
          if (lt === 1) counter ??= counterExpr(m, lat, lend);
        });
      } else if (t === 2) {
        // NFTA_SET_ELEM_DATA: nested NFTA_DATA_VERDICT (2): code (1), chain (2)
        attrs(m, eat, eend, (dt, dat, dend) => {
          if (dt !== 2) return;
          const v: { code: number; chain?: string } = { code: 0 };
          attrs(m, dat, dend, (vt, vat, vend) => {
            if (vt === 1 && vend - vat === 4) v.code = bei32(m, vat);
            if (vt === 2) v.chain = str(m, vat, vend);
          });
          verdict = v;
        });
      }
    });
    if (key) out.push({ key, ...(keyEnd && { keyEnd }), verdict, ...(counter && { counter }) });
  });
  return out;
}

const PROTO: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

// as the model holds addresses (compiler/address.ts: RFC 5952 text)
const ipText = addressFromBytes;

/**
 * An element of skein's sets in the shape nft's JSON gives it (what adopt.ts reads): the key
 * `addr . proto . port` of svc/noep/front, or `addr . addr` of hairpin, and a verdict map's
 * `goto`. Each part of a concatenation takes a multiple of 4 bytes.
 */
export function elemJson(kind: "frontend" | "hairpin", family: 4 | 6, e: DumpedElem): unknown {
  const w = family === 4 ? 4 : 16;
  const k = e.key;
  let key: { concat: unknown[] };
  if (kind === "hairpin") {
    if (k.length < 2 * w) return undefined;
    key = { concat: [ipText(k, 0, family), ipText(k, w, family)] };
  } else {
    if (k.length < w + 8) return undefined;
    const proto = k[w]!;
    key = { concat: [ipText(k, 0, family), PROTO[proto] ?? proto, (k[w + 4]! << 8) | k[w + 5]!] };
  }
  if (!e.verdict) return key;
  const v = e.verdict;
  const verdict = v.code === NFT_GOTO && v.chain ? { goto: { target: v.chain } } : v.code === NFT_JUMP && v.chain ? { jump: { target: v.chain } } : { verdict: v.code };
  return [key, verdict];
}
