// NetworkPolicy against a hostile or careless user and against other software on the node:
// two nodes of the multi-node underlay (testing/multinode.ts), an agent in each, pods wired by
// skein's CNI, real TCP and UDP connections. The API server here takes what kube-apiserver
// would refuse (Store.checkFields off), so the agent's own checks are what stands between a
// planted object and the datapath. Every attack is a test; what it must leave is the
// reachability the valid policies say.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { Lab } from "../testing/lab.ts";
import { buildUnderlay, startCluster, type Cluster } from "../testing/multinode.ts";
import { builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const RAW_SEND = resolve(ROOT, "testing/raw-send.ts");
const tmp = useTempDir("hpol");
const harnessLab = useLab("hpol");

// `skein apiserver` with the field checks off: a launcher that patches TestApiServer.start,
// then runs the CLI, and a wrapper that sends `apiserver` to it and everything else (agent,
// probe, CNI) to the built binary.
const LAUNCHER = `${tmp}/lenient-apiserver.ts`;
const WRAPPER = `${tmp}/skein`;
writeFileSync(
  LAUNCHER,
  `import { TestApiServer } from ${JSON.stringify(`${ROOT}/testing/apiserver/server.ts`)};
const start = TestApiServer.start.bind(TestApiServer);
(TestApiServer as any).start = (o: any) => { o.store.checkFields = false; return start(o); };
const { cliMain } = await import(${JSON.stringify(`${ROOT}/agent/cli/index.ts`)});
process.exitCode = await cliMain(process.argv.slice(2));
`,
);
writeFileSync(WRAPPER, `#!/bin/sh\nif [ "$1" = apiserver ]; then exec ${process.execPath} ${LAUNCHER} "$@"; fi\nexec ${builtSkein()} "$@"\n`);
chmodSync(WRAPPER, 0o755);
// the harness's lab (its prefix, its teardown), with the wrapper as its skein
const lab = new Lab(harnessLab.prefix, WRAPPER);
afterAll(() => lab.destroy());

let c: Cluster;
const repairsLog: string[] = [];
const NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";
const PODS = "/api/v1/namespaces/default/pods";
const PORT = 8080;
const ip = (name: string) => c.pods.get(name)!.ip;

// n1: srv (role=server), cli (role=client), oth (role=other); n2: rsrv (role=server), rcli (role=client)
const LAYOUT: Array<[node: string, name: string, role: string]> = [
  ["n1", "srv", "server"],
  ["n1", "cli", "client"],
  ["n1", "oth", "other"],
  ["n2", "rsrv", "server"],
  ["n2", "rcli", "client"],
];

/** the policy every test starts from: servers admit clients on TCP 8080, nothing else */
const BASE = {
  metadata: { name: "srv-in" },
  spec: { podSelector: { matchLabels: { role: "server" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: [{ protocol: "TCP", port: PORT }] }] },
};

type Check = [from: string, proto: "tcp" | "udp", to: string, reaches: boolean];
/** what BASE alone says, on and across nodes */
const BASELINE: Check[] = [
  ["cli", "tcp", "srv", true],
  ["rcli", "tcp", "srv", true],
  ["cli", "tcp", "rsrv", true],
  ["oth", "tcp", "srv", false],
  ["oth", "tcp", "rsrv", false],
  ["cli", "udp", "srv", false],
  ["srv", "tcp", "oth", true],
  ["rsrv", "udp", "cli", true],
];

const line = ([from, proto, to, want]: Check, ok = want) => `${from} -> ${proto} ${to}:${PORT} ${ok ? "reaches" : "does not reach"}`;

/** Every check once, a few at a time; the table of what was seen. */
async function observe(checks: Check[]): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < checks.length; i += 8) {
    got.push(
      ...(await Promise.all(
        checks.slice(i, i + 8).map(async (k) => {
          const [from, proto, to, want] = k;
          let r = await lab.connect(from, proto, ip(to), PORT, want ? 2000 : 1000);
          for (let n = 1; want && !r.ok && n < 3; n++) r = await lab.connect(from, proto, ip(to), PORT, 2000);
          return line(k, r.ok);
        }),
      )),
    );
  }
  return got;
}

/** The checks hold now. */
async function reach(checks: Check[]): Promise<void> {
  expect(await observe(checks)).toEqual(checks.map((k) => line(k)));
}

/** The checks hold within `timeoutMs` (after a change the agent must apply); the ms it took. */
async function settles(checks: Check[], timeoutMs = 8000): Promise<number> {
  const t0 = Date.now();
  const want = checks.map((k) => line(k));
  let got: string[] = [];
  while (Date.now() - t0 < timeoutMs) {
    got = await observe(checks);
    if (got.join("\n") === want.join("\n")) return Date.now() - t0;
  }
  expect(got).toEqual(want);
  return Date.now() - t0;
}

const agentLog = (node: string) => c.agents.get(node)?.out.text ?? "";
/** Waits for an agent log line holding every one of `parts`; returns it. */
function logged(node: string, parts: string[], timeoutMs = 8000, from = 0): Promise<string> {
  return waitFor(`${node}'s agent to log ${parts.join(" … ")}`, () => agentLog(node).slice(from).split("\n").find((l) => parts.every((p) => l.includes(p))), timeoutMs, 50);
}

const nft = (node: string, text: string) => lab.exec(node, ["nft", "-f", "-"], { stdin: text });
const put = async (o: Record<string, any>) => {
  const name = o.metadata.name as string;
  try {
    const cur = await c.api.request("GET", `${NP}/${name}`);
    return c.api.request("PUT", `${NP}/${name}`, { ...o, metadata: { ...o.metadata, resourceVersion: cur.metadata.resourceVersion } });
  } catch (e) {
    if (!String(e).includes(" 404 ")) throw e;
    return c.api.create(NP, o);
  }
};
const del = (name: string) => c.api.delete(`${NP}/${name}`);

beforeAll(async () => {
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2"] });
  c = await startCluster({ underlay: u, dir: `${tmp}/cluster`, agentFlags: () => ["--verify-interval", "5", "--policy-log-interval", "1"] });
  for (const [node, name, role] of LAYOUT) await c.addPod(node, name, { labels: { role } });
  // the kernel's reverse-path filter off on the nodes, as many nodes run it: what drops a
  // forged source below is skein's check
  for (const n of ["n1", "n2"]) await lab.exec(n, ["sh", "-c", "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done"]);
  await Promise.all(LAYOUT.map(([, name]) => lab.serve(name, { name, tcp: PORT, udp: PORT }, 20_000)));
  await c.api.create(NP, BASE);
  await settles(BASELINE, 15_000);
}, 90_000);

afterAll(async () => {
  if (repairsLog.length) console.log(repairsLog.join("\n"));
  if (process.env.HPOL_DEBUG) for (const n of ["n1", "n2"]) console.log(`--- ${n}\n${agentLog(n)}`);
  await c?.stop();
});

describe("NetworkPolicy against a hostile user and the node's other software", () => {
  test("baseline: servers admit clients on TCP 8080, on and across nodes, and nothing else", async () => {
    await reach(BASELINE);
  });

  test("policies kube-apiserver refuses are each reported by object and field, left out whole, and change no verdict", async () => {
    // each selects every pod and holds one bad part in a rule that, were the part dropped,
    // would admit everyone (looser), and were the rule dropped would isolate every pod (stricter)
    const all = { podSelector: {}, policyTypes: ["Ingress"] };
    const from = (peer: unknown, ports?: unknown) => ({ ...all, ingress: [{ from: [peer], ...(ports ? { ports } : {}) }] });
    const ports = (p: unknown) => ({ ...all, ingress: [{ ports: p }] });
    const bad: Array<[name: string, spec: unknown, field: string]> = [
      ["bad-cidr", from({ ipBlock: { cidr: "10.244.1.0/33" } }), "spec.ingress[0].from[0].ipBlock.cidr"],
      ["zero-cidr", from({ ipBlock: { cidr: "010.244.1.0/24" } }), "spec.ingress[0].from[0].ipBlock.cidr"],
      ["space-cidr", from({ ipBlock: { cidr: " 10.0.0.0/8" } }), "spec.ingress[0].from[0].ipBlock.cidr"],
      ["v6-cidr", from({ ipBlock: { cidr: "fd00::/129" } }), "spec.ingress[0].from[0].ipBlock.cidr"],
      ["except-outside", from({ ipBlock: { cidr: "10.244.1.0/24", except: ["10.245.0.0/24"] } }), "spec.ingress[0].from[0].ipBlock.except[0]"],
      ["except-equal", from({ ipBlock: { cidr: "10.244.1.0/24", except: ["10.244.1.0/24"] } }), "spec.ingress[0].from[0].ipBlock.except[0]"],
      ["except-wider", from({ ipBlock: { cidr: "10.244.1.0/25", except: ["10.244.1.0/24"] } }), "spec.ingress[0].from[0].ipBlock.except[0]"],
      ["except-family", from({ ipBlock: { cidr: "0.0.0.0/0", except: ["::/1"] } }), "spec.ingress[0].from[0].ipBlock.except[0]"],
      ["peer-both", from({ ipBlock: { cidr: "0.0.0.0/0" }, podSelector: {} }), "spec.ingress[0].from[0]"],
      ["peer-empty", from({}), "spec.ingress[0].from[0]"],
      ["bad-operator", from({ podSelector: { matchExpressions: [{ key: "role", operator: "Maybe", values: ["x"] }] } }), "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator"],
      ["exists-values", from({ podSelector: { matchExpressions: [{ key: "role", operator: "Exists", values: ["x"] }] } }), "spec.ingress[0].from[0].podSelector.matchExpressions[0].values"],
      ["in-no-values", from({ podSelector: { matchExpressions: [{ key: "role", operator: "NotIn", values: [] }] } }), "spec.ingress[0].from[0].podSelector.matchExpressions[0].values"],
      ["bad-key", from({ podSelector: { matchLabels: { "-bad": "x" } } }), "spec.ingress[0].from[0].podSelector.matchLabels"],
      ["long-value", from({ podSelector: { matchLabels: { role: "v".repeat(64) } } }), "spec.ingress[0].from[0].podSelector.matchLabels"],
      ["unknown-proto", ports([{ protocol: "ICMP", port: PORT }]), "spec.ingress[0].ports[0].protocol"],
      ["lower-proto", ports([{ protocol: "tcp", port: PORT }]), "spec.ingress[0].ports[0].protocol"],
      ["port-zero", ports([{ protocol: "TCP", port: 0 }]), "spec.ingress[0].ports[0].port"],
      ["port-big", ports([{ protocol: "TCP", port: 70000 }]), "spec.ingress[0].ports[0].port"],
      ["port-name-bad", ports([{ protocol: "TCP", port: "no_such--name!" }]), "spec.ingress[0].ports[0].port"],
      ["endport-alone", ports([{ protocol: "TCP", endPort: 9000 }]), "spec.ingress[0].ports[0].endPort"],
      ["endport-below", ports([{ protocol: "TCP", port: PORT, endPort: 80 }]), "spec.ingress[0].ports[0].endPort"],
      ["endport-named", ports([{ protocol: "TCP", port: "http", endPort: 9000 }]), "spec.ingress[0].ports[0].endPort"],
      ["bad-type", { ...all, policyTypes: ["Sideways"], ingress: [{}] }, "spec.policyTypes[0]"],
      ["ingress-object", { ...all, ingress: { from: [] } }, "spec.ingress"],
      ["spec-number", 42, "spec"],
      ["selector-list", { podSelector: [], policyTypes: ["Ingress"], ingress: [{}] }, "spec.podSelector"],
      ["egress-cidr", { podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "1.2.3.4/40" } }] }] }, "spec.egress[0].to[0].ipBlock.cidr"],
    ];
    const mark = { n1: agentLog("n1").length, n2: agentLog("n2").length };
    for (const [name, spec] of bad) await c.api.create(NP, { metadata: { name }, spec });
    const missing: string[] = [];
    for (const node of ["n1", "n2"] as const) {
      await logged(node, [`NetworkPolicy default/${bad.at(-1)![0]}`], 10_000, mark[node]);
      const log = agentLog(node).slice(mark[node]).split("\n");
      for (const [name, , field] of bad) {
        const l = log.find((x) => x.includes(`NetworkPolicy default/${name}:`));
        if (!l || !l.includes(`${name}: ${field}`)) missing.push(`${node} ${name}: want "${field}", logged ${l ? JSON.parse(l).msg : "nothing"}`);
      }
    }
    await reach(BASELINE);
    expect(missing).toEqual([]);
  }, 60_000);

  const OTH_IN = (spec: Record<string, unknown> = {}) => ({
    metadata: { name: "oth-in" },
    spec: { podSelector: { matchLabels: { role: "other" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { role: "server" } } }], ports: [{ protocol: "TCP", port: PORT }] }], ...spec },
  });
  const fromRole = (role: string) => ({ ingress: [{ from: [{ podSelector: { matchLabels: { role } } }], ports: [{ protocol: "TCP", port: PORT }] }] });
  const BROKEN = { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/99" } }] }] };
  const withoutOth = BASELINE.filter(([f, , t]) => f !== "oth" && t !== "oth" && !(f === "srv" && t === "oth"));

  test("an update from valid to invalid keeps the version in force; a valid update replaces it; a delete of a refused version removes the one in force", async () => {
    const onlySrv: Check[] = [["srv", "tcp", "oth", true], ["cli", "tcp", "oth", false], ["rsrv", "tcp", "oth", true], ["rcli", "tcp", "oth", false]];
    const onlyCli: Check[] = [["srv", "tcp", "oth", false], ["cli", "tcp", "oth", true], ["rsrv", "tcp", "oth", false], ["rcli", "tcp", "oth", true]];
    await put(OTH_IN());
    await settles(onlySrv);
    let mark = agentLog("n1").length;
    await put(OTH_IN(BROKEN));
    await logged("n1", ["NetworkPolicy default/oth-in: spec.ingress[0].from[0].ipBlock.cidr"], 8000, mark);
    await reach(onlySrv);
    await put(OTH_IN(fromRole("client")));
    await settles(onlyCli);
    mark = agentLog("n1").length;
    await put(OTH_IN(BROKEN));
    await logged("n1", ["NetworkPolicy default/oth-in: spec.ingress[0].from[0].ipBlock.cidr"], 8000, mark);
    await reach(onlyCli);
    await del("oth-in");
    await settles([["srv", "tcp", "oth", true], ["cli", "tcp", "oth", true], ["rcli", "tcp", "oth", true]]);
    await reach(BASELINE);
  }, 60_000);

  test("a policy kube-apiserver accepts but past skein's bounds (300 ports) does not leave the pods it isolates open", async () => {
    // valid Kubernetes (no bound on the number of ports): oth admits servers on 300 ports,
    // 8080 among them. Applied, cli cannot reach oth; refused, oth must be blocked (fail closed),
    // never open to everyone.
    // (its siblings, left out the same way: more than 256 peers or rules, 64 selector
    // requirements, 256 values)
    const many = Array.from({ length: 300 }, (_, i) => ({ protocol: "TCP", port: PORT - 150 + i }));
    const mark = agentLog("n1").length;
    await put(OTH_IN({ ingress: [{ from: [{ podSelector: { matchLabels: { role: "server" } } }], ports: many }] }));
    try {
      await waitFor("the agent to take it in or refuse it", () => agentLog("n1").slice(mark).includes("oth-in") || agentLog("n1").slice(mark).includes("policy applied"), 8000);
      const got = await observe([["cli", "tcp", "oth", false], ["rcli", "tcp", "oth", false]]);
      expect(got, `oth is open to every pod while a valid policy isolates it; the agent said: ${agentLog("n1").slice(mark).split("\n").filter((l) => l.includes("oth-in")).map((l) => JSON.parse(l).msg).join(" | ")}`).toEqual(["cli -> tcp oth:8080 does not reach", "rcli -> tcp oth:8080 does not reach"]);
    } finally {
      await del("oth-in");
      await settles(BASELINE);
    }
  }, 60_000);

  test("a policy churned 45 times without waiting (valid, refused, deleted, in turn) ends as its last write says", async () => {
    for (let i = 0; i < 45; i++) {
      const step = i % 3;
      if (step === 0) await put(OTH_IN(fromRole(i % 2 ? "client" : "server")));
      else if (step === 1) await put(OTH_IN(BROKEN));
      else await del("oth-in");
    }
    // the last write (i = 44) deleted it: nothing isolates oth
    await settles([["srv", "tcp", "oth", true], ["cli", "tcp", "oth", true], ["rcli", "tcp", "oth", true]]);
    await put(OTH_IN(fromRole("client")));
    await put(OTH_IN(BROKEN));
    await settles([["srv", "tcp", "oth", false], ["cli", "tcp", "oth", true], ["rcli", "tcp", "oth", true]]);
    await del("oth-in");
    await settles(BASELINE);
  }, 60_000);

  test("an agent restarted while a refused update hides the version in force says the policy is left out, and enforces the valid policies alone", async () => {
    // only the refused version is in the API now (a state kube-apiserver never lets arise: it
    // refuses the update); the restarted agent never saw the valid one. Issue 15 asks bad input
    // never to make the datapath stricter or looser than the valid policies say, and the valid
    // policies say nothing of oth any more: it is open, and the log says why, without claiming
    // an earlier version stays in force
    await put(OTH_IN());
    await settles([["srv", "tcp", "oth", true], ["cli", "tcp", "oth", false]]);
    await put(OTH_IN(BROKEN));
    try {
      await c.stopAgent("n1");
      const a = await c.startAgent("n1", [], { ready: "cluster state listed" });
      await logged("n1", ["NetworkPolicy default/oth-in", "left out (no earlier version of it is in force)"], 8000);
      expect(a.out.text).not.toMatch(/earlier version stays in force[^\n]*oth-in/);
      expect(await observe([["cli", "tcp", "oth", true]])).toEqual([line(["cli", "tcp", "oth", true])]);
    } finally {
      await del("oth-in");
      await settles(BASELINE);
    }
  }, 60_000);

  const podPath = (name: string) => `${PODS}/${name}`;
  async function plantPod(name: string, node: string, labels: Record<string, string>, status?: Record<string, unknown>, spec: Record<string, unknown> = {}) {
    await c.api.create(PODS, { metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: "x", image: "x" }], ...spec } });
    if (status) await c.api.request("PATCH", `${podPath(name)}/status`, { status }, "application/merge-patch+json");
  }
  const running = (ips: string[]) => ({ phase: "Running", podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) });

  test("a Pod object claiming another pod's address with client labels (another node) gives that pod no client rights and blocks nobody else", async () => {
    await plantPod("ghost", "n2", { role: "client" }, running([ip("oth")]));
    try {
      // no longer "other" alone: oth's address is claimed twice; it must not gain what clients may
      await waitFor("both agents to hear of the ghost", async () => (await observe([["cli", "tcp", "srv", true]]))[0] === line(["cli", "tcp", "srv", true]), 8000);
      await Bun.sleep(0);
      await reach([["oth", "tcp", "srv", false], ["oth", "tcp", "rsrv", false], ["cli", "tcp", "srv", true], ["rcli", "tcp", "srv", true], ["cli", "tcp", "rsrv", true]]);
    } finally {
      await c.api.delete(`${podPath("ghost")}?gracePeriodSeconds=0`);
    }
    await settles(BASELINE);
  }, 60_000);

  test("host-network pods, pods without addresses and finished pods that claim addresses are no one's identity", async () => {
    await plantPod("hostnet", "n1", { role: "client" }, running([ip("oth")]), { hostNetwork: true });
    await plantPod("noip", "n1", { role: "server" }, { phase: "Pending" });
    await plantPod("done", "n2", { role: "client" }, { ...running([ip("oth")]), phase: "Succeeded" });
    try {
      await reach([["oth", "tcp", "srv", false], ["oth", "tcp", "rsrv", false], ...withoutOth]);
    } finally {
      for (const p of ["hostnet", "noip", "done"]) await c.api.delete(`${podPath(p)}?gracePeriodSeconds=0`);
    }
  }, 60_000);

  test("an invalid update of a pod's status is refused and keeps the pod's identity", async () => {
    const mark = agentLog("n1").length;
    await c.api.request("PATCH", `${podPath("oth")}/status`, { status: { podIP: "10.244.1.0999", podIPs: [{ ip: "10.244.1.0999" }] } }, "application/merge-patch+json");
    try {
      await logged("n1", ["Pod default/oth"], 8000, mark);
      await reach(BASELINE);
    } finally {
      await c.api.request("PATCH", `${podPath("oth")}/status`, { status: running([c.pods.get("oth")!.ip]) }, "application/merge-patch+json");
    }
    await settles(BASELINE);
  }, 60_000);

  test("labels flipped fast, without waiting, end in the verdicts of the last ones", async () => {
    const role = (r: string) => c.api.request("PATCH", podPath("oth"), { metadata: { labels: { role: r } } }, "application/merge-patch+json");
    for (let i = 0; i < 40; i++) await role(i % 2 ? "other" : "client");
    await role("client");
    await settles([["oth", "tcp", "srv", true], ["oth", "tcp", "rsrv", true]]);
    for (let i = 0; i < 40; i++) await role(i % 2 ? "client" : "other");
    await role("other");
    await settles(BASELINE);
  }, 60_000);

  test("a namespace relabelled moves what its namespaceSelector admits; an unknown isolation annotation is refused and keeps the version in force", async () => {
    const NS = "/api/v1/namespaces/default";
    const patchNs = (meta: unknown) => c.api.request("PATCH", NS, { metadata: meta }, "application/merge-patch+json");
    await put(OTH_IN({ ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "blue" } } }] }] }));
    try {
      await settles([["cli", "tcp", "oth", false], ["srv", "tcp", "oth", false], ["rcli", "tcp", "oth", false]]);
      await patchNs({ labels: { team: "blue" } });
      await settles([["cli", "tcp", "oth", true], ["srv", "tcp", "oth", true], ["rcli", "tcp", "oth", true]]);
      const mark = agentLog("n1").length;
      await patchNs({ annotations: { "skein.io/isolation": "bogus" } });
      await logged("n1", ["Namespace default", "skein.io/isolation"], 8000, mark);
      await reach([["cli", "tcp", "oth", true], ["rcli", "tcp", "oth", true], ...withoutOth]);
      await patchNs({ labels: { team: null }, annotations: { "skein.io/isolation": null } });
      await settles([["cli", "tcp", "oth", false], ["rcli", "tcp", "oth", false]]);
    } finally {
      await patchNs({ labels: { team: null }, annotations: { "skein.io/isolation": null } }).catch(() => {});
      await del("oth-in");
    }
    await settles(BASELINE);
  }, 60_000);

  test("skein.io/app isolates an app from its own namespace's other pods", async () => {
    const app = (pod: string, v: string | null) => c.api.request("PATCH", podPath(pod), { metadata: { labels: { "skein.io/app": v } } }, "application/merge-patch+json");
    await app("oth", "web");
    try {
      await settles([["srv", "tcp", "oth", false], ["cli", "tcp", "oth", false], ["rsrv", "tcp", "oth", false]]);
      await app("cli", "web");
      await settles([["cli", "tcp", "oth", true], ["srv", "tcp", "oth", false], ["srv", "tcp", "cli", false]]);
    } finally {
      await app("cli", null);
      await app("oth", null);
    }
    await settles(BASELINE);
  }, 60_000);



  /** the identity id the agent of `node` gave a pod address (from pol_spod4) */
  async function idOf(node: string, pod: string): Promise<number> {
    const out = (await lab.exec(node, ["nft", "list", "map", "inet", "skein", "pol_spod4"])).stdout;
    const m = new RegExp(`${ip(pod).replaceAll(".", "\\.")} : goto pols_(\\d+)`).exec(out);
    if (!m) throw new Error(`${pod} (${ip(pod)}) is not in ${node}'s pol_spod4:\n${out}`);
    return Number(m[1]);
  }
  const markOf = (id: number) => `0x${(id << 16).toString(16).padStart(8, "0")}`;

  /** skein's policy objects in a node's kernel: sets and maps (elements without counters),
   * chains and rules, nothing that a restore may renumber */
  async function policyListing(node: string): Promise<string[]> {
    const r = await lab.exec(node, ["nft", "-j", "list", "table", "inet", "skein"], { allowFail: true });
    if (r.exitCode !== 0) return [`no table: ${r.stderr.trim()}`];
    const j = JSON.parse(r.stdout) as { nftables: Array<Record<string, Record<string, any>>> };
    const out: string[] = [];
    for (const o of j.nftables) {
      const [kind, b] = Object.entries(o)[0]!;
      if (kind === "set" || kind === "map") {
        if (!String(b.name).startsWith("pol")) continue;
        out.push(JSON.stringify({ [kind]: b.name, type: b.type, flags: b.flags, elem: (b.elem ?? []).map((e: any) => JSON.stringify(e.elem ? e.elem.val : e)).sort() }));
      } else if (kind === "chain" && String(b.name).startsWith("pol")) out.push(JSON.stringify({ chain: b.name, hook: b.hook, prio: b.prio, policy: b.policy }));
      else if (kind === "rule" && String(b.chain).startsWith("pol")) out.push(JSON.stringify({ rule: b.chain, expr: b.expr }));
    }
    return out.sort();
  }

  const TAMPER_CHECKS: Check[] = [["cli", "tcp", "srv", true], ["rcli", "tcp", "srv", true], ["oth", "tcp", "srv", false], ["srv", "tcp", "oth", true]];
  const tampers: Array<[what: string, nftText: () => Promise<string>]> = [
    ["flush set pol_allow_in (stricter)", async () => "flush set inet skein pol_allow_in\n"],
    ["flush map pol_spod4 (sources lose their identity)", async () => "flush map inet skein pol_spod4\n"],
    ["flush set pol_iso_in (looser: nothing isolated)", async () => "flush set inet skein pol_iso_in\n"],
    ["an accept rule at the top of pol_forward", async () => "insert rule inet skein pol_forward accept\n"],
    ["pol_forward deleted", async () => "flush chain inet skein pol_forward\ndelete chain inet skein pol_forward\n"],
    ["the client identity's chain flushed", async () => `flush chain inet skein pols_${await idOf("n1", "cli")}\n`],
    ["an allow element other -> server inserted", async () => `add element inet skein pol_allow_in { ${markOf(await idOf("n1", "oth"))} . ${markOf(await idOf("n1", "srv"))} . tcp . ${PORT}-${PORT} }\n`],
    ["pol_spoof flushed and pol_local4 emptied", async () => "flush chain inet skein pol_spoof\nflush set inet skein pol_local4\n"],
    ["table inet skein deleted", async () => "delete table inet skein\n"],
    ["nft flush ruleset", async () => "flush ruleset\n"],
  ];
    test.each(tampers)("another tool changes the policy in n1's kernel (%s): the agent repairs it within seconds and traffic is as the policies say", async (what, text) => {
    const before = await policyListing("n1");
    expect(before.length).toBeGreaterThan(20);
    const mark = agentLog("n1").length;
    await nft("n1", await text());
    const t0 = Date.now();
    const tampered = await policyListing("n1");
    // the listing right after may already be the repaired one (a fast agent); what matters is
    // how soon it is whole again, and that traffic is then as the policies say
    const listing = await waitFor("n1's policy objects as before", async () => {
      const now = await policyListing("n1");
      return now.join("\n") === before.join("\n") && now;
    }, 5000, 20).catch(async () => policyListing("n1"));
    const repairMs = Date.now() - t0;
    expect(listing).toEqual(before);
    await reach(TAMPER_CHECKS);
    const heard = agentLog("n1").slice(mark).split("\n").filter((l) => l.includes("changed by someone else") || l.includes("restor")).length;
    repairsLog.push(`${what}: ${tampered.join() === before.join() ? "already repaired when first listed" : "seen changed"}, whole again after ${repairMs} ms, ${heard} log lines`);
    expect(heard).toBeGreaterThan(0);
    // the README says within a second; 2 s on a loaded machine
    expect(repairMs).toBeLessThan(2000);
  }, 40_000);

  test("another table marking packets with a client's and a server's identity, and accepting, opens nothing", async () => {
    const cli = markOf(await idOf("n1", "cli"));
    const srv = markOf(await idOf("n1", "srv"));
    await nft("n1", `table inet hpolother {\n  chain early {\n    type filter hook forward priority -100; policy accept;\n    meta mark set ${cli} ct mark set ${srv} accept\n  }\n  chain late {\n    type filter hook forward priority 100; policy accept;\n    accept\n  }\n}\n`);
    try {
      await reach(TAMPER_CHECKS);
    } finally {
      await nft("n1", "delete table inet hpolother\n");
    }
  }, 30_000);

  const FOREIGN = "203.0.113.9";
  const FORGED = 41000;
  const OWN = 42000;
  /** counters in a receiver pod's namespace, ahead of everything: packets to port 9999 or
   * 8080 per source address and source port */
  async function countAt(receiver: string, sources: string[]): Promise<void> {
    const rules = sources.flatMap((a, i) => [FORGED, OWN].map((sp) => `    ip saddr ${a} th sport ${sp} th dport { 9999, ${PORT} } counter name c${i}_${sp}`));
    const counters = sources.flatMap((_, i) => [FORGED, OWN].map((sp) => `  counter c${i}_${sp} {}`));
    await nft(receiver, `table inet hpolcount\ndelete table inet hpolcount\ntable inet hpolcount {\n${counters.join("\n")}\n  chain pre {\n    type filter hook prerouting priority -400; policy accept;\n${rules.join("\n")}\n  }\n}\n`);
  }
  async function counted(receiver: string, sources: string[]): Promise<Record<string, number>> {
    const j = JSON.parse((await lab.exec(receiver, ["nft", "-j", "list", "counters", "table", "inet", "hpolcount"])).stdout) as { nftables: Array<{ counter?: { name: string; packets: number } }> };
    const by = Object.fromEntries(j.nftables.filter((o) => o.counter).map((o) => [o.counter!.name, o.counter!.packets]));
    return Object.fromEntries(sources.flatMap((a, i) => [FORGED, OWN].map((sp) => [`${a}:${sp}`, by[`c${i}_${sp}`] ?? 0])));
  }
  const rawSend = (from: string, proto: "udp" | "tcp", src: string, dst: string, dport: number, count: number, sport: number) =>
    lab.exec(from, [process.execPath, RAW_SEND, proto, src, dst, String(dport), String(count), String(sport)]);

  test.each([
    ["cli", "udp", "srv", "oth", 9999],
    ["cli", "udp", "rcli", "oth", 9999],
    ["cli", "udp", FOREIGN, "oth", 9999],
    ["cli", "udp", "srv", "rcli", 9999],
    ["cli", "udp", FOREIGN, "rcli", 9999],
    ["cli", "tcp", "oth", "rcli", PORT],
    // past the policy: cli's address is a client's, which srv and rsrv admit on TCP 8080
    ["oth", "tcp", "cli", "srv", PORT],
    ["oth", "tcp", "rcli", "srv", PORT],
    ["oth", "tcp", "cli", "rsrv", PORT],
  ] as const)("spoofing: %s sends %s with the source of %s to %s: dropped (the sender's own packets arrive)", async (from, proto, forged, to, dport) => {
    const src = forged === FOREIGN ? FOREIGN : ip(forged);
    // the barrier, sent after the forged packets until it arrives: the sender's own packets,
    // or where the receiver is isolated a client's on TCP 8080 (which the policy admits)
    const isolated = to === "srv" || to === "rsrv";
    const barrier = isolated ? "cli" : from;
    const sources = [...new Set([src, ip(barrier)])];
    await countAt(to, sources);
    await rawSend(from, proto, src, ip(to), dport, 5, FORGED);
    const got = await waitFor(`${barrier}'s own packets at ${to}`, async () => {
      await rawSend(barrier, isolated ? "tcp" : proto, ip(barrier), ip(to), isolated ? PORT : dport, 1, OWN);
      const c = await counted(to, sources);
      return c[`${ip(barrier)}:${OWN}`]! > 0 && c;
    }, 10_000, 100);
    expect({ forgedArrived: got[`${src}:${FORGED}`] }).toEqual({ forgedArrived: 0 });
  }, 30_000);

  test("a flood of denied packets is counted whole and logged once per policy per interval (1 s), not per packet", async () => {
    const mark = agentLog("n1").length;
    const t0 = Date.now();
    await rawSend("oth", "tcp", ip("oth"), ip("srv"), PORT, 3000, 43000);
    const drops = () => agentLog("n1").slice(mark).split("\n").filter((l) => l.includes("NetworkPolicy default/srv-in dropped")).map((l) => JSON.parse(l) as { dropped: number; time: number });
    await waitFor("the drops logged", () => drops().reduce((n, d) => n + d.dropped, 0) >= 3000, 10_000, 100);
    const lines = drops();
    const seconds = (Date.now() - t0) / 1000;
    expect(lines.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(lines.reduce((n, d) => n + d.dropped, 0)).toBeGreaterThanOrEqual(3000);
  }, 30_000);

  /** probes every 100 ms while `during` runs: denied pairs that got through, allowed that failed */
  async function probing<T>(during: () => Promise<T>): Promise<{ result: T; leaked: string[]; failed: number; probes: number }> {
    let stop = false;
    const leaked: string[] = [];
    let failed = 0;
    let probes = 0;
    const loop = async (from: string, to: string, want: boolean) => {
      while (!stop) {
        const t = Date.now();
        const r = await lab.connect(from, "tcp", ip(to), PORT, 1000);
        probes++;
        if (r.ok && !want) leaked.push(`${from} -> ${to} at ${new Date().toISOString()}`);
        if (!r.ok && want) failed++;
        await Bun.sleep(Math.max(0, 100 - (Date.now() - t)));
      }
    };
    // each probe is a process; two loops are what a shared machine keeps near 100 ms
    const loops = [loop("oth", "srv", false), loop("cli", "srv", true)];
    try {
      return { result: await during(), leaked, failed, probes };
    } finally {
      stop = true;
      await Promise.all(loops);
    }
  }

  test.each(["SIGKILL", "SIGTERM"] as const)("the agent of n1 stopped by %s while policies are in force: nothing opens while it is down, a policy written meanwhile is in force after its restart", async (signal) => {
    const r = await probing(async () => {
      await c.stopAgent("n1", { signal });
      await reach(TAMPER_CHECKS);
      await put(OTH_IN());
      await c.startAgent("n1", [], { ready: "cluster state listed" });
      await settles([["srv", "tcp", "oth", true], ["cli", "tcp", "oth", false], ["oth", "tcp", "srv", false], ["cli", "tcp", "srv", true]]);
    });
    await del("oth-in");
    await settles(BASELINE);
    repairsLog.push(`agent ${signal}: ${r.probes} probes, ${r.leaked.length} denied got through, ${r.failed} allowed failed`);
    expect(r.leaked).toEqual([]);
    expect(r.probes).toBeGreaterThan(3);
  }, 60_000);

  test("mark masks the agent cannot work with are refused at start, naming the flag", async () => {
    lab.host("scratch");
    const bad: Array<[string, string]> = [
      ["--mark-mask", "0x0f0f0000"],
      ["--mark-mask", "0x7f"],
      ["--mark-mask", "-1"],
      ["--mark-mask", "0x1ffffffff"],
      ["--ct-mark-mask", "0xff"],
      ["--ct-mark-mask", "0"],
      ["--ct-mark-mask", "0xffff00ff"],
      ["--ct-mark-mask", "ffff0000x"],
    ];
    const wrong: string[] = [];
    await Promise.all(bad.map(async ([flag, v]) => {
      const r = await lab.exec("scratch", [builtSkein(), "agent", "--kubeconfig", `${tmp}/none`, "--node-name", "x", "--node-file", `${tmp}/scratch-node.json`, flag, v], { allowFail: true, timeoutMs: 15_000 });
      if (r.exitCode === 0 || !r.stderr.includes(flag)) wrong.push(`${flag} ${v}: exit ${r.exitCode}, ${r.stderr.trim().split("\n")[0]}`);
    }));
    expect(wrong).toEqual([]);
  }, 30_000);

  test("n2's agent on narrow marks (255 identities) keeps its pods' verdicts when another namespace's 270 pods of distinct labels exhaust the identities, and after a restart", async () => {
    const NARROW = ["--mark-mask", "0x0000ff00", "--ct-mark-mask", "0x000001ff"];
    const n2: Check[] = [["cli", "tcp", "rsrv", true], ["oth", "tcp", "rsrv", false], ["rcli", "tcp", "srv", true], ["rsrv", "tcp", "oth", true]];
    await c.stopAgent("n2");
    await c.startAgent("n2", NARROW, { ready: "cluster state listed" });
    const ghosts = Array.from({ length: 270 }, (_, i) => `g${i}`);
    try {
      await settles(n2);
      await c.api.create("/api/v1/namespaces", { metadata: { name: "aaa" } }).catch(() => {});
      const mark = agentLog("n2").length;
      for (let i = 0; i < ghosts.length; i += 50) {
        await Promise.all(ghosts.slice(i, i + 50).map(async (g, k) => {
          const n = i + k;
          await c.api.create("/api/v1/namespaces/aaa/pods", { metadata: { name: g, labels: { g } }, spec: { nodeName: "elsewhere", containers: [{ name: "x", image: "x" }] } });
          const addr = `10.244.${9 + Math.floor(n / 200)}.${(n % 200) + 1}`;
          await c.api.request("PATCH", `/api/v1/namespaces/aaa/pods/${g}/status`, { status: running([addr]) }, "application/merge-patch+json");
        }));
      }
      await logged("n2", ["identity limit"], 15_000, mark);
      await reach(n2);
      // a restart compiles from nothing: the pods that held identities must keep them
      await c.stopAgent("n2");
      await c.startAgent("n2", NARROW, { ready: "cluster state listed" });
      await settles(n2);
    } finally {
      for (let i = 0; i < ghosts.length; i += 50) await Promise.all(ghosts.slice(i, i + 50).map((g) => c.api.delete(`/api/v1/namespaces/aaa/pods/${g}?gracePeriodSeconds=0`).catch(() => {})));
      if (c.agents.has("n2")) await c.stopAgent("n2");
      await c.startAgent("n2", [], { ready: "cluster state listed" });
    }
    await settles(BASELINE);
  }, 90_000);

  describe("skein tables --state with hostile files", () => {
    const podObj = (name: string, addr: string, labels: Record<string, string>, node = "n1", ns = "default") => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: ns, labels }, spec: { nodeName: node, containers: [{ name: "c", image: "x" }] }, status: { phase: "Running", podIP: addr, podIPs: [{ ip: addr }] } });
    const npObj = (name: string, spec: unknown, ns = "default") => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: ns }, spec });
    const SERVERS = { podSelector: { matchLabels: { role: "server" } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: [{ port: PORT }] }] };
    async function tables(items: unknown, extra: string[] = [], raw?: string) {
      const file = `${tmp}/state-${Math.random().toString(36).slice(2)}.json`;
      writeFileSync(file, raw ?? JSON.stringify({ apiVersion: "v1", kind: "List", items }));
      const t0 = Date.now();
      const r = await lab.exec("scratch2", [builtSkein(), "tables", "--state", file, "--node-name", "n1", ...extra], { allowFail: true, timeoutMs: 60_000 });
      return { ...r, ms: Date.now() - t0 };
    }
    beforeAll(() => {
      lab.host("scratch2");
    });

    test("two objects of one kind, namespace and name are reported, not both put in force under one name", async () => {
      const r = await tables([
        podObj("a", "10.244.1.2", { role: "server" }),
        podObj("b", "10.244.1.3", { role: "client" }),
        podObj("b", "10.244.1.4", { role: "server" }),
        npObj("p", SERVERS),
        npObj("p", { podSelector: {}, ingress: [] }),
      ]);
      expect(r.stdout + r.stderr).toMatch(/NetworkPolicy default\/p\b.*(duplicate|twice|more than once|again|a second object)/i);
      expect(r.stdout + r.stderr).toMatch(/Pod default\/b\b.*(duplicate|twice|more than once|again|a second object)/i);
    }, 30_000);

    test("deep nesting, wrong kinds and wrong shapes are reported by object; the valid objects beside them still compile", async () => {
      const deep = await tables(undefined, [], "[".repeat(200_000) + "]".repeat(200_000));
      expect(deep.stderr).not.toMatch(/RangeError|Maximum call stack|panic|Segmentation/);
      expect(deep.exitCode).not.toBe(0);
      const r = await tables([
        42,
        "x",
        null,
        [],
        { kind: "NetworkPolicy", metadata: { name: "noversion", namespace: "default" }, spec: SERVERS },
        { apiVersion: "networking.k8s.io/v2", kind: "NetworkPolicy", metadata: { name: "v2", namespace: "default" }, spec: SERVERS },
        { apiVersion: "v1", kind: "NetworkPolicy", metadata: { name: "core", namespace: "default" }, spec: SERVERS },
        { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "nons" }, spec: SERVERS },
        { apiVersion: "v1", kind: "Pod", metadata: { name: "shape", namespace: "default" }, spec: "x", status: 7 },
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "default", labels: "x" } },
        podObj("a", "10.244.1.2", { role: "server" }),
        podObj("b", "10.244.1.3", { role: "client" }),
        npObj("good", SERVERS),
      ], ["--json"]);
      expect(r.stderr).not.toMatch(/RangeError|TypeError|at .*\.ts:\d+/);
      const t = JSON.parse(r.stdout) as { policy: { allowIngress: Array<{ policies: string[] }> } };
      // without a namespace it is in "default", as kubectl would put it; without an apiVersion
      // it is read as the one its kind has (a hand-written file), a wrong one is refused
      expect([...new Set(t.policy.allowIngress.flatMap((e) => e.policies))].sort()).toEqual(["default/good", "default/nons", "default/noversion"]);
      const unreported = ["v2", "core", "shape"].filter((name) => !r.stderr.includes(name));
      expect(unreported, `stderr: ${r.stderr}`).toEqual([]);
    }, 30_000);

    test("a huge policy (1,000,000 ports, 20 MB) is refused by its bound, quickly, naming it", async () => {
      const r = await tables([podObj("a", "10.244.1.2", { role: "server" }), npObj("huge", { podSelector: {}, ingress: [{ ports: Array.from({ length: 1_000_000 }, (_, i) => ({ port: (i % 65535) + 1 })) }] })]);
      expect(r.stdout + r.stderr).toContain("NetworkPolicy default/huge");
      expect(r.ms).toBeLessThan(15_000);
    }, 60_000);

    test("its --nft output for the live pods, with the longest names and labels Kubernetes allows, loads alone into a fresh namespace and holds the policy", async () => {
      const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
      const v = "v".repeat(63);
      const items = [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "default", labels: { [`${"p".repeat(200)}/${"k".repeat(63)}`]: v } } },
        ...LAYOUT.map(([node, name, role]) => podObj(name, ip(name), { role, [`x.io/${"k".repeat(63)}`]: v }, node)),
        npObj(long, { ...SERVERS, ingress: [{ ...SERVERS.ingress[0], from: [{ namespaceSelector: { matchLabels: { [`${"p".repeat(200)}/${"k".repeat(63)}`]: v } }, podSelector: { matchLabels: { role: "client" } } }] }] }),
      ];
      const r = await tables(items, ["--nft"]);
      expect(r.exitCode).toBe(0);
      lab.host("fresh");
      const load = await lab.exec("fresh", ["nft", "-f", "-"], { stdin: r.stdout, allowFail: true });
      expect(load.stderr).toBe("");
      const listed = (await lab.exec("fresh", ["nft", "list", "table", "inet", "skein"])).stdout;
      expect(listed).toContain("chain pol_forward");
      expect(listed).toContain(ip("srv"));
    }, 30_000);
  });
});
