// Helper of bench/ring-factor.ts, run inside a throwaway network namespace: how much kernel
// memory a loaded table takes. It moves itself into a memory cgroup of its own (a child of
// the one it runs in), compiles n services × eps endpoints at the given ring factor, and
// loads them through the datapath as the agent does. nf_tables charges its rules, sets and
// elements to the memory cgroup of the process that commits them, so the cgroup's kernel
// memory counter before and after the load (and after the table is deleted again) is what
// the table costs. Prints JSON.
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { IncrementalCompiler } from "../compiler/incremental.ts";
import { loadCompiler, wasmUnits } from "../compiler/wasm.ts";
import { Datapath } from "../agent/datapath/datapath.ts";
import { openNft } from "../agent/datapath/nft.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { run } from "../agent/sys/exec.ts";
import { cluster } from "./cluster.ts";

const [n, eps, ringFactor] = process.argv.slice(2).map(Number) as [number, number, number];

/** The kernel-memory counter of a new child of this process's memory cgroup (v1 kmem, or v2 memory.stat's kernel). */
function ownCgroup(): { read: () => number; leave: () => void } {
  const lines = readFileSync("/proc/self/cgroup", "utf8").trim().split("\n");
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("memory"));
  const [base, counter] = v1
    ? [`/sys/fs/cgroup/memory${v1.split(":")[2]}`, (d: string) => Number(readFileSync(`${d}/memory.kmem.usage_in_bytes`, "utf8"))]
    : [
        `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))!.slice(3)}`,
        (d: string) => Number(/^kernel (\d+)$/m.exec(readFileSync(`${d}/memory.stat`, "utf8"))?.[1] ?? NaN),
      ];
  const dir = `${base.replace(/\/$/, "")}/skein-bench-${process.pid}`;
  mkdirSync(dir);
  writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
  if (!Number.isFinite(counter(dir))) throw new Error(`${dir}: no kernel memory counter`);
  return {
    read: () => counter(dir),
    leave: () => {
      writeFileSync(`${base}/cgroup.procs`, String(process.pid));
      rmdirSync(dir);
    },
  };
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
  cg.leave();
}
