import { describe, expect, test } from "bun:test";
import { backendKeyBytes } from "../keys.ts";
import { fnv1a, isPrime, maglevRing, nextPrime, ringSize } from "./maglev.ts";

const keys = (n: number) => [...Array(n).keys()].map((i) => backendKeyBytes(`10.244.${(i >> 8) & 255}.${i & 255}`, 8080));
const owners = (r: { backends: Uint8Array[]; ring: Int32Array }) => [...r.ring].map((i) => r.backends[i]!.join("."));

describe("helpers", () => {
  test("FNV-1a matches the published test vectors", () => {
    expect(fnv1a(new TextEncoder().encode(""), 0x811c9dc5)).toBe(0x811c9dc5);
    expect(fnv1a(new TextEncoder().encode("a"), 0x811c9dc5)).toBe(0xe40c292c);
    expect(fnv1a(new TextEncoder().encode("foobar"), 0x811c9dc5)).toBe(0xbf9cf968);
  });

  test("primes and ring sizes", () => {
    expect([2, 3, 5, 251, 65537].every(isPrime)).toBe(true);
    expect([1, 4, 9, 255, 65535].some(isPrime)).toBe(false);
    expect(nextPrime(250)).toBe(251);
    expect(ringSize(10, 25)).toBe(251);
    expect(ringSize(0, 25)).toBe(7);
  });
});

describe("maglevRing", () => {
  test("fills every slot, and backends' slot counts differ by at most 1 (Maglev's bound before weights)", () => {
    // each round of the population loop gives every backend exactly one slot, so counts are
    // floor(M/N) or ceil(M/N) whatever the hashes are
    for (const n of [1, 2, 3, 7, 10, 33, 100])
      for (const factor of [1, 2, 10, 25]) {
        const m = ringSize(n, factor);
        const r = maglevRing(keys(n), m);
        expect(r.ring.every((i) => i >= 0 && i < n)).toBe(true);
        const counts = new Array(n).fill(0);
        for (const i of r.ring) counts[i]++;
        expect({ n, m, spread: Math.max(...counts) - Math.min(...counts) }).toEqual({ n, m, spread: m % n === 0 ? 0 : 1 });
      }
  });

  test("does not depend on the order backends arrive in", () => {
    const k = keys(17);
    const shuffled = [...k].reverse();
    expect(owners(maglevRing(shuffled, 509))).toEqual(owners(maglevRing(k, 509)));
  });

  test("removing one of N backends moves about 1/N of the slots", () => {
    for (const n of [5, 10, 50]) {
      const m = ringSize(n, 100);
      const all = keys(n);
      const before = owners(maglevRing(all, m));
      const after = owners(maglevRing(all.filter((_, i) => i !== 2), m));
      const removed = all[2]!.join(".");
      const moved = before.filter((o, s) => o !== after[s]).length;
      const mustMove = before.filter((o) => o === removed).length;
      expect(moved).toBeGreaterThanOrEqual(mustMove);
      // Maglev moves a little more than the removed backend's own slots; the excess shrinks
      // as M/N grows (docs/measurements.md). The ring factor trades this against kernel memory.
      expect(moved / m).toBeLessThan(2 / n);
    }
  });

  test("an empty backend set gives an empty ring; bad input is refused", () => {
    expect(maglevRing([], 251).ring.length).toBe(0);
    expect(() => maglevRing(keys(3), 250)).toThrow(/not prime/);
    expect(() => maglevRing([backendKeyBytes("10.0.0.1", 80), backendKeyBytes("10.0.0.1", 80)], 7)).toThrow(/appears twice/);
  });
});

test("backend keys: the dotted-quad fast path writes what ipaddr.js does", async () => {
  const { writeBackendKey, KEY_BYTES } = await import("../keys.ts");
  const ipaddr = (await import("ipaddr.js")).default;
  for (const ip of ["10.244.1.2", "0.0.0.0", "255.255.255.255", "192.0.2.33"]) {
    const fast = new Uint8Array(KEY_BYTES + 2).fill(7);
    writeBackendKey(fast, 1, ip, 0x1f90);
    const slow = [...ipaddr.IPv4.parse(ip).toIPv4MappedAddress().toByteArray(), 0x1f, 0x90];
    expect([...fast.subarray(1, 1 + KEY_BYTES)]).toEqual(slow);
    expect([fast[0], fast[KEY_BYTES + 1]]).toEqual([7, 7]);
  }
});
