// The dump decoder on hostile bytes (it reads what the kernel sends, and must never throw or
// read past a message), and the element shapes it gives adopt.ts. The kernel side is in
// agent/datapath/drift.test.ts and adopt.test.ts, which list real tables through it.
import { expect, test } from "bun:test";
import { decodeChain, decodeElems, decodeNamed, decodeRule, decodeSet, decodeTable, elemJson, tableOf, udataComment } from "./nftdump.ts";

test("random and truncated bytes never throw", () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
  for (let i = 0; i < 2000; i++) {
    const m = Uint8Array.from({ length: i % 300 }, rnd);
    for (const f of [decodeChain, decodeElems, decodeNamed, decodeRule, decodeSet, decodeTable, tableOf]) expect(() => f(m)).not.toThrow();
    expect(() => udataComment(m)).not.toThrow();
  }
});

test("a table comment from nft's user data; none when the list is cut short", () => {
  const text = new TextEncoder().encode("skein marks: packet 0xffff0000 conntrack 0x80000000\0");
  expect(udataComment(Uint8Array.from([0, text.length, ...text]))).toBe("skein marks: packet 0xffff0000 conntrack 0x80000000");
  expect(udataComment(Uint8Array.from([5, 1, 9, 0, text.length, ...text]))).toBe("skein marks: packet 0xffff0000 conntrack 0x80000000");
  expect(udataComment(Uint8Array.from([0, 200, 1, 2]))).toBeUndefined();
});

test("element keys as nft prints them: addresses (IPv6 as RFC 5952), protocols by name, ports", () => {
  const v4 = Uint8Array.from([10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]);
  expect(elemJson("frontend", 4, { key: v4 })).toEqual({ concat: ["10.96.0.10", "tcp", 80] });
  expect(elemJson("frontend", 4, { key: v4, verdict: { code: -4, chain: "t_5" } })).toEqual([{ concat: ["10.96.0.10", "tcp", 80] }, { goto: { target: "t_5" } }]);
  const v6 = new Uint8Array(24);
  v6.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10], 0);
  v6[16] = 17;
  v6.set([0x01, 0xbb], 20);
  expect(elemJson("frontend", 6, { key: v6 })).toEqual({ concat: ["fd00::10", "udp", 443] });
  const pair = Uint8Array.from([0x20, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
  expect(elemJson("hairpin", 6, { key: pair })).toEqual({ concat: ["2001:db8:1::1", "2001:db8::1:0:0:1"] });
  // a key too short for its kind is no element
  expect(elemJson("frontend", 4, { key: Uint8Array.from([10, 96]) })).toBeUndefined();
});
