import { describe, expect, test } from "bun:test";
import { crc32c, parseSctp, sctpPacket } from "./policy-prober.ts";

describe("the prober's SCTP packets", () => {
  test("crc32c is Castagnoli's (RFC 3720 B.4 check value and all-zero vector)", () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
  });

  test("an INIT-ACK round-trips through parseSctp behind an IPv4 header, its checksum over the packet with the field zeroed", () => {
    const p = sctpPacket({ sport: 81, dport: 20001, vtag: 0xdeadbeef, type: 2, initTag: 7, cookie: "x/a 10.244.1.11" });
    const sum = new DataView(p.buffer).getUint32(8, true);
    const zeroed = p.slice();
    zeroed.fill(0, 8, 12);
    expect(sum).toBe(crc32c(zeroed));
    expect(p.length % 4).toBe(0);
    const ip = new Uint8Array(20 + p.length);
    ip.set([0x45], 0);
    ip.set([10, 244, 1, 11], 12);
    ip.set(p, 20);
    expect(parseSctp(ip)).toEqual({ src: "10.244.1.11", sport: 81, dport: 20001, vtag: 0xdeadbeef, type: 2, initTag: 7, cookie: "x/a 10.244.1.11" });
  });

  test("anything but one INIT or INIT-ACK is not a probe's", () => {
    const p = sctpPacket({ sport: 1, dport: 2, vtag: 0, type: 1, initTag: 9 });
    p[12] = 3; // SACK
    const ip = new Uint8Array(20 + p.length);
    ip[0] = 0x45;
    ip.set(p, 20);
    expect(parseSctp(ip)).toBeUndefined();
    expect(parseSctp(new Uint8Array(10))).toBeUndefined();
  });
});
