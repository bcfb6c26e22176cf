// Sends hand-built IPv4/IPv6 packets (a UDP datagram or a TCP SYN) with any source address
// through a raw socket, for anti-spoofing tests: run inside a pod's namespace as
//   ip netns exec <pod> bun testing/raw-send.ts <udp|tcp> <src> <dst> <dport> [count] [sport]
// It prints "sent <count>" once the kernel took every packet; what becomes of them is for the
// test to see at the receiver. Needs CAP_NET_RAW. libc through bun:ffi: socket(AF_INET[6],
// SOCK_RAW, IPPROTO_RAW) includes the IP header (the kernel fills in the IPv4 checksum and
// length, nothing else: the source stays as given).
import { dlopen, FFIType, ptr } from "bun:ffi";
import { addressBytes, addressFamily } from "../compiler/address.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const IPPROTO_RAW = 255;
const PROTO = { tcp: 6, udp: 17 } as const;

/** The internet checksum of `parts` concatenated (each of even length but the last). */
function checksum(...parts: Uint8Array[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff || 0xffff;
}

/** The transport header and payload, checksummed over the pseudo-header. */
function transport(proto: "tcp" | "udp", src: number[], dst: number[], sport: number, dport: number, seq: number): Uint8Array {
  const payload = new TextEncoder().encode(proto === "udp" ? "spoofed\n" : "");
  const hlen = proto === "udp" ? 8 : 20;
  const seg = new Uint8Array(hlen + payload.length);
  const v = new DataView(seg.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  if (proto === "udp") v.setUint16(4, seg.length);
  else {
    v.setUint32(4, seq);
    seg[12] = 5 << 4; // data offset: 5 words
    seg[13] = 0x02; // SYN
    v.setUint16(14, 64240);
  }
  seg.set(payload, hlen);
  const pseudo = src.length === 4 ? new Uint8Array(12) : new Uint8Array(40);
  pseudo.set(src, 0);
  pseudo.set(dst, src.length);
  const pv = new DataView(pseudo.buffer);
  if (src.length === 4) {
    pseudo[9] = PROTO[proto];
    pv.setUint16(10, seg.length);
  } else {
    pv.setUint32(32, seg.length);
    pseudo[39] = PROTO[proto];
  }
  v.setUint16(proto === "udp" ? 6 : 16, checksum(pseudo, seg));
  return seg;
}

export function packet(proto: "tcp" | "udp", srcText: string, dstText: string, sport: number, dport: number, seq = 1): { family: 4 | 6; bytes: Uint8Array; dst: number[] } {
  const family = addressFamily(dstText);
  if (addressFamily(srcText) !== family) throw new Error(`${srcText} and ${dstText} are not of one family`);
  const src = addressBytes(srcText, family);
  const dst = addressBytes(dstText, family);
  const seg = transport(proto, src, dst, sport, dport, seq);
  if (family === 4) {
    const p = new Uint8Array(20 + seg.length);
    const v = new DataView(p.buffer);
    p[0] = 0x45;
    v.setUint16(2, p.length);
    v.setUint16(6, 0x4000); // don't fragment
    p[8] = 64;
    p[9] = PROTO[proto];
    p.set(src, 12);
    p.set(dst, 16);
    p.set(seg, 20);
    return { family, bytes: p, dst };
  }
  const p = new Uint8Array(40 + seg.length);
  const v = new DataView(p.buffer);
  v.setUint32(0, 6 << 28);
  v.setUint16(4, seg.length);
  p[6] = PROTO[proto];
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  p.set(seg, 40);
  return { family, bytes: p, dst };
}

function sockaddr(family: 4 | 6, dst: number[]): Uint8Array {
  const sa = new Uint8Array(family === 4 ? 16 : 28);
  new DataView(sa.buffer).setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  sa.set(dst, family === 4 ? 4 : 8);
  return sa;
}

export function rawSend(proto: "tcp" | "udp", src: string, dst: string, dport: number, count = 1, sport = 40000): void {
  const libc = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  });
  const first = packet(proto, src, dst, sport, dport);
  const fd = libc.symbols.socket(first.family === 4 ? AF_INET : AF_INET6, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) throw new Error("socket(SOCK_RAW, IPPROTO_RAW) failed: CAP_NET_RAW is needed");
  try {
    const sa = sockaddr(first.family, first.dst);
    for (let i = 0; i < count; i++) {
      const p = packet(proto, src, dst, sport, dport, i + 1).bytes;
      const n = Number(libc.symbols.sendto(fd, ptr(p), p.length, 0, ptr(sa), sa.length));
      if (n !== p.length) throw new Error(`sendto ${src} -> ${dst}: returned ${n} of ${p.length} bytes`);
    }
  } finally {
    libc.symbols.close(fd);
    libc.close();
  }
}

if (import.meta.main) {
  const [proto, src, dst, dport, count, sport] = process.argv.slice(2);
  if ((proto !== "udp" && proto !== "tcp") || !src || !dst || !dport) {
    console.error("usage: raw-send.ts <udp|tcp> <src> <dst> <dport> [count] [sport]");
    process.exit(2);
  }
  rawSend(proto, src, dst, Number(dport), count ? Number(count) : 1, sport ? Number(sport) : undefined);
  console.log(`sent ${count ?? 1}`);
}
