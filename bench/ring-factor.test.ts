// bench/ring-factor.ts ended while it measures kernel memory. It makes a namespace skt-bring*
// and its helper (bench/ring-memory.ts) a memory cgroup skein-bench-<pid>; both must be gone
// after it ends, however it ends, and a measurement that failed says why.
// Root only (the bench measures nothing otherwise). Leftovers of this test are removed.
import { afterAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { resolve } from "node:path";
import { waitFor } from "../test/harness/index.ts";
import { deleteNetns } from "../agent/sys/netns.ts";
import { memoryCgroup } from "./mem-cgroup.ts";

const ROOT = resolve(import.meta.dir, "..");
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
  // its own process group, as a shell gives a job: Ctrl-C reaches the bench and its helper
  const p = spawn(process.execPath, [`${ROOT}/bench/ring-factor.ts`, "10", "10"], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => p.on("close", (code) => r({ code, stdout, stderr })));
  return { p, exited };
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
