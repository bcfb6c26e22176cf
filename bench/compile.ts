// bench/compile: full compile of S services × 10 endpoints, the Maglev rings filled by
// compiler.wasm against the TypeScript reference in the same run, and the full-resync nft
// script rendered from the result. Usage: bun bench/compile.ts [ringFactor=25]
import { compile, referenceRings } from "../compiler/reference/compile.ts";
import { clusterStateFrom } from "../compiler/state.ts";
import { loadCompiler, wasmRings } from "../compiler/wasm.ts";
import { model, renderFull } from "../agent/datapath/render.ts";

const ringFactor = Number(process.argv[2] ?? 25);
const wasm = wasmRings(await loadCompiler());

function cluster(n: number) {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    objs.push({ kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] } });
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: [...Array(10).keys()].map((e) => ({ addresses: [`10.${64 + e}.${i >> 8}.${i & 255}`], conditions: { ready: true } })),
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
console.log(`full compile, services × 10 endpoints, ring factor ${ringFactor} (median ms; rings by compiler.wasm vs the TypeScript reference)`);
console.log(`${"services".padStart(8)} ${"ring".padStart(5)} ${"reference".padStart(10)} ${"wasm".padStart(8)} ${"ref/wasm".padStart(9)} ${"render".padStart(8)} ${"nft text".padStart(9)}`);
for (const n of [100, 1000, 10000]) {
  const state = cluster(n);
  const runs = n >= 10000 ? 5 : 15;
  const ref = time(() => compile(state, opts, referenceRings), runs);
  const w = time(() => compile(state, opts, wasm), runs);
  const tables = compile(state, opts, wasm);
  let script = "";
  const r = time(() => (script = renderFull(model(tables, ringFactor))), runs);
  console.log(
    `${String(n).padStart(8)} ${String(tables.targets[0]!.ringSize).padStart(5)} ${ref.toFixed(1).padStart(10)} ${w.toFixed(1).padStart(8)} ${(ref / w).toFixed(2).padStart(8)}x ${r.toFixed(1).padStart(8)} ${(script.length / 1e6).toFixed(1).padStart(7)}MB`,
  );
}
