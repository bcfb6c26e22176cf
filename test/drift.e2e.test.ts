// Someone else changes the node's tables while the agent runs (an operator's `nft delete
// table`, `nft flush ruleset` as a firewall reload does, a deleted chain or map element): the
// agent hears it, restores the tables, and traffic through a ClusterIP is right again within
// 2 s; the next EndpointSlice change still reaches the datapath. The CNI plugin's masquerade
// table is put back too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { SKEIN, pluginDir, useLab, useTempDir, waitFor, spawnApiServer, spawnAgent } from "./harness/index.ts";
import { ApiDriver } from "../testing/apiserver/driver.ts";

const lab = useLab("drift");
const tmp = useTempDir("drift");
const TOKEN = "e2e-token";
const api = new ApiDriver(`${tmp}/api.sock`, TOKEN);
const list: Conflist = { cniVersion: "1.1.0", name: "driftnet", plugins: [{ type: "skein", podCIDRs: ["10.244.7.0/24"], clusterCIDRs: ["10.244.0.0/16"], dataDir: `${tmp}/ipam` }] };
const pods = ["b1", "b2"];
const ips: Record<string, string> = {};
let apiserver: Awaited<ReturnType<typeof lab.spawn>>;
let agent: Awaited<ReturnType<typeof lab.spawn>>;

const SVC = "/api/v1/namespaces/default/services";
const EPS = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const VIP = "10.96.0.10";

const slice = (members: string[]) => ({
  metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
  addressType: "IPv4",
  ports: [{ name: "http", port: 8080 }, { name: "dns", port: 8080, protocol: "UDP" }],
  endpoints: members.map((p) => ({ addresses: [ips[p]], conditions: { ready: true }, nodeName: "node", targetRef: { kind: "Pod", name: p, namespace: "default" } })),
});

/** The pods that answer `proto` connections to the ClusterIP, over a few tries. */
async function answering(proto: "tcp" | "udp", tries = 10): Promise<string> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const r = await lab.connect("client", proto, VIP, proto === "tcp" ? 80 : 53, 300);
    if (r.ok) seen.add(r.answer.split(" ")[0]!);
  }
  return [...seen].sort().join();
}

const all = pods.map((p) => `pod-${p}`).join();
const nft = async (...args: string[]) => (await lab.exec("node", ["nft", ...args])).stdout;

beforeAll(async () => {
  lab.host("cp");
  lab.host("node");
  lab.wire({ ns: "cp", addr: "198.18.2.1/24" }, { ns: "node", addr: "198.18.2.2/24" });
  await lab.exec("node", ["ip", "route", "add", "default", "via", "198.18.2.1"]);
  const cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
  for (const p of [...pods, "client"]) ips[p] = (await lab.pod(p, cni, list)).ip;
  for (const p of pods) await lab.serve(p, { name: `pod-${p}`, tcp: 8080, udp: 8080 });
  apiserver = await spawnApiServer(lab, "cp", tmp, "198.18.2.1:6443", TOKEN);
  await api.create("/api/v1/nodes", { metadata: { name: "node" }, spec: { podCIDRs: ["10.244.7.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.2.2" }] } });
  await api.create(SVC, { metadata: { name: "web" }, spec: { clusterIP: VIP, ports: [{ name: "http", port: 80, targetPort: "http" }, { name: "dns", port: 53, protocol: "UDP", targetPort: "dns" }] } });
  await api.create(EPS, slice(pods));
  await startAgent();
  await waitFor("both pods answer", async () => (await answering("tcp")) === all, 5000, 20);
}, 60_000);

/** ms from each edit to TCP and UDP through the ClusterIP again */
const repairs: number[] = [];

afterAll(() => {
  console.log(`drift e2e: ClusterIP right again after ${repairs.join(", ")} ms`);
  if (process.env.E2E_DEBUG) console.log("AGENT", agent?.out.text.slice(-5000));
  agent?.proc.kill("SIGKILL");
  apiserver?.proc.kill("SIGKILL");
});

async function startAgent(): Promise<void> {
  agent = await spawnAgent(lab, tmp);
}

/** The agent's output so far, read to its end (its output is read only as it is waited for). */
async function drained(): Promise<number> {
  await agent.out.until("\u0000", 200);
  return agent.out.text.length;
}

/** One connection through the ClusterIP answered, over `proto`. */
const connects = async (proto: "tcp" | "udp") => (await lab.connect("client", proto, VIP, proto === "tcp" ? 80 : 53, 150)).ok;

/** After `edit` in the node's namespace: right again within 2 s (TCP and UDP), the agent
 * said what it found, and a slice change still reaches the datapath. */
async function survives(edit: () => Promise<unknown>, found: RegExp): Promise<void> {
  const logged = await drained();
  await edit();
  const t0 = performance.now();
  await waitFor("TCP and UDP through the ClusterIP again", async () => (await connects("tcp")) && (await connects("udp")), 2000, 10);
  const ms = performance.now() - t0;
  repairs.push(Math.round(ms));
  expect(ms).toBeLessThan(2000);
  // and both backends answer
  await waitFor("both pods answer through the ClusterIP (TCP)", async () => (await answering("tcp", 6)) === all, 2000, 10);
  await waitFor("both pods answer through the ClusterIP (UDP)", async () => (await answering("udp", 6)) === all, 2000, 10);
  expect(await agent.out.until("restoring the whole table", 2000, logged)).toBe("found");
  expect(agent.out.text.slice(logged)).toMatch(found);
  await api.replace(`${EPS}/web-1`, (o) => ({ ...o, endpoints: slice(["b2"]).endpoints }));
  await waitFor("only b2 answers after the slice change", async () => (await answering("tcp", 6)) === "pod-b2", 2000, 10);
  await api.replace(`${EPS}/web-1`, (o) => ({ ...o, endpoints: slice(pods).endpoints }));
  await waitFor("both answer again", async () => (await answering("tcp", 10)) === all, 2000, 10);
}

describe("the agent restores what someone else changes", () => {
  test("the table deleted", async () => {
    await survives(() => nft("delete", "table", "inet", "skein"), /"deleted the table by nft \(pid \d+\)"/);
  }, 20_000);

  test("the whole ruleset flushed: both skein's table and the CNI's masquerade table come back", async () => {
    const masq = await nft("list", "table", "inet", "skein_cni");
    expect(masq).toContain("masquerade");
    await survives(() => nft("flush", "ruleset"), /"deleted the table by nft \(pid \d+\)"/);
    await waitFor("the masquerade table back as it was", async () => (await nft("list", "table", "inet", "skein_cni")) === masq, 2000, 20);
    expect(await agent.out.until("the masquerade table was missing: restored", 2000)).toBe("found");
  }, 20_000);

  test("one service chain deleted", async () => {
    const svc4 = await nft("list", "map", "inet", "skein", "svc4");
    const m = new RegExp(`${VIP.replace(/\./g, "\\.")} \\. tcp \\. 80 : goto (t_\\d+)`).exec(svc4);
    expect(m).not.toBeNull();
    const chain = m![1]!;
    // the chain is referenced by the map element: both go in one transaction, as a person would do it
    await survives(() => lab.exec("node", ["nft", "-f", "-"], { stdin: `delete element inet skein svc4 { ${VIP} . tcp . 80 }\ndelete chain inet skein ${chain}\n` }), new RegExp(`deleted chain ${chain}`));
  }, 20_000);

  test("one map element deleted", async () => {
    await survives(() => nft("delete", "element", "inet", "skein", "svc4", "{", VIP, ".", "udp", ".", "53", "}"), /deleted elements of svc4/);
  }, 20_000);

  test("a ring chain's rule deleted (flush chain)", async () => {
    const ring = /chain (ring4_\d_\d+)/.exec(await nft("list", "table", "inet", "skein"))![1]!;
    await survives(() => nft("flush", "chain", "inet", "skein", ring), new RegExp(`deleted a rule of chain ${ring}`));
  }, 20_000);

  test("changes to other tables are left alone: no restore", async () => {
    const logged = await drained();
    await nft("add", "table", "inet", "someone_else");
    await nft("add", "chain", "inet", "someone_else", "c");
    await nft("delete", "table", "inet", "someone_else");
    // a change of skein's after it, to know the agent has read past them
    await api.replace(`${EPS}/web-1`, (o) => ({ ...o, endpoints: slice(["b1"]).endpoints }));
    await waitFor("only b1 answers", async () => (await answering("tcp", 6)) === "pod-b1", 2000, 10);
    await api.replace(`${EPS}/web-1`, (o) => ({ ...o, endpoints: slice(pods).endpoints }));
    await waitFor("both answer again", async () => (await answering("tcp", 10)) === all, 2000, 10);
    expect(await agent.out.until("restoring the whole table", 500, logged)).toBe("timeout");
  }, 20_000);

  test("a change made while notifications were lost (the listener overflowed) is put right: the table compared, then every rule and ring written anew", async () => {
    const logged = await drained();
    const t1 = /goto (t_\d+)/.exec(await nft("list", "map", "inet", "skein", "svc4"))![1]!;
    const handle = /# handle (\d+)/.exec((await nft("-a", "list", "chain", "inet", "skein", t1)).split("\n").find((l) => l.includes("goto"))!)![1]!;
    // one transaction: 100,000 elements into a table of someone else's (more notifications than
    // the listener's buffer holds), and the Service's target chain made to drop
    const elements = Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const script = ["add table inet noise", "add set inet noise s { type ipv4_addr; size 200000; }", `add element inet noise s { ${elements.join(", ")} }`, `replace rule inet skein ${t1} handle ${handle} drop`, ""].join("\n");
    await lab.exec("node", ["nft", "-f", "-"], { stdin: script, timeoutMs: 60_000 });
    await waitFor("TCP through the ClusterIP again", async () => connects("tcp"), 5000, 20);
    expect(await agent.out.until("compared table inet skein with the kernel", 2000, logged)).toBe("found");
    // the 100,000 notifications either overflow the listener's buffer or, read as they come,
    // pass the count it lists: a doubt either way
    expect(agent.out.text.slice(logged)).toMatch(/dropped nftables notifications|objects more than the notifications list/);
    expect(await agent.out.until('"kind":"rebuild"', 2000, logged)).toBe("found");
    expect(await answering("tcp")).toBe(all);
    await nft("delete", "table", "inet", "noise");
  }, 60_000);

  test("what was changed while no agent ran is found at start (even a base chain set to drop the agent's own traffic): the table is deleted at once and made new, and the masquerade table written anew", async () => {
    agent.proc.kill("SIGTERM");
    expect(await agent.proc.exited).toBe(0);
    const masq = await nft("list", "table", "inet", "skein_cni");
    await lab.exec("node", ["nft", "-f", "-"], {
      stdin: [
        "add chain inet skein evil { type filter hook prerouting priority -300; policy accept; }",
        // a base chain made to drop everything: the agent's own way to the API server too
        "add chain inet skein reject_output { type filter hook output priority -110; policy drop; }",
        `add rule inet skein evil ip daddr ${VIP} tcp dport 80 drop`,
        `insert rule inet skein nat_prerouting ip daddr ${VIP} udp dport 53 drop`,
        "add set inet skein extra { type ipv4_addr; }",
        "flush chain inet skein_cni postrouting",
        "",
      ].join("\n"),
    });
    expect(await connects("tcp")).toBe(false);
    await startAgent();
    expect(agent.out.text).toContain("changed while no agent ran: deleted");
    expect(agent.out.text).toContain("chain evil is not skein's");
    await waitFor("TCP and UDP through the ClusterIP again", async () => (await connects("tcp")) && (await connects("udp")), 3000, 20);
    expect(await nft("list", "table", "inet", "skein_cni")).toBe(masq);
    const table = await nft("list", "table", "inet", "skein");
    expect(table).not.toContain("evil");
    expect(table).not.toContain("extra");
  }, 30_000);

  test("a second agent in the same namespace is refused, naming the first; the first goes on", async () => {
    const r = await lab.exec("node", [SKEIN, "agent", "--kubeconfig", `${tmp}/kubeconfig`, "--node-name", "node", "--node-file", `${tmp}/node2.json`], { allowFail: true, timeoutMs: 10_000 });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`another skein agent \\(pid ${agent.proc.pid}\\) already runs in this network namespace`));
    expect(await answering("tcp")).toBe(all);
  }, 20_000);
});

describe("without CAP_NET_ADMIN", () => {
  test("the agent stops at once with an error that names the capability, not a hang", async () => {
    const t0 = performance.now();
    const r = await lab.exec("cp", ["setpriv", "--inh-caps=-all", "--bounding-set=-all", SKEIN, "agent", "--kubeconfig", `${tmp}/kubeconfig`, "--node-name", "node", "--node-file", `${tmp}/node3.json`, "--verify-interval", "1"], { allowFail: true, timeoutMs: 10_000 });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("CAP_NET_ADMIN");
    expect(performance.now() - t0).toBeLessThan(5000);
  }, 20_000);
});
