// skein's bits of the packet and conntrack marks: what a flag may say, and what an id may be.
import { describe, expect, test } from "bun:test";
import { checkMarks, DEFAULT_MARKS, identityBits, markShift, marksComment, marksFromComment, markValue, masqBit, maxId, maxIdentity, MIN_CT_MARK_BITS, MIN_MARK_BITS, parseMask } from "./marks.ts";

describe("parseMask", () => {
  test("hex and plain decimal ranges of contiguous bits", () => {
    expect(parseMask("0xffff0000", 8)).toBe(0xffff0000);
    expect(parseMask("0XFF00", 8)).toBe(0xff00);
    expect(parseMask("0x00ffff00", 8)).toBe(0x00ffff00);
    expect(parseMask("0xffffffff", 8)).toBe(0xffffffff);
    expect(parseMask("65280", 8)).toBe(0xff00);
    expect(parseMask("0x80000000", 1)).toBe(0x80000000);
    expect(parseMask("0x1", 1)).toBe(1);
  });

  // each: the text, and what the error must say
  const hostile: Array<[string, RegExp]> = [
    ["", /not a mask/],
    ["0x", /not a mask/],
    ["0x0", /non-zero/],
    ["0", /non-zero/],
    ["0x00000000", /non-zero/],
    ["-1", /not a mask/],
    ["-0xff00", /not a mask/],
    ["0x-ff00", /not a mask/],
    ["+65280", /not a mask/],
    ["1e5", /not a mask/],
    ["6.5e4", /not a mask/],
    ["65280.0", /not a mask/],
    ["0x1ffffffff", /not a mask/], // 33 bits
    ["0x100000000", /not a mask/],
    ["4294967296", /non-zero 32-bit/],
    ["99999999999", /not a mask/],
    ["NaN", /not a mask/],
    ["Infinity", /not a mask/],
    ["0o177400", /not a mask/],
    ["0b1111111100000000", /not a mask/],
    ["0177400", /not a mask/], // a leading zero: octal to some readers
    [" 0xff00", /not a mask/],
    ["0xff00 ", /not a mask/],
    ["0xff00\n", /not a mask/],
    ["0x_ff00", /not a mask/],
    ["0xff_00", /not a mask/],
    ["ff00", /not a mask/],
    ["0xff00ff00", /not one run of contiguous bits/],
    ["0xf0f0", /not one run/],
    ["0x80000001", /not one run/],
    ["0x0000000f", /has 4 bits; at least 8/],
    ["0x80000000", /has 1 bit; at least 8/],
    ["0ｘff00", /not a mask/], // a full-width x
    ["0x０ff00", /not a mask/],
  ];
  test.each(hostile)("%p is refused", (text, why) => {
    expect(() => parseMask(text, MIN_MARK_BITS)).toThrow(why);
  });
});

describe("ids in the range", () => {
  test("the default: the upper 16 bits of the packet mark and of the conntrack mark, whose top bit is the masquerade flag", () => {
    expect(checkMarks({ ...DEFAULT_MARKS })).toEqual({ mark: 0xffff0000, ctMark: 0xffff0000 });
    expect(markShift(DEFAULT_MARKS.mark)).toBe(16);
    expect(maxId(DEFAULT_MARKS.mark)).toBe(65535);
    expect(markValue(DEFAULT_MARKS, 1, "a")).toBe(0x10000);
    expect(markValue(DEFAULT_MARKS, 65535, "a")).toBe(0xffff0000);
    expect(masqBit(DEFAULT_MARKS)).toBe(0x80000000);
    // destination identities below the flag: 15 bits, the narrower of the two ranges
    expect(identityBits(DEFAULT_MARKS)).toBe(0x7fff0000);
    expect(maxIdentity(DEFAULT_MARKS)).toBe(32767);
  });

  test("identities fit both ranges: the smaller one limits them", () => {
    expect(maxIdentity({ mark: 0x0000ff00, ctMark: 0xffff0000 })).toBe(255);
    expect(maxIdentity({ mark: 0xffffffff, ctMark: 0x0001ff00 })).toBe(255);
    expect(identityBits({ mark: 0xff, ctMark: 0x0001ff00 })).toBe(0x0000ff00);
    expect(maxIdentity({ mark: 0xffff0000, ctMark: 0xffffffff })).toBe(65535);
  });

  test("the conntrack range needs the masquerade flag and 8 identity bits", () => {
    expect(MIN_CT_MARK_BITS).toBe(9);
    expect(checkMarks({ mark: 0xff, ctMark: 0xff800000 })).toEqual({ mark: 0xff, ctMark: 0xff800000 });
    expect(() => checkMarks({ mark: 0xffff0000, ctMark: 0xff000000 })).toThrow("conntrack mark range: 0xff000000 has 8 bits; at least 9 are needed");
    expect(() => checkMarks({ mark: 0xffff0000, ctMark: 0x80000000 })).toThrow("conntrack mark range: 0x80000000 has 1 bit; at least 9 are needed");
  });

  test("other ranges shift the id into place; the masquerade flag is the highest conntrack bit", () => {
    const m = { mark: 0x00ffff00, ctMark: 0x00f00000 };
    expect(markValue(m, 0x1234, "a")).toBe(0x00123400);
    expect(masqBit(m)).toBe(0x00800000);
    expect(markValue({ mark: 0x7fff8000, ctMark: 1 }, 0xffff, "a")).toBe(0x7fff8000);
    expect(masqBit({ mark: 0xff, ctMark: 1 })).toBe(1);
  });

  test("an id the range cannot hold is an error naming the target, never wrapped", () => {
    const m = { mark: 0x0000ff00, ctMark: 0x80000000 };
    expect(markValue(m, 255, "default/a:80/TCP cluster")).toBe(0xff00);
    expect(() => markValue(m, 256, "default/a:80/TCP cluster")).toThrow("target 256 (default/a:80/TCP cluster) does not fit the packet mark range 0x0000ff00, which holds ids 1-255: give --mark-mask more bits");
    expect(() => markValue(DEFAULT_MARKS, 65536, "x")).toThrow(/holds ids 1-65535/);
    expect(() => markValue(DEFAULT_MARKS, 0, "x")).toThrow(/does not fit/);
  });

  test("a configuration is checked field by field", () => {
    expect(() => checkMarks({ mark: 0xff00ff00, ctMark: 0x80000000 })).toThrow(/^packet mark range: 0xff00ff00 is not one run/);
    expect(() => checkMarks({ mark: 0xffff0000, ctMark: 0 })).toThrow(/^conntrack mark range: must be a non-zero/);
    expect(() => checkMarks({ mark: 0xf0, ctMark: 1 })).toThrow(/^packet mark range: 0x000000f0 has 4 bits/);
  });
});

test("the table comment records both ranges and reads back; anything else reads as none", () => {
  const m = { mark: 0x00ffff00, ctMark: 0x40000000 };
  expect(marksComment(m)).toBe("skein marks: packet 0x00ffff00 conntrack 0x40000000");
  expect(marksFromComment(marksComment(m))).toEqual(m);
  expect(marksFromComment(marksComment(DEFAULT_MARKS))).toEqual({ ...DEFAULT_MARKS });
  for (const c of [undefined, "", "skein", "skein marks: packet 0xffff0000", "skein marks: packet 0xffff0000 conntrack 0x80000000 extra"]) expect(marksFromComment(c)).toBeUndefined();
});
