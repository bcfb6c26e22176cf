// The demo's virtual cluster as processes that outlive `skein demo` (for `--keep`): the lab
// underlay (nodes on a shared subnet, one behind a NAT), on the control-plane host the test API
// server and a nats-server with JetStream and a password, one `skein agent` per node, and the
// control-plane process (`skein demo --control-plane DIR`: the kubectl proxy, the scheduler,
// the EndpointSlice controller and a pod runner per node). Every process runs in a session
// of its own with its output in DIR/logs, and DIR/state.json says what runs, so that
// `skein demo --stop` and `skein cleanup` can end it from another shell.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { unlinkIfFree } from "../../agent/sys/flock.ts";
import { deleteNetnsWithPrefix, listNetns, netnsPath } from "../../agent/sys/netns.ts";
import { run } from "../../agent/sys/exec.ts";
import { parse } from "yaml";
import { ApiDriver } from "../apiserver/driver.ts";
import SKEINNODE_CRD from "../../deploy/crds/skeinnode.yaml" with { type: "text" };
import { DEMO_PREFIX, Lab } from "../lab.ts";
import { buildUnderlay, CLUSTER_CIDR, nodeSpec, SERVICE_CIDR, type NodeDef, type Segment, type Underlay, type UnderlayNode } from "../multinode.ts";

/** where a running demo keeps its files: tmpfs, gone after a reboot as its namespaces are */
export const DEMO_DIR = "/run/skein-demo";
export const MAX_NODES = 6;
/** where node k sits: two on the shared subnet, the third behind the NAT, then a routed one */
const PLACEMENT: Segment[] = ["a", "a", "nat", "b", "a", "b"];
const NATS_PORT = 4222;
/** a node's name and its namespace's short name, as the lab's underlay allows them */
const NODE = /^[a-z][a-z0-9-]{0,11}$/;

export interface DemoState {
  version: 1;
  /** the control-plane process */
  pid: number;
  dir: string;
  nodes: Array<{ name: string; ns: string; address: string; podCIDR: string; segment: Segment; public?: string }>;
  /** the kubeconfig for kubectl on this machine (through the proxy on loopback) */
  kubeconfig: string;
  started: string;
}

export function nodeDefs(n: number): NodeDef[] {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new Error(`--nodes ${n}: the demo builds 1 to ${MAX_NODES} nodes`);
  return Array.from({ length: n }, (_, i) => ({ name: `node${i + 1}`, index: i + 1, segment: PLACEMENT[i]!, host: 21 + i }));
}

const q = (s: string) => JSON.stringify(s);

function writeAtomic(file: string, data: string, mode = 0o600): void {
  writeFileSync(`${file}.tmp`, data, { mode });
  renameSync(`${file}.tmp`, file);
}

/** The state file of a demo, or undefined when none is there or it cannot be read as one. */
export function readState(dir = DEMO_DIR): DemoState | undefined {
  try {
    const s = JSON.parse(readFileSync(`${dir}/state.json`, "utf8")) as DemoState;
    // pid 0: the control plane is being started
    if (s.version !== 1 || !Number.isInteger(s.pid) || s.pid < 0 || !Array.isArray(s.nodes) || s.nodes.length > MAX_NODES) return undefined;
    // the control plane runs a pod runner per node named here, in the namespace named here
    if (!s.nodes.every((n) => typeof n?.name === "string" && NODE.test(n.name) && typeof n.ns === "string" && NODE.test(n.ns))) return undefined;
    return s;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is this demo's control-plane process: alive and run as `skein demo
 * --control-plane <dir>` (a pid in a state file is never enough). */
export function isControlPlane(pid: number, dir = DEMO_DIR): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const i = argv.indexOf("--control-plane");
    return i > 0 && argv[i + 1] === dir && argv.includes("demo");
  } catch {
    return false;
  }
}

/** The demo running now, if one is: its state, with a live control-plane process. */
export function demoRunning(dir = DEMO_DIR): { pid: number; started?: string } | undefined {
  const pid = controlPlanes(dir)[0];
  if (pid === undefined) return undefined;
  return { pid, started: readState(dir)?.started };
}

/** Every process running as this demo's control plane, found by its command line: the state
 * file may be garbage, or name pid 0 while the process starts. */
export function controlPlanes(dir = DEMO_DIR): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    if (isControlPlane(Number(p), dir)) out.push(Number(p));
  }
  return out;
}

async function exited(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) return true;
    await Bun.sleep(25);
  }
  return false;
}

/**
 * Ends a demo: its control-plane process, then every process in its namespaces (SIGTERM so
 * the agents remove their sockets and locks, SIGKILL for what is still there after 3 s), the
 * namespaces, and its directory. Returns what it ended, for the user; safe to call when no
 * demo runs.
 */
export async function stopDemo(dir = DEMO_DIR): Promise<string[]> {
  const done: string[] = [];
  for (const pid of controlPlanes(dir)) {
    try {
      process.kill(pid, "SIGTERM");
      if (!(await exited(pid, 3000))) process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
    done.push(`control plane (pid ${pid})`);
  }
  const namespaces = listNetns().filter((n) => n.startsWith(DEMO_PREFIX));
  const pids = namespaces.flatMap((n) => run(["ip", "netns", "pids", n], { allowFail: true }).stdout.split(/\s+/).filter(Boolean).map(Number));
  for (const p of pids) {
    try {
      process.kill(p, "SIGTERM");
    } catch {}
  }
  await Promise.all(pids.map((p) => exited(p, 3000)));
  if (pids.length) done.push(`${pids.length} processes (API server, NATS, agents, pod servers)`);
  const files = runFilesOf(namespaces);
  if (files) done.push(`${files} lock and socket files in ${RUN_DIR}`);
  const gone = deleteNetnsWithPrefix(DEMO_PREFIX);
  if (gone.length) done.push(`${gone.length} network namespaces ${DEMO_PREFIX}*`);
  if (existsSync(dir)) {
    rmSync(dir, { recursive: true, force: true });
    done.push(dir);
  }
  return done;
}

/** where the agents and the CNI plugin keep their lock and socket files (`--run-dir`) */
const RUN_DIR = "/run/skein";

/**
 * The lock and socket files the demo's agents and CNI calls made for its namespaces, named
 * for each namespace's identity (agent/sys/flock.ts); removed while the namespaces still
 * exist, so that the identity is theirs. The CNI plugin keeps its lock file for good and an
 * agent killed hard keeps its own: nothing else would take them away. Returns how many went.
 */
function runFilesOf(namespaces: string[]): number {
  let n = 0;
  for (const name of namespaces) {
    let id;
    try {
      id = statSync(netnsPath(name), { bigint: true });
    } catch {
      continue;
    }
    for (const kind of ["cni", "agent"]) {
      const lock = `${RUN_DIR}/${kind}-${id.dev}-${id.ino}.lock`;
      try {
        if (existsSync(lock) && unlinkIfFree(lock)) n++;
      } catch {
        // not a lock file of skein's: left alone
      }
    }
    const sock = `${RUN_DIR}/agent-${id.dev}-${id.ino}.sock`;
    // every process of the namespace has ended: no agent serves this socket any more
    if (existsSync(sock) && lstatSync(sock).isSocket()) {
      unlinkSync(sock);
      n++;
    }
  }
  return n;
}

export interface DemoCluster {
  dir: string;
  lab: Lab;
  underlay: Underlay;
  nodes: UnderlayNode[];
  /** the API through its Unix socket */
  api: ApiDriver;
  token: string;
  /** the kubeconfig for kubectl on this machine */
  kubeconfig: string;
  apiUrl: string;
}

/** How the control-plane process is run (isControlPlane recognizes it by this). */
export function controlPlaneArgv(bin: string, dir: string): string[] {
  return [bin, "demo", "--control-plane", dir];
}

/**
 * Builds the cluster in steps, calling `step` before each (the demo shows progress) and
 * `info` with details. Throws with what failed; the caller stops what was started.
 */
export async function buildCluster(o: { bin: string; nodes: number; dir?: string; step: (what: string) => void; info: (s: string) => void }): Promise<DemoCluster> {
  const dir = o.dir ?? DEMO_DIR;
  const defs = nodeDefs(o.nodes);
  mkdirSync(`${dir}/logs`, { recursive: true, mode: 0o700 });
  const lab = new Lab(DEMO_PREFIX, o.bin);

  o.step(`underlay: ${defs.length} node namespaces, a router, a NAT and an outside host`);
  const underlay = await buildUnderlay(lab, { nodes: defs });
  const cp = underlay.controlPlane;
  for (const n of underlay.nodes) o.info(`${n.name}  ${n.address.padEnd(15)} pod CIDR ${n.podCIDR}${n.public ? `, behind the NAT (public ${n.public})` : n.segment === "b" ? ", routed subnet" : ", shared subnet"}`);

  o.step("control plane: skein apiserver and nats-server (JetStream, password) on the control-plane host");
  const token = crypto.randomUUID();
  mkdirSync(`${dir}/api`, { recursive: true, mode: 0o700 });
  await lab.spawnDetached(cp.ns, [o.bin, "apiserver", "--dir", `${dir}/api`, "--listen", `${cp.address}:6443`, "--token", token, "--unix", `${dir}/api.sock`, "--service-cidr", SERVICE_CIDR], {
    log: `${dir}/logs/apiserver.log`,
    ready: "serving",
    timeoutMs: 15_000,
    what: "skein apiserver",
  });
  const natsPassword = crypto.randomUUID();
  mkdirSync(`${dir}/nats/js`, { recursive: true, mode: 0o700 });
  writeAtomic(`${dir}/nats/nats.conf`, [`server_name: demo`, `listen: "${cp.address}:${NATS_PORT}"`, `jetstream { store_dir: ${q(`${dir}/nats/js`)} }`, `authorization { user: skein, password: ${q(natsPassword)} }`, ""].join("\n"));
  writeAtomic(`${dir}/nats/client.json`, JSON.stringify({ servers: [`nats://${cp.address}:${NATS_PORT}`], user: "skein", password: natsPassword }));
  await lab.spawnDetached(cp.ns, ["nats-server", "-c", `${dir}/nats/nats.conf`], { log: `${dir}/logs/nats.log`, ready: "Server is ready", timeoutMs: 15_000, what: "nats-server" });
  const api = new ApiDriver(`${dir}/api.sock`, token);
  // the CRD the deployment installs, so that each agent keeps its SkeinNode as in a cluster
  await api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", parse(SKEINNODE_CRD));
  o.info(`API server https://${cp.address}:6443 (with the SkeinNode CRD), NATS nats://${cp.address}:${NATS_PORT}`);

  o.step(`nodes: the Node objects and skein agent on each (${defs.length} in parallel)`);
  // the install step of the DaemonSet's init container: the binary as a CNI plugin, a conflist per node
  mkdirSync(`${dir}/cni-bin`, { recursive: true });
  if (!existsSync(`${dir}/cni-bin/skein`)) symlinkSync(o.bin, `${dir}/cni-bin/skein`);
  for (const n of underlay.nodes) {
    const d = `${dir}/nodes/${n.name}`;
    mkdirSync(d, { recursive: true, mode: 0o700 });
    writeAtomic(`${d}/10-skein.conflist`, JSON.stringify({ cniVersion: "1.0.0", name: "skein", plugins: [{ type: "skein", nodeFile: `${d}/node.json`, dataDir: `${d}/ipam` }] }, null, 2), 0o644);
    await api.create("/api/v1/nodes", nodeSpec(n));
  }
  await Promise.all(
    underlay.nodes.map((n) =>
      lab.spawnDetached(
        n.ns,
        [o.bin, "agent", "--kubeconfig", `${dir}/api/kubeconfig`, "--node-name", n.name, "--cluster-cidr", CLUSTER_CIDR, "--service-cidr", SERVICE_CIDR, "--node-file", `${dir}/nodes/${n.name}/node.json`, "--nats-config", `${dir}/nats/client.json`, "--health-interval", "5"],
        { log: `${dir}/logs/agent-${n.name}.log`, ready: "tables applied", timeoutMs: 30_000, what: `skein agent of ${n.name}` },
      ),
    ),
  );
  o.info(`agents ready: ${underlay.nodes.map((n) => n.name).join(", ")}`);

  o.step("control-plane process: kubectl proxy on loopback, scheduler, EndpointSlice controller, a pod runner per node");
  const state: DemoState = {
    version: 1,
    pid: 0,
    dir,
    nodes: underlay.nodes.map((n) => ({ name: n.name, ns: n.ns, address: n.address, podCIDR: n.podCIDR, segment: n.segment, ...(n.public ? { public: n.public } : {}) })),
    kubeconfig: `${dir}/kubeconfig`,
    started: new Date().toISOString(),
  };
  writeAtomic(`${dir}/state.json`, JSON.stringify(state, null, 2));
  const log = `${dir}/logs/control-plane.log`;
  // in this (the machine's) namespace, where kubectl runs. Bun's fetch keeps 256 requests in
  // flight by default: the proxies' own caps are to be the limit
  const pid = await lab.spawnDetached(undefined, controlPlaneArgv(o.bin, dir), { log, ready: "control plane ready", timeoutMs: 30_000, what: "the control-plane process", env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "2048" } });
  state.pid = pid;
  writeAtomic(`${dir}/state.json`, JSON.stringify(state, null, 2));
  const url = /control plane ready: (\S+)/.exec(readFileSync(log, "utf8"))?.[1] ?? "";
  o.info(`kubectl: KUBECONFIG=${state.kubeconfig} (API through ${url})`);
  return { dir, lab, underlay, nodes: underlay.nodes, api, token, kubeconfig: state.kubeconfig, apiUrl: url };
}
