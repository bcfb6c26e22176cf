// The rule compiler, compiled to compiler.wasm. The TypeScript host (compiler/wasm.ts) packs
// its input into this module's memory as flat arrays and reads the output back as typed-array
// views; compiler/reference/ defines what every export must compute, and the tests hold the
// two equal.
//
// ABI 3: fillRings, the Maglev ring fill of every target (the hot loop of a compile), over
// fixed-width binary backend keys (compiler/keys.ts).

export const ABI_VERSION: i32 = 3;
const KEY_BYTES: usize = 18;

export function abiVersion(): i32 {
  return ABI_VERSION;
}

/** Grows the memory so that `bytes` are usable from __heap_base; returns that address. */
export function reserve(bytes: usize): usize {
  const base = __heap_base;
  const need = <i32>(((base + bytes + 0xffff) >> 16) - <usize>memory.size());
  if (need > 0 && memory.grow(need) < 0) unreachable();
  return base;
}

const FNV_PRIME: u32 = 0x01000193;
const SEED_OFFSET: u32 = 0x811c9dc5;
const SEED_SKIP: u32 = 0x3c6ef372;

@inline
function fnv1a(ptr: usize, len: u32, seed: u32): u32 {
  let h = seed;
  for (let i: u32 = 0; i < len; i++) {
    h ^= <u32>load<u8>(ptr + i);
    h *= FNV_PRIME;
  }
  return h;
}

/**
 * Fills the Maglev ring of each target.
 *   targets: nTargets × 4 u32 — first backend (global index), backend count, ring size M
 *            (prime; 0 for no backends), offset of the ring in `out` (in slots)
 *   keys:    18 bytes per backend (sorted within each target)
 *   out:     i32 per slot — the index of the slot's backend within its target
 *   scratch: 2 u32 per backend of the largest target
 */
export function fillRings(nTargets: u32, targets: usize, keys: usize, out: usize, scratch: usize): void {
  for (let t: u32 = 0; t < nTargets; t++) {
    const rec = targets + (<usize>t << 4);
    const first = load<u32>(rec);
    const n = load<u32>(rec, 4);
    const m = load<u32>(rec, 8);
    const ring = out + (<usize>load<u32>(rec, 12) << 2);
    if (n == 0 || m == 0) continue;
    for (let s: u32 = 0; s < m; s++) store<i32>(ring + (<usize>s << 2), -1);
    // scratch per backend: its current slot of its permutation, and its skip. Stepping the
    // permutation by adding skip modulo M keeps divisions out of the inner loop (slot j of
    // the permutation is (offset + j·skip) mod M, exactly as the reference computes it).
    for (let i: u32 = 0; i < n; i++) {
      const key = keys + <usize>(first + i) * KEY_BYTES;
      const sc = scratch + (<usize>i << 3);
      store<u32>(sc, fnv1a(key, <u32>KEY_BYTES, SEED_OFFSET) % m);
      store<u32>(sc, (fnv1a(key, <u32>KEY_BYTES, SEED_SKIP) % (m - 1)) + 1, 4);
    }
    let filled: u32 = 0;
    while (filled < m) {
      for (let i: u32 = 0; i < n; i++) {
        const sc = scratch + (<usize>i << 3);
        let c = load<u32>(sc);
        const skip = load<u32>(sc, 4);
        while (load<i32>(ring + (<usize>c << 2)) >= 0) {
          c += skip;
          if (c >= m) c -= m;
        }
        store<i32>(ring + (<usize>c << 2), <i32>i);
        c += skip;
        if (c >= m) c -= m;
        store<u32>(sc, c);
        if (++filled == m) break;
      }
    }
  }
}
