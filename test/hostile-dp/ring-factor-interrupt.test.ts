// Hostile: bench/ring-factor.ts interrupted while it measures kernel memory. It makes a
// namespace skt-bring* and, in its helper (bench/ring-memory.ts), a memory cgroup
// skein-bench-<pid>; both must be gone after it ends, however it ends.
// - Ctrl-C (SIGINT to the process group) while the helper loads: the helper dies without
//   leaving its cgroup, whose directory stays behind (the parent goes on and prints the
//   table with "not measured ()").
// - SIGTERM to the bench alone: the namespace stays behind.
// Root only (the bench measures nothing otherwise). Leftovers of this test are removed.
import { afterAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { resolve } from "node:path";
import { waitFor } from "../harness/index.ts";
import { deleteNetns } from "../../agent/sys/netns.ts";

const ROOT = resolve(import.meta.dir, "../..");
const v1 = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.split(":")[1]?.split(",").includes("memory"));
const CG = v1 ? `/sys/fs/cgroup/memory${v1.split(":")[2]}` : `/sys/fs/cgroup${readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"))!.slice(3)}`;
const cgroups = () => (existsSync(CG) ? readdirSync(CG).filter((n) => n.startsWith("skein-bench-")) : []);
const netns = () => (existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith("skt-bring")) : []);
const before = { cg: new Set(cgroups()), ns: new Set(netns()) };

afterAll(() => {
  for (const c of cgroups()) if (!before.cg.has(c)) rmdirSync(`${CG}/${c}`);
  for (const n of netns()) if (!before.ns.has(n)) deleteNetns(n);
});

function bench() {
  // its own process group, as a shell gives a job: Ctrl-C reaches the bench and its helper
  const p = spawn(process.execPath, [`${ROOT}/bench/ring-factor.ts`, "10", "10"], { cwd: ROOT, detached: true, stdio: "ignore" });
  const exited = new Promise<void>((r) => p.on("exit", () => r()));
  return { p, exited };
}

test.if(process.getuid?.() === 0)("Ctrl-C while the helper measures: no cgroup directory is left", async () => {
  const { p, exited } = bench();
  await waitFor("the helper's cgroup", () => cgroups().some((c) => !before.cg.has(c)), 20_000, 10);
  process.kill(-p.pid!, "SIGINT");
  await exited;
  await waitFor("no new skein-bench-* cgroup left", () => !cgroups().some((c) => !before.cg.has(c)), 3000).catch(() => {});
  expect(cgroups().filter((c) => !before.cg.has(c))).toEqual([]);
  expect(netns().filter((n) => !before.ns.has(n))).toEqual([]);
}, 60_000);

test.if(process.getuid?.() === 0)("SIGTERM to the bench while it measures: no namespace is left", async () => {
  const { p, exited } = bench();
  await waitFor("the bench's namespace", () => netns().some((n) => !before.ns.has(n)), 20_000, 10);
  process.kill(p.pid!, "SIGTERM");
  await exited;
  // its helper may still be loading in the namespace; give it the time to finish
  await waitFor("no new skt-bring* namespace left", () => !netns().some((n) => !before.ns.has(n)), 5000).catch(() => {});
  expect(netns().filter((n) => !before.ns.has(n))).toEqual([]);
}, 60_000);
