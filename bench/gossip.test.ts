// bench/gossip.ts makes namespaces skb-gsp<id>-… (a lab per run, a fresh one for the script
// baseline), nats-server and agents inside them, and temp dirs. However it ends, none of them
// may be left; a tiny run prints its table. Root only (the bench needs namespaces).
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { deleteNetns } from "../agent/sys/netns.ts";
import { run } from "../agent/sys/exec.ts";
import { waitFor } from "../test/harness/index.ts";
import { spawnBench } from "./spawn-bench.ts";

const ROOT = resolve(import.meta.dir, "..");
const netns = () => (existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith("skb-gsp")) : []);
const dirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith("skein-bench-gossip-"));
const initial = { ns: new Set(netns()), dirs: new Set(dirs()) };
const newNetns = () => netns().filter((n) => !initial.ns.has(n));
const newDirs = () => dirs().filter((n) => !initial.dirs.has(n));

afterAll(() => {
  for (const n of newNetns()) deleteNetns(n);
});

/** whether a process runs (a zombie waits only for its reaper) */
function alive(pid: string): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

function comm(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

const bench = (args: string[]) => spawnBench("gossip.ts", args);

const root = process.getuid?.() === 0 && existsSync(`${ROOT}/dist/skein`);

test.if(root)("two agents, once: the (a) table is printed and nothing of the bench is left", async () => {
  const { exited } = bench(["2", "20", "1", "1", "1", "a"]);
  const { code, stdout, stderr } = await exited;
  expect(code, stderr).toBe(0);
  expect(stdout).toContain("(a) k agents started at once");
  expect(stdout).toMatch(/^ +2 +\d+ \[\d+\] +\d+ \[\d+\] +\d+ \[\d+\] +\d+ \[\d+\]/m);
  expect(newNetns()).toEqual([]);
  expect(newDirs()).toEqual([]);
}, 60_000);

test.if(root)("SIGTERM once the agents run: the bench removes its namespaces and temp dirs and exits naming the signal", async () => {
  const { p, exited } = bench(["2", "20", "1", "1", "1", "a"]);
  // the agents in the nodes' namespaces
  const agents = await waitFor("the bench's agents", () => {
    const pids = newNetns().filter((n) => /-n\d+$/.test(n)).flatMap((n) => run(["ip", "netns", "pids", n], { allowFail: true }).stdout.split(/\s+/).filter(Boolean));
    const skein = pids.filter((pid) => alive(pid) && comm(pid) === "skein");
    return skein.length > 0 && skein;
  }, 20_000, 20);
  process.kill(p.pid!, "SIGTERM");
  const { code, stderr } = await exited;
  expect(code).toBe(143);
  expect(stderr).toContain("interrupted by SIGTERM");
  expect(newNetns()).toEqual([]);
  expect(newDirs()).toEqual([]);
  expect(agents.filter(alive)).toEqual([]);
}, 60_000);
