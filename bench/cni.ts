// bench/cni: ADD+DEL of one pod, skein against Debian's reference ptp + host-local, in the
// same run on the same machine, interleaved pod by pod so that drift hits both alike.
// Usage (root): bun bench/cni.ts [pods=50]
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { Lab } from "../testing/lab.ts";
import { pct } from "./stats.ts";
import { statSync } from "node:fs";
import { startHttp, type Listening } from "../agent/http/serve.ts";
import { Metrics } from "../agent/http/metrics.ts";

const PODS = Number(process.argv[2] ?? 50);
const SKEIN = resolve(import.meta.dir, "../dist/skein");
const work = mkdtempSync(`${tmpdir()}/skein-bench-cni-`);
const lab = new Lab(`skt-bcni${Math.random().toString(36).slice(2, 6)}-`, SKEIN);

const contenders: Array<{ label: string; list: Conflist; agent?: boolean }> = [
  {
    label: "skein (masquerade on)",
    list: { cniVersion: "1.0.0", name: "bskein", plugins: [{ type: "skein", podCIDRs: ["10.244.9.0/24"], dataDir: `${work}/skein` }] },
  },
  {
    // the plugin reports each command to the node's agent over its unix socket (an agent's
    // HTTP API answers there, in this process, for the duration of this contender's runs)
    label: "skein, reporting to agent",
    list: { cniVersion: "1.0.0", name: "bskeina", plugins: [{ type: "skein", podCIDRs: ["10.244.12.0/24"], dataDir: `${work}/skeina` }] },
    agent: true,
  },
  {
    label: "ptp + host-local",
    list: { cniVersion: "1.0.0", name: "bref", plugins: [{ type: "ptp", ipMasq: false, ipam: { type: "host-local", ranges: [[{ subnet: "10.244.10.0/24" }]], dataDir: `${work}/hl` } }] },
  },
  {
    label: "ptp + host-local, ipMasq",
    list: { cniVersion: "1.0.0", name: "brefm", plugins: [{ type: "ptp", ipMasq: true, ipam: { type: "host-local", ranges: [[{ subnet: "10.244.11.0/24" }]], dataDir: `${work}/hlm` } }] },
  },
];


try {
  mkdirSync(`${work}/bin`);
  symlinkSync(SKEIN, `${work}/bin/skein`);
  lab.host("node");
  const cni = new CniRuntime({ path: [`${work}/bin`, "/usr/lib/cni"], hostNetns: lab.path("node") });
  const times = contenders.map(() => [] as number[]);
  const metrics = new Metrics({ version: "bench", node: "node" });
  // one warm-up round, not counted
  for (let i = -1; i < PODS; i++) {
    for (const [k, c] of contenders.entries()) {
      const ns = `${k}p${i + 1}`;
      lab.host(ns);
      const att = { containerId: `bench-${k}-${i + 1}`, netns: lab.path(ns), ifname: "eth0" };
      let agent: Listening | undefined;
      if (c.agent) {
        // the socket the plugin finds: named for the node namespace's identity, as the agent names it
        const ns = statSync(lab.path("node"), { bigint: true });
        agent = startHttp({ view: { node: "node", ready: () => ({ ready: true, reasons: [] }), status: () => ({}), peers: () => ({}), state: () => ({}), tables: () => undefined }, metrics, socket: `/run/skein/agent-${ns.dev}-${ns.ino}.sock` });
      }
      const t0 = performance.now();
      await cni.add(c.list, att);
      await cni.del(c.list, att);
      const dt = performance.now() - t0;
      agent?.stop();
      if (i >= 0) times[k]!.push(dt);
    }
  }
  const base = pct(times[2]!, 50);
  console.log(`CNI ADD+DEL of one pod, ${PODS} pods each, interleaved (ms, whole exec path incl. nsenter into the node namespace)`);
  console.log(`${"plugin chain".padEnd(28)} ${"p50".padStart(8)} ${"p99".padStart(8)} ${"p50 / ptp".padStart(10)}`);
  for (const [k, c] of contenders.entries()) {
    const t = times[k]!;
    console.log(`${c.label.padEnd(28)} ${pct(t, 50).toFixed(1).padStart(8)} ${pct(t, 99).toFixed(1).padStart(8)} ${(pct(t, 50) / base).toFixed(2).padStart(9)}x`);
  }
  const reported = (await metrics.render()).split("\n").filter((l) => l.startsWith("skein_cni_requests_total")).join(", ");
  console.log(`reports the agent took: ${reported}`);
} finally {
  lab.destroy();
  rmSync(work, { recursive: true, force: true });
}
