// A node's record on the gossip bus: what the Kubernetes API does not carry (underlay and public
// address, VTEP MAC, site, liveness). Anyone who can write to the bucket can write a record, so
// a record is untrusted input. decodeRecord lets nothing through that is not exactly a record:
// before cbor-x sees the bytes, a small walker checks the CBOR shape (one map of known keys,
// definite lengths, text keys, values that are integers, floats, short text or short lists of
// text, and no tags at all), so no CBOR tag or cbor-x extension can make the decoder build a
// Date, Map, Set, typed array, record structure or any other object; then each field is
// checked, addresses through compiler/address.ts.
import { createHash } from "node:crypto";
// the subpaths, as agent/ipam/disk-store.ts: the main entry installs cbor-x's native string
// extractor (cbor-extract) into the decoder every part of the process shares, and with it
// strings of megabytes decoded as "Unexpected end of buffer" (the IPAM state's, in one test run)
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { AddressError, addressFamily, parseCidr, quote, unicastProblem } from "../../compiler/address.ts";

export interface NodeRecord {
  /** the Node's name (DNS subdomain, at most 253 characters); also the record's key */
  node: string;
  /** canonical CIDRs, 1 or 2 */
  podCIDRs: string[];
  /** the node's underlay (tunnel endpoint) address */
  underlay: string;
  /** its public address when behind NAT or reachable publicly */
  public?: string;
  /** lower-case "aa:bb:cc:dd:ee:ff", unicast, not all-zero */
  vtepMac: string;
  /** label-value syntax, at most 63 characters */
  site?: string;
  /** agent version, at most 64 printable ASCII characters */
  version: string;
  /** non-negative safe integer that grows with every put of one agent run */
  seq: number;
  /** ms since the epoch when the agent started (seq restarts at 0 per run) */
  startedAt: number;
}

export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/** The largest record accepted, encoded. A real one is about 200 bytes. */
export const MAX_RECORD_BYTES = 4096;

const REQUIRED = ["node", "podCIDRs", "underlay", "vtepMac", "version", "seq", "startedAt"] as const;
const OPTIONAL = ["public", "site"] as const;
const KNOWN: ReadonlySet<string> = new Set<string>([...REQUIRED, ...OPTIONAL]);
const MAX_TEXT_BYTES = 253;
const MAX_LIST = 2;

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, pack: false });
// the walker has already refused every tag, so these options matter only as a second guard
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, structuredClone: false });

const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Why `v` is no Node name, or undefined. */
export function nodeNameProblem(v: unknown): string | undefined {
  if (typeof v !== "string") return `not a string but ${typeName(v)}`;
  if (v === "") return "empty";
  if (v.length > 253) return "longer than 253 characters";
  if (!NODE_NAME.test(v)) return "not a DNS subdomain (lower-case letters, digits, '-' and '.')";
  return undefined;
}

/** Why `v` is no VTEP MAC, or undefined. */
export function macProblem(v: unknown): string | undefined {
  if (typeof v !== "string") return `not a string but ${typeName(v)}`;
  if (!MAC.test(v)) return 'not a lower-case MAC address "aa:bb:cc:dd:ee:ff"';
  if (parseInt(v.slice(0, 2), 16) & 1) return "a multicast MAC address";
  if (v === "00:00:00:00:00:00") return "the all-zero MAC address";
  return undefined;
}

/** The record's bytes on the bus. The record is checked first: nothing invalid is sent. */
export function encodeRecord(r: NodeRecord): Uint8Array {
  const plain: Record<string, unknown> = {};
  for (const k of [...REQUIRED, ...OPTIONAL]) if (r[k] !== undefined) plain[k] = r[k];
  check(r.node, plain);
  const bytes = encoder.encode(plain);
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordError(`node record ${quote(r.node)}: ${bytes.length} bytes, more than ${MAX_RECORD_BYTES}`);
  return new Uint8Array(bytes);
}

/** Reads the record stored under `key`; throws RecordError naming the key and the field. */
export function decodeRecord(key: string, bytes: Uint8Array): NodeRecord {
  const what = `node record ${quote(key)}`;
  if (!(bytes instanceof Uint8Array)) throw new RecordError(`${what}: not bytes`);
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordError(`${what}: ${bytes.length} bytes, more than ${MAX_RECORD_BYTES}: refused before decoding`);
  walk(what, bytes);
  let v: unknown;
  try {
    v = decoder.decode(bytes);
  } catch (e) {
    throw new RecordError(`${what}: not CBOR (${(e as Error).message})`);
  }
  return check(key, v);
}

/** A locally administered unicast MAC from a hash of the node name: what the node's agent
 * gives its VXLAN device, and what peers use when they know only the Node object. */
export function vtepMacFor(nodeName: string): string {
  const h = createHash("sha256").update(`skein vtep ${nodeName}`).digest();
  const b = [...h.subarray(0, 6)];
  b[0] = (b[0]! & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Uint8Array) return "bytes";
  if (typeof v === "object") return "an object";
  return `a ${typeof v}`;
}

function check(key: string, v: unknown): NodeRecord {
  const what = `node record ${quote(key)}`;
  const keyBad = nodeNameProblem(key);
  if (keyBad) throw new RecordError(`${what}: the key is no Node name (${keyBad})`);
  if (v === null || typeof v !== "object" || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) {
    throw new RecordError(`${what}: not a map but ${typeName(v)}`);
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw new RecordError(`${what}: unknown field ${quote(k)}`);
  for (const k of REQUIRED) if (!Object.hasOwn(o, k) || o[k] === undefined) throw new RecordError(`${what}: field ${k}: missing`);
  const field = (name: string, why: string) => new RecordError(`${what}: field ${name}: ${why}`);
  const text = (name: string, max: number): string => {
    const x = o[name];
    if (typeof x !== "string") throw field(name, `not a string but ${typeName(x)}`);
    if (x.length > max) throw field(name, `longer than ${max} characters`);
    return x;
  };

  const node = text("node", 253);
  const nodeBad = nodeNameProblem(node);
  if (nodeBad) throw field("node", nodeBad);
  if (node !== key) throw field("node", `${quote(node)} is not the key ${quote(key)}`);

  const cidrs = o.podCIDRs;
  if (!Array.isArray(cidrs)) throw field("podCIDRs", `not a list but ${typeName(cidrs)}`);
  if (cidrs.length < 1 || cidrs.length > MAX_LIST) throw field("podCIDRs", `${cidrs.length} entries, must be 1 or 2`);
  const families = new Set<number>();
  cidrs.forEach((c, i) => {
    try {
      families.add(parseCidr(c).family);
    } catch (e) {
      throw field(`podCIDRs[${i}]`, (e as AddressError).message);
    }
  });
  if (families.size !== cidrs.length) throw field("podCIDRs", "two CIDRs of one family");

  const addr = (name: string): string => {
    const x = text(name, 64);
    try {
      addressFamily(x);
    } catch (e) {
      throw field(name, (e as AddressError).message);
    }
    // a tunnel to it would stay on the node, or spray the node's traffic over its link
    const bad = unicastProblem(x);
    if (bad) throw field(name, `${quote(x)} is ${bad}: not an address a node is reached at`);
    return x;
  };
  const underlay = addr("underlay");
  const pub = o.public === undefined ? undefined : addr("public");

  const vtepMac = text("vtepMac", 17);
  const macBad = macProblem(vtepMac);
  if (macBad) throw field("vtepMac", `${quote(vtepMac)} is ${macBad}`);

  let site: string | undefined;
  if (o.site !== undefined) {
    site = text("site", 63);
    if (site === "" || !LABEL_VALUE.test(site)) throw field("site", `${quote(site)} is not a label value`);
  }

  const version = text("version", 64);
  if (!/^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(version)) throw field("version", `${quote(version)} is not printable ASCII`);

  const count = (name: string): number => {
    const x = o[name];
    if (typeof x !== "number") throw field(name, `not a number but ${typeName(x)}`);
    if (!Number.isSafeInteger(x) || x < 0) throw field(name, `${x} is not a non-negative safe integer`);
    return x;
  };
  const seq = count("seq");
  const startedAt = count("startedAt");

  const r: NodeRecord = { node, podCIDRs: [...cidrs] as string[], underlay, vtepMac, version, seq, startedAt };
  if (pub !== undefined) r.public = pub;
  if (site !== undefined) r.site = site;
  return r;
}

// CBOR major types (RFC 8949 section 3.1)
const UINT = 0, NINT = 1, TEXT = 3, ARRAY = 4, MAP = 5, TAG = 6, SIMPLE = 7;
const MAJOR_NAME = ["an integer", "an integer", "bytes", "text", "a list", "a map", "a tag", "a simple value"];

/** A shape problem found by the walker; the caller says which record and field. */
class Shape extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Checks the shape of the CBOR in `b` without building anything: one map, at most the known
 * number of entries, unique known text keys, each value an integer, a float, false/true/null,
 * text of at most MAX_TEXT_BYTES bytes, or a list of at most MAX_LIST such texts. Tags,
 * byte strings, nested maps and indefinite lengths are refused, as are trailing bytes.
 */
function walk(what: string, b: Uint8Array): void {
  let at = 0;
  const head = (): { major: number; arg: number } => {
    if (at >= b.length) throw new Shape("not CBOR (ends early)");
    const first = b[at++]!;
    const major = first >> 5;
    const info = first & 31;
    if (major === TAG) throw new Shape("not a plain record: a CBOR tag (a Date, Map, typed array, record structure or other object) is refused");
    if (info < 24) return { major, arg: info };
    if (info > 27) throw new Shape(info === 31 ? "not a plain record: an indefinite length is refused" : "not CBOR (reserved length)");
    const n = 1 << (info - 24);
    if (at + n > b.length) throw new Shape("not CBOR (ends early)");
    // a float's bits are no length: its value is checked after decoding
    if (major === SIMPLE && info >= 25) {
      at += n;
      return { major, arg: -1 };
    }
    let arg = 0;
    for (let i = 0; i < n; i++) arg = arg * 256 + b[at++]!;
    return { major, arg };
  };
  const text = (): string => {
    const h = head();
    if (h.major !== TEXT) throw new Shape(`not a plain record: ${MAJOR_NAME[h.major]} where text belongs`);
    if (h.arg > MAX_TEXT_BYTES) throw new Shape(`text of ${h.arg} bytes, more than ${MAX_TEXT_BYTES}`);
    if (at + h.arg > b.length) throw new Shape("not CBOR (ends early)");
    let s: string;
    try {
      s = utf8.decode(b.subarray(at, at + h.arg));
    } catch {
      throw new Shape("text that is not UTF-8");
    }
    at += h.arg;
    return s;
  };
  const value = () => {
    const start = at;
    const h = head();
    switch (h.major) {
      case UINT:
      case NINT:
        return;
      case SIMPLE:
        if (h.arg !== -1 && (h.arg < 20 || h.arg > 22)) throw new Shape("not a plain record: a CBOR simple value other than false/true/null");
        return;
      case TEXT:
        at = start;
        text();
        return;
      case ARRAY:
        if (h.arg > MAX_LIST) throw new Shape(`a list of ${h.arg} entries, at most ${MAX_LIST}`);
        for (let j = 0; j < h.arg; j++) {
          try {
            text();
          } catch (e) {
            if (e instanceof Shape) throw new Shape(`[${j}]: ${e.message}`);
            throw e;
          }
        }
        return;
      default:
        throw new Shape(`not a plain record: ${MAJOR_NAME[h.major]} where a string, number or list of strings belongs`);
    }
  };
  let field = "";
  try {
    const m = head();
    if (m.major !== MAP) throw new Shape(`not a map but ${MAJOR_NAME[m.major]}`);
    if (m.arg > KNOWN.size) throw new Shape(`a map of ${m.arg} entries, more than the ${KNOWN.size} fields a record has`);
    const seen = new Set<string>();
    for (let i = 0; i < m.arg; i++) {
      field = "";
      const k = text();
      if (!KNOWN.has(k)) throw new Shape(`unknown field ${quote(k)}`);
      if (seen.has(k)) throw new Shape(`field ${k}: given twice`);
      seen.add(k);
      field = k;
      value();
    }
    field = "";
    if (at !== b.length) throw new Shape(`${b.length - at} bytes after the record`);
  } catch (e) {
    if (e instanceof Shape) throw new RecordError(`${what}: ${field ? `field ${field}: ` : ""}${e.message}`);
    throw e;
  }
}
