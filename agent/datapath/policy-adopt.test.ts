// The policy of an adopted table as read back (pure): element bytes as the kernel dumps them.
// That they match what skein wrote is datapath.kernel.test.ts's.
import { describe, expect, test } from "bun:test";
import type { DumpedElem } from "../sys/nftdump.ts";
import { DEFAULT_MARKS } from "./marks.ts";
import { kernelPolicy } from "./policy-adopt.ts";
import { allowKeyBytes } from "./policy.case.ts";

const key = allowKeyBytes;
const goto = (chain: string) => ({ code: -4, chain });

describe("kernelPolicy", () => {
  const sets: Record<string, DumpedElem[]> = {
    pol_spod4: [
      { key: Uint8Array.of(10, 244, 0, 2), verdict: goto("pols_3") },
      { key: Uint8Array.of(10, 244, 0, 3), verdict: goto("pols_12") },
      // not a goto to a source identity chain: not an id
      { key: Uint8Array.of(10, 244, 0, 4), verdict: { code: -3, chain: "pols_4" } },
      { key: Uint8Array.of(10, 244, 0, 5), verdict: goto("pold_5") },
    ],
    pol_spod6: [{ key: Uint8Array.from([0xfd, 0, 2, 0x44, ...Array(11).fill(0), 2]), verdict: goto("pols_3") }],
    // a range as an interval map holds it: its first address with the verdict, the address past its end without
    pol_srange4: [
      { key: Uint8Array.of(192, 0, 2, 0), verdict: goto("pols_6") },
      { key: Uint8Array.of(192, 0, 3, 0) },
      { key: Uint8Array.of(10, 244, 0, 0), verdict: goto("pols_2") },
      { key: Uint8Array.of(10, 244, 1, 0) },
    ],
    pol_allow_in: [
      { key: key(0x00030000, 0x00040000, 6, 80) },
      { key: key(0x00030000, 0x00050000, 6, 8000), keyEnd: key(0x00030000, 0x00050000, 6, 8100) },
      { key: key(0x00010000, 0x00050000, 0, 0), keyEnd: key(0x00010000, 0x00050000, 255, 65535) },
    ],
    pol_allow_out: [{ key: key(0x00070000, 0x00030000, 6, 80), keyEnd: key(0x00070000, 0x00070000, 6, 80) }],
  };

  test("pod addresses and ranges' first addresses at the id of the source chain they go to; allow keys as allowKey spells them", () => {
    const k = kernelPolicy((s) => sets[s] ?? [], DEFAULT_MARKS);
    expect(Object.fromEntries(k.ids.pods)).toEqual({ "10.244.0.2": 3, "10.244.0.3": 12, "fd00:244::2": 3 });
    expect(Object.fromEntries(k.ids.ranges)).toEqual({ "192.0.2.0": 6, "10.244.0.0": 2 });
    expect([...k.allow.get("pol_allow_in")!]).toEqual(["0x00030000 . 0x00040000 . 6 . 80-80", "0x00030000 . 0x00050000 . 6 . 8000-8100", "0x00010000 . 0x00050000 . 0-255 . 0-65535"]);
    expect([...k.allow.get("pol_allow_out")!]).toEqual(["0x00070000 . 0x00030000-0x00070000 . 6 . 80-80"]);
  });

  test("an allow set holding an element skein would not write is not known (flushed by the replace): bits outside the marks, padding set, another length", () => {
    for (const bad of [key(0x0003ffff, 0x00040000, 6, 80), key(0x00030000, 0x80040000, 6, 80), Uint8Array.from([...key(0x00030000, 0x00040000, 6, 80).slice(0, 15), 1]), new Uint8Array(12)]) {
      const k = kernelPolicy((s) => (s === "pol_allow_in" ? [...sets.pol_allow_in!, { key: bad }] : (sets[s] ?? [])), DEFAULT_MARKS);
      expect(k.allow.has("pol_allow_in")).toBe(false);
      expect(k.allow.has("pol_allow_out")).toBe(true);
    }
    // an end key out of shape too
    const k = kernelPolicy((s) => (s === "pol_allow_out" ? [{ key: key(0x00070000, 0x00030000, 6, 80), keyEnd: key(0x00070001, 0x00030000, 6, 80) }] : []), DEFAULT_MARKS);
    expect([...k.allow.keys()]).toEqual(["pol_allow_in"]);
  });
});
