// `skein cleanup` after a full run: three nodes on the lab underlay (testing/multinode.ts: n1
// and n2 on one subnet, n3 behind a router, so n1 reaches n2 directly and n3 over VXLAN), an
// agent per node, pods wired by skein's CNI, a Service and a NetworkPolicy in force. With n1's
// agent killed, cleanup in n1's namespace must leave nothing of skein's there (asserted by
// listing what the kernel and the disk hold), its dry run must list each of those things and
// change nothing, and an agent must then start cleanly there and a pod ADD work. Also: the
// refusal while an agent runs, and what only looks like skein's surviving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { encode } from "cbor-x/encode";
import { buildUnderlay, startCluster, type Cluster } from "../testing/multinode.ts";
import { builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";
import { lockHolder } from "../agent/sys/flock.ts";

const lab = useLab("cln");
const tmp = useTempDir("cln");
let c: Cluster;
const VIP = "10.96.0.50";
/** a route of someone else's inside n1's pod CIDR */
const FOREIGN_ROUTE = "10.244.1.200/32";
/** a veth with the form of a host veth's name whose peer stays in the node's namespace */
const LOOKALIKE = "sk00000000000aa";

beforeAll(async () => {
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2", "n3"] });
  c = await startCluster({ underlay: u, dir: tmp, pods: 1 });
  await lab.serve("n3-p1", { name: "n3-p1", tcp: 8080 });
  const backend = c.pods.get("n3-p1")!;
  await c.api.create("/api/v1/namespaces/default/services", { apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { type: "ClusterIP", clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }] } });
  await c.api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    endpoints: [{ addresses: [backend.ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: "n3", targetRef: { kind: "Pod", namespace: "default", name: backend.name } }],
  });
  await c.api.create("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "probes-only", namespace: "default" },
    spec: { podSelector: { matchLabels: { app: "probe" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { app: "probe" } } }], ports: [{ protocol: "TCP", port: 8080 }] }] },
  });
  // the whole datapath in force: n1's pod reaches the Service's backend on n3 over VXLAN, through the policy
  await waitFor("n1-p1 to reach the Service on n3", async () => (await lab.connect("n1-p1", "tcp", VIP, 80, 1000)).ok, 20_000, 200);
}, 120_000);

afterAll(async () => {
  await c?.stop();
});

const j = async (ns: string, argv: string[]) => JSON.parse((await lab.exec(ns, argv)).stdout || "[]") as Array<Record<string, any>>;

/** The network namespace identity that names a node's lock and socket files in /run/skein. */
function nsId(ns: string): string {
  const s = statSync(lab.path(ns), { bigint: true });
  return `${s.dev}-${s.ino}`;
}

/** What a node's namespace holds, as nft, ip and bridge list it. */
async function listing(ns: string) {
  const tables = (await lab.exec(ns, ["nft", "list", "tables"])).stdout.trim().split("\n").filter(Boolean).sort();
  const links = (await j(ns, ["ip", "-j", "-d", "link", "show"])).map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? "-"}`).sort();
  const skeinRoutes = [...(await j(ns, ["ip", "-j", "-4", "route", "show", "proto", "0x56"])), ...(await j(ns, ["ip", "-j", "-6", "route", "show", "proto", "0x56"]))].map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort();
  const routes = [...(await j(ns, ["ip", "-j", "-4", "route", "show"])), ...(await j(ns, ["ip", "-j", "-6", "route", "show"]))].map((r) => `${r.dst} dev ${r.dev} proto ${r.protocol}`).sort();
  const fdb = (await j(ns, ["bridge", "-j", "fdb", "show"])).filter((f) => f.ifname === "skein.vxlan").map((f) => `${f.mac} dst ${f.dst}`).sort();
  const neigh = (await j(ns, ["ip", "-j", "neigh", "show"])).filter((n) => n.dev === "skein.vxlan" && (n.state as string[]).includes("PERMANENT")).map((n) => `${n.dst} lladdr ${n.lladdr}`).sort();
  return { tables, links, skeinRoutes, routes, fdb, neigh };
}

interface Entry {
  kind: string;
  name: string;
  action: string;
  with?: string;
  reason?: string;
}

describe("skein cleanup after a full run", () => {
  const node = () => c.nodeDir("n1");
  const cmd = () => [builtSkein(), "cleanup", "--no-namespaces", "--node-file", `${node()}/node.json`, "--data-dir", `${node()}/ipam`];
  /** the node file, the CNI's IPAM state and lock, the agent's lock and HTTP socket and the CNI's namespace lock */
  const files = () => [`${node()}/node.json`, `${node()}/ipam/skein.cbor`, `${node()}/ipam/skein.lock`, `/run/skein/agent-${nsId("n1")}.lock`, `/run/skein/agent-${nsId("n1")}.sock`, `/run/skein/cni-${nsId("n1")}.lock`];

  test("refused while the node's agent runs, naming its pid; nothing changed", async () => {
    const before = await listing("n1");
    const pid = c.agents.get("n1")!.proc.pid;
    for (const extra of [[], ["--dry-run"]]) {
      const r = await lab.exec("n1", [...cmd(), ...extra], { allowFail: true });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`a skein agent (pid ${pid}) runs in this network namespace (it holds /run/skein/agent-${nsId("n1")}.lock)`);
      expect(r.stdout).toBe("");
    }
    expect(await listing("n1")).toEqual(before);
    expect(before.tables).toContain("table inet skein");
  }, 30_000);

  test("--dry-run lists every table, route, the device with its FDB and neighbour entries, host veth and state file, and changes nothing; cleanup then leaves none, and only those", async () => {
    // someone else's things in the node's namespace and its IPAM directory
    await lab.exec("n1", ["ip", "route", "add", FOREIGN_ROUTE, "dev", "eth0", "proto", "static"]);
    await lab.exec("n1", ["nft", "add", "table", "inet", "keepme"]);
    await lab.exec("n1", ["ip", "link", "add", LOOKALIKE, "type", "veth", "peer", "name", "skpeer0"]);
    writeFileSync(`${node()}/ipam/notes.txt`, "not skein's\n");
    // killed, so that its lock file stays behind as after a crash
    await c.stopAgent("n1", { signal: "SIGKILL" });
    const before = await listing("n1");
    const veths = before.links.filter((l) => /^sk[0-9a-f]{13} veth$/.test(l) && !l.startsWith(LOOKALIKE)).map((l) => l.split(" ")[0]!);
    expect(veths).toHaveLength(1);
    expect(before.tables).toEqual(["table inet keepme", "table inet skein", "table inet skein_cni"]);
    expect(before.links).toContain("skein.vxlan vxlan");
    expect(before.skeinRoutes).toHaveLength(2); // n2's pod CIDR directly, n3's over VXLAN
    expect(before.fdb).toHaveLength(1);
    expect(before.neigh).toHaveLength(1);
    for (const f of files()) expect(existsSync(f)).toBe(true);

    const dry = await lab.exec("n1", [...cmd(), "--dry-run", "--json"]);
    const listed = JSON.parse(dry.stdout) as Entry[];
    const would = (kind: string, along?: string) => listed.filter((e) => e.kind === kind && e.action === "would-remove" && e.with === along).map((e) => e.name).sort();
    expect(would("table")).toEqual(["inet skein", "inet skein_cni"]);
    expect(would("route")).toEqual(before.skeinRoutes.map((r) => r.split(" ")[0]!).sort());
    expect(would("link")).toEqual(["skein.vxlan", ...veths].sort());
    expect(would("fdb", "link skein.vxlan")).toEqual(before.fdb);
    expect(would("neighbour", "link skein.vxlan")).toEqual(before.neigh);
    expect(would("route", `link ${veths[0]}`)).toEqual([`${c.pods.get("n1-p1")!.ip}/32`]);
    expect(would("file")).toEqual(files().sort());
    expect(would("directory")).toEqual([`${node()}/ipam/containers`]);
    const left = listed.filter((e) => e.action === "left-alone").map((e) => `${e.kind} ${e.name}`).sort();
    expect(left).toEqual([`file ${node()}/ipam/notes.txt`, `link ${LOOKALIKE}`, `route ${FOREIGN_ROUTE}`]);
    expect(listed.some((e) => e.name.includes("keepme"))).toBe(false);
    // nothing changed
    expect(await listing("n1")).toEqual(before);
    for (const f of files()) expect(existsSync(f)).toBe(true);

    const t0 = performance.now();
    const r = await lab.exec("n1", cmd(), { allowFail: true });
    console.log(`skein cleanup in n1 (one pod, two peers, ${listed.length} things listed): ${(performance.now() - t0).toFixed(0)} ms, process start included`);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("removed nftables table inet skein\n");
    expect(r.stdout).toContain(`removed link ${veths[0]}\n`);
    expect(r.stdout).toContain("removed FDB entry ");
    expect(r.stdout).toContain(`left alone: route ${FOREIGN_ROUTE}: its protocol is 4, not skein's 86`);
    const after = await listing("n1");
    expect(after.tables).toEqual(["table inet keepme"]);
    expect(after.skeinRoutes).toEqual([]);
    expect(after.fdb).toEqual([]);
    expect(after.neigh).toEqual([]);
    expect(after.links.filter((l) => l.startsWith("sk"))).toEqual([`${LOOKALIKE} veth`, "skpeer0 veth"]);
    // what was not skein's is all still there, and nothing else went
    expect(after.links).toEqual(before.links.filter((l) => l !== "skein.vxlan vxlan" && !veths.includes(l.split(" ")[0]!)));
    expect(after.routes).toContain(`${FOREIGN_ROUTE.replace("/32", "")} dev eth0 proto static`); // ip prints a /32 bare
    expect(after.routes.filter((r) => veths.some((v) => r.includes(`dev ${v} `)) || r.includes("skein.vxlan"))).toEqual([]);
    for (const f of files()) expect(existsSync(f)).toBe(false);
    expect(readdirSync(`${node()}/ipam`)).toEqual(["notes.txt"]);

    // a second run finds nothing more of skein's
    const again = JSON.parse((await lab.exec("n1", [...cmd(), "--json"])).stdout) as Entry[];
    expect(again.filter((e) => e.action !== "left-alone")).toEqual([]);
  }, 60_000);

  test("an agent then starts cleanly there, programs its tables and the overlay again, and a pod ADD works", async () => {
    await c.startAgent("n1");
    const now = await listing("n1");
    expect(now.tables).toContain("table inet skein");
    expect((await lab.exec("n1", ["nft", "list", "table", "inet", "skein"])).stdout).toContain(VIP);
    const p = await c.addPod("n1", "n1-new");
    expect(p.ip.startsWith("10.244.1.")).toBe(true);
    await waitFor("the new pod to reach the Service's backend on n3 over VXLAN", async () => (await lab.connect("n1-new", "tcp", VIP, 80, 1000)).ok, 20_000, 200);
    expect((await listing("n1")).fdb).toHaveLength(1);
    // and serves its API on the socket cleanup removed, where `skein status` finds it
    const st = await lab.exec("n1", [builtSkein(), "status", "--json"]);
    expect(JSON.parse(st.stdout)).toMatchObject({ node: "n1" });
  }, 60_000);
});

describe("what only looks like skein's", () => {
  test("survives cleanup, reported as left alone with the reason; an agent lock held by another process refuses cleanup, and --force leaves that lock", async () => {
    lab.host("solo");
    const dir = `${tmp}/solo`;
    mkdirSync(`${dir}/ipam`, { recursive: true });
    mkdirSync(`${dir}/run`, { recursive: true, mode: 0o700 });
    const sh = (...argv: string[]) => lab.exec("solo", argv);
    await sh("ip", "link", "add", "skein.vxlan", "type", "bridge");
    await sh("ip", "link", "add", "sk00000000000bb", "address", "ee:ee:ee:ee:ee:ee", "type", "veth", "peer", "name", "skpeer1");
    await sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1");
    await sh("ip", "addr", "add", "192.168.9.1/24", "dev", "eth0");
    await sh("ip", "link", "set", "eth0", "up");
    await sh("ip", "link", "set", "eth1", "up");
    await sh("ip", "route", "add", "10.244.7.9/32", "dev", "eth0", "proto", "static");
    await lab.exec("solo", ["nft", "-f", "-"], { stdin: 'add table inet skein\nadd table inet skein_cni { comment "mine"; }\nadd table inet skein_ref\n' });
    writeFileSync(`${dir}/node.json`, JSON.stringify({ podCIDRs: ["10.244.7.0/24"] }));
    writeFileSync(`${dir}/ipam/other.cbor`, encode({ format: "not-skein", version: 1 }));
    writeFileSync(`${dir}/ipam/x.lock`, "hello");
    const lock = `${dir}/run/agent-${nsId("solo")}.lock`;
    await lab.spawn("solo", ["flock", lock, "sleep", "600"]);
    await waitFor("the lock to be held", () => lockHolder(lock).state === "held", 5000, 20);
    const before = await listing("solo");
    const cmd = [builtSkein(), "cleanup", "--no-namespaces", "--node-file", `${dir}/node.json`, "--data-dir", `${dir}/ipam`, "--run-dir", `${dir}/run`];

    const refused = await lab.exec("solo", cmd, { allowFail: true });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe(`skein cleanup: a skein agent runs in this network namespace (it holds ${lock}): stop it first, or give --force to remove its datapath under it\n`);
    expect(existsSync(`${dir}/node.json`)).toBe(true);

    const r = await lab.exec("solo", [...cmd, "--force", "--json"], { allowFail: true });
    expect(r.exitCode).toBe(0);
    const out = (JSON.parse(r.stdout) as Entry[]).map((e) => `${e.action} ${e.kind} ${e.name}${e.reason ? `: ${e.reason}` : ""}`);
    expect(out).toEqual([
      "left-alone table inet skein: it lacks a comment recording skein's mark ranges: not made by this version of skein",
      'left-alone table inet skein_cni: it lacks a comment skein-masq-<fingerprint> (its comment is "mine"): not made by this version of skein',
      "left-alone table inet skein_ref: it lacks the dormant flag: not made by this version of skein",
      "left-alone link skein.vxlan: it is a bridge, not a VXLAN device: not skein's",
      "left-alone link sk00000000000bb: its peer is in this namespace, not in a pod's: not a pod's host veth of skein's",
      "left-alone route 10.244.7.9/32: its protocol is 4, not skein's 86 (10.244.7.9/32 dev eth0): not skein's",
      `removed file ${dir}/node.json`,
      `left-alone file ${dir}/ipam/other.cbor: its format is "not-skein", not skein-ipam: not IPAM state of skein's`,
      `left-alone file ${dir}/ipam/x.lock: not empty: not a lock file of skein's`,
      `left-alone file ${lock}: held by the running agent`,
    ]);
    const after = await listing("solo");
    expect(after).toEqual(before);
    for (const f of [`${dir}/ipam/other.cbor`, `${dir}/ipam/x.lock`, lock]) expect(existsSync(f)).toBe(true);
  }, 30_000);
});
