import { describe, expect, test } from "bun:test";
import ipaddr from "ipaddr.js";
import { HOSTILE, VALID_ADDRESSES, VALID_CIDRS } from "./address.case.ts";
import { addressBytes, addressFamily, AddressError, cidrsOverlap, MAX_TEXT, parseCidr, quote, specialUse } from "./address.ts";

const refusal = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AddressError);
    return (e as Error).message;
  }
  return "accepted";
};

describe("addresses", () => {
  test.each(HOSTILE.map((h) => [quote(h.value), h] as const))("%s is refused, and says why", (_n, h) => {
    const m = refusal(() => addressFamily(h.value));
    expect(m).toMatch(h.asAddress);
    // the value is quoted, cut short when long, never echoed whole
    expect(m.startsWith(quote(h.value))).toBe(true);
    expect(m.length).toBeLessThan(300);
  });

  test("the table is long enough to mean something", () => expect(HOSTILE.length).toBeGreaterThanOrEqual(30));

  test.each(VALID_ADDRESSES.map((a) => [a]))("%s is read, and is its own canonical text", (a) => {
    const f = addressFamily(a);
    expect(ipaddr.parse(a).toString()).toBe(a);
    expect(f).toBe(a.includes(":") ? 6 : 4);
    expect(addressBytes(a)).toEqual(ipaddr.parse(a).toByteArray());
  });

  test("a family asked for is held to", () => {
    expect(addressFamily("10.0.0.1", 4)).toBe(4);
    expect(refusal(() => addressFamily("fd00::1", 4))).toBe('"fd00::1" is not an IPv4 address');
    expect(refusal(() => addressFamily("10.0.0.1", 6))).toBe('"10.0.0.1" is not an IPv6 address');
  });

  test("the message of the issue's example", () => {
    expect(refusal(() => addressFamily("010.0.0.1"))).toBe('"010.0.0.1" is not a valid IPv4 address (leading zero)');
  });

  test("every canonical IPv6 spelling ipaddr.js writes is read back", () => {
    let seed = 7;
    const r = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 500; i++) {
      // runs of zero groups, so that "::" lands everywhere
      const bytes = [...Array(16)].map(() => (r() < 0.5 ? 0 : Math.floor(r() * 256)));
      if (bytes.slice(0, 10).every((b) => b === 0) && ((bytes[10] === 0xff && bytes[11] === 0xff) || (bytes[10] === 0 && bytes[11] === 0))) continue;
      const text = ipaddr.fromByteArray(bytes).toString();
      expect(addressBytes(text)).toEqual(bytes);
    }
  });
});

describe("CIDRs", () => {
  test.each(HOSTILE.map((h) => [quote(h.value), h] as const))("%s is refused", (_n, h) => {
    const m = refusal(() => parseCidr(h.value));
    expect(m.startsWith(quote(h.value))).toBe(true);
    expect(m).toMatch(/not a (valid (IPv[46] )?CIDR|network)/);
  });

  test.each([
    ["10.0.0.0/33", "(the prefix length must be 0-32)"],
    ["2001:db8::/129", "(the prefix length must be 0-128)"],
    ["10.0.0.0/08", "(prefix length with a leading zero)"],
    ["10.0.0.0/-1", "(the prefix length must be a decimal number)"],
    ["10.0.0.1/24", "is not a network: it has host bits set (the network is 10.0.0.0/24)"],
    ["2001:db8::1/64", "is not a network: it has host bits set (the network is 2001:db8::/64)"],
    ["010.0.0.0/8", "(IPv4 address: leading zero)"],
    ["2001:DB8::/32", "(IPv6 address: not in canonical form, which is 2001:db8::)"],
    ["10.0.0.1", '(no "/" and prefix length)'],
  ])("%s: %s", (c, why) => {
    expect(refusal(() => parseCidr(c))).toContain(why);
  });

  test.each(VALID_CIDRS.map((c) => [c]))("%s is read", (c) => {
    const r = parseCidr(c);
    expect(r.text).toBe(c);
    expect(`${ipaddr.fromByteArray(r.bytes).toString()}/${r.prefix}`).toBe(c);
  });

  test("a family asked for is held to", () => {
    expect(refusal(() => parseCidr("fd00::/8", 4))).toBe('"fd00::/8" is not an IPv4 CIDR');
  });

  test("overlap", () => {
    const o = (a: string, b: string) => cidrsOverlap(parseCidr(a), parseCidr(b));
    expect(o("10.0.0.0/8", "10.1.0.0/16")).toBe(true);
    expect(o("10.1.0.0/16", "10.0.0.0/8")).toBe(true);
    expect(o("10.0.0.0/8", "11.0.0.0/8")).toBe(false);
    expect(o("169.0.0.0/8", "169.254.0.0/16")).toBe(true);
    expect(o("0.0.0.0/0", "fd00::/8")).toBe(false);
    expect(o("fe80::/10", "febf::/16")).toBe(true);
    expect(o("fe80::/10", "fec0::/10")).toBe(false);
  });
});

test("special use: what stays on the node or its link, and what lies just beside it", () => {
  for (const a of ["0.0.0.0", "127.0.0.1", "127.255.255.255", "169.254.0.1", "224.0.0.251", "::", "::1", "fe80::1", "febf:ffff::1", "ff02::1", "ff12::2"]) expect(specialUse(a)).toBeDefined();
  for (const a of ["0.0.0.1", "126.255.255.255", "128.0.0.1", "169.253.255.255", "169.255.0.1", "224.0.1.1", "10.0.0.1", "::2", "fec0::1", "fe7f::1", "ff05::1", "ff03::1", "2001:db8::1"]) expect(specialUse(a)).toBeUndefined();
});

test("quote cuts long values short and names their length", () => {
  expect(quote("x".repeat(1000))).toBe(`"${"x".repeat(48)}…" (1000 characters)`);
  expect(quote(42)).toBe("42");
  expect(quote(undefined)).toBe("undefined");
  expect(MAX_TEXT).toBeGreaterThanOrEqual("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128".length);
});
