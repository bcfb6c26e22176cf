// Backend keys: what a Maglev ring hashes and sorts by. Fixed-width binary, the same bytes in
// TypeScript and in compiler.wasm: 16 bytes of address (IPv4 as ::ffff:a.b.c.d) and the port,
// big-endian. Text keys would cost a string build and an encode per backend on every compile.
import ipaddr from "ipaddr.js";

export const KEY_BYTES = 18;

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The 16 bytes of an address (IPv4 as ::ffff:a.b.c.d), network order, at out[at]. */
export function writeAddress(out: Uint8Array, at: number, ip: string): void {
  // Fast path for plain dotted quads (every address was validated with ipaddr.js when the
  // state was read); a compile writes one per backend, 100,000 at 10k services.
  const q = DOTTED_QUAD.exec(ip);
  if (q) {
    out.fill(0, at, at + 10);
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    for (let i = 0; i < 4; i++) out[at + 12 + i] = Number(q[i + 1]);
    return;
  }
  const a = ipaddr.parse(ip);
  const v6 = a.kind() === "ipv4" ? (a as ipaddr.IPv4).toIPv4MappedAddress() : (a as ipaddr.IPv6);
  out.set(v6.toByteArray(), at);
}

export function writeBackendKey(out: Uint8Array, at: number, ip: string, port: number): void {
  writeAddress(out, at, ip);
  out[at + 16] = port >> 8;
  out[at + 17] = port & 0xff;
}

export function backendKeyBytes(ip: string, port: number): Uint8Array {
  const k = new Uint8Array(KEY_BYTES);
  writeBackendKey(k, 0, ip, port);
  return k;
}

/** Byte-wise order, the order of the ring's backends. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
