// jhash.ts without a kernel: values the kernel test (jhash.kernel.test.ts) confirms, pinned
// here so that a change shows without root; the key layout the ring rule hashes.
import { expect, test } from "bun:test";
import { jhash, ringKey, ringSlot, scale } from "./jhash.ts";

test("the key is the address, then the port in network order padded to 32 bits; the address alone under affinity", () => {
  expect([...ringKey("10.244.1.5", 40000)]).toEqual([10, 244, 1, 5, 0x9c, 0x40, 0, 0]);
  expect(ringKey("fd00:10:244:1::5", 1)).toHaveLength(20);
  expect([...ringKey("fd00:10:244:1::5", 1).slice(16)]).toEqual([0, 1, 0, 0]);
  expect([...ringKey("10.244.1.5", undefined)]).toEqual([10, 244, 1, 5]);
});

test("pinned hashes and slots: IPv4 and IPv6, with and without the port; empty and multi-block keys", () => {
  expect(jhash(ringKey("10.244.1.5", 40000), 0)).toBe(3950552234);
  expect(jhash(ringKey("fd00:10:244:1::5", 40000), 0)).toBe(2352302939);
  expect(jhash(ringKey("10.244.1.5", undefined), 0)).toBe(518619491);
  expect(jhash(ringKey("fd00:10:244:1::5", undefined), 0)).toBe(1053238849);
  expect(jhash([], 0)).toBe(0xdeadbeef);
  expect(jhash([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], 7)).toBe(2133461809);
  expect([ringSlot("10.244.1.5", 40000, 31), ringSlot("fd00:10:244:1::5", 40000, 31), ringSlot("10.244.1.5", undefined, 31), ringSlot("fd00:10:244:1::5", undefined, 31)]).toEqual([28, 16, 3, 7]);
});

test("reciprocal_scale, not a remainder: (hash × M) >> 32, always below M", () => {
  expect(scale(0, 23)).toBe(0);
  expect(scale(0xffffffff, 23)).toBe(22);
  expect(scale(0x80000000, 23)).toBe(11);
  expect(scale(100, 23)).toBe(0); // a remainder would say 8
  for (let h = 1; h < 2 ** 32; h += 104_729_047) expect(scale(h, 0xffffffff)).toBe(h - 1);
});
