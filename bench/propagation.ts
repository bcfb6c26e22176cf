// bench/propagation: how long from an EndpointSlice write to the datapath programmed, seen
// by a packet: a prober in a client namespace opens connection after connection to one
// ClusterIP, and the clock stops at the first connection answered by the backend the write
// moved the service to. `skein apiserver` runs in a control-plane namespace and the agent in
// a node namespace, with 100 and with 10,000 services × 10 endpoints loaded (the 100-service
// run is the baseline the 10,000 one is read against). Also: the agent's cold start (process
// start to the first tables applied), its resident memory once the tables are in, and the
// most it held at once (while loading them).
// Then a stream of slice updates across the other services, and the agent's RSS after them.
// Usage (root, after the build): bun bench/propagation.ts [rounds=40] [sizes=100,10000] [updates=2000]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { Lab, type OutputWatcher } from "../testing/lab.ts";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { clusterIP, endpointIP } from "./cluster.ts";
import { col, pct } from "./stats.ts";
import { ApiDriver } from "../testing/apiserver/driver.ts";

const ROUNDS = Number(process.argv[2] ?? 40);
const SIZES = (process.argv[3] ?? "100,10000").split(",").map(Number);
const UPDATES = Number(process.argv[4] ?? 2000);
const SKEIN = resolve(import.meta.dir, "../dist/skein");
const TOKEN = "bench";
const now = () => performance.timeOrigin + performance.now();

function stateFile(n: number, podA: string): string {
  let rev = 1;
  const meta = (name: string, namespace?: string) => ({ name, ...(namespace ? { namespace } : {}), uid: `u${rev}`, resourceVersion: String(rev++), creationTimestamp: "2026-01-01T00:00:00Z" });
  const objects: unknown[] = ["default", "kube-system"].map((name) => ({ group: "", plural: "namespaces", object: { apiVersion: "v1", kind: "Namespace", metadata: meta(name), status: { phase: "Active" } } }));
  objects.push({ group: "", plural: "nodes", object: { apiVersion: "v1", kind: "Node", metadata: meta("node"), spec: { podCIDRs: ["10.244.5.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.2.2" }] } } });
  for (let i = 0; i < n; i++) {
    objects.push({ group: "", plural: "services", object: { apiVersion: "v1", kind: "Service", metadata: meta(`s${i}`, "default"), spec: { clusterIP: clusterIP(i), ports: [{ port: 80, targetPort: 8080 }] } } });
    const eps = i === 0 ? [podA] : [...Array(10).keys()].map((e) => endpointIP(i, e));
    objects.push({
      group: "discovery.k8s.io",
      plural: "endpointslices",
      object: { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { ...meta(`s${i}-1`, "default"), labels: { "kubernetes.io/service-name": `s${i}` } }, addressType: "IPv4", ports: [{ port: 8080 }], endpoints: eps.map((a) => ({ addresses: [a], conditions: { ready: true } })) },
    });
  }
  return JSON.stringify({ rev, objects });
}

async function lineAfter(out: OutputWatcher, from: number, what: string, timeoutMs: number): Promise<{ t: number; at: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = out.text.indexOf(what, from);
    if (i >= 0) {
      const start = out.text.lastIndexOf("\n", i) + 1;
      return { t: Number(out.text.slice(start, i).trim()), at: i + what.length };
    }
    const left = deadline - Date.now();
    if (left <= 0 || (await out.until(`${what}\n`, left, from)) !== "found") throw new Error(`no "${what}" within ${timeoutMs} ms`);
  }
}

async function measure(n: number) {
  const work = mkdtempSync(`${tmpdir()}/skein-bench-prop-`);
  const lab = new Lab(`skt-bprop${Math.random().toString(36).slice(2, 6)}-`, SKEIN);
  try {
    for (const h of ["cp", "node"]) lab.host(h);
    lab.wire({ ns: "cp", addr: "198.18.2.1/24" }, { ns: "node", addr: "198.18.2.2/24" });
    await lab.exec("node", ["ip", "route", "add", "default", "via", "198.18.2.1"]);
    const pluginDir = `${work}/bin`;
    await Bun.$`mkdir -p ${pluginDir} && ln -s ${SKEIN} ${pluginDir}/skein`.quiet();
    const conf: Conflist = { cniVersion: "1.1.0", name: "prop", plugins: [{ type: "skein", podCIDRs: ["10.244.5.0/24"], clusterCIDRs: ["10.244.0.0/16"], dataDir: `${work}/ipam` }] };
    const cni = new CniRuntime({ path: [pluginDir], hostNetns: lab.path("node") });
    const ips: Record<string, string> = {};
    for (const p of ["a", "b", "client", "client2"]) ips[p] = (await lab.pod(p, cni, conf)).ip;
    await lab.serve("a", { name: "pod-a", tcp: 8080 });
    await lab.serve("b", { name: "pod-b", tcp: 8080 });
    writeFileSync(`${work}/state.json`, stateFile(n, ips.a!));
    await lab.spawn("cp", [SKEIN, "apiserver", "--dir", work, "--listen", "198.18.2.1:6443", "--token", TOKEN, "--unix", `${work}/api.sock`], { ready: "serving", timeoutMs: 60_000 });
    const t0 = now();
    const agent = await lab.spawn("node", [SKEIN, "agent", "--kubeconfig", `${work}/kubeconfig`, "--node-name", "node", "--node-file", `${work}/node.json`, "--service-cidr", "10.96.0.0/16", "--coalesce-ms", "5", "--log-level", "warn"], { timeoutMs: 120_000 });
    // warn level: the agent is quiet until something goes wrong; the prober says when it is up
    // the prober's connections: a wide ephemeral port range, so no port comes round again
    await lab.exec("client", ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000"]);
    const cold = await lab.spawn("client", [process.execPath, resolve(import.meta.dir, "propagation-prober.ts"), clusterIP(0), "80", "900"]);
    const first = await lineAfter(cold.out, 0, "pod-a", 180_000);
    const coldMs = first.t - t0;
    await Bun.sleep(2000); // let the heap settle before reading the agent's memory
    const status = readFileSync(`/proc/${agent.proc.pid}/status`, "utf8");
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
    // the most it held at once: while loading the tables
    const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
    // The writes are timed by a second prober in a client of its own, whose conntrack
    // entries all come from after the load. (Without --service-cidr, the first one's
    // connections from before the service existed went out the node's default route
    // untranslated, and a later connection reusing such a source port met that entry and
    // was lost: how the service-CIDR reject was found. With it they are refused instead.)
    cold.proc.kill();
    await lab.exec("client2", ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000"]);
    const prober = await lab.spawn("client2", [process.execPath, resolve(import.meta.dir, "propagation-prober.ts"), clusterIP(0), "80", "900"]);
    const ready = await lineAfter(prober.out, 0, "pod-a", 10_000);
    const api = new ApiDriver(`${work}/api.sock`, TOKEN);
    const samples: number[] = [];
    let at = ready.at;
    for (let r = 0; r < ROUNDS; r++) {
      const to = r % 2 === 0 ? "b" : "a";
      const path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s0-1";
      const cur = await api.request("GET", path);
      const w0 = now();
      await api.request("PUT", path, { ...cur, endpoints: [{ addresses: [ips[to]], conditions: { ready: true } }] });
      const seen = await lineAfter(prober.out, at, `pod-${to}`, 10_000);
      at = seen.at;
      samples.push(seen.t - w0);
    }
    if (agent.out.text.includes('"level":50')) throw new Error(`the agent logged errors: ${agent.out.text}`);
    // the second prober's connections that got no answer within 200 ms
    // (a sample that includes one is 200 ms longer than the propagation itself)
    const failures = prober.out.text.split("\n").filter((l) => / (lost|failed)/.test(l) && Number(l.split(" ")[0]) > ready.t);
    const lost = failures.length;
    if (lost) console.error(`  ${n} services: probe connections without an answer: ${failures.map((l) => `${l.split(" ").slice(1).join(" ")} at +${(Number(l.split(" ")[0]) - ready.t).toFixed(0)} ms`).join(", ")}`);
    // a stream of updates, one endpoint of another service each, as rollouts make them; the
    // last write moves s0 again, and the prober seeing it means everything before is applied
    for (let k = 0; k < UPDATES && n > 1; k++) {
      const i = 1 + ((k * 7919) % (n - 1));
      const path = `/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s${i}-1`;
      const cur = await api.request("GET", path);
      cur.endpoints[k % cur.endpoints.length].addresses = [endpointIP(i, 10 + (k % 50))];
      await api.request("PUT", path, cur);
    }
    const last = ROUNDS % 2 === 0 ? "b" : "a";
    const s0 = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s0-1";
    await api.request("PUT", s0, { ...(await api.request("GET", s0)), endpoints: [{ addresses: [ips[last]], conditions: { ready: true } }] });
    await lineAfter(prober.out, at, `pod-${last}`, 60_000);
    await Bun.sleep(2000);
    const rssAfter = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, "utf8"))![1]) / 1024;
    if (agent.out.text.includes('"level":50')) throw new Error(`the agent logged errors: ${agent.out.text}`);
    return { n, cold: coldMs, rss, peak, rssAfter, samples, lost };
  } finally {
    lab.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

console.log(`EndpointSlice write to the first connection answered by the new backend, ${ROUNDS} writes per size; connections of the timing prober (one a millisecond) that got no answer; agent cold start (start to the first connection served), RSS once loaded, at its peak, and after ${UPDATES} slice updates across the services`);
console.log([col("services", 9), col("p50 ms", 8), col("p90 ms", 8), col("p99 ms", 8), col("max ms", 8), col("lost probes", 12), col("cold start ms", 14), col("agent RSS MB", 13), col("peak RSS MB", 12), col("after updates MB", 17)].join(" "));
for (const n of SIZES) {
  const m = await measure(n);
  console.log([col(n, 9), col(pct(m.samples, 50).toFixed(1), 8), col(pct(m.samples, 90).toFixed(1), 8), col(pct(m.samples, 99).toFixed(1), 8), col(Math.max(...m.samples).toFixed(1), 8), col(m.lost, 12), col(m.cold.toFixed(0), 14), col(m.rss.toFixed(0), 13), col(m.peak.toFixed(0), 12), col(m.rssAfter.toFixed(0), 17)].join(" "));
}
