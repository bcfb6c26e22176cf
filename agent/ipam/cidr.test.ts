import { describe, expect, test } from "bun:test";
import { bigintToIp, parseCidr, parseIp, poolFromCidr, poolSize } from "./cidr.ts";

describe("poolFromCidr", () => {
  test("an IPv4 /24 leaves out network, gateway and broadcast", () => {
    const p = poolFromCidr("10.244.1.0/24");
    expect(bigintToIp(p.first, 4)).toBe("10.244.1.2");
    expect(bigintToIp(p.last, 4)).toBe("10.244.1.254");
    expect(bigintToIp(p.gateway, 4)).toBe("10.244.1.1");
    expect(poolSize(p)).toBe(253n);
  });

  test("an IPv6 /64 has no broadcast to leave out", () => {
    const p = poolFromCidr("fd00:10:244:1::/64");
    expect(bigintToIp(p.first, 6)).toBe("fd00:10:244:1::2");
    expect(bigintToIp(p.last, 6)).toBe("fd00:10:244:1:ffff:ffff:ffff:ffff");
    expect(p.family).toBe(6);
  });

  test.each([
    ["10.244.1.0/33", /not a valid IPv4 CIDR \(the prefix length must be 0-32\)/],
    ["10.244.1.0", /not a valid CIDR/],
    ["banana", /not a valid CIDR/],
    ["10.244.1.5/24", /host bits set \(the network is 10\.244\.1\.0\/24\)/],
    ["10.244.1.0/31", /too small/],
    ["10.244.1.0/30", /^$/],
  ])("%s", (cidr, err) => {
    if (err.source === "^$") expect(poolSize(poolFromCidr(cidr))).toBe(1n);
    else expect(() => poolFromCidr(cidr)).toThrow(err);
  });
});

test("parseIp reads strictly: an IPv4-mapped IPv6 address is refused, not folded into IPv4", () => {
  expect(parseIp("10.0.0.1")).toEqual({ value: 0x0a000001n, family: 4 });
  expect(() => parseIp("::ffff:10.0.0.1")).toThrow(/IPv4-mapped/);
  expect(() => parseIp("10.0.0.256")).toThrow(/not a valid IPv4 address/);
});

test("parseCidr reads strictly: a non-canonical spelling is refused, not normalised", () => {
  expect(() => parseCidr("FD00::/8")).toThrow(/not in canonical form, which is fd00::/);
  expect(parseCidr("fd00::/8").cidr).toBe("fd00::/8");
  expect(parseCidr("10.244.0.0/16")).toMatchObject({ prefix: 16, family: 4, cidr: "10.244.0.0/16" });
});
