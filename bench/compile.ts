// bench/compile: full compile of S services × 10 endpoints, the Maglev rings filled by
// compiler.wasm against the TypeScript reference in the same run; the nft script rendered
// from the result; and, as root, the kernel load of that script and of a one-endpoint delta
// through libnftables, in a throwaway network namespace.
// Usage: bun bench/compile.ts [ringFactor=25]
import { compile, referenceRings } from "../compiler/reference/compile.ts";
import { clusterStateFrom } from "../compiler/state.ts";
import { loadCompiler, wasmRings } from "../compiler/wasm.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { model, renderDelta, renderFull } from "../agent/datapath/render.ts";
import { addNetns, deleteNetns, netnsPath } from "../agent/sys/netns.ts";

const ringFactor = Number(process.argv[2] ?? 25);
const wasm = wasmRings(await loadCompiler());

function cluster(n: number, moved = -1) {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    objs.push({ kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] } });
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: [...Array(10).keys()].map((e) => ({ addresses: [`10.${64 + e + (i === moved && e === 0 ? 100 : 0)}.${i >> 8}.${i & 255}`], conditions: { ready: true } })),
    });
  }
  return clusterStateFrom(objs).state;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function time(f: () => void, runs: number): number {
  f(); // warm-up
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return median(t);
}

const opts = { nodeName: "n1", nodeIPs: [], ringFactor };
const root = process.getuid?.() === 0;
const work = mkdtempSync(`${tmpdir()}/skein-bench-compile-`);
console.log(`full compile, services × 10 endpoints, ring factor ${ringFactor} (median ms; rings by compiler.wasm vs the TypeScript reference;`);
console.log(`kernel: one cold full load and one one-endpoint delta through libnftables in a fresh namespace${root ? "" : ", skipped: not root"})`);
console.log(`${"services".padStart(8)} ${"ring".padStart(5)} ${"reference".padStart(10)} ${"wasm".padStart(8)} ${"ref/wasm".padStart(9)} ${"render".padStart(8)} ${"nft text".padStart(9)} ${"load".padStart(9)} ${"delta".padStart(7)} ${"delta lines".padStart(12)}`);
for (const n of [100, 1000, 10000]) {
  const state = cluster(n);
  const runs = n >= 10000 ? 5 : 15;
  const ref = time(() => compile(state, opts, referenceRings), runs);
  const w = time(() => compile(state, opts, wasm), runs);
  const tables = compile(state, opts, wasm);
  let script = "";
  const r = time(() => (script = renderFull(model(tables, ringFactor))), runs);
  const moved = compile(cluster(n, Math.floor(n / 2)), { ...opts, previous: tables }, wasm);
  const delta = renderDelta(model(tables, ringFactor), model(moved, ringFactor)) ?? "";
  let load = "-";
  let dms = "-";
  if (root) {
    const ns = `skt-bcmp${Math.random().toString(36).slice(2, 6)}`;
    try {
      addNetns(ns);
      writeFileSync(`${work}/full.nft`, script);
      writeFileSync(`${work}/delta.nft`, delta);
      const p = Bun.spawnSync(["nsenter", `--net=${netnsPath(ns)}`, process.execPath, resolve(import.meta.dir, "nft-apply.ts"), `${work}/full.nft`, `${work}/delta.nft`]);
      if (p.exitCode !== 0) throw new Error(p.stderr.toString());
      const j = JSON.parse(p.stdout.toString()) as { fullMs: number; deltaMs: number };
      load = `${j.fullMs.toFixed(0)}`;
      dms = j.deltaMs.toFixed(1);
    } finally {
      deleteNetns(ns);
    }
  }
  console.log(
    `${String(n).padStart(8)} ${String(tables.targets[0]!.ringSize).padStart(5)} ${ref.toFixed(1).padStart(10)} ${w.toFixed(1).padStart(8)} ${(ref / w).toFixed(2).padStart(8)}x ${r.toFixed(1).padStart(8)} ${(script.length / 1e6).toFixed(1).padStart(7)}MB ${load.padStart(9)} ${dms.padStart(7)} ${String(delta.split("\n").length - 1).padStart(12)}`,
  );
}
rmSync(work, { recursive: true, force: true });
