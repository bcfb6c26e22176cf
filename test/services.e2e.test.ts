// Services through the nftables datapath, in namespaces: `skein tables --state … --apply`
// loads a node's tables the way the agent does (nft text through libnftables, rings as
// netlink batches), real TCP and UDP through a ClusterIP to pods wired by skein's CNI.
// (The agent that keeps these tables in step with the API arrives later; this drives the
// compiler and the datapath the same way, from a file.)
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { inNetns } from "../agent/sys/exec.ts";
import { OutputWatcher } from "../testing/lab.ts";
import { SKEIN, pluginDir, useLab, useTempDir } from "./harness/index.ts";

const lab = useLab("svc");
const tmp = useTempDir("svc");
const list: Conflist = { cniVersion: "1.1.0", name: "svcnet", plugins: [{ type: "skein", podCIDRs: ["10.244.7.0/24"], clusterCIDRs: ["10.244.0.0/16"], dataDir: `${tmp}/ipam` }] };
const backends = ["b1", "b2", "b3"];
const ips: Record<string, string> = {};

/** A Service and one EndpointSlice of the given pods (all on "node" unless moved). */
function service(name: string, spec: Record<string, unknown>, pods: string[], nodeOf: Record<string, string> = {}) {
  return [
    { kind: "Service", metadata: { name, namespace: "default" }, spec },
    {
      kind: "EndpointSlice",
      metadata: { name: `${name}-1`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: pods.map((p) => ({ addresses: [ips[p]], conditions: { ready: true }, nodeName: nodeOf[p] ?? "node" })),
    },
  ];
}

/** Applies a state file in the node namespace (a delta over `since` when given). */
async function apply(state: string, since?: string, extra: string[] = []): Promise<{ kind: string; lines: number; ringOps: number }> {
  const r = await lab.exec("node", [SKEIN, "tables", "--state", state, ...(since ? ["--since", since] : []), "--apply", "--json", ...extra]);
  return JSON.parse(r.stdout) as { kind: string; lines: number; ringOps: number };
}

async function backendsSeen(from: string, ip: string, port: number, tries = 40): Promise<{ pods: Set<string>; peers: Set<string> }> {
  const pods = new Set<string>();
  const peers = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const r = await lab.connect(from, "tcp", ip, port);
    expect(r.error).toBe("");
    const [pod, peer] = r.answer.split(" ");
    pods.add(pod!);
    peers.add(peer!);
  }
  return { pods, peers };
}

beforeAll(async () => {
  lab.host("node");
  lab.host("outside");
  lab.wire({ ns: "node", addr: "198.18.0.1/24" }, { ns: "outside", addr: "198.18.0.2/24" });
  // A node has a default route; without one its own connections to a ClusterIP fail routing
  // before the output hook could translate them.
  await lab.exec("node", ["ip", "route", "add", "default", "via", "198.18.0.2"]);
  const cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
  for (const p of [...backends, "client"]) ips[p] = (await lab.pod(p, cni, list)).ip;
  for (const p of backends) {
    await lab.serve(p, { name: `pod-${p}`, tcp: 8080, udp: 8080 });
    await lab.serve(p, { name: `pod-${p}`, tcp: 8081, hold: true });
  }

  const objects = [
    { kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }, { name: "dns", port: 53, protocol: "UDP", targetPort: 8080 }] } },
    {
      kind: "EndpointSlice",
      metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080 }, { name: "dns", port: 8080, protocol: "UDP" }],
      endpoints: backends.map((b) => ({ addresses: [ips[b]], conditions: { ready: true }, nodeName: "node" })),
    },
    { kind: "Service", metadata: { name: "empty", namespace: "default" }, spec: { clusterIP: "10.96.0.99", ports: [{ port: 80 }] } },
    ...service("np", { type: "NodePort", clusterIP: "10.96.0.30", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }, backends),
    ...service("nplocal", { type: "NodePort", clusterIP: "10.96.0.31", externalTrafficPolicy: "Local", ports: [{ port: 80, targetPort: 8080, nodePort: 30081 }] }, backends, { b3: "elsewhere" }),
    ...service("solo", { clusterIP: "10.96.0.20", ports: [{ port: 80, targetPort: 8080 }] }, ["b1"]),
    ...service("sticky", { clusterIP: "10.96.0.40", sessionAffinity: "ClientIP", ports: [{ port: 80, targetPort: 8080 }] }, backends),
  ];
  writeFileSync(`${tmp}/state.json`, JSON.stringify(objects));
  await apply(`${tmp}/state.json`, undefined, ["--node-name", "node", "--node-ip", "198.18.0.1"]);
});

describe("Services through nftables", () => {
  test("TCP to the ClusterIP reaches every backend over many connections, named targetPort resolved", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 3; i++) {
      const r = await lab.connect("client", "tcp", "10.96.0.10", 80);
      expect(r.error).toBe("");
      seen.add(r.answer.split(" ")[0]!);
    }
    expect([...seen].sort()).toEqual(["pod-b1", "pod-b2", "pod-b3"]);
  });

  test("UDP to the ClusterIP (port 53 -> 8080) reaches every backend and sees the client's own address", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 3; i++) {
      const r = await lab.connect("client", "udp", "10.96.0.10", 53);
      expect(r.error).toBe("");
      expect(r.answer.split(" ")[1]).toBe(ips.client);
      seen.add(r.answer.split(" ")[0]!);
    }
    expect(seen.size).toBe(3);
  });

  test("a service without endpoints is refused at once, not timed out", async () => {
    const t0 = performance.now();
    const r = await lab.connect("client", "tcp", "10.96.0.99", 80, 3000);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/refused/i);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test("the node itself reaches the ClusterIP (output hook)", async () => {
    const r = await lab.connect("node", "tcp", "10.96.0.10", 80);
    expect(r.answer).toMatch(/^pod-b\d 198\.18\.0\.1$/);
  });

  test("NodePort from outside (Cluster policy) reaches every backend, source-NATed to the node", async () => {
    const { pods, peers } = await backendsSeen("outside", "198.18.0.1", 30080);
    expect([...pods].sort()).toEqual(["pod-b1", "pod-b2", "pod-b3"]);
    expect([...peers]).toEqual(["198.18.0.1"]);
  });

  test("NodePort with externalTrafficPolicy Local: node-local backends only, client address kept", async () => {
    const { pods, peers } = await backendsSeen("outside", "198.18.0.1", 30081);
    expect([...pods].sort()).toEqual(["pod-b1", "pod-b2"]);
    expect([...peers]).toEqual(["198.18.0.2"]);
  });

  test("a pod reaches itself through its own service (hairpin)", async () => {
    const r = await lab.connect("b1", "tcp", "10.96.0.20", 80);
    expect(r.error).toBe("");
    expect(r.answer).toStartWith("pod-b1 ");
  });

  test("sessionAffinity ClientIP pins a client to one backend", async () => {
    const { pods } = await backendsSeen("client", "10.96.0.40", 80, 15);
    expect(pods.size).toBe(1);
  });
});

describe("incremental updates", () => {
  test("one endpoint of one service among 1,000 changes as a small delta, and traffic follows it", async () => {
    const many = (moved: boolean) => {
      const objs: unknown[] = [];
      for (let i = 0; i < 1000; i++) {
        const pods = i === 500 ? (moved ? ["b1", "b3"] : ["b1", "b2"]) : ["b1", "b2", "b3"];
        objs.push(...service(`bulk${i}`, { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] }, pods));
      }
      return objs;
    };
    writeFileSync(`${tmp}/bulk-a.json`, JSON.stringify(many(false)));
    writeFileSync(`${tmp}/bulk-b.json`, JSON.stringify(many(true)));
    const full = Bun.spawnSync([SKEIN, "tables", "--state", `${tmp}/bulk-a.json`, "--nft"]).stdout.toString();
    const delta = Bun.spawnSync([SKEIN, "tables", "--state", `${tmp}/bulk-b.json`, "--since", `${tmp}/bulk-a.json`, "--nft"]).stdout.toString();
    expect(full.length).toBeGreaterThan(100_000);
    // only the ring slots of the one service move: a ring batch, no nft text, nothing to clean up
    const [, ring, text, cleanup] = delta.split(/^# \d\. .*\n/m) as [string, string, string, string];
    expect(text).toBe("");
    expect(cleanup).toBe("");
    const lines = ring.trim().split("\n");
    expect(lines.length).toBeLessThanOrEqual(2);
    expect(lines.every((l) => /^(add|delete) element inet skein be4_0 /.test(l))).toBe(true);

    expect((await apply(`${tmp}/bulk-a.json`)).kind).toBe("full");
    const svc = "10.97.1.244"; // bulk500
    const before = await backendsSeen("client", svc, 80, 20);
    expect([...before.pods].sort()).toEqual(["pod-b1", "pod-b2"]);
    const applied = await apply(`${tmp}/bulk-b.json`, `${tmp}/bulk-a.json`);
    expect(applied).toMatchObject({ kind: "delta", lines: 0 });
    // about 1/N of one ring's slots, rewritten (each a removal and a write)
    expect(applied.ringOps).toBeGreaterThan(0);
    expect(applied.ringOps).toBeLessThanOrEqual(2 * 53);
    const after = await backendsSeen("client", svc, 80, 20);
    expect([...after.pods].sort()).toEqual(["pod-b1", "pod-b3"]);
  }, 60_000);
});

describe("established connections across an update", () => {
  test("a TCP connection to one backend keeps flowing while another backend is removed", async () => {
    const live = (pods: string[]) => service("live", { clusterIP: "10.96.0.50", ports: [{ port: 80, targetPort: 8081 }] }, pods).map((o) =>
      (o as { kind: string }).kind === "EndpointSlice" ? { ...o, ports: [{ port: 8081 }] } : o,
    );
    writeFileSync(`${tmp}/live-a.json`, JSON.stringify(live(backends)));
    await apply(`${tmp}/live-a.json`);

    const proc = Bun.spawn(inNetns(lab.path("client"), [SKEIN, "probe", "session", "10.96.0.50", "80"]), { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const output = new OutputWatcher(proc.stdout);
    const waitFor = async (what: string, ms = 3000) => {
      const r = await output.until(what, ms);
      if (r !== "found") throw new Error(`no ${JSON.stringify(what)} from the session (${r} after ${ms} ms); got ${JSON.stringify(output.text)}`);
    };
    try {
      await waitFor("\n");
      const pinned = output.text.split(" ")[0]!.replace("pod-", "");
      const removed = backends.find((b) => b !== pinned)!;
      writeFileSync(`${tmp}/live-b.json`, JSON.stringify(live(backends.filter((b) => b !== removed))));
      expect((await apply(`${tmp}/live-b.json`, `${tmp}/live-a.json`)).kind).toBe("delta");

      proc.stdin.write("still-here\n");
      proc.stdin.flush();
      await waitFor("still-here");
      const fresh = new Set<string>();
      for (let i = 0; i < 15; i++) fresh.add((await lab.connect("client", "tcp", "10.96.0.50", 80)).answer.split(" ")[0]!);
      expect(fresh.has(`pod-${removed}`)).toBe(false);
    } finally {
      proc.stdin.end();
      proc.kill();
    }
  }, 60_000);
});
