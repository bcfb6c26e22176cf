// `skein demo` as the README runs it: the live cluster, the app, the matrix (every cell checked
// here against the rules of the app's policy, not the demo's own verdicts), the traces, the
// tables, and nothing left afterwards. Then `skein demo --keep` poked with kubectl as a user
// would (run, expose, reach through ClusterIP and NodePort, delete moves the traffic) and
// `skein demo --stop`.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { listNetns } from "../agent/sys/netns.ts";
import { runAsync } from "../agent/sys/exec.ts";
import { KUBECTL } from "./harness/kubectl.ts";
import { SKEIN, waitFor } from "./harness/index.ts";
import { podNetnsName } from "../testing/cluster/pod-runner.ts";

const DIR = "/run/skein-demo";
const PREFIX = "skdemo-";

const skein = (args: string[], timeoutMs = 240_000) => runAsync([SKEIN, ...args], { allowFail: true, timeoutMs, env: { ...process.env, NO_COLOR: "1" } });
const kubectl = async (...args: string[]) => {
  const r = await runAsync([KUBECTL!, "--kubeconfig", `${DIR}/kubeconfig`, "--cache-dir", `${DIR}/kubectl-cache`, ...args], { allowFail: true, timeoutMs: 60_000 });
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};
/** every process still running from a demo: its control plane, or anything in its namespaces */
const leftovers = () => {
  const procs = readdirSync("/proc").filter((p) => /^\d+$/.test(p) && (() => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--control-plane\0/run/skein-demo");
    } catch {
      return false;
    }
  })());
  const runFiles = (existsSync("/run/skein") ? readdirSync("/run/skein") : []).filter((f) => !runFilesBefore.has(f));
  return { namespaces: listNetns().filter((n) => n.startsWith(PREFIX)), dir: existsSync(DIR), procs, runFiles };
};
const nothingLeft = { namespaces: [], dir: false, procs: [], runFiles: [] };
/** the agents' and CNI's lock and socket files before the demo: the demo's agents must take theirs along */
const runFilesBefore = new Set(existsSync("/run/skein") ? readdirSync("/run/skein") : []);

afterAll(async () => {
  await skein(["demo", "--stop"], 60_000);
});

/** The printed matrices: per protocol, per source row, per target column, the cell's text. */
function readMatrices(out: string): Record<string, Record<string, Record<string, string>>> {
  const m: Record<string, Record<string, Record<string, string>>> = {};
  for (const block of out.split(/\n(?=(?:TCP|UDP) )/).slice(1)) {
    const lines = block.split("\n");
    const head = lines[0]!;
    const proto = head.slice(0, 3);
    const cols = [...head.matchAll(/(\S+(?: (?:svc|pod))?)/g)].slice(1).map((x) => ({ label: x[1]!, at: x.index! }));
    m[proto] = {};
    for (const line of lines.slice(1)) {
      if (!line.trim()) break;
      const row = line.slice(0, cols[0]!.at).trim();
      m[proto]![row] = Object.fromEntries(cols.map((c, i) => [c.label, line.slice(c.at, cols[i + 1]?.at ?? line.length).trim()]));
    }
  }
  return m;
}

test("skein demo: a live three-node cluster, every expected allow and deny in its matrix, traces and tables, nothing left", async () => {
  const r = await skein(["demo"]);
  const out = r.stdout;
  if (r.exitCode !== 0) console.log(out, r.stderr);
  expect(r.exitCode).toBe(0);
  expect(out).toMatch(/\n(\d+) of \1 checks passed/);
  // plain progress lines off a terminal
  expect(out).toContain("[1/9] underlay");
  expect(out).toMatch(/node3 .*behind the NAT/);
  const m = readMatrices(out);
  expect(Object.keys(m).sort()).toEqual(["TCP", "UDP"]);
  for (const proto of ["TCP", "UDP"]) {
    const rows = m[proto]!;
    expect(Object.keys(rows).sort()).toEqual(["backend-1", "client", "frontend-1", "frontend-2", "outside"]);
    for (const [src, cells] of Object.entries(rows)) {
      for (const [dst, cell] of Object.entries(cells)) {
        if (cell === "") continue; // a backend does not probe itself
        // the policy's rules, read from the app: anyone reaches the frontend, only frontend
        // pods the backend; the outside host only the NodePorts
        const want = src === "outside" ? (dst.endsWith(":nodeport") ? "reply" : ".") : dst.startsWith("frontend") || dst.endsWith(":nodeport") || src.startsWith("frontend") ? "reply" : "blocked";
        expect(`${proto} ${src} -> ${dst}: ${cell}`).toBe(`${proto} ${src} -> ${dst}: ${want}`);
      }
    }
    // the NodePort columns: the nodes an outside host can reach (not the one behind the NAT)
    expect(Object.keys(rows.outside!).filter((c) => c.endsWith(":nodeport")).sort()).toEqual(["node1:nodeport", "node2:nodeport"]);
  }
  // a frontend answers with its backend's answer: the two tiers called each other
  expect(out).toMatch(/"frontend-\d \S+ -> backend-\d \S+"/);
  // the traces name the policy for the denied case and the tables show the backend Service
  expect(out).toContain("backend-from-frontend");
  expect(out).toContain("skein tables --service demo/backend");
  expect(leftovers()).toEqual(nothingLeft);
}, 300_000);

test("skein demo --keep leaves the cluster running; kubectl run, expose, reach by ClusterIP and NodePort, delete moves the traffic; --stop leaves nothing", async () => {
  if (!KUBECTL) throw new Error("kubectl is not installed (Debian kubernetes-client)");
  const r = await skein(["demo", "--keep", "--pods", "1"]);
  if (r.exitCode !== 0) console.log(r.stdout, r.stderr);
  expect(r.exitCode).toBe(0);
  expect(r.stdout).toContain(`export KUBECONFIG=${DIR}/kubeconfig`);
  expect(r.stdout).toContain("demo --stop");
  // still running after the command ended
  expect(leftovers().procs.length).toBe(1);
  // the nodes' identities, which name their agents' and CNI calls' files in /run/skein
  const ids = ["node1", "node2", "node3"].map((n) => statSync(`/run/netns/${PREFIX}${n}`, { bigint: true })).map((st) => `${st.dev}-${st.ino}`);
  expect(readdirSync("/run/skein").filter((f) => ids.some((id) => f.startsWith(`cni-${id}.`)))).not.toEqual([]);
  expect(await kubectl("get", "nodes", "--no-headers")).toMatch(/node1\s+Ready/);

  await kubectl("run", "web1", "--image=any", "--port=8080", "--labels=app=web");
  await kubectl("run", "web2", "--image=any", "--port=8080", "--labels=app=web");
  await kubectl("run", "probe", "--image=any");
  await kubectl("wait", "--for=condition=Ready", "pod/web1", "pod/web2", "pod/probe", "--timeout=60s");
  await kubectl("expose", "pod", "web1", "--name=web", "--port=80", "--target-port=8080");
  await kubectl("expose", "pod", "web1", "--name=web-np", "--type=NodePort", "--port=80", "--target-port=8080");
  const svc = JSON.parse(await kubectl("get", "svc", "web", "-o", "json"));
  const np = JSON.parse(await kubectl("get", "svc", "web-np", "-o", "json"));
  const nodePort = np.spec.ports[0].nodePort as number;
  const probe = JSON.parse(await kubectl("get", "pod", "probe", "-o", "json"));
  const node = JSON.parse(await kubectl("get", "node", "node1", "-o", "json"));
  const nodeIp = node.status.addresses.find((a: any) => a.type === "InternalIP").address;
  const ns = `${PREFIX}${podNetnsName(probe)}`;
  const from = (host: string, port: number) => runAsync(["ip", "netns", "exec", ns, SKEIN, "probe", "connect", "tcp", host, String(port), "--timeout", "1000"], { allowFail: true }).then((x) => (x.exitCode === 0 ? x.stdout.split(" ")[0]! : ""));
  const seen = async (host: string, port: number, n = 16) => {
    const s = new Set<string>();
    for (let i = 0; i < n; i++) s.add(await from(host, port));
    return [...s].sort().join(",");
  };
  await waitFor("both pods behind the ClusterIP", async () => (await seen(svc.spec.clusterIP, 80)) === "web1,web2", 30_000, 200);
  await waitFor("both pods behind the NodePort", async () => (await seen(nodeIp, nodePort)) === "web1,web2", 30_000, 200);
  const slices = JSON.parse(await kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"));
  expect(slices.items.flatMap((s: any) => s.endpoints.map((e: any) => e.targetRef.name)).sort()).toEqual(["web1", "web2"]);

  await kubectl("delete", "pod", "web1", "--timeout=60s");
  await waitFor("only web2 answers, by ClusterIP and NodePort", async () => (await seen(svc.spec.clusterIP, 80, 8)) === "web2" && (await seen(nodeIp, nodePort, 8)) === "web2", 30_000, 200);
  expect(listNetns().some((n) => n.startsWith(`${PREFIX}web1-`))).toBe(false);

  const stop = await skein(["demo", "--stop"], 60_000);
  expect(stop.exitCode).toBe(0);
  expect(stop.stdout).toContain("demo cluster taken down");
  expect(leftovers()).toEqual(nothingLeft);
  // the CNI plugin keeps its lock file for good: the demo takes its nodes' along
  expect(readdirSync("/run/skein").filter((f) => ids.some((id) => f.includes(`-${id}.`)))).toEqual([]);
}, 300_000);
