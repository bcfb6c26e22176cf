// The attribute writer's bytes, checked against layouts written out by hand: what rtnetlink
// and nfnetlink parse. Both clients' kernel tests (netlink.test.ts, nfevents.test.ts,
// agent/datapath/*.test.ts) send what it writes.
import { expect, test } from "bun:test";
import { attrs } from "./nftmsg.ts";
import { AttrWriter, HOST_LE, NLA_F_NESTED } from "./nlattr.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("a string is NUL-terminated and padded to 4 bytes; the length leaves the padding out", () => {
  const w = new AttrWriter();
  w.str(3, "veth"); // 4 + 5 bytes, 3 of padding
  expect(hex(w.written())).toBe("09000300" + "7665746800" + "000000");
});

test("integers: host order for rtnetlink, network order for nftables", () => {
  const w = new AttrWriter();
  w.u32(4, 1500);
  w.be32(2, 1500);
  const host = HOST_LE ? "dc050000" : "000005dc";
  expect(hex(w.written())).toBe(`08000400${host}` + "08000200000005dc");
});

test("nested attributes: each length covers what it holds, padding of the inner ones included", () => {
  const w = new AttrWriter();
  w.nest(18, () => {
    w.str(1, "veth"); // 12 bytes with padding
    w.nest(2 | NLA_F_NESTED, () => {
      w.raw(Uint8Array.of(1, 2, 3)); // a fixed header: padded to 4
      w.bytes(1, Uint8Array.of(0xaa)); // 5 bytes, 3 of padding
    });
  });
  const b = w.written();
  expect(b.length).toBe(4 + 12 + 4 + 4 + 8);
  expect(hex(b)).toBe(["20001200", "09000100", "7665746800000000", "10000280", "01020300", "05000100", "aa000000"].join(""));
  // and they read back as the nftables decoder walks them
  const seen: number[] = [];
  expect(attrs(b, 0, b.length, (type, at, end) => (seen.push(type), attrs(b, at, end, (t) => seen.push(t))))).toBe(true);
  expect(seen).toEqual([18, 1, 2]);
});

test("the buffer grows as needed and keeps what was written", () => {
  const w = new AttrWriter(new Uint8Array(8));
  for (let i = 0; i < 100; i++) w.be32(i, i);
  const b = w.written();
  expect(b.length).toBe(800);
  const dv = new DataView(b.buffer, b.byteOffset);
  for (let i = 0; i < 100; i++) expect([dv.getUint16(i * 8 + 2, true), dv.getUint32(i * 8 + 4, false)]).toEqual([i, i]);
});
