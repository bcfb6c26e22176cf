// One contract, run against every IpamStore implementation.
import { describe, expect, test } from "bun:test";
import { allocate, release } from "./allocator.ts";
import { poolFromCidr } from "./cidr.ts";
import type { IpamStore } from "./store.ts";

export function runStoreContract(name: string, newStore: () => IpamStore) {
  describe(`${name} store contract`, () => {
    const pools = [poolFromCidr("10.244.1.0/29")];
    const owner = (i: number) => ({ containerId: `c${i}`, ifname: "eth0" });

    test("an update is visible to the next read", () => {
      const s = newStore();
      const ip = s.update((st) => {
        const r = allocate(st, pools, owner(1), 1);
        return { state: r.state, result: r.allocations[0]!.ip };
      });
      expect(s.read().allocations[ip]?.containerId).toBe("c1");
    });

    test("an update that returns no state changes nothing", () => {
      const s = newStore();
      s.update((st) => ({ state: allocate(st, pools, owner(1), 1).state, result: null }));
      const before = s.read();
      s.update((st) => ({ result: allocate(st, pools, owner(2), 2) }));
      expect(s.read()).toEqual(before);
    });

    test("an update that throws keeps the previous state", () => {
      const s = newStore();
      s.update((st) => ({ state: allocate(st, pools, owner(1), 1).state, result: null }));
      const before = s.read();
      expect(() =>
        s.update((st) => {
          allocate(st, pools, owner(2), 2);
          throw new Error("boom");
        }),
      ).toThrow("boom");
      expect(s.read()).toEqual(before);
    });

    test("release empties the store", () => {
      const s = newStore();
      for (let i = 0; i < 3; i++) s.update((st) => ({ state: allocate(st, pools, owner(i), i).state, result: null }));
      for (let i = 0; i < 3; i++) s.update((st) => ({ state: release(st, owner(i)).state, result: null }));
      expect(Object.keys(s.read().allocations)).toEqual([]);
    });
  });
}
