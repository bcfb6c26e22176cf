// Maglev consistent hashing (Eisenbud et al., NSDI 2016), the TypeScript reference of what
// compiler.wasm computes. Every backend walks its own permutation of the ring's slots and
// claims the next free one in turn, so each backend holds ~M/N slots, and removing one of N
// backends moves only about 1/N of the slots. Backends are sorted first, so the ring depends
// on the set of backends, never on the order they arrived in.
//
// The hashes are 32-bit FNV-1a over the backend's binary key (compiler/keys.ts) with two
// offset bases, in u32 arithmetic that AssemblyScript reproduces bit for bit.
import { compareKeys } from "../keys.ts";

const FNV_PRIME = 0x01000193;
const SEED_OFFSET = 0x811c9dc5;
const SEED_SKIP = 0x3c6ef372;

export function fnv1a(key: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key[i]!;
    h = Math.imul(h, FNV_PRIME) >>> 0;
  }
  return h >>> 0;
}

export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

export function nextPrime(n: number): number {
  let p = Math.max(2, Math.ceil(n));
  while (!isPrime(p)) p++;
  return p;
}

/** Ring size for `backends`: the smallest prime ≥ ringFactor × backends (and ≥ 7). */
export function ringSize(backends: number, ringFactor: number): number {
  return nextPrime(Math.max(7, ringFactor * backends));
}

/**
 * The ring: slot → index into the sorted backend keys. `keys` must be distinct; an empty set
 * gives an empty ring (the service rejects instead).
 */
export function maglevRing(keys: Uint8Array[], m: number): { backends: Uint8Array[]; ring: Int32Array } {
  if (!isPrime(m)) throw new Error(`Maglev ring size ${m} is not prime`);
  const backends = [...keys].sort(compareKeys);
  for (let i = 1; i < backends.length; i++) {
    if (compareKeys(backends[i]!, backends[i - 1]!) === 0) throw new Error(`backend ${[...backends[i]!].join(".")} appears twice`);
  }
  const ring = new Int32Array(backends.length ? m : 0).fill(-1);
  const n = backends.length;
  if (n === 0) return { backends, ring };
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const next = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const k = backends[i]!;
    offset[i] = fnv1a(k, SEED_OFFSET) % m;
    skip[i] = (fnv1a(k, SEED_SKIP) % (m - 1)) + 1;
  }
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = (offset[i]! + next[i]! * skip[i]!) % m;
      while (ring[c]! >= 0) {
        next[i]!++;
        c = (offset[i]! + next[i]! * skip[i]!) % m;
      }
      ring[c] = i;
      next[i]!++;
      if (++filled === m) return { backends, ring };
    }
  }
}
