import { describe, expect, test } from "bun:test";
import { Encoder, encode } from "cbor-x/encode";
import { MAX_RECORD_BYTES, RecordError, decodeRecord, encodeRecord, macProblem, vtepMacFor, type NodeRecord } from "./record.ts";

const good: NodeRecord = {
  node: "n1",
  podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  underlay: "192.168.50.11",
  public: "203.0.113.7",
  vtepMac: "02:11:22:33:44:55",
  site: "rack-1",
  version: "0.1.0",
  seq: 7,
  startedAt: 1_798_765_432_123,
};

/** Encodes `o` as a plain CBOR map (the way a hostile writer would), with no checking. */
const raw = (o: unknown) => new Uint8Array(new Encoder({ useRecords: false, mapsAsObjects: true }).encode(o));
const withField = (k: string, v: unknown) => raw({ ...good, [k]: v });
const without_ = (k: keyof NodeRecord) => {
  const o: Record<string, unknown> = { ...good };
  delete o[k];
  return o;
};
const without = (k: keyof NodeRecord) => raw(without_(k));

function refused(bytes: Uint8Array, ...parts: string[]) {
  let err: unknown;
  try {
    decodeRecord("n1", bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(RecordError);
  const msg = (err as Error).message;
  expect(msg).toContain('"n1"');
  for (const p of parts) expect(msg).toContain(p);
}

describe("encode/decode", () => {
  test("round trip, with and without optional fields", () => {
    expect(decodeRecord("n1", encodeRecord(good))).toEqual(good);
    const { public: _p, site: _s, ...min } = good;
    expect(decodeRecord("n1", encodeRecord(min))).toEqual(min);
    expect(encodeRecord(good).length).toBeLessThan(300);
  });
  test("encode refuses an invalid record", () => {
    expect(() => encodeRecord({ ...good, underlay: "010.0.0.1" })).toThrow(RecordError);
  });
});

describe("decode refuses", () => {
  test("garbage and non-map CBOR", () => {
    refused(new Uint8Array([0xff, 0x00, 0x13, 0x37]), "refused");
    refused(new TextEncoder().encode("GET / HTTP/1.1"), "not a map but bytes");
    refused(new Uint8Array([]), "ends early");
    refused(raw("hello"), "not a map but text");
    refused(raw([1, 2]), "not a map but a list");
    refused(raw(42), "not a map but an integer");
    refused(new Uint8Array([...encodeRecord(good), 0]), "1 bytes after the record");
    refused(encodeRecord(good).subarray(0, 40), "ends early");
  });
  test("more than 4 KiB, before decoding", () => {
    const big = new Uint8Array(MAX_RECORD_BYTES + 1).fill(0xa1);
    refused(big, "more than 4096", "before decoding");
  });
  test("unknown, missing and repeated keys", () => {
    refused(withField("extra", 1), "a map of 10 entries, more than the 9 fields");
    refused(raw({ ...without_("site"), extra: 1 }), 'unknown field "extra"');
    refused(without("underlay"), "field underlay: missing");
    refused(without("seq"), "field seq: missing");
    // a map whose key "node" comes twice: hand-made, no encoder writes it
    const twice = new Uint8Array([0xa2, 0x64, ...Buffer.from("node"), 0x62, ...Buffer.from("n1"), 0x64, ...Buffer.from("node"), 0x62, ...Buffer.from("n1")]);
    refused(twice, "field node: given twice");
    refused(raw({ ...without_("site"), __proto__x: 1 }), "unknown field");
    // a map with a key that is a number
    refused(new Uint8Array([0xa1, 0x01, 0x02]), "an integer where text belongs");
  });
  test("wrong types", () => {
    refused(withField("seq", "7"), "field seq: not a number but a string");
    refused(withField("startedAt", ["1"]), "field startedAt: not a number but a list");
    refused(withField("startedAt", [1]), "field startedAt: [0]: not a plain record: an integer where text belongs");
    refused(withField("underlay", { a: 1 }), "field underlay: not a plain record: a map");
    refused(withField("underlay", ["192.168.50.11"]), "field underlay: not a string but a list");
    refused(withField("podCIDRs", "10.244.1.0/24"), "field podCIDRs: not a list but a string");
    refused(withField("podCIDRs", [["10.244.1.0/24"]]), "field podCIDRs: [0]: not a plain record: a list where text belongs");
    refused(withField("podCIDRs", ["10.244.1.0/24", "fd00::/64", "10.244.2.0/24"]), "field podCIDRs: a list of 3 entries, at most 2");
    // a list head claiming 100,000 entries in a few bytes
    refused(new Uint8Array([0xa1, 0x68, ...Buffer.from("podCIDRs"), 0x9a, 0x00, 0x01, 0x86, 0xa0]), "field podCIDRs: a list of 100000 entries");
    refused(withField("podCIDRs", []), "field podCIDRs: 0 entries");
    refused(withField("version", "x".repeat(300)), "field version: text of 300 bytes");
    refused(withField("version", "x".repeat(65)), "field version: longer than 64");
    refused(withField("version", "bad\nversion"), "field version");
    refused(withField("site", "not a label"), "field site");
    refused(withField("public", null), "field public: not a string but null");
    refused(withField("node", true), "field node: not a string but a boolean");
    refused(withField("vtepMac", Buffer.alloc(6)), "field vtepMac: not a plain record: bytes");
  });
  test("numbers that are negative, fractions or unsafe", () => {
    refused(withField("seq", -1), "field seq: -1 is not a non-negative safe integer");
    refused(withField("seq", 1.5), "field seq: 1.5");
    refused(withField("seq", 2 ** 53), "field seq");
    refused(withField("startedAt", Number.NaN), "field startedAt");
    refused(withField("seq", 2n ** 64n - 1n), "field seq");
  });
  test("addresses that are not canonical, CIDRs with host bits", () => {
    refused(withField("underlay", "010.0.0.1"), "field underlay", "leading zero");
    refused(withField("public", "2001:DB8::1"), "field public", "canonical");
    refused(withField("podCIDRs", ["10.244.1.1/24"]), "field podCIDRs[0]", "host bits");
    refused(withField("podCIDRs", ["10.244.1.0/24", "10.244.2.0/24"]), "field podCIDRs: two CIDRs of one family");
  });
  test("addresses no node is reached at: unspecified, loopback, link-local, multicast, broadcast", () => {
    for (const field of ["underlay", "public"]) {
      for (const [ip, why] of [["0.0.0.0", "unspecified"], ["127.0.0.1", "loopback"], ["169.254.1.1", "link-local"], ["224.0.0.1", "multicast"], ["239.1.2.3", "multicast"], ["255.255.255.255", "broadcast"], ["::1", "loopback"], ["ff02::1", "multicast"], ["ff0e::5", "multicast"], ["fe80::1", "link-local"]] as const) {
        expect(() => decodeRecord("n1", withField(field, ip))).toThrow(new RegExp(`field ${field}: "${ip.replace(/\./g, "\\.")}" is .*${why}`));
      }
    }
    expect(decodeRecord("n1", withField("public", "203.0.113.7")).public).toBe("203.0.113.7");
  });

  test("MACs: multicast, all-zero, upper case, malformed", () => {
    refused(withField("vtepMac", "01:00:5e:00:00:01"), "field vtepMac", "multicast");
    refused(withField("vtepMac", "00:00:00:00:00:00"), "field vtepMac", "all-zero");
    refused(withField("vtepMac", "02:AA:BB:CC:DD:EE"), "field vtepMac", "lower-case");
    refused(withField("vtepMac", "02-aa-bb-cc-dd-ee"), "field vtepMac");
    refused(withField("vtepMac", "02:aa:bb:cc:dd"), "field vtepMac");
  });
  test("key and node name", () => {
    expect(() => decodeRecord("n2", encodeRecord(good))).toThrow(/field node: "n1" is not the key "n2"/);
    expect(() => decodeRecord("N1", encodeRecord({ ...good }))).toThrow(/the key is no Node name/);
    refused(withField("node", "N1"), "field node");
  });
  test("CBOR tags and cbor-x extensions that would build objects", () => {
    // tag 1 (epoch time → Date), cbor-x's Map (tag 259), Set (258), typed arrays (tags 64-87),
    // record structures (tag 105 / 0xdfff...), bignum (tag 2), generic object (27)
    refused(withField("startedAt", new Date(0)), "CBOR tag");
    refused(encode(new Map<string, unknown>(Object.entries(good))), "CBOR tag");
    refused(withField("site", new Set(["a"])), "CBOR tag");
    refused(withField("seq", new Float64Array([1])), "CBOR tag");
    refused(new Uint8Array(new Encoder({ useRecords: true }).encode(good)), "CBOR tag");
    refused(new Uint8Array([0xc2, 0x41, 0x01]), "CBOR tag");
    refused(new Uint8Array([0xd8, 0x1b, 0x82, 0x64, ...Buffer.from("Date"), 0x00]), "CBOR tag");
    // a tag hidden inside a list
    refused(new Uint8Array([0xa1, 0x68, ...Buffer.from("podCIDRs"), 0x81, 0xc1, 0x00]), "field podCIDRs: [0]: not a plain record: a CBOR tag");
  });
  test("indefinite lengths", () => {
    refused(new Uint8Array([0xbf, 0xff]), "indefinite length");
  });
});

describe("vtepMacFor", () => {
  test("deterministic, locally administered unicast, differs per name", () => {
    const a = vtepMacFor("n1");
    expect(vtepMacFor("n1")).toBe(a);
    expect(vtepMacFor("n2")).not.toBe(a);
    expect(macProblem(a)).toBeUndefined();
    expect(parseInt(a.slice(0, 2), 16) & 0x03).toBe(0x02);
  });
});
