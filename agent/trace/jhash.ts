// The kernel's nft_jhash (net/netfilter/nft_hash.c over include/linux/jhash.h), reproduced to
// tell which ring slot a 5-tuple takes: the ring rule hashes `ip saddr . th sport` (or the
// address alone under ClientIP affinity) with seed 0 and maps the hash onto the ring.
//
// What the kernel hashes is the source registers, not the fields: nft keeps each field of a
// concatenation in whole 32-bit registers, and the payload expression zeroes the rest of a
// register it fills partly. So the key is the address (4 or 16 bytes), then the port's two
// bytes in network order and two zero bytes: 8 or 20 bytes (agent/datapath/nfnl.ts writes
// NFTA_HASH_LEN so). jhash reads its words in the CPU's order (little-endian here, as on
// every machine Bun runs on), and nft_jhash scales the hash onto the modulus with
// reciprocal_scale ((hash * M) >> 32), not with a remainder. Pure.
import { addressBytes } from "../../compiler/address.ts";

const JHASH_INITVAL = 0xdeadbeef;

const rol = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** Bob Jenkins' lookup3 as include/linux/jhash.h has it (jhash()), over `key`. */
export function jhash(key: ArrayLike<number>, initval: number): number {
  let length = key.length;
  let a = (JHASH_INITVAL + length + initval) >>> 0;
  let b = a;
  let c = a;
  let k = 0;
  const word = (i: number) => (key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24)) >>> 0;
  while (length > 12) {
    a = (a + word(k)) >>> 0;
    b = (b + word(k + 4)) >>> 0;
    c = (c + word(k + 8)) >>> 0;
    // __jhash_mix
    a = ((a - c) >>> 0) ^ rol(c, 4); c = (c + b) >>> 0;
    b = ((b - a) >>> 0) ^ rol(a, 6); a = (a + c) >>> 0;
    c = ((c - b) >>> 0) ^ rol(b, 8); b = (b + a) >>> 0;
    a = ((a - c) >>> 0) ^ rol(c, 16); c = (c + b) >>> 0;
    b = ((b - a) >>> 0) ^ rol(a, 19); a = (a + c) >>> 0;
    c = ((c - b) >>> 0) ^ rol(b, 4); b = (b + a) >>> 0;
    a >>>= 0; b >>>= 0; c >>>= 0;
    length -= 12;
    k += 12;
  }
  if (length === 0) return c;
  // the last block, bytes in little-endian order
  const at = (i: number) => (i < length ? key[k + i]! : 0);
  a = (a + (at(0) | (at(1) << 8) | (at(2) << 16) | (at(3) << 24))) >>> 0;
  b = (b + (at(4) | (at(5) << 8) | (at(6) << 16) | (at(7) << 24))) >>> 0;
  c = (c + (at(8) | (at(9) << 8) | (at(10) << 16) | (at(11) << 24))) >>> 0;
  // __jhash_final
  c = (c ^ b) >>> 0; c = (c - rol(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol(b, 24)) >>> 0;
  return c;
}

/** reciprocal_scale: `hash` onto 0..modulus-1 as the kernel maps it. */
export const scale = (hash: number, modulus: number) => Number((BigInt(hash >>> 0) * BigInt(modulus)) >> 32n);

/** The registers the ring rule hashes: the source address, then (without affinity) the
 * source port in network order padded to its 32-bit register. */
export function ringKey(saddr: string, sport: number | undefined): Uint8Array {
  const a = addressBytes(saddr);
  const key = new Uint8Array(a.length + (sport === undefined ? 0 : 4));
  key.set(a);
  if (sport !== undefined) {
    key[a.length] = (sport >> 8) & 0xff;
    key[a.length + 1] = sport & 0xff;
  }
  return key;
}

/** The ring slot `jhash saddr . th sport mod M seed 0x0` gives (sport undefined: `jhash saddr`). */
export const ringSlot = (saddr: string, sport: number | undefined, ringSize: number) => scale(jhash(ringKey(saddr, sport), 0), ringSize);
