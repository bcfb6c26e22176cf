// What the benchmarks share to print their tables.

/** The p-th percentile, nearest rank (p 50 of an odd count is the median). */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** A right-aligned column. */
export const col = (s: string | number, w: number) => String(s).padStart(w);

/** The timings of `runs` calls of `f`, ms, sorted. */
export function timings(f: () => void, runs: number): number[] {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    f();
    t.push(performance.now() - s);
  }
  return t.sort((a, b) => a - b);
}
