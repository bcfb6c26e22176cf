// bench/datapath: TCP connection setup latency and throughput through a ClusterIP with 10 and
// with 10,000 services loaded, skein's table against kube-proxy's iptables shape (one rule per
// service in the linear KUBE-SERVICES chain, bench/cluster.ts) of the same services, in the
// same run. Three namespaces of our own: a client, a node that routes and holds the service
// rules, a backend serving every endpoint of the measured service, which is the last one (the
// far end of iptables' linear chain). Rulesets take turns, round by round, so that drift of
// the machine hits all alike. Only the first packet of a connection walks the service rules;
// the rest follow conntrack, which is why throughput is expected to be the same for all.
// Usage (root, after the build): bun bench/datapath.ts [connections=3000] [rounds=2] [MB=256]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { Lab, OutputWatcher } from "../testing/lab.ts";
import { inNetns, run } from "../agent/sys/exec.ts";
import { clusterIP, clusterObjects, endpointIP, kubeProxyIptables } from "./cluster.ts";
import { col, pct } from "./stats.ts";

const CONNS = Number(process.argv[2] ?? 3000);
const ROUNDS = Number(process.argv[3] ?? 2);
const MB = Number(process.argv[4] ?? 256);
const SIZES = [10, 10_000];
const SKEIN = resolve(import.meta.dir, "../dist/skein");
const work = mkdtempSync(`${tmpdir()}/skein-bench-dp-`);
const lab = new Lab(`skt-bdp${Math.random().toString(36).slice(2, 6)}-`, SKEIN);

interface Ruleset {
  label: string;
  n: number;
  load(): void;
  unload(): void;
}

const rulesets: Ruleset[] = SIZES.flatMap((n): Ruleset[] => {
  const state = `${work}/state-${n}.json`;
  writeFileSync(state, JSON.stringify(clusterObjects(n)));
  const ipt = kubeProxyIptables(n);
  return [
    {
      label: "skein (nftables)",
      n,
      load: () => run(inNetns(lab.path("node"), [SKEIN, "tables", "--state", state, "--apply"])),
      unload: () => run(inNetns(lab.path("node"), ["nft", "delete", "table", "inet", "skein"])),
    },
    {
      label: "iptables, kube-proxy shape",
      n,
      load: () => run(inNetns(lab.path("node"), ["iptables-legacy-restore", "--noflush"]), { stdin: ipt }),
      unload: () => {
        run(inNetns(lab.path("node"), ["iptables-legacy", "-t", "nat", "-F"]));
        run(inNetns(lab.path("node"), ["iptables-legacy", "-t", "nat", "-X"]));
      },
    },
  ];
});

const client = (args: string[]) => {
  const p = Bun.spawnSync(inNetns(lab.path("cli"), [process.execPath, resolve(import.meta.dir, "datapath-client.ts"), ...args]), { timeout: 120_000 });
  if (p.exitCode !== 0) throw new Error(`client ${args.join(" ")}: ${p.stderr.toString().trim() || `exit ${p.exitCode ?? p.signalCode}`}`);
  return JSON.parse(p.stdout.toString()) as unknown;
};


try {
  for (const h of ["cli", "node", "srv"]) lab.host(h);
  lab.wire({ ns: "cli", addr: "10.200.0.2/24" }, { ns: "node", addr: "10.200.0.1/24" });
  lab.wire({ ns: "node", addr: "10.201.0.1/24" }, { ns: "srv", addr: "10.201.0.2/24" });
  run(inNetns(lab.path("cli"), ["ip", "route", "add", "default", "via", "10.200.0.1"]));
  run(inNetns(lab.path("srv"), ["ip", "route", "add", "default", "via", "10.201.0.1"]));
  run(inNetns(lab.path("node"), ["ip", "route", "add", "10.64.0.0/12", "via", "10.201.0.2"]));
  run(inNetns(lab.path("node"), ["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
  run(inNetns(lab.path("cli"), ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]));
  // the backend holds every endpoint of each measured service (the last of each size)
  for (const n of SIZES) for (let e = 0; e < 10; e++) run(inNetns(lab.path("srv"), ["ip", "addr", "add", `${endpointIP(n - 1, e)}/32`, "dev", "lo"]));
  const server = Bun.spawn(inNetns(lab.path("srv"), [process.execPath, resolve(import.meta.dir, "datapath-server.ts"), "8080"]), { stdout: "pipe", stderr: "pipe" });
  if ((await new OutputWatcher(server.stdout).until("ready", 10_000)) !== "found") throw new Error(`backend server did not start: ${await new Response(server.stderr).text()}`);

  const results = new Map<Ruleset, { us: number[]; mbps: number[]; loadMs: number[] }>(rulesets.map((r) => [r, { us: [], mbps: [], loadMs: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of rulesets) {
      const res = results.get(r)!;
      const t0 = performance.now();
      r.load();
      res.loadMs.push(performance.now() - t0);
      try {
        const ip = clusterIP(r.n - 1);
        client(["latency", ip, "80", "50"]); // warm-up, and proof the service answers
        res.us.push(...(client(["latency", ip, "80", String(CONNS)]) as number[]));
        res.mbps.push(client(["throughput", ip, "80", String(MB)]) as number);
      } finally {
        r.unload();
      }
    }
  }
  server.kill();

  console.log(`TCP connection setup through a ClusterIP (the last service), ${CONNS} connections × ${ROUNDS} rounds per ruleset; throughput: ${MB} MB over one connection, median of rounds`);
  console.log([col("ruleset", 28), col("services", 9), col("p50 µs", 8), col("p90 µs", 8), col("p99 µs", 8), col("MB/s", 7), col("load ms", 8)].join(" "));
  const p50 = new Map<string, number>();
  for (const [r, res] of results) {
    p50.set(`${r.label}/${r.n}`, pct(res.us, 50));
    console.log(
      [col(r.label, 28), col(r.n, 9), col(pct(res.us, 50).toFixed(0), 8), col(pct(res.us, 90).toFixed(0), 8), col(pct(res.us, 99).toFixed(0), 8), col(pct(res.mbps, 50).toFixed(0), 7), col(pct(res.loadMs, 50).toFixed(0), 8)].join(" "),
    );
  }
  for (const label of new Set(rulesets.map((r) => r.label))) {
    const a = p50.get(`${label}/${SIZES[0]}`)!;
    const b = p50.get(`${label}/${SIZES[1]}`)!;
    console.log(`${label}: p50 at ${SIZES[1]} services is ${((b / a - 1) * 100).toFixed(1)}% ${b >= a ? "above" : "below"} its p50 at ${SIZES[0]}`);
  }
} finally {
  lab.destroy();
  rmSync(work, { recursive: true, force: true });
}
