// Backend keys: what a Maglev ring hashes and sorts by. Fixed-width binary, the same bytes in
// TypeScript and in compiler.wasm: 16 bytes of address (IPv4 as ::ffff:a.b.c.d) and the port,
// big-endian. Text keys would cost a string build and an encode per backend on every compile.
import { addressBytes, addressFromBytes, parseCidr } from "./address.ts";

export const KEY_BYTES = 18;

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The 16 bytes of an address (IPv4 as ::ffff:a.b.c.d), network order, at out[at]. */
export function writeAddress(out: Uint8Array, at: number, ip: string): void {
  // Fast path for plain dotted quads (every address was read strictly, compiler/address.ts,
  // when the state was read); a compile writes one per backend, 100,000 at 10k services.
  const q = DOTTED_QUAD.exec(ip);
  if (q) {
    out.fill(0, at, at + 10);
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    for (let i = 0; i < 4; i++) out[at + 12 + i] = Number(q[i + 1]);
    return;
  }
  const b = addressBytes(ip);
  if (b.length === 4) {
    out.fill(0, at, at + 10);
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    out.set(b, at + 12);
  } else out.set(b, at);
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

/** The address at keys[at] (16 bytes, as writeAddress wrote it) as canonical text: dotted quad
 * for family 4, ipaddr.js's compressed form for 6 (as compiler/state.ts writes addresses). */
export function addressText(keys: Uint8Array, at: number, family: 4 | 6): string {
  return addressFromBytes(keys, family === 4 ? at + 12 : at, family);
}

/** The port of the backend key at keys[at]. */
export const keyPort = (keys: Uint8Array, at: number) => (keys[at + 16]! << 8) | keys[at + 17]!;

/** Whether the backend keys at a[i] and b[j] (key indexes) are the same bytes. */
export function sameKey(a: Uint8Array, i: number, b: Uint8Array, j: number): boolean {
  const x = i * KEY_BYTES;
  const y = j * KEY_BYTES;
  for (let k = 0; k < KEY_BYTES; k++) if (a[x + k] !== b[y + k]) return false;
  return true;
}

/** Whether the address of a backend key lies in one of some CIDRs. */
export type AddressTest = (keys: Uint8Array, at: number, family: 4 | 6) => boolean;

/** An AddressTest for `cidrs` (both families), on the key's bytes: no text per address. */
export function inCidrs(cidrs: string[]): AddressTest {
  const nets = cidrs.map((c) => {
    const { family, bytes, prefix } = parseCidr(c);
    return { family, bytes, from: family === 4 ? 12 : 0, bits: prefix };
  });
  return (keys, at, family) =>
    nets.some((n) => {
      if (n.family !== family) return false;
      const full = n.bits >> 3;
      for (let i = 0; i < full; i++) if (keys[at + n.from + i] !== n.bytes[i]) return false;
      const rest = n.bits & 7;
      if (!rest) return true;
      const mask = (0xff << (8 - rest)) & 0xff;
      return (keys[at + n.from + full]! & mask) === (n.bytes[full]! & mask);
    });
}
