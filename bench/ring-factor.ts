// bench/ring-factor: what the Maglev ring factor buys and costs. For N backends and each
// ring factor: the ring size M, the share of client hashes that move when one backend goes
// (as a multiple of the ideal 1/N), the worst backend's load against a fair share, and for
// 10,000 services × N the ring slots the kernel holds and the kernel memory they take. The
// memory per slot is measured in this run (as root): the same 1,000 services are loaded at
// two ring factors through the datapath into a throwaway namespace, by a process in a memory
// cgroup of its own (bench/ring-memory.ts), and the cost of a slot is the slope between the
// two, so what every service has anyway (its chains and rules) is left out. Without root the
// column is left out. Baseline: ring factor 1.
// Usage: bun bench/ring-factor.ts [backends=10] [sets=40]
import type { Subprocess } from "bun";
import { existsSync, rmdirSync } from "node:fs";
import { constants } from "node:os";
import { resolve } from "node:path";
import { backendKeyBytes } from "../compiler/keys.ts";
import { maglevRing, ringSize } from "../compiler/reference/maglev.ts";
import { addNetns, deleteNetns, netnsPath } from "../agent/sys/netns.ts";
import { helperCgroupDir } from "./mem-cgroup.ts";

const N = Number(process.argv[2] ?? 10);
const SETS = Number(process.argv[3] ?? 40);
let seed = 42;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const sets = [...Array(SETS)].map(() => [...Array(N)].map(() => backendKeyBytes(`10.${(rnd() * 256) | 0}.${(rnd() * 256) | 0}.${(rnd() * 256) | 0}`, 8080)));

// Interrupted (Ctrl-C reaches the helper too; SIGTERM only this process), the bench stops its
// helper, removes what it made (the helper's cgroup, the namespace) and exits naming the
// signal, rather than leaving them behind or printing a table without the measurement.
let cleanUp = async (): Promise<void> => {};
let interrupted: NodeJS.Signals | undefined;
const stop = (signal: NodeJS.Signals) =>
  cleanUp().finally(() => {
    console.error(`ring-factor.ts: interrupted by ${signal}`);
    process.exit(128 + constants.signals[signal]);
  });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    interrupted ??= signal;
    void stop(interrupted);
  });
}

/** Why the helper failed: what it wrote to stderr (its last lines), the signal that ended it, or its exit code. */
function failure(stderr: string, p: Subprocess): string {
  const why = [stderr.trim().split("\n").slice(-20).join("\n"), p.signalCode ? `killed by ${p.signalCode}` : ""].filter(Boolean).join("; ");
  return why || `exit code ${p.exitCode}`;
}

/** Removes the cgroup directory of a helper that ended without removing it (killed by SIGKILL, say). */
function removeHelperCgroup(pid: number): void {
  const dir = helperCgroupDir(pid);
  if (existsSync(dir)) rmdirSync(dir);
}

/** Kernel bytes per ring slot: the slope between loads of `services` services (N backends) at two ring factors. */
async function bytesPerSlot(services = 1000, factors = [5, 25]): Promise<{ perSlot: number; how: string } | { error: string }> {
  if (process.getuid?.() !== 0) return { error: "not root: no namespace to load a table into" };
  const ns = `skt-bring${Math.random().toString(36).slice(2, 6)}`;
  let helper: Subprocess<"ignore", "pipe", "pipe"> | undefined;
  // once, however many signals come and whether or not the measurement ends first
  let cleaned: Promise<void> | undefined;
  cleanUp = () => (cleaned ??= (async () => {
    if (helper && helper.exitCode === null && helper.signalCode === null) {
      // SIGTERM lets it leave its cgroup; one stuck in the kernel longer than that is killed
      helper.kill("SIGTERM");
      if ((await Promise.race([helper.exited, Bun.sleep(10_000).then(() => "late")])) === "late") {
        helper.kill("SIGKILL");
        await helper.exited;
      }
    }
    if (helper) removeHelperCgroup(helper.pid);
    deleteNetns(ns);
  })());
  try {
    addNetns(ns);
    const load = async (rf: number) => {
      const p = Bun.spawn(["nsenter", `--net=${netnsPath(ns)}`, process.execPath, resolve(import.meta.dir, "ring-memory.ts"), String(services), String(N), String(rf)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      helper = p;
      const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      removeHelperCgroup(p.pid);
      if (p.exitCode !== 0) throw new Error(`ring-memory.ts at ring factor ${rf}: ${failure(stderr, p)}`);
      return JSON.parse(stdout) as { slots: number; loadedBytes: number; leftBytes: number };
    };
    const a = await load(factors[0]!);
    const b = await load(factors[1]!);
    const perSlot = (b.loadedBytes - a.loadedBytes) / (b.slots - a.slots);
    return { perSlot, how: `${services} services × ${N} backends: ${a.slots} slots took ${(a.loadedBytes / 2 ** 20).toFixed(1)} MB, ${b.slots} took ${(b.loadedBytes / 2 ** 20).toFixed(1)} MB (${b.leftBytes} bytes left after deleting the table): ${perSlot.toFixed(0)} bytes per slot` };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    await cleanUp();
  }
}

const mem = await bytesPerSlot();
// a signal during the measurement ends the bench; the helper it stopped is no result
if (interrupted) await stop(interrupted);
console.log("kernel memory: " + ("perSlot" in mem ? mem.how : `not measured (${mem.error})`));
console.log(`Maglev ring factor, ${N} backends (averages over ${SETS} random backend sets, one backend removed from each)`);
console.log(`${"factor".padStart(6)} ${"M".padStart(6)} ${"moved x 1/N".padStart(12)} ${"worst load".padStart(11)} ${"slots @10k svc".padStart(15)}${"perSlot" in mem ? ` ${"kernel MB".padStart(10)}` : ""}`);
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
  console.log(`${String(rf).padStart(6)} ${String(m).padStart(6)} ${(moved / SETS).toFixed(2).padStart(12)} ${(worst / SETS).toFixed(2).padStart(11)} ${String(slots).padStart(15)}${"perSlot" in mem ? ` ${((slots * mem.perSlot) / 2 ** 20).toFixed(0).padStart(10)}` : ""}`);
}
