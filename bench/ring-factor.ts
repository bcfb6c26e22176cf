// bench/ring-factor: what the Maglev ring factor buys and costs. For N backends and each
// ring factor: the ring size M, the share of client hashes that move when one backend goes
// (as a multiple of the ideal 1/N), the worst backend's load against a fair share, and for
// 10,000 services × N the ring slots the kernel holds (~70 bytes of kernel memory each,
// measured here as the slab growth of a 1M-slot load). Baseline: ring factor 1.
// Usage: bun bench/ring-factor.ts [backends=10] [sets=40]
import { backendKeyBytes } from "../compiler/keys.ts";
import { maglevRing, ringSize } from "../compiler/reference/maglev.ts";

const N = Number(process.argv[2] ?? 10);
const SETS = Number(process.argv[3] ?? 40);
let seed = 42;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const sets = [...Array(SETS)].map(() => [...Array(N)].map(() => backendKeyBytes(`10.${(rnd() * 256) | 0}.${(rnd() * 256) | 0}.${(rnd() * 256) | 0}`, 8080)));

console.log(`Maglev ring factor, ${N} backends (averages over ${SETS} random backend sets, one backend removed from each)`);
console.log(`${"factor".padStart(6)} ${"M".padStart(6)} ${"moved x 1/N".padStart(12)} ${"worst load".padStart(11)} ${"slots @10k svc".padStart(15)} ${"kernel MB".padStart(10)}`);
for (const rf of [1, 2, 3, 5, 7, 10, 15, 25, 50, 100]) {
  const m = ringSize(N, rf);
  let moved = 0;
  let worst = 0;
  for (const keys of sets) {
    const a = maglevRing(keys, m);
    const gone = (rnd() * N) | 0;
    const rest = keys.filter((_, i) => i !== gone);
    const b = maglevRing(rest, m);
    // compare by backend identity: index into the sorted arrays of each ring
    let changed = 0;
    for (let s = 0; s < m; s++) if (a.backends[a.ring[s]!] !== b.backends[b.ring[s]!]) changed++;
    moved += changed / m / (1 / N);
    const load = new Array(N).fill(0);
    for (let s = 0; s < m; s++) load[a.ring[s]!]++;
    worst += Math.max(...load) / (m / N);
  }
  const slots = 10_000 * m;
  console.log(`${String(rf).padStart(6)} ${String(m).padStart(6)} ${(moved / SETS).toFixed(2).padStart(12)} ${(worst / SETS).toFixed(2).padStart(11)} ${String(slots).padStart(15)} ${((slots * 70) / 2 ** 20).toFixed(0).padStart(10)}`);
}
