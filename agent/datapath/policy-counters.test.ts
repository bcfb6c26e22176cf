// Verdict counters per policy (pure): element keys as the kernel dumps them, and the counts
// attributed to the policies behind each element and each isolated identity. That the kernel
// counts is test/policy-datapath.e2e.test.ts's.
import { describe, expect, test } from "bun:test";
import { BLOCKED } from "../../compiler/policy/types.ts";
import { DEFAULT_MARKS } from "./marks.ts";
import { BLOCKED_POLICY, countersByPolicy, decodeAllowKey, type AllowReading, type PolicyReadings } from "./policy-counters.ts";
import { allowKeyBytes, policyTables } from "./policy.case.ts";

const key = allowKeyBytes;

describe("decodeAllowKey", () => {
  test("identities out of their mark bits, ranges from the key's end; a key of another shape is none", () => {
    expect(decodeAllowKey(key(0x00070000, 0x00030000, 6, 80), key(0x00070000, 0x00070000, 6, 80), DEFAULT_MARKS)).toEqual({ src: 7, srcLast: 7, dst: 3, dstLast: 7, proto: 6, protoLast: 6, port: 80, portLast: 80 });
    expect(decodeAllowKey(key(0x00010000, 0x00050000, 0, 0), key(0x00010000, 0x00050000, 255, 65535), DEFAULT_MARKS)).toMatchObject({ proto: 0, protoLast: 255, port: 0, portLast: 65535 });
    // a single value: no end
    expect(decodeAllowKey(key(0x00030000, 0x00040000, 6, 80), undefined, DEFAULT_MARKS)).toMatchObject({ src: 3, dst: 4, portLast: 80 });
    // bits outside skein's ranges are not identities
    expect(decodeAllowKey(key(0x0003ffff, 0x80040000, 6, 80), undefined, DEFAULT_MARKS)).toMatchObject({ src: 3, dst: 4 });
    expect(decodeAllowKey(new Uint8Array(12), undefined, DEFAULT_MARKS)).toBeUndefined();
  });
});

describe("countersByPolicy", () => {
  const t = policyTables();
  const el = (src: number, srcLast: number, dst: number, dstLast: number, proto: number, protoLast: number, port: number, portLast: number, packets: number): AllowReading => ({ src, srcLast, dst, dstLast, proto, protoLast, port, portLast, packets, bytes: packets * 60 });

  test("allowed: each element's count on every policy it lists; dropped: each identity's on the policies isolating it that way; BLOCKED on its own name", () => {
    t.allowIngress[1]!.policies = ["ns/b-in", "ns/extra"]; // two policies allow a → b TCP 80
    const r: PolicyReadings = {
      allowIn: [el(3, 3, 4, 4, 6, 6, 80, 80, 2), el(6, 6, 4, 4, 0, 255, 0, 65535, 3), el(1, 1, 5, 5, 0, 255, 0, 65535, 1)],
      allowOut: [el(7, 7, 3, 7, 6, 6, 80, 80, 4), el(9, 9, 9, 9, 6, 6, 80, 80, 100)], // the second is no element of t: left out
      dropIn: new Map([[4, { packets: 5, bytes: 300 }], [BLOCKED, { packets: 1, bytes: 40 }], [42, { packets: 9, bytes: 9 }]]),
      dropOut: new Map([[3, { packets: 7, bytes: 420 }], [7, { packets: 0, bytes: 0 }], [BLOCKED, { packets: 2, bytes: 80 }]]),
    };
    expect(Object.fromEntries(countersByPolicy(t, r))).toEqual({
      "ns/b-in": { allowedPackets: 5, allowedBytes: 300, droppedPackets: 5, droppedBytes: 300 },
      "ns/extra": { allowedPackets: 2, allowedBytes: 120, droppedPackets: 0, droppedBytes: 0 },
      "ns/c-in": { allowedPackets: 1, allowedBytes: 60, droppedPackets: 0, droppedBytes: 0 },
      "ns/d-out": { allowedPackets: 4, allowedBytes: 240, droppedPackets: 0, droppedBytes: 0 },
      "ns/a-out": { allowedPackets: 0, allowedBytes: 0, droppedPackets: 7, droppedBytes: 420 },
      [BLOCKED_POLICY]: { allowedPackets: 0, allowedBytes: 0, droppedPackets: 3, droppedBytes: 120 },
    });
  });
});
