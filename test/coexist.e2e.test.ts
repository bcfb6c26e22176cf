// skein beside other software that marks packets, in namespaces: a foreign nftables table in
// the node's namespace marks the packets of a client pod and of an outside host before skein's
// chains (as a mesh, WireGuard or a kube-proxy left on the node would), counts after skein's
// chains whether its bits are still there, and policy routing sends those packets by that mark
// (the backends' host routes live only in the routing table the mark selects). The agent runs
// against `skein apiserver` as in agent.e2e.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import type { OutputWatcher } from "../testing/lab.ts";
import { SKEIN, pluginDir, useLab, useTempDir, waitFor, spawnApiServer, spawnAgent } from "./harness/index.ts";
import { ApiDriver } from "../testing/apiserver/driver.ts";

const lab = useLab("coexist");
const tmp = useTempDir("coexist");
const TOKEN = "e2e-token";
const api = new ApiDriver(`${tmp}/api.sock`, TOKEN);
const list: Conflist = { cniVersion: "1.1.0", name: "coexistnet", plugins: [{ type: "skein", podCIDRs: ["10.244.11.0/24"], clusterCIDRs: ["10.244.0.0/16"], dataDir: `${tmp}/ipam` }] };
const pods = ["b1", "b2"];
const ips: Record<string, string> = {};
let apiserver: Awaited<ReturnType<typeof lab.spawn>>;
let agent: Awaited<ReturnType<typeof lab.spawn>> | undefined;

/** The foreign mark: wg-quick's fwmark, in the low 16 bits (outside skein's default range). */
const FOREIGN = 0xca6c;
const FOREIGN_MASK = 0xffff;
/** the routing table the foreign mark selects */
const TABLE = 100;
const NODE_IP = "198.18.3.2";
const OUTSIDE_IP = "198.18.3.1"; // also the control plane's address

const SVC = "/api/v1/namespaces/default/services";
const EPS = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

async function startAgent(extra: string[] = []): Promise<OutputWatcher> {
  const a = await spawnAgent(lab, tmp, extra);
  agent = a;
  return a.out;
}

/**
 * The foreign table: before skein's chains (prerouting -150, after conntrack) it sets its bits
 * in the packet and conntrack marks of what the client pod and the outside host send; after
 * skein's DNAT (prerouting -90) and after skein's masquerade (postrouting 110) it counts new
 * connections whose marks still hold them, and those whose marks lost them; and packets to a
 * pod that leave by another way than a pod's link (routed without the foreign mark, they
 * take the node's default route).
 */
function foreignTable(): string {
  const ours = `ip saddr { ${ips.client}, ${OUTSIDE_IP} }`;
  const keep = `meta mark & ${FOREIGN_MASK} == ${FOREIGN}`;
  const ctKeep = `ct mark & ${FOREIGN_MASK} == ${FOREIGN}`;
  return `table inet foreign {
  counter kept {}
  counter lost {}
  counter ct_kept {}
  counter ct_lost {}
  counter skein_marked {}
  counter misrouted {}
  chain before {
    type filter hook prerouting priority -150; policy accept;
    ${ours} meta mark set meta mark | ${FOREIGN} ct mark set ct mark | ${FOREIGN}
  }
  chain after {
    type filter hook prerouting priority -90; policy accept;
    ${ours} ct state new ${keep} counter name kept
    ${ours} ct state new meta mark & ${FOREIGN_MASK} != ${FOREIGN} counter name lost
    ${ours} ct state new ct status dnat meta mark & 0xffff0000 != 0 counter name skein_marked
  }
  chain post {
    type filter hook postrouting priority 110; policy accept;
    ct original ${ours} ct state new ${ctKeep} counter name ct_kept
    ct original ${ours} ct state new ct mark & ${FOREIGN_MASK} != ${FOREIGN} counter name ct_lost
    ip daddr 10.244.11.0/24 oifname != "sk*" counter name misrouted
  }
}
`;
}

async function counters(): Promise<Record<string, number>> {
  const j = JSON.parse((await lab.exec("node", ["nft", "-j", "list", "counters", "table", "inet", "foreign"])).stdout) as { nftables: Array<{ counter?: { name: string; packets: number } }> };
  return Object.fromEntries(j.nftables.filter((x) => x.counter).map((x) => [x.counter!.name, x.counter!.packets]));
}

/** New connections counted between two readings. */
const since = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k]! - (a[k] ?? 0)]));

/** At least `n` new connections (a retransmitted first packet counts again) went through
 * skein's DNAT with their foreign bits, none without them. */
function kept(d: Record<string, number>, n: number): void {
  expect({ lost: d.lost, ct_lost: d.ct_lost, misrouted: d.misrouted }).toEqual({ lost: 0, ct_lost: 0, misrouted: 0 });
  expect(d.kept).toBeGreaterThanOrEqual(n);
  expect(d.ct_kept).toBeGreaterThanOrEqual(n);
  expect(d.skein_marked).toBeGreaterThanOrEqual(n);
}

/** Connects `n` times; returns the backends that answered (every try must succeed). */
async function reach(from: string, proto: "tcp" | "udp", ip: string, port: number, n = 12): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await lab.connect(from, proto, ip, port, 1500);
    expect(`${proto} ${ip}:${port} from ${from}: ${r.error}`).toBe(`${proto} ${ip}:${port} from ${from}: `);
    seen.add(r.answer.split(" ")[0]!);
  }
  return [...seen].sort();
}

beforeAll(async () => {
  lab.host("cp");
  lab.host("node");
  lab.wire({ ns: "cp", addr: `${OUTSIDE_IP}/24` }, { ns: "node", addr: `${NODE_IP}/24` });
  await lab.exec("node", ["ip", "route", "add", "default", "via", OUTSIDE_IP]);
  const cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
  for (const p of [...pods, "client"]) ips[p] = (await lab.pod(p, cni, list)).ip;
  for (const p of pods) await lab.serve(p, { name: `pod-${p}`, tcp: 8080, udp: 8080 });
  // policy routing on the foreign mark: the backends are reachable only through table 100
  for (const p of pods) {
    const [route] = JSON.parse((await lab.exec("node", ["ip", "-j", "route", "show", `${ips[p]}/32`])).stdout) as Array<{ dev: string }>;
    await lab.exec("node", ["ip", "route", "del", `${ips[p]}/32`, "dev", route!.dev]);
    await lab.exec("node", ["ip", "route", "add", `${ips[p]}/32`, "dev", route!.dev, "table", String(TABLE)]);
  }
  await lab.exec("node", ["ip", "rule", "add", "fwmark", `${FOREIGN}/${FOREIGN_MASK}`, "table", String(TABLE), "priority", "100"]);
  // lookups the node makes itself (iif lo) find them there too: skein's anti-spoofing checks a
  // pod's source by the route back to it, a lookup the kernel makes as the node's own, and
  // the backends' replies carry no mark; forwarded packets still reach them only by the mark
  await lab.exec("node", ["ip", "rule", "add", "to", "10.244.11.0/24", "iif", "lo", "table", String(TABLE), "priority", "101"]);
  await lab.exec("node", ["nft", "-f", "-"], { stdin: foreignTable() });

  apiserver = await spawnApiServer(lab, "cp", tmp, `${OUTSIDE_IP}:6443`, TOKEN, ["--bookmark-ms", "1000"]);
  await api.create("/api/v1/nodes", { metadata: { name: "node" }, spec: { podCIDRs: ["10.244.11.0/24"] }, status: { addresses: [{ type: "InternalIP", address: NODE_IP }] } });
  const slice = (name: string, service: string, ports: unknown[]) => ({
    metadata: { name, namespace: "default", labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    ports,
    endpoints: pods.map((p) => ({ addresses: [ips[p]], conditions: { ready: true }, nodeName: "node" })),
  });
  await api.create(SVC, { metadata: { name: "web" }, spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 8080 }] } });
  await api.create(EPS, slice("web-1", "web", [{ name: "http", port: 8080 }, { name: "dns", port: 8080, protocol: "UDP" }]));
  await api.create(SVC, { metadata: { name: "np" }, spec: { type: "NodePort", clusterIP: "10.96.0.30", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] } });
  await api.create(EPS, slice("np-1", "np", [{ port: 8080 }]));
  await startAgent();
  await waitFor("both Services programmed", async () => {
    const svc = (await lab.exec("node", ["nft", "list", "map", "inet", "skein", "svc4"])).stdout;
    return svc.includes("10.96.0.10") && svc.includes(`${NODE_IP} . tcp . 30080`);
  }, 5000, 20);
}, 60_000);

afterAll(() => {
  agent?.proc.kill("SIGKILL");
  apiserver?.proc.kill("SIGKILL");
});

describe("a foreign mark survives skein's chains", () => {
  test("the policy-free pod-to-pod path keeps it, and policy routing on it carries the connection", async () => {
    const c0 = await counters();
    expect(await reach("client", "tcp", ips.b1!, 8080, 3)).toEqual(["pod-b1"]);
    const d = since(c0, await counters());
    expect(d.kept).toBeGreaterThanOrEqual(3);
    expect({ lost: d.lost, misrouted: d.misrouted }).toEqual({ lost: 0, misrouted: 0 });
  });

  test("a ClusterIP connection over TCP: the first packet keeps the foreign bits through skein's DNAT", async () => {
    const c0 = await counters();
    expect(await reach("client", "tcp", "10.96.0.10", 80)).toEqual(["pod-b1", "pod-b2"]);
    const d = since(c0, await counters());
    kept(d, 12);
  });

  test("a ClusterIP flow over UDP keeps them too", async () => {
    const c0 = await counters();
    expect(await reach("client", "udp", "10.96.0.10", 53)).toEqual(["pod-b1", "pod-b2"]);
    const d = since(c0, await counters());
    kept(d, 12);
  });

  test("a NodePort connection from outside (masqueraded by skein's conntrack bit) keeps the packet and conntrack bits", async () => {
    const c0 = await counters();
    expect(await reach("cp", "tcp", NODE_IP, 30080)).toEqual(["pod-b1", "pod-b2"]);
    const d = since(c0, await counters());
    kept(d, 12);
    // skein's own masquerade still happens: the backend sees the node, not the outside host
    const r = await lab.connect("cp", "tcp", NODE_IP, 30080);
    expect(r.answer.split(" ")[1]).toBe(NODE_IP);
  });
});

describe("the mark ranges are the agent's to choose", () => {
  test("an agent with another --mark-mask does not adopt the table, replaces it cold, and the foreign bits still pass", async () => {
    agent!.proc.kill("SIGTERM");
    expect(await agent!.proc.exited).toBe(0);
    const out = await startAgent(["--mark-mask", "0x0ff00000", "--ct-mark-mask", "0x7fc00000"]);
    expect(out.text).toContain("the table in the kernel cannot be adopted");
    expect(out.text).toContain("was made with the mark ranges packet 0xffff0000, conntrack 0xffff0000; this agent uses packet 0x0ff00000, conntrack 0x7fc00000");
    expect(out.text).toMatch(/"kind":"full"/);
    const listing = (await lab.exec("node", ["nft", "list", "table", "inet", "skein"])).stdout;
    expect(listing).toContain('comment "skein marks: packet 0x0ff00000 conntrack 0x7fc00000"');
    expect(listing).toContain("ct mark & 0x40000000 == 0x40000000 masquerade");
    const c0 = await counters();
    expect(await reach("client", "tcp", "10.96.0.10", 80)).toEqual(["pod-b1", "pod-b2"]);
    expect(await reach("cp", "tcp", NODE_IP, 30080)).toEqual(["pod-b1", "pod-b2"]);
    const d = since(c0, await counters());
    kept(d, 24);
    const r = await lab.connect("cp", "tcp", NODE_IP, 30080);
    expect(r.answer.split(" ")[1]).toBe(NODE_IP);
  }, 30_000);

  test("a mask that is not one run of bits, or too narrow, stops the agent with a clear error", async () => {
    for (const [mask, why] of [
      ["0xff00ff00", "--mark-mask: 0xff00ff00 is not one run of contiguous bits"],
      ["0x0000000f", "--mark-mask: 0x0000000f has 4 bits; at least 8 are needed"],
      ["-1", '--mark-mask: "-1" is not a mask'],
    ]) {
      const r = await lab.exec("node", [SKEIN, "agent", "--kubeconfig", `${tmp}/kubeconfig`, "--mark-mask", mask!], { allowFail: true });
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain(why!);
    }
  });
});
