// Helper of bench/ring-factor.ts, run inside a throwaway network namespace: how much kernel
// memory a loaded table takes. It moves itself into a memory cgroup of its own (a child of
// the one it runs in), compiles n services × eps endpoints at the given ring factor, and
// loads them through the datapath as the agent does. nf_tables charges its rules, sets and
// elements to the memory cgroup of the process that commits them, so the cgroup's kernel
// memory counter before and after the load (and after the table is deleted again) is what
// the table costs. Prints JSON.
import { mkdirSync, rmdirSync, writeFileSync } from "node:fs";
import { IncrementalCompiler } from "../compiler/incremental.ts";
import { loadCompiler, wasmUnits } from "../compiler/wasm.ts";
import { Datapath } from "../agent/datapath/datapath.ts";
import { openNft } from "../agent/datapath/nft.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { run } from "../agent/sys/exec.ts";
import { cluster } from "./cluster.ts";
import { helperCgroupDir, memoryCgroup } from "./mem-cgroup.ts";

const [n, eps, ringFactor] = process.argv.slice(2).map(Number) as [number, number, number];

// Ctrl-C reaches this process with its parent (one process group) and the parent stops it
// with SIGTERM: either way it leaves its cgroup, so the directory can go, and says why it
// stopped.
let leave = (): void => {};
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  process.on(signal, () => {
    leave();
    console.error(`ring-memory.ts: interrupted by ${signal}`);
    process.exit(code);
  });
}

/** The kernel-memory counter of a new child of this process's memory cgroup; `leave` takes the process out and removes it. */
function ownCgroup(): { read: () => number } {
  const { base, kernelBytes } = memoryCgroup();
  const dir = helperCgroupDir(process.pid);
  mkdirSync(dir);
  let inside = true;
  leave = () => {
    if (!inside) return;
    inside = false;
    writeFileSync(`${base}/cgroup.procs`, String(process.pid));
    rmdirSync(dir);
  };
  try {
    writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
    if (!Number.isFinite(kernelBytes(dir))) throw new Error(`${dir}: no kernel memory counter`);
  } catch (e) {
    leave();
    throw e;
  }
  return { read: () => kernelBytes(dir) };
}

const opts = { nodeName: "n1", nodeIPs: [], ringFactor };
const ic = new IncrementalCompiler(opts, wasmUnits(await loadCompiler(), opts));
ic.load(cluster(n, eps));
ic.compile();
const tables = ic.tables();
const slots = tables.targets.reduce((s, t) => s + t.ringSize, 0);
const cg = ownCgroup();
try {
  const nl = Netlink.openNetfilter();
  const dp = new Datapath(openNft(), { send: (batch) => nl.sendBatch(batch) });
  const before = cg.read();
  dp.sync(tables);
  const loaded = cg.read();
  run(["nft", "delete", "table", "inet", "skein"]);
  // table memory is freed after an RCU grace period; wait for it with a deadline
  let after = cg.read();
  for (const deadline = Date.now() + 5000; after > before + (loaded - before) / 10 && Date.now() < deadline; after = cg.read()) await Bun.sleep(50);
  console.log(JSON.stringify({ slots, targets: tables.targets.length, loadedBytes: loaded - before, leftBytes: after - before }));
} finally {
  leave();
}
