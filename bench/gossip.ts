// bench/gossip: how fast the nodes find each other, and what the gossip costs. Everything runs
// on the lab underlay of the multi-node tests (testing/multinode.ts) in namespaces named
// skb-gsp<id>-…, removed on exit and on SIGINT, SIGTERM and SIGHUP.
// (a) k real agents started at once (nodes alternately on segments a and b: pairs on one
//     segment go direct, the others over VXLAN), `skein apiserver` and nats-server on the
//     control-plane host: the time from starting them until every node's kernel holds a route
//     to every peer (and, for VXLAN peers, its neighbour and FDB entry), read over rtnetlink.
//     Three ways: without NATS (the Node objects alone, as Flannel's Kubernetes subnet
//     manager does: the baseline), with NATS (how it is deployed), and with NATS and Node
//     objects with an ExternalIP but no InternalIP (the agents get --underlay-ip), where only the records can
//     make a peer: the gossip path alone. Each on a fresh underlay, `reps` times.
// (b) one agent, and a load generator in the control-plane namespace (bench/gossip-load.ts)
//     that puts the records of `records` simulated nodes whose Node objects the API server
//     holds (all VXLAN peers): the time from the first put until the agent's kernel holds
//     every route, neighbour and FDB entry; the agent's RSS and peak; its CPU per round of
//     re-puts (a heartbeat of every simulated node) against its CPU while idle for as long.
//     The Nodes are created after the agent's gossip is live and its grace for Nodes without
//     records has passed, so none is a peer before its record comes. Baselines: the same
//     agent without NATS, building the same peers from the Node objects (from its start),
//     and one `bridge -batch` plus one `ip -batch` writing the same entries into a fresh
//     namespace (what a hand-written script would do).
// (c) messages per second through nats-server (/varz in_msgs and out_msgs, asked from inside
//     the control-plane namespace) with the largest (a) cluster heartbeating at the default
//     heartbeat and at the bench's, against the server with no agent connected.
// Usage (root, after the build): bun bench/gossip.ts [agents=3,10] [records=1000] [rounds=5] [reps=3] [window-s=30] [parts=a,b,c]
//   window-s: how long (c) counts at the default heartbeat (the other windows are shorter);
//   (c) runs on the last NATS cluster of (a) and needs it
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { constants, cpus, loadavg, tmpdir } from "node:os";
import { resolve } from "node:path";
import { vtepMacFor } from "../agent/gossip/record.ts";
import { addNetns, deleteNetns, netnsPath } from "../agent/sys/netns.ts";
import { inNetns, runAsync } from "../agent/sys/exec.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { RTPROT_SKEIN, RT_TABLE_MAIN, getLink, listNeighbours, listRoutes } from "../agent/sys/rtnl.ts";
import { Lab } from "../testing/lab.ts";
import { buildUnderlay, nodeSpec, startCluster, type Cluster, type NodeDef, type Spawned, type UnderlayNode } from "../testing/multinode.ts";
import { NatsCluster } from "../testing/nats.ts";
import { gossipPeer, MAX_SIM_PEERS } from "./gossip-peers.ts";
import { col, pct } from "./stats.ts";

const SIZES = (process.argv[2] ?? "3,10").split(",").map(Number);
const RECORDS = Number(process.argv[3] ?? 1000);
const ROUNDS = Number(process.argv[4] ?? 5);
const REPS = Number(process.argv[5] ?? 3);
const WINDOW_S = Number(process.argv[6] ?? 30);
const PARTS = new Set((process.argv[7] ?? "a,b,c").split(","));
for (const k of SIZES) if (!Number.isInteger(k) || k < 2 || k > 40) throw new Error(`agents: ${k} must be 2-40`);
if (!Number.isInteger(RECORDS) || RECORDS < 1 || RECORDS > MAX_SIM_PEERS) throw new Error(`records: 1-${MAX_SIM_PEERS}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 100) throw new Error("rounds: 1-100");
if (!Number.isInteger(REPS) || REPS < 1 || REPS > 20) throw new Error("reps: 1-20");
if (!(WINDOW_S >= 1 && WINDOW_S <= 600)) throw new Error("window-s: 1-600");
if (![...PARTS].every((p) => ["a", "b", "c"].includes(p))) throw new Error("parts: a comma-separated list of a, b, c");

const SKEIN = resolve(import.meta.dir, "../dist/skein");
const LOADER = resolve(import.meta.dir, "gossip-load.ts");
const PREFIX = "skb-gsp";
const BUCKET = "skein-nodes";
/** the agents' defaults (agent/cli/index.ts) and the bench's heartbeat */
const DEFAULT_HB_MS = 10_000;
const BENCH_HB_MS = 1000;
const BENCH_TTL_MS = 3500;
/** (b): the agent's record TTL (also its grace for Nodes without records), long enough that the
 * records outlive the idle window after the rounds */
const B_TTL_MS = 10_000;
const CONVERGE_TIMEOUT_MS = 60_000;
/** a directory to keep the agents' logs in, for a look at where the time goes */
const LOGS = process.env.GOSSIP_BENCH_LOGS;
const CLK_TCK = Number((await runAsync(["getconf", "CLK_TCK"])).stdout.trim()) || 100;

if (process.getuid?.() !== 0) {
  console.error("gossip.ts: needs root (network namespaces)");
  process.exit(1);
}

// ---- what the bench made, removed however it ends ----
const labs = new Set<Lab>();
const natses = new Set<NatsCluster>();
const dirs = new Set<string>();
const spaces = new Set<string>();
const procs = new Set<Subprocess>();
/** Kills and removes what the bench made. Once past its one wait (the NATS servers' exit) it
 * runs to the end without yielding, so nothing of the bench's runs between it and an exit. */
let cleaned: Promise<void> | undefined;
const cleanUp = () =>
  (cleaned ??= (async () => {
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all([...natses].map((n) => n.close().catch(() => {})));
    for (const lab of labs) lab.destroy();
    for (const ns of spaces) deleteNetns(ns);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  })());
let interrupted: NodeJS.Signals | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, async () => {
    if (interrupted) return;
    interrupted = signal;
    await cleanUp();
    console.error(`gossip.ts: interrupted by ${signal}`);
    process.exit(128 + constants.signals[signal]);
  });
}

const id = () => Math.random().toString(36).slice(2, 6);
function newLab(): Lab {
  const lab = new Lab(`${PREFIX}${id()}-`, SKEIN);
  labs.add(lab);
  return lab;
}
function newDir(): string {
  const d = mkdtempSync(`${tmpdir()}/skein-bench-gossip-`);
  dirs.add(d);
  return d;
}
async function dropLab(lab: Lab, nats?: NatsCluster, dir?: string): Promise<void> {
  if (nats) {
    await nats.close();
    natses.delete(nats);
  }
  lab.destroy();
  labs.delete(lab);
  if (dir) {
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  }
}

// ---- reading the kernel and the agents ----

/** What a node's kernel must hold: route dst → gateway, neighbour ip → mac, FDB mac → dst. */
interface Want {
  routes: Map<string, string>;
  neigh: Map<string, string>;
  fdb: Map<string, string>;
}

/** How many of `w`'s entries the kernel lacks (or holds otherwise), and how many routes of skein's it holds. */
function lacking(nl: Netlink, w: Want, routesOnly = false): { missing: number; routes: number } {
  const routes = listRoutes(nl, 4).filter((r) => r.protocol === RTPROT_SKEIN && r.table === RT_TABLE_MAIN);
  const have = new Map(routes.map((r) => [r.dst, r.gateway]));
  let missing = 0;
  for (const [dst, gw] of w.routes) if (have.get(dst) !== gw) missing++;
  // a route that is no longer planned must be gone too
  for (const dst of have.keys()) if (!w.routes.has(dst)) missing++;
  if (routesOnly && missing) return { missing, routes: routes.length };
  if (w.neigh.size || w.fdb.size) {
    const vx = getLink(nl, "skein.vxlan");
    if (!vx) return { missing: missing + w.neigh.size + w.fdb.size, routes: routes.length };
    const neigh = new Map(listNeighbours(nl, 4).filter((n) => n.index === vx.index && n.ip).map((n) => [n.ip!, n.mac]));
    for (const [ip, mac] of w.neigh) if (neigh.get(ip) !== mac) missing++;
    const fdb = new Map(listNeighbours(nl, "bridge").filter((f) => f.index === vx.index && f.mac && f.ip).map((f) => [f.mac!, f.ip]));
    for (const [mac, dst] of w.fdb) if (fdb.get(mac) !== dst) missing++;
  }
  return { missing, routes: routes.length };
}

/** Keeps reading a process's output (an unread pipe would block its logging) into out.text. */
function drain(s: Spawned): void {
  void s.out.until("\u0000", 3_600_000);
}

/** The pino times (ms since the epoch) of an agent's log lines with message `msg`. */
function logTimes(text: string, msg: string): number[] {
  const out: number[] = [];
  const needle = `"msg":${JSON.stringify(msg)}`;
  for (const line of text.split("\n")) {
    if (!line.includes(needle)) continue;
    try {
      const t = (JSON.parse(line) as { time?: number }).time;
      if (typeof t === "number") out.push(t);
    } catch {
      // a line cut by the pipe: not a log line
    }
  }
  return out;
}
const firstLine = (text: string): number | undefined => {
  for (const line of text.split("\n")) {
    try {
      const t = (JSON.parse(line) as { time?: number }).time;
      if (typeof t === "number") return t;
    } catch {
      // not JSON
    }
  }
  return undefined;
};

function procStatus(pid: number): { rssMB: number; hwmMB: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (f: string) => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
  return { rssMB: kb("VmRSS") / 1024, hwmMB: kb("VmHWM") / 1024 };
}
/** CPU time (user + system) a process has used, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // fields after the command name (which may hold spaces) start at field 3
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

async function until<T>(what: string, f: () => T | undefined | false, timeoutMs: number, everyMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

const median = (xs: number[]) => (xs.length ? pct(xs, 50) : NaN);
const fmt = (x: number | undefined, digits = 0) => (x === undefined || Number.isNaN(x) ? "—" : x.toFixed(digits));

// ---- (a) k agents started at once ----

type Variant = "node" | "nats" | "records" | "join";
const VARIANTS: Variant[] = ["node", "nats", "records", "join"];

interface ARun {
  /** from the start of the agents until every kernel held every peer */
  allMs: number;
  /** per agent: start → its kernel held every peer */
  nodeMs: number[];
  /** per agent started: CPU (user + system) it had used once all held every peer */
  cpuMs: number[];
  /** per agent, from the start: first log line, connected to NATS, gossip live */
  upMs: number[];
  /** its Node listed: it knows its own pod CIDRs and underlay (the bus starts then) */
  selfMs: number[];
  connectedMs: number[];
  liveMs: number[];
}

function nodeDefs(k: number): NodeDef[] {
  return Array.from({ length: k }, (_, j) => ({ name: `n${j + 1}`, index: j + 1, segment: j % 2 === 0 ? ("a" as const) : ("b" as const), host: 11 + j }));
}

function wantFor(self: UnderlayNode, all: UnderlayNode[]): Want {
  const w: Want = { routes: new Map(), neigh: new Map(), fdb: new Map() };
  for (const p of all) {
    if (p.name === self.name) continue;
    if (p.segment === self.segment) w.routes.set(p.podCIDR, p.address);
    else {
      const gw = p.podCIDR.split("/")[0]!;
      w.routes.set(p.podCIDR, gw);
      w.neigh.set(gw, vtepMacFor(p.name));
      w.fdb.set(vtepMacFor(p.name), p.address);
    }
  }
  return w;
}

interface Started {
  lab: Lab;
  nats?: NatsCluster;
  dir: string;
  c: Cluster;
  natsFlags: string[];
}

/** A fresh underlay with k nodes, the API server and (but for "node") NATS on cp; no agent yet. */
async function setUp(k: number, variant: Variant): Promise<Started> {
  const lab = newLab();
  const dir = newDir();
  const onlyRecords = variant === "records" || variant === "join";
  const u = await buildUnderlay(lab, { nodes: nodeDefs(k) });
  let nats: NatsCluster | undefined;
  if (variant !== "node") {
    nats = await NatsCluster.start({ netns: lab.path(u.controlPlane.ns), host: u.controlPlane.address });
    natses.add(nats);
  }
  const c = await startCluster({
    underlay: u,
    dir,
    agents: [],
    natsUrls: nats?.urls ?? [],
    agentTimeoutMs: CONVERGE_TIMEOUT_MS,
    agentFlags: (n) => (onlyRecords ? ["--underlay-ip", n.address] : []),
    nodeObject: (n) => {
      const o = nodeSpec(n) as { status: { addresses: Array<{ type: string }> } };
      // the address stays on the Node as an ExternalIP (a record's underlay must be one of its
      // Node's addresses), but without an InternalIP the Node alone makes no peer
      if (onlyRecords) o.status.addresses = o.status.addresses.map((a) => (a.type === "InternalIP" ? { ...a, type: "ExternalIP" } : a));
      return o;
    },
  });
  drain(c.apiserver);
  return { lab, nats, dir, c, natsFlags: nats ? ["--nats-url", nats.urls.join(",")] : [] };
}

async function runA(k: number, variant: Variant, keep = false): Promise<{ run: ARun; s: Started }> {
  const s = await setUp(k, variant);
  const { c } = s;
  const nodes = c.underlay.nodes;
  const nls = nodes.map((n) => Netlink.open(c.lab.path(n.ns)));
  try {
    const converge = async (which: UnderlayNode[], t0: number, starting: Promise<unknown>) => {
      const wants = which.map((n) => wantFor(n, which));
      const idx = which.map((n) => nodes.indexOf(n));
      const done: Array<number | undefined> = which.map(() => undefined);
      let failed: unknown;
      starting.catch((e) => (failed = e));
      await until(`${which.length} agents to program every peer`, () => {
        if (failed) throw failed;
        for (let i = 0; i < which.length; i++) if (done[i] === undefined && lacking(nls[idx[i]!]!, wants[i]!, true).missing === 0) done[i] = Date.now() - t0;
        return done.every((d) => d !== undefined);
      }, CONVERGE_TIMEOUT_MS, 5);
      await starting;
      return done as number[];
    };
    // join: all but the last run (and have converged) before the clock starts for the last
    const first = variant === "join" ? nodes.slice(0, -1) : [];
    if (first.length) await converge(first, Date.now(), Promise.all(first.map((n) => c.startAgent(n.name, s.natsFlags))));
    const timed = variant === "join" ? nodes.slice(-1) : nodes;
    const t0 = Date.now();
    // every spawn happens before the first await: the agents start at once
    const nodeMs = await converge(nodes, t0, Promise.all(timed.map((n) => c.startAgent(n.name, s.natsFlags))));
    const allMs = Math.max(...nodeMs);
    const agents = timed.map((n) => c.agents.get(n.name)!);
    const cpu = agents.map((a) => cpuMs(a.proc.pid));
    for (const a of c.agents.values()) drain(a);
    if (variant !== "node") await until("every agent's gossip to be live", () => agents.every((a) => a.out.text.includes("gossip live")), 20_000, 20);
    const since = (ts: number[]) => (ts.length ? ts[0]! - t0 : NaN);
    const run: ARun = {
      allMs,
      nodeMs: variant === "join" ? [allMs] : nodeMs,
      cpuMs: cpu,
      upMs: agents.map((a) => (firstLine(a.out.text) ?? NaN) - t0),
      selfMs: agents.map((a) => since(logTimes(a.out.text, "this node on the pod network"))),
      connectedMs: agents.map((a) => since(logTimes(a.out.text, "gossip: connected to NATS"))),
      liveMs: agents.map((a) => since(logTimes(a.out.text, "gossip live: watching every record"))),
    };
    if (LOGS) for (const [i, a] of agents.entries()) writeFileSync(`${LOGS}/a-${k}-${variant}-${timed[i]!.name}-${t0}.log`, a.out.text);
    if (!keep) await dropLab(s.lab, s.nats, s.dir);
    return { run, s };
  } finally {
    for (const nl of nls) nl.close();
  }
}

// ---- (c) messages through the server ----

interface Varz {
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
  now: string;
}

async function varz(s: Started): Promise<Varz> {
  const node = s.nats!.nodes[0]!;
  const url = `http://${s.c.underlay.controlPlane.address}:${node.httpPort}/varz`;
  const r = await runAsync(inNetns(s.lab.path(s.c.underlay.controlPlane.ns), [process.execPath, "-e", `const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }); process.stdout.write(await r.text())`]), { timeoutMs: 10_000 });
  return JSON.parse(r.stdout) as Varz;
}

async function rate(s: Started, windowMs: number): Promise<{ inPerS: number; outPerS: number; inBytesPerS: number; outBytesPerS: number; s: number }> {
  const a = await varz(s);
  await Bun.sleep(windowMs);
  const b = await varz(s);
  const secs = (Date.parse(b.now) - Date.parse(a.now)) / 1000;
  return { inPerS: (b.in_msgs - a.in_msgs) / secs, outPerS: (b.out_msgs - a.out_msgs) / secs, inBytesPerS: (b.in_bytes - a.in_bytes) / secs, outBytesPerS: (b.out_bytes - a.out_bytes) / secs, s: secs };
}

async function partC(s: Started): Promise<string[]> {
  const { c } = s;
  const k = c.agents.size;
  const rows: Array<{ what: string; hb?: number; r: Awaited<ReturnType<typeof rate>> }> = [];
  // the (a) agents run at the default heartbeat; a heartbeat after all went live, it is steady
  await Bun.sleep(DEFAULT_HB_MS);
  rows.push({ what: `${k} agents, default heartbeat`, hb: DEFAULT_HB_MS, r: await rate(s, WINDOW_S * 1000) });
  const names = [...c.agents.keys()];
  await Promise.all(names.map((n) => c.stopAgent(n)));
  const fast = ["--heartbeat-ms", String(BENCH_HB_MS), "--peer-ttl-ms", String(BENCH_TTL_MS)];
  // the agents adopt their own tables: no "tables applied"; gossip live says they are in
  await Promise.all(names.map((n) => c.startAgent(n, [...s.natsFlags, ...fast], { ready: "gossip live" })));
  for (const a of c.agents.values()) drain(a);
  await Bun.sleep(2 * BENCH_HB_MS);
  rows.push({ what: `${k} agents, bench heartbeat`, hb: BENCH_HB_MS, r: await rate(s, Math.max(5, WINDOW_S / 3) * 1000) });
  await Promise.all(names.map((n) => c.stopAgent(n)));
  await Bun.sleep(1000);
  rows.push({ what: "no agent connected", r: await rate(s, Math.max(5, WINDOW_S / 6) * 1000) });
  const out = [
    `(c) messages through nats-server at steady state (/varz deltas over the window; in = published to the server, out = delivered by it): ${k} agents of (a) with NATS`,
    `    per agent per heartbeat = msgs/s × heartbeat / agents; "no agent connected" is the baseline`,
    `${"".padEnd(32)} ${col("window s", 9)} ${col("in msg/s", 9)} ${col("out msg/s", 10)} ${col("in B/s", 9)} ${col("out B/s", 9)} ${col("in/agent/hb", 12)} ${col("out/agent/hb", 13)}`,
  ];
  for (const { what, hb, r } of rows) {
    const per = (x: number) => (hb ? fmt((x * hb) / 1000 / k, 1) : "—");
    out.push(`${what.padEnd(32)} ${col(fmt(r.s, 1), 9)} ${col(fmt(r.inPerS, 2), 9)} ${col(fmt(r.outPerS, 2), 10)} ${col(fmt(r.inBytesPerS), 9)} ${col(fmt(r.outBytesPerS), 9)} ${col(per(r.inPerS), 12)} ${col(per(r.outPerS), 13)}`);
  }
  return out;
}

// ---- (b) one agent, many simulated peers ----

/** Reads JSON lines from a process's stdout. */
function lines(p: Subprocess<"pipe", "pipe", "pipe">): () => Promise<Record<string, unknown>> {
  const reader = p.stdout.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  return async () => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return JSON.parse(line) as Record<string, unknown>;
      }
      const r = await Promise.race([reader.read(), Bun.sleep(60_000).then(() => "late" as const)]);
      if (r === "late") throw new Error("the load generator did not answer within 60 s");
      if (r.done) throw new Error(`the load generator ended: ${await new Response(p.stderr).text()}`);
      buf += decoder.decode(r.value, { stream: true });
    }
  };
}

interface BResult {
  gossip: { ms: number; putsMs: number; firstAcceptMs: number; lastAcceptMs: number; overlayMs: number; overlayApplies: number; rssBeforeMB: number; rssMB: number; hwmMB: number; cpuRoundMs: number; cpuIdleMs: number; roundPutsMs: number };
  nodes: { ms: number; fromLogMs: number; rssMB: number; hwmMB: number; overlayMs: number };
  script: { ms: number; bridgeMs: number; ipMs: number };
}

async function partB(): Promise<BResult> {
  const lab = newLab();
  const dir = newDir();
  const u = await buildUnderlay(lab, { nodes: ["n1"] });
  const nats = await NatsCluster.start({ netns: lab.path(u.controlPlane.ns), host: u.controlPlane.address });
  natses.add(nats);
  const c = await startCluster({ underlay: u, dir, agents: [], natsUrls: nats.urls, agentTimeoutMs: CONVERGE_TIMEOUT_MS });
  drain(c.apiserver);
  const peers = Array.from({ length: RECORDS }, (_, i) => gossipPeer(i));
  const want: Want = { routes: new Map(), neigh: new Map(), fdb: new Map() };
  for (const p of peers) {
    want.routes.set(p.podCIDR, p.gateway);
    want.neigh.set(p.gateway, p.vtepMac);
    want.fdb.set(p.vtepMac, p.underlay);
  }
  const nl = Netlink.open(lab.path("n1"));
  try {
    const natsFlags = ["--nats-url", nats.url, "--heartbeat-ms", String(BENCH_HB_MS), "--peer-ttl-ms", String(B_TTL_MS)];
    const agent = await c.startAgent("n1", natsFlags);
    drain(agent);
    const liveAt = (await until("the agent's gossip to be live", () => logTimes(agent.out.text, "gossip live: watching every record")[0], 20_000, 20));
    // the Node objects, while the agent watches: with gossip live and no records they make no peer
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let i = next++; i < peers.length; i = next++) {
        const p = peers[i]!;
        await c.api.create("/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: p.name }, spec: { podCIDR: p.podCIDR, podCIDRs: [p.podCIDR] }, status: { addresses: [{ type: "InternalIP", address: p.underlay }] } });
      }
    }));
    // past the grace for Nodes without records (one TTL after live, looked at every 500 ms)
    const graceLeft = liveAt + B_TTL_MS + 1000 - Date.now();
    if (graceLeft > 0) await Bun.sleep(graceLeft);
    await until("the agent to hold no peer", () => lacking(nl, want, true).routes === 0, 60_000, 100);
    const rssBeforeMB = procStatus(agent.proc.pid).rssMB;
    const logFrom = agent.out.text.length;

    const gen = Bun.spawn(inNetns(lab.path(u.controlPlane.ns), [process.execPath, LOADER, nats.url, BUCKET, String(RECORDS)]), { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    procs.add(gen);
    const read = lines(gen);
    await read();
    const send = (cmd: string) => {
      gen.stdin.write(`${cmd}\n`);
      gen.stdin.flush();
    };
    send("put");
    const doneAt = await until(`${RECORDS} peers in the kernel`, () => lacking(nl, want, true).missing === 0 && Date.now(), CONVERGE_TIMEOUT_MS, 20);
    const first = (await read()) as { first: number; last: number };
    const log = agent.out.text.slice(logFrom);
    const accepted = logTimes(log, "node record accepted");
    const applied = log.split("\n").filter((l) => l.includes('"msg":"overlay applied"')).map((l) => JSON.parse(l) as { ms: number });

    // heartbeat rounds: every simulated node puts its record again, once a heartbeat
    const cpu0 = cpuMs(agent.proc.pid);
    const t0 = Date.now();
    let putsMs = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const start = Date.now();
      send("put");
      const a = (await read()) as { first: number; last: number };
      putsMs += a.last - a.first;
      const left = start + BENCH_HB_MS - Date.now();
      if (left > 0) await Bun.sleep(left);
    }
    const cpuRoundMs = (cpuMs(agent.proc.pid) - cpu0) / ROUNDS;
    const spent = Date.now() - t0;
    // as long idle (the records stay: their TTL is longer than this)
    const idle = Math.min(spent, B_TTL_MS - 2 * BENCH_HB_MS);
    const cpu1 = cpuMs(agent.proc.pid);
    await Bun.sleep(idle);
    const cpuIdleMs = ((cpuMs(agent.proc.pid) - cpu1) * (spent / idle)) / ROUNDS;
    if (lacking(nl, want).missing !== 0) throw new Error("the peers were not all in the kernel after the rounds");
    const st = procStatus(agent.proc.pid);
    send("exit");
    await gen.exited;
    procs.delete(gen);

    // baseline: the agent without NATS, the same Nodes, from a kernel without the overlay
    await c.stopAgent("n1", { signal: "SIGKILL" });
    await lab.exec("n1", ["ip", "link", "del", "skein.vxlan"]);
    await until("the kernel to hold no peer", () => lacking(nl, want, true).routes === 0, 10_000, 50);
    const tn = Date.now();
    const plain = await c.startAgent("n1", [], { ready: "no NATS server given" });
    drain(plain);
    const plainDone = await until(`${RECORDS} peers from the Node objects`, () => lacking(nl, want, true).missing === 0 && Date.now(), CONVERGE_TIMEOUT_MS, 20);
    await until("the agent's last plan to be logged", () => logTimes(plain.out.text, "pod network programmed").length > 0, 10_000, 20);
    const plainSt = procStatus(plain.proc.pid);
    const plainApplied = plain.out.text.split("\n").filter((l) => l.includes('"msg":"overlay applied"')).map((l) => JSON.parse(l) as { ms: number });
    if (lacking(nl, want).missing !== 0) throw new Error("the Node-object agent's kernel lacks neighbours or FDB entries");

    const script = await scriptBaseline(peers);
    return {
      gossip: {
        ms: doneAt - first.first,
        putsMs: first.last - first.first,
        firstAcceptMs: (accepted[0] ?? NaN) - first.first,
        lastAcceptMs: (accepted.at(-1) ?? NaN) - first.first,
        overlayMs: applied.reduce((s, a) => s + a.ms, 0),
        overlayApplies: applied.length,
        rssBeforeMB,
        rssMB: st.rssMB,
        hwmMB: st.hwmMB,
        cpuRoundMs,
        cpuIdleMs,
        roundPutsMs: putsMs / ROUNDS,
      },
      nodes: { ms: plainDone - tn, fromLogMs: plainDone - (firstLine(plain.out.text) ?? NaN), rssMB: plainSt.rssMB, hwmMB: plainSt.hwmMB, overlayMs: plainApplied.reduce((s, a) => s + a.ms, 0) },
      script,
    };
  } finally {
    nl.close();
    await dropLab(lab, nats, dir);
  }
}

/** The same entries written by one `bridge -batch` and one `ip -batch` into a fresh namespace
 * holding a VXLAN device like the agent's. */
async function scriptBaseline(peers: ReturnType<typeof gossipPeer>[]): Promise<{ ms: number; bridgeMs: number; ipMs: number }> {
  const ns = `${PREFIX}${id()}-base`;
  spaces.add(ns);
  try {
    addNetns(ns);
    const ip = (args: string[], stdin?: string) => runAsync(["ip", "-n", ns, ...args], stdin === undefined ? {} : { stdin });
    await ip(["-batch", "-"], [
      "link add ul0 type veth peer name ul1",
      "addr add 10.200.0.1/24 dev ul0",
      "link set ul0 up",
      "link set ul1 up",
      "link add skein.vxlan type vxlan id 1 dstport 4789 local 10.200.0.1 dev ul0 nolearning",
      "addr add 10.244.1.0/32 dev skein.vxlan",
      "link set skein.vxlan up",
    ].join("\n") + "\n");
    const fdb = peers.map((p) => `fdb append ${p.vtepMac} dev skein.vxlan dst ${p.underlay} self permanent`).join("\n") + "\n";
    const rest = [...peers.map((p) => `neigh replace ${p.gateway} lladdr ${p.vtepMac} dev skein.vxlan nud permanent`), ...peers.map((p) => `route replace ${p.podCIDR} via ${p.gateway} dev skein.vxlan onlink proto 0x56`)].join("\n") + "\n";
    const t0 = performance.now();
    await runAsync(["bridge", "-n", ns, "-batch", "-"], { stdin: fdb });
    const t1 = performance.now();
    await ip(["-batch", "-"], rest);
    const t2 = performance.now();
    const nl = Netlink.open(netnsPath(ns));
    try {
      const want: Want = { routes: new Map(peers.map((p) => [p.podCIDR, p.gateway])), neigh: new Map(peers.map((p) => [p.gateway, p.vtepMac])), fdb: new Map(peers.map((p) => [p.vtepMac, p.underlay])) };
      const l = lacking(nl, want);
      if (l.missing) throw new Error(`the script baseline left ${l.missing} entries out`);
    } finally {
      nl.close();
    }
    return { ms: t2 - t0, bridgeMs: t1 - t0, ipMs: t2 - t1 };
  } finally {
    deleteNetns(ns);
    spaces.delete(ns);
  }
}

// ---- the run ----

const loadAtStart = loadavg();
try {
  if (PARTS.has("a") || PARTS.has("c")) {
    // (a)
    const results = new Map<string, ARun[]>();
    const biggest = Math.max(...SIZES);
    let kept: Started | undefined;
    for (const k of SIZES) {
      for (let r = 0; r < REPS; r++) {
        for (const v of VARIANTS) {
          // the last run of the biggest cluster with NATS stays up for (c)
          const keep = PARTS.has("c") && k === biggest && v === "nats" && r === REPS - 1;
          const { run, s } = await runA(k, v, keep);
          if (keep) kept = s;
          results.set(`${k} ${v}`, [...(results.get(`${k} ${v}`) ?? []), run]);
          console.error(`(a) ${k} agents, ${v}, run ${r + 1}: all programmed after ${run.allMs} ms`);
        }
      }
    }
    const cores = cpus().length;
    const a = [
      `(a) k agents started at once: ms from starting them until every node's kernel holds every peer (route; VXLAN peers also neighbour and FDB entry), median [max] of ${REPS} runs`,
      `    Node objects = no NATS (the baseline, as Flannel's Kubernetes subnet manager); NATS = with gossip; records only = NATS, Nodes with ExternalIP but no InternalIP (only records make peers);`,
      `    join = records only, k-1 agents running, the clock starts with the k-th. Then, for NATS and records only, medians over agents and runs: CPU (user+system ms) an agent had`,
      `    used by then, k × that / ${cores} cores (the floor this machine puts under "at once"), and ms from the start until its first log line, its Node was listed (it knows its own`,
      `    pod CIDR and underlay; its bus starts), it connected to NATS, its gossip was live (its watch had delivered the bucket)`,
      `    (load average when the bench started: ${loadAtStart.map((x) => x.toFixed(1)).join(" ")})`,
      `${col("agents", 6)} ${col("Node objects", 14)} ${col("NATS", 14)} ${col("records only", 14)} ${col("join", 12)} ${col("CPU/agent", 10)} ${col("k×CPU/cores", 12)} ${col("first log", 10)} ${col("self", 6)} ${col("connected", 10)} ${col("live", 6)}`,
    ];
    for (const k of SIZES) {
      const cell = (v: Variant) => {
        const xs = results.get(`${k} ${v}`)!.map((x) => x.allMs);
        return `${fmt(median(xs))} [${fmt(Math.max(...xs))}]`;
      };
      const phases = (runs: ARun[], n: number) => {
        const med = (f: (x: ARun) => number[]) => median(runs.flatMap(f).filter((x) => !Number.isNaN(x)));
        const cpu = med((x) => x.cpuMs);
        return `${col(fmt(cpu), 10)} ${col(fmt((n * cpu) / cores), 12)} ${col(fmt(med((x) => x.upMs)), 10)} ${col(fmt(med((x) => x.selfMs)), 6)} ${col(fmt(med((x) => x.connectedMs)), 10)} ${col(fmt(med((x) => x.liveMs)), 6)}`;
      };
      a.push(`${col(k, 6)} ${col(cell("node"), 14)} ${col(cell("nats"), 14)} ${col(cell("records"), 14)} ${col(cell("join"), 12)} ${phases([...results.get(`${k} nats`)!, ...results.get(`${k} records`)!], k)}`);
      a.push(`${"the joining agent alone (k = 1):".padStart(6 + 14 * 3 + 12 + 4)} ${phases(results.get(`${k} join`)!, 1)}`);
    }
    console.log(a.join("\n") + "\n");

    // (c), on the cluster kept from (a)
    if (kept) {
      const c = await partC(kept);
      await dropLab(kept.lab, kept.nats, kept.dir);
      console.log(c.join("\n") + "\n");
    }
  }

  if (PARTS.has("b")) {
    // (b)
    const b = await partB();
    const g = b.gossip;
    const rows = [
      `(b) one agent, ${RECORDS} simulated peers whose Node objects the API server holds, all VXLAN (${RECORDS} routes + ${RECORDS} neighbours + ${RECORDS} FDB entries)`,
      `    gossip = their records put by a load generator over NATS, timed from the first put; Node objects = the same agent without NATS, timed from its start;`,
      `    script = one bridge -batch and one ip -batch into a fresh namespace, timed from the first exec. CPU per round: user+system ms of the agent per round of`,
      `    ${RECORDS} re-puts (one heartbeat of every peer, ${ROUNDS} rounds ${BENCH_HB_MS} ms apart); idle: its CPU over as long without puts, per round`,
      `${"".padEnd(34)} ${col("gossip", 10)} ${col("Node objects", 13)} ${col("script", 8)}`,
      `${"ms until every entry is in".padEnd(34)} ${col(fmt(g.ms), 10)} ${col(fmt(b.nodes.ms), 13)} ${col(fmt(b.script.ms), 8)}`,
      `${"  of which netlink writes (agent log)".padEnd(34)} ${col(fmt(g.overlayMs), 10)} ${col(fmt(b.nodes.overlayMs), 13)} ${col(`${fmt(b.script.bridgeMs)}+${fmt(b.script.ipMs)}`, 8)}`,
      `${"agent RSS after, MB".padEnd(34)} ${col(fmt(g.rssMB, 1), 10)} ${col(fmt(b.nodes.rssMB, 1), 13)} ${col("—", 8)}`,
      `${"agent peak RSS (VmHWM), MB".padEnd(34)} ${col(fmt(g.hwmMB, 1), 10)} ${col(fmt(b.nodes.hwmMB, 1), 13)} ${col("—", 8)}`,
      `${"agent CPU per round, ms".padEnd(34)} ${col(fmt(g.cpuRoundMs, 1), 10)} ${col("—", 13)} ${col("—", 8)}`,
      `${"agent CPU idle, per round, ms".padEnd(34)} ${col(fmt(g.cpuIdleMs, 1), 10)} ${col("—", 13)} ${col("—", 8)}`,
      `    gossip detail: all ${RECORDS} puts acknowledged after ${fmt(g.putsMs)} ms (a re-put round: ${fmt(g.roundPutsMs)} ms); the agent accepted the first record after ${fmt(g.firstAcceptMs)} ms`,
      `    and the last after ${fmt(g.lastAcceptMs)} ms; ${g.overlayApplies} overlay applies; RSS before the records ${fmt(g.rssBeforeMB, 1)} MB (with the ${RECORDS} Node objects);`,
      `    Node objects detail: ${fmt(b.nodes.fromLogMs)} ms from the agent's first log line (the rest is its process start)`,
    ];
    console.log(rows.join("\n"));
  }
} finally {
  if (!interrupted) await cleanUp();
}
// the drained outputs of processes that were killed leave timers behind
if (!interrupted) process.exit(0);
