// Helper of bench/compile.ts, run inside a throwaway namespace: loads n services × 10
// endpoints through the datapath as the agent does (libnftables for the text, netlink
// batches for the rings), cold, then one one-endpoint change (recompile of that service and
// its delta, timed together); then, as the baseline, the same
// services in kube-proxy's iptables shape through iptables-restore (legacy and nft), each
// into an empty namespace state, each cut off after IPT_LIMIT_MS (default 60 s). Prints JSON.
import { IncrementalCompiler } from "../compiler/incremental.ts";
import { loadCompiler, wasmUnits } from "../compiler/wasm.ts";
import { Datapath } from "../agent/datapath/datapath.ts";
import { openNft } from "../agent/datapath/nft.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { run } from "../agent/sys/exec.ts";
import { cluster, kubeProxyIptables } from "./cluster.ts";

const [n, ringFactor] = process.argv.slice(2).map(Number) as [number, number];
const opts = { nodeName: "n1", nodeIPs: [], ringFactor };
const ic = new IncrementalCompiler(opts, wasmUnits(await loadCompiler(), opts));
const state = cluster(n);
ic.load(state);
const nl = Netlink.openNetfilter();
const dp = new Datapath(openNft(), { send: (batch) => nl.sendBatch(batch) });
const full = dp.sync((ic.compile(), ic.tables()));
// the one-endpoint change as the agent meets it: one slice updated, recompiled, applied
const moved = cluster(n, 10, n >> 1).slices[n >> 1]!;
const t0 = performance.now();
ic.setSlice(moved);
const delta = dp.apply(ic.compile(), () => ic.tables());
delta.ms = performance.now() - t0;
const rssMB = process.memoryUsage().rss / 2 ** 20;
run(["nft", "delete", "table", "inet", "skein"]);

/** ms, or null past the time limit (iptables-nft-restore is quadratic-ish here: >2 min at 10k) */
const LIMIT_MS = Number(process.env.IPT_LIMIT_MS ?? 60_000);
const restore = (cmd: string, input: string): number | null => {
  const t0 = performance.now();
  const p = Bun.spawnSync([cmd, "--noflush"], { stdin: Buffer.from(input), timeout: LIMIT_MS });
  if (p.signalCode) return null;
  if (p.exitCode !== 0) throw new Error(`${cmd}: ${p.stderr.toString()}`);
  return performance.now() - t0;
};
const ipt = kubeProxyIptables(n);
const legacyMs = restore("iptables-legacy-restore", ipt);
run(["iptables-legacy", "-t", "nat", "-F"]);
run(["iptables-legacy", "-t", "nat", "-X"]);
const nftMs = restore("iptables-nft-restore", ipt);
console.log(JSON.stringify({ backend: "libnftables", full, delta, rssMB, iptRules: ipt.split("\n").filter((l) => l.startsWith("-A")).length, legacyMs, nftMs }));
