// The NetworkPolicy compile's heavy part (POLICY.md "The compile", steps 3, 5-9 and the named
// port problems of 11), over input the host interned (compiler/policy/pack.ts): label keys,
// values and port names are ids (only compared for equality), policies are numbered in the
// string order of `ns/name` (so a sorted list of numbers is a sorted list of names), blocks in
// the string order of their text. The host keeps what is per object and needs text (keys,
// names, id assignment); what grows with pods × policies is here.
//
// Two calls per compile, both bump-allocating from the end of their input (the host reserves
// the input; nothing here outlives a call):
//   policyAddresses: the address space cut at the blocks' and pod CIDRs' bounds, and each pod
//     address's interval and sorted position;
//   policyRules: selection (ingressBy / egressBy), peers, pairs, allow elements, problems.
// Word layouts are in compiler/policy/pack.ts.

let top: usize = 0;

function ensureMem(end: usize): void {
  const need = <i32>(((end + 0xffff) >> 16) - <usize>memory.size());
  if (need > 0 && memory.grow(need) < 0) unreachable();
}

function alloc(bytes: usize): usize {
  const p = (top + 7) & ~(<usize>7);
  top = p + bytes;
  ensureMem(top);
  return p;
}

@inline
function rd(p: usize, i: u32): u32 {
  return load<u32>(p + (<usize>i << 2));
}
@inline
function wr(p: usize, i: u32, v: u32): void {
  store<u32>(p + (<usize>i << 2), v);
}

// A growable u32 list: a 12-byte header [data, length, capacity] in the arena.
function vec(cap: u32): usize {
  const h = alloc(12);
  store<u32>(h, <u32>alloc(<usize>cap << 2));
  store<u32>(h, 0, 4);
  store<u32>(h, cap, 8);
  return h;
}
@inline
function vdata(h: usize): usize {
  return <usize>load<u32>(h);
}
@inline
function vlen(h: usize): u32 {
  return load<u32>(h, 4);
}
@inline
function vset(h: usize, n: u32): void {
  store<u32>(h, n, 4);
}
function vgrow(h: usize, n: u32): void {
  const cap = load<u32>(h, 8);
  if (n <= cap) return;
  let c = cap * 2;
  if (c < n) c = n;
  const d = alloc(<usize>c << 2);
  memory.copy(d, vdata(h), <usize>vlen(h) << 2);
  store<u32>(h, <u32>d);
  store<u32>(h, c, 8);
}
@inline
function vpush(h: usize, v: u32): void {
  const n = vlen(h);
  if (n == load<u32>(h, 8)) vgrow(h, n + 1);
  store<u32>(vdata(h) + (<usize>n << 2), v);
  store<u32>(h, n + 1, 4);
}

// ---- sorting: merge sort of u32 indexes by a comparator over records ----

let sortBase: usize = 0;
let sortWidth: u32 = 0;
let sortKeys: u32 = 0;

/** Records of sortWidth words at sortBase, compared on their first sortKeys words. */
@inline
function recLess(a: u32, b: u32): bool {
  const pa = sortBase + (<usize>a * sortWidth << 2);
  const pb = sortBase + (<usize>b * sortWidth << 2);
  for (let k: u32 = 0; k < sortKeys; k++) {
    const x = rd(pa, k);
    const y = rd(pb, k);
    if (x != y) return x < y;
  }
  return false;
}

/** Sorts n indexes at idx (stable), tmp holds n more. */
function sortIdx(idx: usize, tmp: usize, n: u32): void {
  // insertion sort on runs of 16, then merges
  const RUN: u32 = 16;
  for (let s: u32 = 0; s < n; s += RUN) {
    const e = s + RUN < n ? s + RUN : n;
    for (let i = s + 1; i < e; i++) {
      const v = rd(idx, i);
      let j = i;
      while (j > s && recLess(v, rd(idx, j - 1))) {
        wr(idx, j, rd(idx, j - 1));
        j--;
      }
      wr(idx, j, v);
    }
  }
  let src = idx;
  let dst = tmp;
  for (let width = RUN; width < n; width <<= 1) {
    for (let lo: u32 = 0; lo < n; lo += width << 1) {
      const mid = lo + width < n ? lo + width : n;
      const hi = lo + (width << 1) < n ? lo + (width << 1) : n;
      let i = lo;
      let j = mid;
      let k = lo;
      while (i < mid && j < hi) {
        const a = rd(src, i);
        const b = rd(src, j);
        if (recLess(b, a)) {
          wr(dst, k++, b);
          j++;
        } else {
          wr(dst, k++, a);
          i++;
        }
      }
      while (i < mid) wr(dst, k++, rd(src, i++));
      while (j < hi) wr(dst, k++, rd(src, j++));
    }
    const t = src;
    src = dst;
    dst = t;
  }
  if (src != idx) memory.copy(idx, src, <usize>n << 2);
}

/** The order of n records (width words each at base) by their word `at`, an id below nIds:
 * stable, into idx (n words). */
function countingSort(base: usize, width: u32, at: u32, n: u32, idx: usize): void {
  memory.fill(counts, 0, <usize>(nIds + 1) << 2);
  for (let i: u32 = 0; i < n; i++) {
    const v = rd(base, i * width + at);
    wr(counts, v + 1, rd(counts, v + 1) + 1);
  }
  for (let v: u32 = 0; v < nIds; v++) wr(counts, v + 1, rd(counts, v + 1) + rd(counts, v));
  for (let i: u32 = 0; i < n; i++) {
    const v = rd(base, i * width + at);
    const to = rd(counts, v);
    wr(idx, to, i);
    wr(counts, v, to + 1);
  }
}

function sortRecords(base: usize, width: u32, keys: u32, n: u32): usize {
  sortBase = base;
  sortWidth = width;
  sortKeys = keys;
  const idx = alloc(<usize>n << 2);
  const tmp = alloc(<usize>n << 2);
  for (let i: u32 = 0; i < n; i++) wr(idx, i, i);
  sortIdx(idx, tmp, n);
  return idx;
}

// ---- addresses: 5 words (family, then 4 words of the 16-byte address, big-endian values) ----

@inline
function addrCmp(a: usize, b: usize): i32 {
  for (let k: u32 = 0; k < 5; k++) {
    const x = rd(a, k);
    const y = rd(b, k);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

/** The address after a (5 words at out); false when a is the last of its family. */
function addrNext(a: usize, out: usize): bool {
  memory.copy(out, a, 20);
  const family = rd(a, 0);
  const first: u32 = family == 4 ? 4 : 1;
  for (let k: u32 = 4; k >= first; k--) {
    const v = rd(out, k) + 1;
    wr(out, k, v);
    if (v != 0) return true;
  }
  return false;
}

/** Whether the address at a is in [lo, hi] (5 words each, hi inclusive). */
@inline
function inRange(a: usize, lo: usize, hi: usize): bool {
  return addrCmp(lo, a) <= 0 && addrCmp(a, hi) <= 0;
}

/**
 * input: nBlocks, nPodCIDRs, nAddrs, then blocks [nExcept, lo(5), hi(5), per except lo(5)
 * hi(5)], pod CIDRs [lo(5), hi(5)], addresses (5 each). Every interval between two cuts of a
 * family is written out, in order: [lo(5), hi(5), inPodCIDR, nBlocks, blocks...]; then per
 * address its interval, then the addresses' sorted order. Output: [nIntervals, words...];
 * returns its start.
 */
export function policyAddresses(input: usize, words: u32): usize {
  top = input + (<usize>words << 2);
  const nBlocks = rd(input, 0);
  const nCidrs = rd(input, 1);
  const nAddrs = rd(input, 2);
  const blocks = alloc(<usize>nBlocks << 2);
  let p = input + 12;
  for (let b: u32 = 0; b < nBlocks; b++) {
    wr(blocks, b, <u32>p);
    p += (<usize>(1 + 10 + rd(p, 0) * 10)) << 2;
  }
  const cidrs = p;
  p += <usize>nCidrs * 40;
  const addrs = p;

  // cut points: each family's first address, every bound's start and the address after its end
  const nextBuf = alloc(20);
  // points, 5 words each
  const pointsBuf = vec(64);
  addPointTo(pointsBuf, 4, 0, 0, 0, 0);
  addPointTo(pointsBuf, 6, 0, 0, 0, 0);
  for (let b: u32 = 0; b < nBlocks; b++) {
    const bp = <usize>rd(blocks, b);
    const ne = rd(bp, 0);
    for (let e: u32 = 0; e <= ne; e++) {
      const lo = bp + 4 + <usize>e * 40;
      addPointAt(pointsBuf, lo);
      if (addrNext(lo + 20, nextBuf)) addPointAt(pointsBuf, nextBuf);
    }
  }
  for (let c: u32 = 0; c < nCidrs; c++) {
    const lo = cidrs + <usize>c * 40;
    addPointAt(pointsBuf, lo);
    if (addrNext(lo + 20, nextBuf)) addPointAt(pointsBuf, nextBuf);
  }
  const nPts = vlen(pointsBuf) / 5;
  const ptsData = vdata(pointsBuf);
  const order = sortRecords(ptsData, 5, 5, nPts);
  // unique points, in order
  const uniq = alloc(<usize>nPts * 20);
  let nu: u32 = 0;
  for (let i: u32 = 0; i < nPts; i++) {
    const q = ptsData + <usize>rd(order, i) * 20;
    if (nu > 0 && addrCmp(uniq + <usize>(nu - 1) * 20, q) == 0) continue;
    memory.copy(uniq + <usize>nu * 20, q, 20);
    nu++;
  }
  const out = vec(16 + nu * 16 + nAddrs * 2);
  vpush(out, nu);
  const hiBuf = alloc(20);
  for (let i: u32 = 0; i < nu; i++) {
    const lo = uniq + <usize>i * 20;
    // the interval's last address: before the next point of the same family, or the family's last
    if (i + 1 < nu && rd(uniq + <usize>(i + 1) * 20, 0) == rd(lo, 0)) {
      memory.copy(hiBuf, uniq + <usize>(i + 1) * 20, 20);
      const first: u32 = rd(lo, 0) == 4 ? 4 : 1;
      for (let k: u32 = 4; k >= first; k--) {
        const v = rd(hiBuf, k);
        wr(hiBuf, k, v - 1);
        if (v != 0) break;
      }
    } else {
      wr(hiBuf, 0, rd(lo, 0));
      for (let k: u32 = 1; k < 5; k++) wr(hiBuf, k, rd(lo, 0) == 4 && k < 4 ? 0 : 0xffffffff);
    }
    for (let k: u32 = 0; k < 5; k++) vpush(out, rd(lo, k));
    for (let k: u32 = 0; k < 5; k++) vpush(out, rd(hiBuf, k));
    let inPod: u32 = 0;
    for (let c: u32 = 0; c < nCidrs; c++) {
      const cl = cidrs + <usize>c * 40;
      if (inRange(lo, cl, cl + 20)) {
        inPod = 1;
        break;
      }
    }
    vpush(out, inPod);
    const countAt = vlen(out);
    vpush(out, 0);
    let n: u32 = 0;
    for (let b: u32 = 0; b < nBlocks; b++) {
      const bp = <usize>rd(blocks, b);
      if (!inRange(lo, bp + 4, bp + 24)) continue;
      const ne = rd(bp, 0);
      let excepted = false;
      for (let e: u32 = 1; e <= ne; e++) {
        const el = bp + 4 + <usize>e * 40;
        if (inRange(lo, el, el + 20)) {
          excepted = true;
          break;
        }
      }
      if (excepted) continue;
      vpush(out, b);
      n++;
    }
    wr(vdata(out), countAt, n);
  }
  // each address's interval: the last point at or before it
  for (let a: u32 = 0; a < nAddrs; a++) {
    const ap = addrs + <usize>a * 20;
    let l: u32 = 0;
    let h: u32 = nu;
    while (h - l > 1) {
      const m = (l + h) >> 1;
      if (addrCmp(uniq + <usize>m * 20, ap) <= 0) l = m;
      else h = m;
    }
    vpush(out, l);
  }
  const sorted = sortRecords(addrs, 5, 5, nAddrs);
  for (let a: u32 = 0; a < nAddrs; a++) vpush(out, rd(sorted, a));
  return vdata(out);
}

function addPointTo(v: usize, f: u32, a: u32, b: u32, c: u32, d: u32): void {
  vpush(v, f);
  vpush(v, a);
  vpush(v, b);
  vpush(v, c);
  vpush(v, d);
}
function addPointAt(v: usize, p: usize): void {
  for (let k: u32 = 0; k < 5; k++) vpush(v, rd(p, k));
}

// ---- policyRules ----

const PROTO_ALL_LAST: u32 = 255;
const PORT_ALL_LAST: u32 = 65535;
const VIA_SERVICE: u32 = 1;
const NONE: u32 = 0xffffffff;

let nNs: u32 = 0;
let nGroups: u32 = 0;
let nIds: u32 = 0;
let nBlocks: u32 = 0;
let nPol: u32 = 0;
let nsPtr: usize = 0;
let grpPtr: usize = 0; // per group: [labels ptr, ports ptr, ids ptr]
let nsGroupStart: usize = 0;
let nsGroups: usize = 0;
let slots: usize = 0; // per id [kind, group, local]
let blockPtr: usize = 0;
let polNs: usize = 0;
let polFlags: usize = 0;
let polSel: usize = 0;
let polRule: usize = 0; // per policy [first ingress rule, n, first egress rule, n]
let rules: usize = 0; // per rule [first peer, nPeers, ports ptr, nPorts, policy, named]
let peers: usize = 0; // per peer [ptr, policy, list ptr, list length, done]
let allList: usize = 0;
let allN: u32 = 0;

/** The word after a selector. */
function selEnd(p: usize): usize {
  const n = rd(p, 0);
  let q = p + 4;
  for (let i: u32 = 0; i < n; i++) q += 12 + (<usize>rd(q, 2) << 2);
  return q;
}

function selMatch(sel: usize, labels: usize): bool {
  const n = rd(sel, 0);
  const nl = rd(labels, 0);
  let q = sel + 4;
  for (let i: u32 = 0; i < n; i++) {
    const key = rd(q, 0);
    const op = rd(q, 1);
    const nv = rd(q, 2);
    const vals = q + 12;
    q = vals + (<usize>nv << 2);
    let has = false;
    let v: u32 = 0;
    for (let l: u32 = 0; l < nl; l++) {
      if (rd(labels, 1 + l * 2) == key) {
        has = true;
        v = rd(labels, 2 + l * 2);
        break;
      }
    }
    if (op == 2) {
      if (!has) return false;
      continue;
    }
    if (op == 3) {
      if (has) return false;
      continue;
    }
    let inVals = false;
    if (has) {
      for (let j: u32 = 0; j < nv; j++) {
        if (rd(vals, j) == v) {
          inVals = true;
          break;
        }
      }
    }
    if (op == 0 && !inVals) return false;
    if (op == 1 && inVals) return false;
  }
  return true;
}

@inline
function grpLabels(g: u32): usize {
  return <usize>rd(grpPtr, g * 3);
}
@inline
function grpPorts(g: u32): usize {
  return <usize>rd(grpPtr, g * 3 + 1);
}
@inline
function grpIds(g: u32): usize {
  return <usize>rd(grpPtr, g * 3 + 2);
}
@inline
function grpNs(g: u32): u32 {
  return rd(grpLabels(g) - 4, 0);
}

function groupHasPort(g: u32, name: u32, proto: u32): bool {
  const ports = grpPorts(g);
  const n = rd(ports, 0);
  for (let i: u32 = 0; i < n; i++) if (rd(ports, 1 + i * 3) == name && rd(ports, 2 + i * 3) == proto) return true;
  return false;
}

/** Whether pods peer q matches the pods of group g. */
function podPeerMatches(q: u32, g: u32): bool {
  const pp = <usize>rd(peers, q * 5);
  const flags = rd(pp, 1);
  let sel = pp + 8;
  let podSel: usize = 0;
  if (flags & 1) {
    podSel = sel;
    sel = selEnd(sel);
  }
  const ns = grpNs(g);
  if (flags & 2) {
    if (!selMatch(sel, <usize>rd(nsPtr, ns))) return false;
  } else if (ns != rd(polNs, rd(peers, q * 5 + 1))) return false;
  return podSel == 0 || selMatch(podSel, grpLabels(g));
}

/** The identities peer q matches (cached): sets peerList / peerN. */
let peerList: usize = 0;
let peerN: u32 = 0;
function peerMatch(q: u32): void {
  const rec = peers + <usize>q * 20;
  if (rd(rec, 4) == 0) {
    const pp = <usize>rd(rec, 0);
    if (rd(pp, 0) == 1) {
      const b = <usize>rd(blockPtr, rd(pp, 1));
      wr(rec, 2, <u32>(b + 4));
      wr(rec, 3, rd(b, 0));
    } else {
      const v = vec(16);
      const flags = rd(pp, 1);
      let sel = pp + 8;
      let podSel: usize = 0;
      if (flags & 1) {
        podSel = sel;
        sel = selEnd(sel);
      }
      const own = rd(polNs, rd(rec, 1));
      for (let ns: u32 = 0; ns < nNs; ns++) {
        if (flags & 2) {
          if (!selMatch(sel, <usize>rd(nsPtr, ns))) continue;
        } else if (ns != own) continue;
        const gEnd = rd(nsGroupStart, ns + 1);
        for (let gi = rd(nsGroupStart, ns); gi < gEnd; gi++) {
          const g = rd(nsGroups, gi);
          if (podSel != 0 && !selMatch(podSel, grpLabels(g))) continue;
          const ids = grpIds(g);
          const n = rd(ids, 0);
          for (let i: u32 = 0; i < n; i++) vpush(v, rd(ids, 1 + i));
        }
      }
      wr(rec, 2, <u32>vdata(v));
      wr(rec, 3, vlen(v));
    }
    wr(rec, 4, 1);
  }
  peerList = <usize>rd(rec, 2);
  peerN = rd(rec, 3);
}

/** Port boxes of rule r for destination d, 4 words each, into v (cleared). */
function rulePorts(r: u32, d: u32, v: usize): void {
  vset(v, 0);
  const ports = <usize>rd(rules, r * 6 + 2);
  const n = rd(rules, r * 6 + 3);
  if (n == 0) {
    vpush(v, 0);
    vpush(v, PROTO_ALL_LAST);
    vpush(v, 0);
    vpush(v, PORT_ALL_LAST);
    return;
  }
  for (let i: u32 = 0; i < n; i++) {
    const proto = rd(ports, i * 4);
    const kind = rd(ports, i * 4 + 1);
    const value = rd(ports, i * 4 + 2);
    if (kind == 2) {
      if (rd(slots, d * 3) != 1) continue;
      const gp = grpPorts(rd(slots, d * 3 + 1));
      const np = rd(gp, 0);
      for (let j: u32 = 0; j < np; j++) {
        if (rd(gp, 1 + j * 3) != value || rd(gp, 2 + j * 3) != proto) continue;
        const port = rd(gp, 3 + j * 3);
        vpush(v, proto);
        vpush(v, proto);
        vpush(v, port);
        vpush(v, port);
      }
      continue;
    }
    vpush(v, proto);
    vpush(v, proto);
    vpush(v, kind == 0 ? 0 : value);
    vpush(v, kind == 0 ? PORT_ALL_LAST : rd(ports, i * 4 + 3));
  }
}

// ---- sets of policies, interned ----
let setData: usize = 0; // vec of policy numbers
let setIndex: usize = 0; // vec of [start, length] per set
let setTable: usize = 0;
let setCap: u32 = 0;
let single: usize = 0; // per policy: its one-policy set, or NONE

@inline
function setHash(p: usize, n: u32): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i: u32 = 0; i < n; i++) {
    h ^= rd(p, i);
    h *= 0x01000193;
  }
  return h;
}

function setEquals(id: u32, p: usize, n: u32): bool {
  if (rd(vdata(setIndex), id * 2 + 1) != n) return false;
  const s = vdata(setData) + (<usize>rd(vdata(setIndex), id * 2) << 2);
  for (let i: u32 = 0; i < n; i++) if (rd(s, i) != rd(p, i)) return false;
  return true;
}

function setRehash(cap: u32): void {
  const t = alloc(<usize>cap << 2);
  memory.fill(t, 0, <usize>cap << 2);
  const n = vlen(setIndex) / 2;
  for (let id: u32 = 0; id < n; id++) {
    const s = vdata(setData) + (<usize>rd(vdata(setIndex), id * 2) << 2);
    let h = setHash(s, rd(vdata(setIndex), id * 2 + 1)) & (cap - 1);
    while (rd(t, h) != 0) h = (h + 1) & (cap - 1);
    wr(t, h, id + 1);
  }
  setTable = t;
  setCap = cap;
}

/** The id of the set of n sorted policy numbers at p. */
function internSet(p: usize, n: u32): u32 {
  if (n == 1 && rd(single, rd(p, 0)) != NONE) return rd(single, rd(p, 0));
  let h = setHash(p, n) & (setCap - 1);
  for (;;) {
    const e = rd(setTable, h);
    if (e == 0) break;
    if (setEquals(e - 1, p, n)) return e - 1;
    h = (h + 1) & (setCap - 1);
  }
  const id = vlen(setIndex) / 2;
  vpush(setIndex, vlen(setData));
  vpush(setIndex, n);
  for (let i: u32 = 0; i < n; i++) vpush(setData, rd(p, i));
  wr(setTable, h, id + 1);
  if (n == 1) wr(single, rd(p, 0), id);
  if ((id + 1) * 2 > setCap) setRehash(setCap * 2);
  return id;
}

// ---- cutting one pair's boxes ----
let cutBoxes: usize = 0; // vec, 5 words per box: protoLo, protoHi, portLo, portHi, policy
let protoPts: usize = 0;
let portPts: usize = 0;
let covering: usize = 0;
let polTmp: usize = 0;

function sortUniqueSmall(v: usize): void {
  const d = vdata(v);
  const n = vlen(v);
  for (let i: u32 = 1; i < n; i++) {
    const x = rd(d, i);
    let j = i;
    while (j > 0 && rd(d, j - 1) > x) {
      wr(d, j, rd(d, j - 1));
      j--;
    }
    wr(d, j, x);
  }
  let u: u32 = 0;
  for (let i: u32 = 0; i < n; i++) if (u == 0 || rd(d, u - 1) != rd(d, i)) wr(d, u++, rd(d, i));
  vset(v, u);
}

/** Cuts the boxes in cutBoxes into pieces (5 words: protoLo, protoHi, portLo, portHi, set) in out (cleared). */
function cut(out: usize): void {
  vset(out, 0);
  const bx = vdata(cutBoxes);
  const k = vlen(cutBoxes) / 5;
  if (k == 1) {
    const pol = rd(bx, 4);
    let s = rd(single, pol);
    if (s == NONE) {
      wr(vdata(polTmp), 0, pol);
      s = internSet(vdata(polTmp), 1);
    }
    for (let i: u32 = 0; i < 4; i++) vpush(out, rd(bx, i));
    vpush(out, s);
    return;
  }
  vset(protoPts, 0);
  for (let b: u32 = 0; b < k; b++) {
    vpush(protoPts, rd(bx, b * 5));
    vpush(protoPts, rd(bx, b * 5 + 1) + 1);
  }
  sortUniqueSmall(protoPts);
  let prevStart: u32 = NONE;
  let prevEnd: u32 = 0;
  const np = vlen(protoPts);
  for (let pi: u32 = 0; pi + 1 < np; pi++) {
    const a = rd(vdata(protoPts), pi);
    const bEnd = rd(vdata(protoPts), pi + 1) - 1;
    vset(covering, 0);
    vset(portPts, 0);
    for (let b: u32 = 0; b < k; b++) {
      if (rd(bx, b * 5) <= a && a <= rd(bx, b * 5 + 1)) {
        vpush(covering, b);
        vpush(portPts, rd(bx, b * 5 + 2));
        vpush(portPts, rd(bx, b * 5 + 3) + 1);
      }
    }
    const nc = vlen(covering);
    if (nc == 0) {
      prevStart = NONE;
      continue;
    }
    sortUniqueSmall(portPts);
    const start = vlen(out) / 5;
    const nq = vlen(portPts);
    for (let qi: u32 = 0; qi + 1 < nq; qi++) {
      const c = rd(vdata(portPts), qi);
      const dEnd = rd(vdata(portPts), qi + 1) - 1;
      vset(polTmp, 0);
      for (let i: u32 = 0; i < nc; i++) {
        const b = rd(vdata(covering), i);
        if (rd(bx, b * 5 + 2) <= c && c <= rd(bx, b * 5 + 3)) vpush(polTmp, rd(bx, b * 5 + 4));
      }
      if (vlen(polTmp) == 0) continue;
      sortUniqueSmall(polTmp);
      const s = internSet(vdata(polTmp), vlen(polTmp));
      const n = vlen(out) / 5;
      if (n > start) {
        const last = vdata(out) + <usize>(n - 1) * 20;
        if (rd(last, 3) + 1 == c && rd(last, 4) == s) {
          wr(last, 3, dEnd);
          continue;
        }
      }
      vpush(out, a);
      vpush(out, bEnd);
      vpush(out, c);
      vpush(out, dEnd);
      vpush(out, s);
    }
    const end = vlen(out) / 5;
    if (prevStart != NONE && end - start == prevEnd - prevStart) {
      const o = vdata(out);
      if (rd(o, prevStart * 5 + 1) + 1 == a) {
        let same = true;
        for (let i: u32 = 0; i < end - start && same; i++) {
          for (let w: u32 = 2; w < 5; w++) {
            if (rd(o, (prevStart + i) * 5 + w) != rd(o, (start + i) * 5 + w)) {
              same = false;
              break;
            }
          }
        }
        if (same) {
          for (let i = prevStart; i < prevEnd; i++) wr(o, i * 5 + 1, bEnd);
          vset(out, prevEnd * 5);
          continue;
        }
      }
    }
    prevStart = start;
    prevEnd = end;
  }
}

// ---- pairs of one direction ----
let boxes: usize = 0; // vec, 6 words: other, protoLo, protoHi, portLo, portHi, policy
let pieces: usize = 0;
let prevPieces: usize = 0;
let elems: usize = 0; // vec, 9 words: src, dst, proto, port, srcLast, dstLast, protoLast, portLast, set
let portBox: usize = 0;
let sortA: usize = 0;
let counts: usize = 0; // nIds + 1 words

function pushBoxes(other: u32, pol: u32): void {
  const pb = vdata(portBox);
  const n = vlen(portBox) / 4;
  for (let i: u32 = 0; i < n; i++) {
    vpush(boxes, other);
    vpush(boxes, rd(pb, i * 4));
    vpush(boxes, rd(pb, i * 4 + 1));
    vpush(boxes, rd(pb, i * 4 + 2));
    vpush(boxes, rd(pb, i * 4 + 3));
    vpush(boxes, pol);
  }
}

function flush(ingress: bool, self: u32, first: u32, last: u32): void {
  const pd = vdata(prevPieces);
  const n = vlen(prevPieces) / 5;
  for (let i: u32 = 0; i < n; i++) {
    vpush(elems, ingress ? first : self);
    vpush(elems, ingress ? self : first);
    vpush(elems, rd(pd, i * 5));
    vpush(elems, rd(pd, i * 5 + 2));
    vpush(elems, ingress ? last : self);
    vpush(elems, ingress ? self : last);
    vpush(elems, rd(pd, i * 5 + 1));
    vpush(elems, rd(pd, i * 5 + 3));
    vpush(elems, rd(pd, i * 5 + 4));
  }
}

/** The elements of the boxes gathered for `self` (the destination for ingress, the source for
 * egress): per other end, the cut pieces; runs of consecutive other ends with the same pieces merge. */
function emit(ingress: bool, self: u32): void {
  const nb = vlen(boxes) / 6;
  if (nb == 0) return;
  // the boxes in order of their other end: a counting sort (stable) over the ids, in
  // vectors reused from one call to the next (emit runs once per isolated identity)
  vgrow(sortA, nb);
  const idx = vdata(sortA);
  countingSort(vdata(boxes), 6, 0, nb, idx);
  const bd = vdata(boxes);
  let first: u32 = NONE;
  let last: u32 = NONE;
  let i: u32 = 0;
  while (i < nb) {
    const other = rd(bd, rd(idx, i) * 6);
    vset(cutBoxes, 0);
    while (i < nb && rd(bd, rd(idx, i) * 6) == other) {
      const r = bd + <usize>rd(idx, i) * 24;
      for (let w: u32 = 1; w < 6; w++) vpush(cutBoxes, rd(r, w));
      i++;
    }
    cut(pieces);
    let same = first != NONE && last + 1 == other && vlen(pieces) == vlen(prevPieces);
    if (same) {
      const a = vdata(pieces);
      const b = vdata(prevPieces);
      const n = vlen(pieces);
      for (let j: u32 = 0; j < n; j++) {
        if (rd(a, j) != rd(b, j)) {
          same = false;
          break;
        }
      }
    }
    if (same) {
      last = other;
      continue;
    }
    if (first != NONE) flush(ingress, self, first, last);
    const t = prevPieces;
    prevPieces = pieces;
    pieces = t;
    first = other;
    last = other;
  }
  flush(ingress, self, first, last);
}

/**
 * input (compiler/policy/pack.ts): nNamespaces, nGroups, nIds, nBlocks, nPolicies, then the
 * sections. Output: per id [nIn, in..., nOut, out...], then [n, elements (9 words)] for
 * ingress and egress, [nSets, per set n, policies...], [nProblems, per problem policy,
 * direction, rule, port]. Returns the output's start; its words follow one another.
 */
export function policyRules(input: usize, words: u32): usize {
  top = input + (<usize>words << 2);
  nNs = rd(input, 0);
  nGroups = rd(input, 1);
  nIds = rd(input, 2);
  nBlocks = rd(input, 3);
  nPol = rd(input, 4);
  let p = input + 20;
  nsPtr = alloc(<usize>nNs << 2);
  for (let n: u32 = 0; n < nNs; n++) {
    wr(nsPtr, n, <u32>p);
    p += 4 + (<usize>rd(p, 0) << 3);
  }
  grpPtr = alloc(<usize>nGroups * 12);
  const nsCount = alloc(<usize>(nNs + 1) << 2);
  memory.fill(nsCount, 0, <usize>(nNs + 1) << 2);
  for (let g: u32 = 0; g < nGroups; g++) {
    const ns = rd(p, 0);
    wr(nsCount, ns + 1, rd(nsCount, ns + 1) + 1);
    p += 4;
    wr(grpPtr, g * 3, <u32>p);
    p += 4 + (<usize>rd(p, 0) << 3);
    wr(grpPtr, g * 3 + 1, <u32>p);
    p += 4 + <usize>rd(p, 0) * 12;
    wr(grpPtr, g * 3 + 2, <u32>p);
    p += 4 + (<usize>rd(p, 0) << 2);
  }
  for (let n: u32 = 0; n < nNs; n++) wr(nsCount, n + 1, rd(nsCount, n + 1) + rd(nsCount, n));
  nsGroupStart = nsCount;
  nsGroups = alloc(<usize>nGroups << 2);
  const fill = alloc(<usize>nNs << 2);
  memory.copy(fill, nsCount, <usize>nNs << 2);
  for (let g: u32 = 0; g < nGroups; g++) {
    const ns = grpNs(g);
    const at = rd(fill, ns);
    wr(nsGroups, at, g);
    wr(fill, ns, at + 1);
  }
  slots = p;
  p += <usize>nIds * 12;
  blockPtr = alloc(<usize>nBlocks << 2);
  for (let b: u32 = 0; b < nBlocks; b++) {
    wr(blockPtr, b, <u32>p);
    p += 4 + (<usize>rd(p, 0) << 2);
    p += 4 + (<usize>rd(p, 0) << 2);
  }
  polNs = alloc(<usize>nPol << 2);
  polFlags = alloc(<usize>nPol << 2);
  polSel = alloc(<usize>nPol << 2);
  polRule = alloc(<usize>nPol << 4);
  const ruleV = vec(64);
  const peerV = vec(64);
  for (let q: u32 = 0; q < nPol; q++) {
    wr(polNs, q, rd(p, 0));
    const flags = rd(p, 1);
    wr(polFlags, q, flags);
    wr(polSel, q, <u32>(p + 8));
    p = selEnd(p + 8);
    for (let dir: u32 = 0; dir < 2; dir++) {
      wr(polRule, q * 4 + dir * 2, vlen(ruleV) / 6);
      wr(polRule, q * 4 + dir * 2 + 1, 0);
      if ((flags & (1 << dir)) == 0) continue;
      const nr = rd(p, 0);
      wr(polRule, q * 4 + dir * 2 + 1, nr);
      p += 4;
      for (let r: u32 = 0; r < nr; r++) {
        const np = rd(p, 0);
        vpush(ruleV, vlen(peerV) / 5);
        vpush(ruleV, np);
        p += 4;
        for (let i: u32 = 0; i < np; i++) {
          vpush(peerV, <u32>p);
          vpush(peerV, q);
          vpush(peerV, 0);
          vpush(peerV, 0);
          vpush(peerV, 0);
          if (rd(p, 0) == 1) p += 8;
          else {
            const pf = rd(p, 1);
            p += 8;
            if (pf & 1) p = selEnd(p);
            if (pf & 2) p = selEnd(p);
          }
        }
        const nports = rd(p, 0);
        vpush(ruleV, <u32>(p + 4));
        vpush(ruleV, nports);
        vpush(ruleV, q);
        let named: u32 = 0;
        for (let i: u32 = 0; i < nports; i++) if (rd(p + 4, i * 4 + 1) == 2) named = 1;
        vpush(ruleV, named);
        p += 4 + <usize>nports * 16;
      }
    }
  }
  rules = vdata(ruleV);
  peers = vdata(peerV);

  const all = vec(nIds + 1);
  vpush(all, 0);
  for (let id: u32 = 0; id < nIds; id++) if (rd(slots, id * 3) != 0) vpush(all, id);
  allList = vdata(all);
  allN = vlen(all);

  setData = vec(256);
  setIndex = vec(256);
  setCap = 256;
  setTable = alloc(<usize>setCap << 2);
  memory.fill(setTable, 0, <usize>setCap << 2);
  single = alloc(<usize>nPol << 2);
  memory.fill(single, 0xff, <usize>nPol << 2);
  cutBoxes = vec(64);
  protoPts = vec(64);
  portPts = vec(64);
  covering = vec(64);
  polTmp = vec(64);
  boxes = vec(1024);
  pieces = vec(64);
  prevPieces = vec(64);
  portBox = vec(64);
  sortA = vec(1024);
  counts = alloc(<usize>(nIds + 1) << 2);

  // selection: which local identities each policy isolates, per direction
  const selIn = vec(256);
  const selOut = vec(256);
  for (let q: u32 = 0; q < nPol; q++) {
    const flags = rd(polFlags, q);
    if ((flags & 3) == 0) continue;
    const ns = rd(polNs, q);
    const sel = <usize>rd(polSel, q);
    const gEnd = rd(nsGroupStart, ns + 1);
    for (let gi = rd(nsGroupStart, ns); gi < gEnd; gi++) {
      const g = rd(nsGroups, gi);
      const ids = grpIds(g);
      const n = rd(ids, 0);
      let any = false;
      for (let i: u32 = 0; i < n; i++) if (rd(slots, rd(ids, 1 + i) * 3 + 2) != 0) any = true;
      if (!any || !selMatch(sel, grpLabels(g))) continue;
      for (let i: u32 = 0; i < n; i++) {
        const id = rd(ids, 1 + i);
        if (rd(slots, id * 3 + 2) == 0) continue;
        if (flags & 1) {
          vpush(selIn, id);
          vpush(selIn, q);
        }
        if (flags & 2) {
          vpush(selOut, id);
          vpush(selOut, q);
        }
      }
    }
  }
  const inStart = csr(selIn);
  const inList = csrList;
  const outStart = csr(selOut);
  const outList = csrList;

  const out = vec(1024);
  for (let id: u32 = 0; id < nIds; id++) {
    for (let dir: u32 = 0; dir < 2; dir++) {
      const st = dir == 0 ? inStart : outStart;
      const li = dir == 0 ? inList : outList;
      const a = rd(st, id);
      const b = rd(st, id + 1);
      vpush(out, b - a);
      for (let i = a; i < b; i++) vpush(out, rd(li, i));
    }
  }

  // ingress: per isolated destination
  elems = vec(1024);
  for (let d: u32 = 0; d < nIds; d++) {
    const a = rd(inStart, d);
    const b = rd(inStart, d + 1);
    if (a == b) continue;
    vset(boxes, 0);
    for (let i = a; i < b; i++) {
      const q = rd(inList, i);
      if (rd(polFlags, q) & 4) {
        vset(portBox, 0);
        vpush(portBox, 0);
        vpush(portBox, PROTO_ALL_LAST);
        vpush(portBox, 0);
        vpush(portBox, PORT_ALL_LAST);
        pushBoxes(VIA_SERVICE, q);
      }
      const r0 = rd(polRule, q * 4);
      const rn = rd(polRule, q * 4 + 1);
      for (let r = r0; r < r0 + rn; r++) {
        rulePorts(r, d, portBox);
        if (vlen(portBox) == 0) continue;
        const pe0 = rd(rules, r * 6);
        const pen = rd(rules, r * 6 + 1);
        if (pen == 0) {
          for (let s: u32 = 0; s < allN; s++) pushBoxes(rd(allList, s), q);
          continue;
        }
        for (let pe = pe0; pe < pe0 + pen; pe++) {
          peerMatch(pe);
          const l = peerList;
          const n = peerN;
          for (let s: u32 = 0; s < n; s++) pushBoxes(rd(l, s), q);
        }
      }
    }
    emit(true, d);
  }
  // emitted by destination, then protocol and port: sorted once by source (stably), they are
  // in (src, dst, proto, port) order
  const nIn = vlen(elems) / 9;
  const inOrder = alloc(<usize>nIn << 2);
  countingSort(vdata(elems), 9, 0, nIn, inOrder);
  vpush(out, nIn);
  const inElems = vdata(elems);
  for (let i: u32 = 0; i < nIn; i++) {
    const e = inElems + <usize>rd(inOrder, i) * 36;
    for (let w: u32 = 0; w < 9; w++) vpush(out, rd(e, w));
  }

  // egress: per isolated source, destinations in order
  elems = vec(1024);
  for (let s: u32 = 0; s < nIds; s++) {
    const a = rd(outStart, s);
    const b = rd(outStart, s + 1);
    if (a == b) continue;
    vset(boxes, 0);
    for (let i = a; i < b; i++) {
      const q = rd(outList, i);
      const r0 = rd(polRule, q * 4 + 2);
      const rn = rd(polRule, q * 4 + 3);
      for (let r = r0; r < r0 + rn; r++) {
        const named = rd(rules, r * 6 + 5) != 0;
        if (!named) {
          rulePorts(r, 0, portBox);
          if (vlen(portBox) == 0) continue;
        }
        const pe0 = rd(rules, r * 6);
        const pen = rd(rules, r * 6 + 1);
        const np = pen == 0 ? 1 : pen;
        for (let pe = pe0; pe < pe0 + np; pe++) {
          let l = allList;
          let n = allN;
          if (pen != 0) {
            peerMatch(pe);
            l = peerList;
            n = peerN;
          }
          for (let j: u32 = 0; j < n; j++) {
            const d = rd(l, j);
            if (named) rulePorts(r, d, portBox);
            pushBoxes(d, q);
          }
        }
      }
    }
    emit(false, s);
  }
  const nOut = vlen(elems) / 9;
  vpush(out, nOut);
  const outElems = vdata(elems);
  for (let i: u32 = 0; i < nOut * 9; i++) vpush(out, rd(outElems, i));

  const nSets = vlen(setIndex) / 2;
  vpush(out, nSets);
  for (let i: u32 = 0; i < nSets; i++) {
    const st = rd(vdata(setIndex), i * 2);
    const n = rd(vdata(setIndex), i * 2 + 1);
    vpush(out, n);
    for (let j: u32 = 0; j < n; j++) vpush(out, rd(vdata(setData), st + j));
  }

  problems(out);
  return vdata(out);
}

/** csr of (id, value) pairs: returns per-id starts (nIds + 1), the values in csrList. */
let csrList: usize = 0;
function csr(pairs: usize): usize {
  const n = vlen(pairs) / 2;
  const d = vdata(pairs);
  const start = alloc(<usize>(nIds + 1) << 2);
  memory.fill(start, 0, <usize>(nIds + 1) << 2);
  for (let i: u32 = 0; i < n; i++) {
    const id = rd(d, i * 2);
    wr(start, id + 1, rd(start, id + 1) + 1);
  }
  for (let id: u32 = 0; id < nIds; id++) wr(start, id + 1, rd(start, id + 1) + rd(start, id));
  const fill = alloc(<usize>nIds << 2);
  memory.copy(fill, start, <usize>nIds << 2);
  csrList = alloc(<usize>n << 2);
  for (let i: u32 = 0; i < n; i++) {
    const id = rd(d, i * 2);
    const at = rd(fill, id);
    wr(csrList, at, rd(d, i * 2 + 1));
    wr(fill, id, at + 1);
  }
  return start;
}

/** Named ports no pod has that the rule could apply to: [n, per problem policy, direction, rule, port]. */
function problems(out: usize): void {
  const countAt = vlen(out);
  vpush(out, 0);
  let count: u32 = 0;
  for (let q: u32 = 0; q < nPol; q++) {
    for (let dir: u32 = 0; dir < 2; dir++) {
      const r0 = rd(polRule, q * 4 + dir * 2);
      const rn = rd(polRule, q * 4 + dir * 2 + 1);
      for (let r = r0; r < r0 + rn; r++) {
        if (rd(rules, r * 6 + 5) == 0) continue;
        const ports = <usize>rd(rules, r * 6 + 2);
        const np = rd(rules, r * 6 + 3);
        for (let j: u32 = 0; j < np; j++) {
          if (rd(ports, j * 4 + 1) != 2) continue;
          const proto = rd(ports, j * 4);
          const name = rd(ports, j * 4 + 2);
          if (!namedPortFound(q, dir, r, name, proto)) {
            vpush(out, q);
            vpush(out, dir);
            vpush(out, r - r0);
            vpush(out, j);
            count++;
          }
        }
      }
    }
  }
  wr(vdata(out), countAt, count);
}

function namedPortFound(q: u32, dir: u32, r: u32, name: u32, proto: u32): bool {
  if (dir == 0) {
    const ns = rd(polNs, q);
    const gEnd = rd(nsGroupStart, ns + 1);
    for (let gi = rd(nsGroupStart, ns); gi < gEnd; gi++) {
      const g = rd(nsGroups, gi);
      if (groupHasPort(g, name, proto) && selMatch(<usize>rd(polSel, q), grpLabels(g))) return true;
    }
    return false;
  }
  const pe0 = rd(rules, r * 6);
  const pen = rd(rules, r * 6 + 1);
  for (let g: u32 = 0; g < nGroups; g++) {
    if (!groupHasPort(g, name, proto)) continue;
    if (pen == 0) return true;
    for (let pe = pe0; pe < pe0 + pen; pe++) {
      const pp = <usize>rd(peers, pe * 5);
      if (rd(pp, 0) == 0) {
        if (podPeerMatches(pe, g)) return true;
        continue;
      }
      const b = <usize>rd(blockPtr, rd(pp, 1));
      const gs = b + 4 + (<usize>rd(b, 0) << 2);
      const n = rd(gs, 0);
      for (let i: u32 = 0; i < n; i++) if (rd(gs, 1 + i) == g) return true;
    }
  }
  return false;
}
