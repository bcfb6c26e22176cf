import { describe, expect, test } from "bun:test";
import { allocate, allocationsOf, emptyState, RangeExhaustedError, release, releaseAllBut } from "./allocator.ts";
import { poolFromCidr } from "./cidr.ts";

const v4 = poolFromCidr("10.244.1.0/29"); // .2 .. .6 assignable
const v6 = poolFromCidr("fd00:1::/120");
const o = (c: string, ifname = "eth0") => ({ containerId: c, ifname });

describe("allocate", () => {
  test("hands out one address per pool, dual-stack", () => {
    const { allocations } = allocate(emptyState(), [v4, v6], o("a"), 0);
    expect(allocations.map((a) => a.ip)).toEqual(["10.244.1.2", "fd00:1::2"]);
  });

  test("is idempotent for the same container and interface", () => {
    const s1 = allocate(emptyState(), [v4], o("a"), 0);
    const s2 = allocate(s1.state, [v4], o("a"), 1);
    expect(s2.allocations).toEqual(s1.allocations);
    expect(Object.keys(s2.state.allocations)).toHaveLength(1);
  });

  test("distinguishes interfaces of one container", () => {
    let s = allocate(emptyState(), [v4], o("a", "eth0"), 0).state;
    s = allocate(s, [v4], o("a", "net1"), 0).state;
    expect(Object.keys(s.allocations)).toHaveLength(2);
  });

  test("never hands out network, gateway or broadcast, and reports exhaustion", () => {
    let s = emptyState();
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = allocate(s, [v4], o(`c${i}`), 0);
      s = r.state;
      seen.push(r.allocations[0]!.ip);
    }
    expect(seen.sort()).toEqual(["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]);
    expect(() => allocate(s, [v4], o("full"), 0)).toThrow(RangeExhaustedError);
    expect(() => allocate(s, [v4], o("full"), 0)).toThrow(/10\.244\.1\.0\/29: all 5/);
  });

  test("is all-or-nothing across pools", () => {
    let s = emptyState();
    for (let i = 0; i < 5; i++) s = allocate(s, [v4], o(`c${i}`), 0).state;
    const before = structuredClone(s);
    expect(() => allocate(s, [v6, v4], o("x"), 0)).toThrow(RangeExhaustedError);
    expect(s).toEqual(before);
  });

  test("reuses a released address last (round-robin)", () => {
    let s = allocate(emptyState(), [v4], o("a"), 0).state; // .2
    s = allocate(s, [v4], o("b"), 0).state; // .3
    s = release(s, o("a")).state;
    const r = allocate(s, [v4], o("c"), 0);
    expect(r.allocations[0]!.ip).toBe("10.244.1.4");
  });

  test("wraps around to the start of the pool", () => {
    let s = emptyState();
    for (let i = 0; i < 5; i++) s = allocate(s, [v4], o(`c${i}`), 0).state;
    s = release(s, o("c0")).state;
    expect(allocate(s, [v4], o("n"), 0).allocations[0]!.ip).toBe("10.244.1.2");
  });
});

describe("release", () => {
  test("release drops only the owner's addresses", () => {
    let s = allocate(emptyState(), [v4, v6], o("a"), 0).state;
    s = allocate(s, [v4, v6], o("b"), 0).state;
    const r = release(s, o("a"));
    expect(r.released.map((a) => a.ip).sort()).toEqual(["10.244.1.2", "fd00:1::2"]);
    expect(allocationsOf(r.state, o("b"))).toHaveLength(2);
  });

  test("release of an unknown owner is a no-op", () => {
    const s = allocate(emptyState(), [v4], o("a"), 0).state;
    expect(release(s, o("zzz")).released).toEqual([]);
  });

  test("releaseAllBut keeps exactly the valid attachments", () => {
    let s = emptyState();
    for (const c of ["a", "b", "c"]) s = allocate(s, [v4], o(c), 0).state;
    const r = releaseAllBut(s, [o("b"), o("zzz")]);
    expect(r.released.map((a) => a.containerId).sort()).toEqual(["a", "c"]);
    expect(Object.values(r.state.allocations).map((a) => a.containerId)).toEqual(["b"]);
  });
});

test("a pod CIDR that grew: addresses handed out under the old one are skipped, not taken for a full pool", () => {
  let st = allocate(emptyState(), [poolFromCidr("10.250.60.0/24")], { containerId: "w1", ifname: "eth0" }, 1).state;
  expect(Object.keys(st.allocations)).toEqual(["10.250.60.2"]);
  const grown = [poolFromCidr("10.250.60.0/23")];
  const r = allocate(st, grown, { containerId: "w2", ifname: "eth0" }, 2);
  expect(r.allocations.map((a) => a.ip)).toEqual(["10.250.60.3"]);
  st = allocate(r.state, grown, { containerId: "w3", ifname: "eth0" }, 3).state;
  expect(Object.keys(st.allocations).sort()).toEqual(["10.250.60.2", "10.250.60.3", "10.250.60.4"]);
});
