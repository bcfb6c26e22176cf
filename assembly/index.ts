// The rule compiler, compiled to compiler.wasm. The TypeScript host (compiler/wasm.ts) packs
// Services and EndpointSlices as they arrive (compiler/pack.ts: addresses as 16 bytes, port
// names interned to ids, endpoint conditions as flags), writes a batch of services into this
// module's memory, and reads the compiled units back through typed-array views.
// compiler/reference/compile.ts defines what compileUnits must compute, and the tests hold
// the two equal.
//
// ABI 5: compileUnits, the whole per-service compile (frontends, backend selection, key
// order, ring sizes, Maglev rings; word layouts in compiler/pack.ts), and the NetworkPolicy
// compile's policyAddresses and policyRules (assembly/policy.ts, compiler/policy/pack.ts).

export const ABI_VERSION: i32 = 5;

export function abiVersion(): i32 {
  return ABI_VERSION;
}

/** Grows the memory so that `bytes` are usable from __heap_base; returns that address. */
export function reserve(bytes: usize): usize {
  ensure(__heap_base + bytes);
  return __heap_base;
}

function ensure(end: usize): void {
  const need = <i32>(((end + 0xffff) >> 16) - <usize>memory.size());
  if (need > 0 && memory.grow(need) < 0) unreachable();
}

// Frontend kinds, scopes and endpoint flags: the same numbers as compiler/pack.ts.
const KIND_CLUSTER: u32 = 0;
const KIND_NODEPORT: u32 = 3;
const SCOPE_INTERNAL: u32 = 0;
const SCOPE_EXTERNAL: u32 = 1;
const SVC_EXTERNAL_LOCAL: u32 = 1;
const SVC_INTERNAL_LOCAL: u32 = 2;
const EP_READY: u32 = 1;
const EP_SERVING: u32 = 2;
const EP_TERMINATING: u32 = 4;
const EP_LOCAL: u32 = 8;

const KEY_BYTES: usize = 18;
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

function isPrime(n: u32): bool {
  if (n < 2) return false;
  if ((n & 1) == 0) return n == 2;
  for (let d: u32 = 3; d * d <= n; d += 2) if (n % d == 0) return false;
  return true;
}

/** The smallest prime ≥ ringFactor × n (and ≥ 7), as compiler/reference/maglev.ts ringSize. */
function ringSize(n: u32, ringFactor: f64): u32 {
  let p = <u32>Math.ceil(Math.max(7, ringFactor * <f64>n));
  while (!isPrime(p)) p++;
  return p;
}

/**
 * The Maglev ring of n backends (keys 18 bytes each, sorted) into m slots: each slot holds the
 * index of its backend. scratch: 2 u32 per backend, its current slot and its skip. Stepping
 * the permutation by adding skip modulo M keeps divisions out of the inner loop (slot j of a
 * permutation is (offset + j·skip) mod M, exactly as the reference computes it).
 */
function fillRing(keys: usize, n: u32, m: u32, ring: usize, scratch: usize): void {
  for (let s: u32 = 0; s < m; s++) store<i32>(ring + (<usize>s << 2), -1);
  for (let i: u32 = 0; i < n; i++) {
    const key = keys + <usize>i * KEY_BYTES;
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

// A backend candidate in scratch: its key as two big-endian-ordered u64 halves and the port
// (so that comparing numbers is comparing key bytes), where it came from, and whether it is
// ready. 32 bytes.
const CAND: usize = 32;

@inline
function candLess(a: usize, b: usize): bool {
  const ah = load<u64>(a);
  const bh = load<u64>(b);
  if (ah != bh) return ah < bh;
  const al = load<u64>(a, 8);
  const bl = load<u64>(b, 8);
  if (al != bl) return al < bl;
  return load<u32>(a, 16) < load<u32>(b, 16);
}

@inline
function candSame(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8) && load<u32>(a, 16) == load<u32>(b, 16);
}

/** Sorts n u32 candidate indexes (at idx) by key: insertion sort for the usual handful, a
 * bottom-up merge through `tmp` beyond that. Returns where the sorted indexes are. */
function sortCands(cands: usize, idx: usize, tmp: usize, n: u32): usize {
  if (n <= 24) {
    for (let i: u32 = 1; i < n; i++) {
      const v = load<u32>(idx + (<usize>i << 2));
      const pv = cands + <usize>v * CAND;
      let j = i;
      while (j > 0) {
        const u = load<u32>(idx + (<usize>(j - 1) << 2));
        if (!candLess(pv, cands + <usize>u * CAND)) break;
        store<u32>(idx + (<usize>j << 2), u);
        j--;
      }
      store<u32>(idx + (<usize>j << 2), v);
    }
    return idx;
  }
  let src = idx;
  let dst = tmp;
  for (let w: u32 = 1; w < n; w <<= 1) {
    for (let lo: u32 = 0; lo < n; lo += w << 1) {
      const mid = min(lo + w, n);
      const hi = min(lo + (w << 1), n);
      let i = lo;
      let j = mid;
      let k = lo;
      while (i < mid && j < hi) {
        const a = load<u32>(src + (<usize>i << 2));
        const b = load<u32>(src + (<usize>j << 2));
        // stable: take from the left run unless the right one is strictly smaller
        if (candLess(cands + <usize>b * CAND, cands + <usize>a * CAND)) {
          store<u32>(dst + (<usize>(k++) << 2), b);
          j++;
        } else {
          store<u32>(dst + (<usize>(k++) << 2), a);
          i++;
        }
      }
      while (i < mid) store<u32>(dst + (<usize>(k++) << 2), load<u32>(src + (<usize>(i++) << 2)));
      while (j < hi) store<u32>(dst + (<usize>(k++) << 2), load<u32>(src + (<usize>(j++) << 2)));
    }
    const t = src;
    src = dst;
    dst = t;
  }
  return src;
}

// Where the unit being compiled reads from: its service's words and its slices.
let svcPtr: usize = 0;
let slicePtrs: usize = 0; // u32 pointer per slice, in scratch
let nSlices: u32 = 0;
let nodeIPs: usize = 0;
let nNodeIPs: u32 = 0;
let ringFactor: f64 = 0;
// scratch areas, sized by the host for the largest unit of the batch
let cands: usize = 0;
let idxA: usize = 0;
let idxB: usize = 0;
let maglev: usize = 0;
// the output's end, growing
let out: usize = 0;

@inline
function w(p: usize, i: u32): u32 {
  return load<u32>(p + (<usize>i << 2));
}

@inline
function put(v: u32): void {
  store<u32>(out, v);
  out += 4;
}

/**
 * One target: the backends of service port `port` in `family` (only node-local endpoints when
 * `local`), written as [portIndex, family, scope, nBackends, ringSize], backend refs (slice,
 * address index, port), keys (padded to 4 bytes) and the ring.
 */
function target(portRec: usize, portIndex: u32, family: u32, scope: u32, local: bool): void {
  const nameId = w(portRec, 0);
  const protocol = w(portRec, 1);
  let n: u32 = 0;
  let ready: u32 = 0;
  for (let s: u32 = 0; s < nSlices; s++) {
    const sl = <usize>load<u32>(slicePtrs + (<usize>s << 2));
    if (w(sl, 0) != family) continue;
    const nPorts = w(sl, 1);
    const nEps = w(sl, 2);
    // the slice's port of the same name and protocol: how a named targetPort resolves
    let p: i32 = -1;
    for (let i: u32 = 0; i < nPorts; i++) {
      if (w(sl, 4 + i * 3) == nameId && w(sl, 5 + i * 3) == protocol) {
        p = <i32>w(sl, 6 + i * 3);
        break;
      }
    }
    if (p < 0) continue;
    const eps = sl + ((4 + <usize>nPorts * 3) << 2);
    const addrs = eps + (<usize>nEps * 12);
    for (let e: u32 = 0; e < nEps; e++) {
      const flags = w(eps, e * 3);
      if (local && (flags & EP_LOCAL) == 0) continue;
      const isReady = (flags & EP_READY) != 0;
      // not ready: used only when serving and terminating, and only if nothing is ready
      if (!isReady && (flags & (EP_SERVING | EP_TERMINATING)) != (EP_SERVING | EP_TERMINATING)) continue;
      const first = w(eps, e * 3 + 1);
      const count = w(eps, e * 3 + 2);
      for (let a: u32 = first; a < first + count; a++) {
        const ap = addrs + (<usize>a << 4);
        const c = cands + <usize>n * CAND;
        store<u64>(c, bswap<u64>(load<u64>(ap)));
        store<u64>(c, bswap<u64>(load<u64>(ap, 8)), 8);
        store<u32>(c, <u32>p, 16);
        store<u32>(c, s, 20);
        store<u32>(c, a, 24);
        store<u32>(c, isReady ? 1 : 0, 28);
        if (isReady) ready++;
        n++;
      }
    }
  }
  // ready ones if any, else the draining ones
  let m: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    if (ready > 0 && load<u32>(cands + <usize>i * CAND, 28) == 0) continue;
    store<u32>(idxA + (<usize>m << 2), i);
    m++;
  }
  const sorted = sortCands(cands, idxA, idxB, m);
  // one backend per address and port
  let nb: u32 = 0;
  for (let i: u32 = 0; i < m; i++) {
    const v = load<u32>(sorted + (<usize>i << 2));
    if (nb > 0 && candSame(cands + <usize>v * CAND, cands + <usize>load<u32>(sorted + (<usize>(nb - 1) << 2)) * CAND)) continue;
    store<u32>(sorted + (<usize>nb << 2), v);
    nb++;
  }
  const size = nb > 0 ? ringSize(nb, ringFactor) : 0;
  const keysBytes = (<usize>nb * KEY_BYTES + 3) & ~(<usize>3);
  ensure(out + 20 + <usize>nb * 12 + keysBytes + (<usize>size << 2));
  put(portIndex);
  put(family);
  put(scope);
  put(nb);
  put(size);
  for (let i: u32 = 0; i < nb; i++) {
    const c = cands + <usize>load<u32>(sorted + (<usize>i << 2)) * CAND;
    put(load<u32>(c, 20));
    put(load<u32>(c, 24));
    put(load<u32>(c, 16));
  }
  const keys = out;
  for (let i: u32 = 0; i < nb; i++) {
    const c = cands + <usize>load<u32>(sorted + (<usize>i << 2)) * CAND;
    const k = keys + <usize>i * KEY_BYTES;
    store<u64>(k, bswap<u64>(load<u64>(c)));
    store<u64>(k, bswap<u64>(load<u64>(c, 8)), 8);
    const port = load<u32>(c, 16);
    store<u8>(k, <u8>(port >> 8), 16);
    store<u8>(k, <u8>port, 17);
  }
  for (let b = keys + <usize>nb * KEY_BYTES; b < keys + keysBytes; b++) store<u8>(b, 0);
  out = keys + keysBytes;
  if (nb > 0) fillRing(keys, nb, size, out, maglev);
  out += <usize>size << 2;
}

/**
 * Compiles nUnits services. `input` (compiler/pack.ts, batch layout):
 *   ringFactor f64, nNodeIPs, then per node address [family, 16 bytes];
 *   per unit: [nSlices, service words, the slices' words...] with each service and slice
 *   prefixed by its length in words.
 * `scratch` is sized by the host for the unit with the most slice addresses. The units are
 * written from `output` on, each [nFrontends, nTargets, frontends (7 words each), targets];
 * returns the output's end. Frontend words: address ref (the service's address index, or the
 * node address index for a NodePort), kind, port, port index, family, target index in the
 * unit, masquerade.
 */
export function compileUnits(nUnits: u32, input: usize, scratch: usize, maxAddrs: u32, output: usize): usize {
  ringFactor = load<f64>(input);
  nNodeIPs = load<u32>(input, 8);
  nodeIPs = input + 12;
  let p = nodeIPs + <usize>nNodeIPs * 20;
  slicePtrs = scratch;
  cands = (scratch + (<usize>maxAddrs << 2) + 7) & ~(<usize>7);
  idxA = cands + <usize>maxAddrs * CAND;
  idxB = idxA + (<usize>maxAddrs << 2);
  maglev = idxB + (<usize>maxAddrs << 2);
  out = output;
  for (let u: u32 = 0; u < nUnits; u++) {
    nSlices = load<u32>(p);
    const svcWords = load<u32>(p, 4);
    svcPtr = p + 8;
    p = svcPtr + (<usize>svcWords << 2);
    for (let s: u32 = 0; s < nSlices; s++) {
      const words = load<u32>(p);
      store<u32>(slicePtrs + (<usize>s << 2), <u32>(p + 4));
      p += 4 + (<usize>words << 2);
    }
    unit();
  }
  return out;
}

function unit(): void {
  const flags = w(svcPtr, 0);
  const nAddrs = w(svcPtr, 1);
  const nPorts = w(svcPtr, 2);
  const addrs = svcPtr + 12;
  const ports = addrs + <usize>nAddrs * 24;
  const extLocal = (flags & SVC_EXTERNAL_LOCAL) != 0;
  const intLocal = (flags & SVC_INTERNAL_LOCAL) != 0;
  let has4 = false;
  let has6 = false;
  for (let a: u32 = 0; a < nAddrs; a++) {
    if (w(addrs, a * 6 + 1) == 4) has4 = true;
    else has6 = true;
  }
  // [nFrontends, nTargets, nPorts, the ports' order], then frontends, then targets. The
  // order: ports by (protocol, port), sorted by insertion (a Service has a handful).
  const header = out;
  const order = header + 12;
  ensure(order + (<usize>nPorts << 2));
  for (let i: u32 = 0; i < nPorts; i++) {
    const key = (w(ports, i * 4 + 1) << 16) | w(ports, i * 4 + 2);
    let j = i;
    while (j > 0) {
      const o = load<u32>(order + (<usize>(j - 1) << 2));
      if (((w(ports, o * 4 + 1) << 16) | w(ports, o * 4 + 2)) <= key) break;
      store<u32>(order + (<usize>j << 2), o);
      j--;
    }
    store<u32>(order + (<usize>j << 2), i);
  }
  const saved = order;
  // the number of frontends is known before any target is written, so targets follow them
  let nF: u32 = 0;
  let nT: u32 = 0;
  for (let pi: u32 = 0; pi < nPorts; pi++) {
    const port = load<u32>(saved + (<usize>pi << 2));
    const pr = ports + (<usize>port << 4);
    for (let f: u32 = 4; f <= 6; f += 2) {
      if ((f == 4 && !has4) || (f == 6 && !has6)) continue;
      for (let a: u32 = 0; a < nAddrs; a++) if (w(addrs, a * 6 + 1) == f) nF++;
      if (w(pr, 3) != 0) for (let k: u32 = 0; k < nNodeIPs; k++) if (load<u32>(nodeIPs + <usize>k * 20) == f) nF++;
    }
  }
  const fronts = saved + (<usize>nPorts << 2);
  ensure(fronts + <usize>nF * 28);
  out = fronts + <usize>nF * 28;
  let fi: u32 = 0;
  for (let pi: u32 = 0; pi < nPorts; pi++) {
    const port = load<u32>(saved + (<usize>pi << 2));
    const pr = ports + (<usize>port << 4);
    for (let f: u32 = 4; f <= 6; f += 2) {
      if ((f == 4 && !has4) || (f == 6 && !has6)) continue;
      const internal = nT++;
      target(pr, port, f, SCOPE_INTERNAL, intLocal);
      let external = internal;
      if (extLocal != intLocal) {
        external = nT++;
        target(pr, port, f, SCOPE_EXTERNAL, extLocal);
      }
      const masq: u32 = extLocal ? 0 : 1;
      for (let a: u32 = 0; a < nAddrs; a++) {
        if (w(addrs, a * 6 + 1) != f) continue;
        const kind = w(addrs, a * 6);
        const fr = fronts + <usize>(fi++) * 28;
        store<u32>(fr, a);
        store<u32>(fr, kind, 4);
        store<u32>(fr, w(pr, 2), 8);
        store<u32>(fr, port, 12);
        store<u32>(fr, f, 16);
        store<u32>(fr, kind == KIND_CLUSTER ? internal : external, 20);
        store<u32>(fr, kind == KIND_CLUSTER ? 0 : masq, 24);
      }
      if (w(pr, 3) != 0) {
        for (let k: u32 = 0; k < nNodeIPs; k++) {
          if (load<u32>(nodeIPs + <usize>k * 20) != f) continue;
          const fr = fronts + <usize>(fi++) * 28;
          store<u32>(fr, k);
          store<u32>(fr, KIND_NODEPORT, 4);
          store<u32>(fr, w(pr, 3), 8);
          store<u32>(fr, port, 12);
          store<u32>(fr, f, 16);
          store<u32>(fr, external, 20);
          store<u32>(fr, masq, 24);
        }
      }
    }
  }
  store<u32>(header, nF);
  store<u32>(header, nT, 4);
  store<u32>(header, nPorts, 8);
}

export { policyAddresses, policyRules } from "./policy";
