// bench/policy: NetworkPolicy at scale, in three parts, each printed side by side with its
// baseline measured in the same run.
//  1. compile: realistic worlds (compiler/policy/generate.ts) of PODS pods and 100, 1,000 and
//     5,000 policies, compiled for one node by compiler.wasm and by the TypeScript reference
//     (median of several runs after a warm-up; the two tables checked equal).
//  2. kernel: the policy of 5,000 policies loaded into `table inet skein` in a node namespace
//     of our own (bench/policy-apply.ts, as the agent loads it), and label changes applied
//     one at a time, from the change to the kernel holding it: pods of other nodes, and pods of
//     the node itself.
//  3. connection setup: TCP connections from a client pod through the node to a server pod
//     whose ingress is policed (it admits the client's app only), with the policy of 10 and of
//     5,000 policies loaded in turn (plus the same services-free table), round by round; a
//     client of another app is checked to be refused, so the path measured is a policed one.
// Usage (root, after the build): bun bench/policy.ts [pods=10000] [connections=2000] [rounds=3]
// (PARTS=1,3 runs only those parts)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Lab, OutputWatcher } from "../testing/lab.ts";
import { inNetns, run } from "../agent/sys/exec.ts";
import { loadCompiler } from "../compiler/wasm.ts";
import { realisticWorld } from "../compiler/policy/generate.ts";
import { compilePolicy, identityIds } from "../compiler/policy/reference.ts";
import { policyStateFrom } from "../compiler/policy/state.ts";
import { wasmPolicyCompiler } from "../compiler/policy/wasm.ts";
import { col, pct, timings } from "./stats.ts";

const PODS = Number(process.argv[2] ?? 10_000);
const CONNS = Number(process.argv[3] ?? 2000);
const ROUNDS = Number(process.argv[4] ?? 3);
const SKEIN = resolve(import.meta.dir, "../dist/skein");
const PARTS = new Set((process.env.PARTS ?? "1,2,3").split(",").map(Number));

const median = (f: () => void, runs: number) => pct(timings(f, runs), 50);

// ---- 1. compile
const { compile } = wasmPolicyCompiler(await loadCompiler());
if (PARTS.has(1)) {
  console.log(`1. policy compile for one node, ${PODS} pods (realistic worlds: apps with tiers, named ports, ipBlocks), median of runs`);
  console.log([col("policies", 9), col("nodes", 6), col("identities", 11), col("elements", 9), col("reference ms", 13), col("wasm ms", 8), col("wasm/ref", 9)].join(" "));
  for (const policies of [100, 1_000, 5_000]) {
    const w = realisticWorld({ pods: PODS, policies });
    const { state, errors } = policyStateFrom(w.objects);
    if (errors.length) throw new Error(errors.slice(0, 3).join("\n"));
    const node = w.nodes[0]!;
    const opts = { nodeName: node.name, podCIDRs: node.podCIDRs, maxIdentity: 0x7fff };
    const ref = compilePolicy(state, opts);
    const wasm = compile(state, opts);
    if (!isDeepStrictEqual(ref, wasm)) throw new Error(`${policies} policies: the wasm and reference tables differ`);
    const prev = identityIds(ref);
    const tRef = median(() => compilePolicy(state, opts, prev), 5);
    const tWasm = median(() => compile(state, opts, prev), 9);
    console.log([col(policies, 9), col(w.nodes.length, 6), col(ref.identities.length, 11), col(ref.allowIngress.length + ref.allowEgress.length, 9), col(tRef.toFixed(1), 13), col(tWasm.toFixed(1), 8), col((tWasm / tRef).toFixed(2), 9)].join(" "));
  }
}

// ---- 2 and 3 need namespaces
const work = mkdtempSync(`${tmpdir()}/skein-bench-pol-`);
const lab = new Lab(`skt-bpol${Math.random().toString(36).slice(2, 6)}-`, SKEIN);
try {
  for (const h of ["cli", "cli2", "node", "srv", "apply"]) lab.host(h);

  // ---- 2. kernel load and label changes
  if (PARTS.has(2)) {
    const p = Bun.spawnSync(inNetns(lab.path("apply"), [process.execPath, resolve(import.meta.dir, "policy-apply.ts"), String(PODS), "5000", "40"]), { timeout: 300_000 });
    if (p.exitCode !== 0) throw new Error(`policy-apply: ${p.stderr.toString().trim() || `exit ${p.exitCode ?? p.signalCode}`}`);
    const a = JSON.parse(p.stdout.toString()) as { compileMs: number; loadMs: number; lines: number; identities: number; elements: number; pods: number; remote: { ms: number[]; kinds: Record<string, number> }; local: { ms: number[]; kinds: Record<string, number> } };
    console.log(`\n2. kernel, 5,000 policies over ${PODS} pods, one node's tables: ${a.identities} identities, ${a.pods} pod addresses, ${a.elements} allow elements, ${a.lines} lines of nft`);
    console.log(`   first compile (packing every object) ${a.compileMs.toFixed(0)} ms; loaded with the skeleton in one transaction (libnftables) in ${a.loadMs.toFixed(0)} ms`);
    console.log([col("label change of", 22), col("changes", 8), col("p50 ms", 7), col("p90 ms", 7), col("max ms", 7), "  how"].join(" "));
    for (const [what, r] of [["a pod of another node", a.remote], ["a pod of this node", a.local]] as const) {
      if (!r.ms.length) continue;
      console.log([col(what, 22), col(r.ms.length, 8), col(pct(r.ms, 50).toFixed(2), 7), col(pct(r.ms, 90).toFixed(2), 7), col(Math.max(...r.ms).toFixed(2), 7), " ", Object.entries(r.kinds).map(([k, n]) => `${n} ${k === "moved" ? "addresses moved" : "compiled whole"}`).join(", ")].join(" "));
    }
  }

  // ---- 3. connection setup through a policed path
  if (PARTS.has(3)) {
    lab.wire({ ns: "cli", addr: "10.99.0.2/24" }, { ns: "node", addr: "10.99.0.1/24" });
    lab.wire({ ns: "cli2", addr: "10.98.0.2/24" }, { ns: "node", addr: "10.98.0.1/24" });
    lab.wire({ ns: "node", addr: "10.99.1.1/24" }, { ns: "srv", addr: "10.99.1.2/24" });
    for (const [h, gw] of [["cli", "10.99.0.1"], ["cli2", "10.98.0.1"], ["srv", "10.99.1.1"]]) run(inNetns(lab.path(h!), ["ip", "route", "add", "default", "via", gw!]));
    run(inNetns(lab.path("node"), ["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
    run(inNetns(lab.path("cli"), ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]));
    const bench = [
      { kind: "Namespace", metadata: { name: "bench" } },
      ...([["client", "10.99.0.2", "bench-client", "node1"], ["other", "10.98.0.2", "bench-other", "node1"], ["server", "10.99.1.2", "bench-server", "node0"]] as const).map(([name, ip, app, nodeName]) => ({
        kind: "Pod",
        metadata: { namespace: "bench", name, labels: { app } },
        spec: { nodeName, containers: [{ name: "main" }] },
        status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
      })),
      { kind: "NetworkPolicy", metadata: { namespace: "bench", name: "server-in" }, spec: { podSelector: { matchLabels: { app: "bench-server" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "bench-client" } } }], ports: [{ protocol: "TCP", port: 8080 }] }] } },
    ];
    const SIZES = [10, 5_000];
    const states = new Map(SIZES.map((n) => {
      const f = `${work}/state-${n}.json`;
      writeFileSync(f, JSON.stringify([...realisticWorld({ pods: PODS, policies: n }).objects, ...bench]));
      return [n, f];
    }));
    const server = Bun.spawn(inNetns(lab.path("srv"), [process.execPath, resolve(import.meta.dir, "datapath-server.ts"), "8080"]), { stdout: "pipe", stderr: "pipe" });
    if ((await new OutputWatcher(server.stdout).until("ready", 10_000)) !== "found") throw new Error(`server did not start: ${await new Response(server.stderr).text()}`);
    const client = (ns: string, args: string[], allowFail = false) => {
      const c = Bun.spawnSync(inNetns(lab.path(ns), [process.execPath, resolve(import.meta.dir, "datapath-client.ts"), ...args]), { timeout: 120_000 });
      if (c.exitCode !== 0) {
        if (allowFail) return undefined;
        throw new Error(`client ${args.join(" ")}: ${c.stderr.toString().trim() || `exit ${c.exitCode ?? c.signalCode}`}`);
      }
      return JSON.parse(c.stdout.toString()) as number[];
    };
    const us = new Map<number, number[]>(SIZES.map((n) => [n, []]));
    const loadMs = new Map<number, number[]>(SIZES.map((n) => [n, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const n of SIZES) {
        const t0 = performance.now();
        run(inNetns(lab.path("node"), [SKEIN, "tables", "--state", states.get(n)!, "--node-name", "node0", "--apply"]));
        loadMs.get(n)!.push(performance.now() - t0);
        try {
          client("cli", ["latency", "10.99.1.2", "8080", "50"]); // warm-up, and proof the client is admitted
          if (client("cli2", ["latency", "10.99.1.2", "8080", "1"], true)) throw new Error(`${n} policies: a client of another app reached the server: the path is not policed`);
          us.get(n)!.push(...client("cli", ["latency", "10.99.1.2", "8080", String(CONNS)])!);
        } finally {
          run(inNetns(lab.path("node"), ["nft", "delete", "table", "inet", "skein"]));
        }
      }
    }
    server.kill();
    console.log(`\n3. TCP connection setup from a client pod to a policed server pod through the node, ${CONNS} connections × ${ROUNDS} rounds per size (a client of another app refused each round)`);
    console.log([col("policies", 9), col("p50 µs", 8), col("p90 µs", 8), col("p99 µs", 8), col("load ms", 8)].join(" "));
    for (const n of SIZES) console.log([col(n, 9), col(pct(us.get(n)!, 50).toFixed(0), 8), col(pct(us.get(n)!, 90).toFixed(0), 8), col(pct(us.get(n)!, 99).toFixed(0), 8), col(pct(loadMs.get(n)!, 50).toFixed(0), 8)].join(" "));
    const [lo, hi] = SIZES.map((n) => pct(us.get(n)!, 50)) as [number, number];
    console.log(`p50 with ${SIZES[1]} policies is ${(Math.abs(hi / lo - 1) * 100).toFixed(1)}% ${hi >= lo ? "above" : "below"} p50 with ${SIZES[0]}`);
  }
} finally {
  lab.destroy();
  rmSync(work, { recursive: true, force: true });
}
