// bench/ring-factor.ts ended while it measures kernel memory. It makes a namespace skt-bring*
// and its helper (bench/ring-memory.ts) a memory cgroup skein-bench-<pid>; both must be gone
// after it ends, however it ends, and a measurement that failed says why.
// Root only (the bench measures nothing otherwise). Leftovers of this test are removed.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { waitFor } from "../test/harness/index.ts";
import { deleteNetns } from "../agent/sys/netns.ts";
import { memoryCgroup } from "./mem-cgroup.ts";
import { spawnBench } from "./spawn-bench.ts";

const CG = memoryCgroup().base;
const cgroups = () => (existsSync(CG) ? readdirSync(CG).filter((n) => n.startsWith("skein-bench-")) : []);
const netns = () => (existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith("skt-bring")) : []);
const snapshot = () => ({ cg: new Set(cgroups()), ns: new Set(netns()) });
const initial = snapshot();
// what the bench under test made: the state just before it started is the baseline
let before = initial;
const newCgroups = () => cgroups().filter((c) => !before.cg.has(c));
const newNetns = () => netns().filter((n) => !before.ns.has(n));

afterAll(() => {
  for (const c of cgroups()) if (!initial.cg.has(c)) rmdirSync(`${CG}/${c}`);
  for (const n of netns()) if (!initial.ns.has(n)) deleteNetns(n);
});

function bench() {
  before = snapshot();
  return spawnBench("ring-factor.ts", ["10", "10"]);
}

test.if(process.getuid?.() === 0)("Ctrl-C while the helper measures: no cgroup directory or namespace is left, the bench exits naming the signal", async () => {
  const { p, exited } = bench();
  await waitFor("the helper's cgroup", () => newCgroups().length > 0, 20_000, 10);
  process.kill(-p.pid!, "SIGINT");
  const { code, stdout, stderr } = await exited;
  expect(newCgroups()).toEqual([]);
  expect(newNetns()).toEqual([]);
  expect(code).toBe(130);
  expect(stderr).toContain("interrupted by SIGINT");
  expect(stdout).not.toContain("Maglev ring factor");
}, 60_000);

// SIGTERM to the bench alone, before its helper runs and while the helper measures
for (const [when, ready] of [
  ["once its namespace is made", () => newNetns().length > 0],
  ["once its helper is in its cgroup", () => newCgroups().length > 0],
] as const) {
  test.if(process.getuid?.() === 0)(`SIGTERM to the bench alone ${when}: the bench stops its helper, no namespace or cgroup directory is left`, async () => {
    const { p, exited } = bench();
    await waitFor(`the bench ${when}`, ready, 20_000, 10);
    process.kill(p.pid!, "SIGTERM");
    const { code, stderr } = await exited;
    expect(newNetns()).toEqual([]);
    expect(newCgroups()).toEqual([]);
    expect(code).toBe(143);
    expect(stderr).toContain("interrupted by SIGTERM");
  }, 60_000);
}

test.if(process.getuid?.() === 0)("a helper killed outright: the bench names the signal as the reason and removes its cgroup", async () => {
  const { exited } = bench();
  const cg = await waitFor("the helper's cgroup", () => newCgroups()[0], 20_000, 10);
  process.kill(Number(cg.slice("skein-bench-".length)), "SIGKILL");
  const { code, stdout } = await exited;
  expect(stdout).toContain("kernel memory: not measured (ring-memory.ts at ring factor 5: killed by SIGKILL)");
  expect(code).toBe(0);
  expect(newCgroups()).toEqual([]);
  expect(newNetns()).toEqual([]);
}, 60_000);
