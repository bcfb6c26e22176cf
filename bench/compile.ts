// bench/compile: S services × 10 endpoints. The full compile with the Maglev rings filled by
// compiler.wasm against the TypeScript reference in the same run; the incremental recompile
// after one endpoint change (one slice set, its service recompiled); and, as root, in a
// throwaway network namespace: the cold kernel load and a one-endpoint delta through the
// datapath (as the agent applies them), beside iptables-restore of the same services in
// kube-proxy's iptables shape (legacy and nft backends).
// Usage: bun bench/compile.ts [ringFactor=10] [sizes=100,1000,10000]
import { compile } from "../compiler/reference/compile.ts";
import { loadCompiler, wasmUnits } from "../compiler/wasm.ts";
import { Names, packService, packSlice } from "../compiler/pack.ts";
import { IncrementalCompiler } from "../compiler/incremental.ts";
import { resolve } from "node:path";
import { addNetns, deleteNetns, netnsPath } from "../agent/sys/netns.ts";
import { cluster } from "./cluster.ts";
import { col, pct } from "./stats.ts";

const ringFactor = Number(process.argv[2] ?? 10);
const sizes = (process.argv[3] ?? "100,1000,10000").split(",").map(Number);
const compiler = await loadCompiler();

function time(f: () => void, runs: number, collect = false): number {
  f(); // warm-up
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    // a whole compile starts from a collected heap, so that no run pays for an earlier one's
    // garbage (not for the microsecond recompile: a collection per run would dwarf it)
    if (collect) Bun.gc(true);
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return pct(t, 50);
}

interface Kernel {
  full: { ms: number; lines: number; ringOps: number };
  delta: { ms: number; lines: number; ringOps: number };
  rssMB: number;
  iptRules: number;
  legacyMs: number | null;
  nftMs: number | null;
}

const opts = { nodeName: "n1", nodeIPs: [], ringFactor };
const root = process.getuid?.() === 0;
console.log(`services × 10 endpoints, ring factor ${ringFactor}. compile: median ms, compiler.wasm vs the TypeScript reference, and the packing of every object for compiler.wasm (done as objects arrive); recompile after one endpoint change, ms.`);
console.log(`kernel (fresh namespace${root ? "" : ", skipped: not root"}): skein cold load and one-endpoint delta through the datapath, ms;`);
console.log(`iptables-restore of the same services in kube-proxy's iptables shape, ms (cut off after $IPT_LIMIT_MS, default 60 s); RSS of the loading process, MB`);
console.log(
  [col("services", 8), col("ring", 5), col("slots", 9), col("reference", 10), col("wasm", 8), col("ref/wasm", 9), col("pack", 6), col("recompile", 10), col("skein load", 11), col("delta", 7), col("delta ops", 10), col("ipt-legacy", 11), col("ipt-nft", 9), col("ipt rules", 10), col("RSS", 6)].join(" "),
);
for (const n of sizes) {
  const state = cluster(n);
  const runs = n >= 10000 ? 9 : 15;
  const ref = time(() => compile(state, opts), runs, true);
  // packing happens as objects arrive (the agent's watcher hands each one over once), so it
  // is timed on its own; the compile then reads packed objects
  const pack = time(() => {
    const names = new Names();
    for (const s of state.services) packService(s, names);
    for (const s of state.slices) packSlice(s, names, opts.nodeName);
  }, runs, true);
  const wasm = wasmUnits(compiler, opts);
  const w = time(() => compile(state, opts, wasm), runs, true);
  const tables = compile(state, opts, wasm);
  // the recompile after one endpoint change: one slice set, only its service recompiled
  const ic = new IncrementalCompiler(opts, wasmUnits(compiler, opts));
  ic.load(state);
  ic.compile();
  const slices = [cluster(n, 10, n >> 1).slices[n >> 1]!, state.slices[n >> 1]!];
  let flip = 0;
  const recompile = time(() => {
    ic.setSlice(slices[flip++ & 1]!);
    if (ic.compile().length !== 1) throw new Error("a one-slice change recompiled more than its service");
  }, 101);
  const slots = tables.targets.reduce((s, t) => s + t.ringSize, 0);
  let k: Kernel | undefined;
  if (root) {
    const ns = `skt-bcmp${Math.random().toString(36).slice(2, 6)}`;
    try {
      addNetns(ns);
      const p = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, process.execPath, resolve(import.meta.dir, "nft-apply.ts"), String(n), String(ringFactor)]);
      if (p.exitCode !== 0) throw new Error(p.stderr.toString());
      k = JSON.parse(p.stdout.toString()) as Kernel;
    } finally {
      deleteNetns(ns);
    }
  }
  console.log(
    [
      col(n, 8),
      col(tables.targets[0]!.ringSize, 5),
      col(slots, 9),
      col(ref.toFixed(1), 10),
      col(w.toFixed(1), 8),
      col(`${(ref / w).toFixed(2)}x`, 9),
      col(pack.toFixed(1), 6),
      col(recompile.toFixed(3), 10),
      col(k ? k.full.ms.toFixed(0) : "-", 11),
      col(k ? k.delta.ms.toFixed(1) : "-", 7),
      col(k ? `${k.delta.ringOps}+${k.delta.lines}` : "-", 10),
      col(k ? (k.legacyMs === null ? "cut off" : k.legacyMs.toFixed(0)) : "-", 11),
      col(k ? (k.nftMs === null ? "cut off" : k.nftMs.toFixed(0)) : "-", 9),
      col(k ? k.iptRules : "-", 10),
      col(k ? k.rssMB.toFixed(0) : "-", 6),
    ].join(" "),
  );
}
