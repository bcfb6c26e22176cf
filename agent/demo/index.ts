// `skein demo`: a virtual node in network namespaces, pods wired by skein's own CNI plugin
// through the same conflist path a container runtime takes, and real packets proving who
// reaches whom. Services and policy join the demo as those parts of skein land.
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { CniRuntime, type Conflist } from "../cni/runtime.ts";
import { DEMO_PREFIX, Lab } from "./lab.ts";
import { skeinBinary } from "./skein-bin.ts";


interface Check {
  what: string;
  expect: string;
  ok: boolean;
  detail: string;
}

export async function runDemo(o: { keep: boolean; log: (s: string) => void }): Promise<boolean> {
  if (process.getuid?.() !== 0) throw new Error("skein demo builds network namespaces and needs root");
  const bin = skeinBinary();
  const lab = new Lab(DEMO_PREFIX, bin);
  lab.destroy(); // leftovers of an earlier, interrupted demo
  const work = mkdtempSync(`${tmpdir()}/skein-demo-`);
  const checks: Check[] = [];
  const step = (s: string) => o.log(`\n== ${s}\n`);
  const onSignal = () => {
    lab.destroy();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  try {
    step("node1: a node namespace with an uplink to an outside host (198.18.0.0/24)");
    lab.host("node1");
    lab.host("outside");
    lab.wire({ ns: "node1", addr: "198.18.0.1/24" }, { ns: "outside", addr: "198.18.0.2/24" });

    const pluginDir = `${work}/bin`;
    mkdirSync(pluginDir);
    symlinkSync(bin, `${pluginDir}/skein`);
    const conflist: Conflist = {
      cniVersion: "1.1.0",
      name: "skein-demo",
      plugins: [{ type: "skein", podCIDRs: ["10.244.1.0/24"], clusterCIDRs: ["10.244.0.0/16"], dataDir: `${work}/ipam` }],
    };
    const cni = new CniRuntime({ path: [pluginDir], hostNetns: lab.path("node1") });

    step("pods: CNI ADD for pod-a and pod-b, as kubelet's runtime would");
    const pods: Record<string, string> = {};
    for (const p of ["pod-a", "pod-b"]) {
      lab.host(p);
      const r = (await cni.add(conflist, { containerId: `demo-${p}`, netns: lab.path(p), ifname: "eth0" })) as { ips: Array<{ address: string }> };
      pods[p] = r.ips[0]!.address.split("/")[0]!;
      o.log(`  ${p}: ${r.ips.map((i) => i.address).join(", ")}\n`);
    }
    const a = pods["pod-a"]!;
    const b = pods["pod-b"]!;

    step("servers: TCP and UDP on 8080 in pod-a, pod-b and the outside host");
    await lab.serve("pod-a", { name: "pod-a", tcp: 8080, udp: 8080 });
    await lab.serve("pod-b", { name: "pod-b", tcp: 8080, udp: 8080 });
    await lab.serve("outside", { name: "outside", tcp: 8080, udp: 8080 });

    step("traffic");
    const record = (what: string, expect: string, ok: boolean, detail: string) => {
      checks.push({ what, expect, ok, detail });
      o.log(`  ${ok ? "ok  " : "FAIL"} ${what.padEnd(40)} ${detail}\n`);
    };
    for (const [from, to, ip] of [
      ["pod-a", "pod-b", b],
      ["pod-b", "pod-a", a],
      ["pod-a", "node1", "198.18.0.1"],
    ] as const) {
      record(`${from} -> ${to} ping`, "reply", await lab.ping(from, ip), ip);
    }
    for (const proto of ["tcp", "udp"] as const) {
      const r = await lab.connect("pod-a", proto, b, 8080);
      record(`pod-a -> pod-b ${proto}/8080`, "answer from pod-b", r.ok && r.answer.startsWith("pod-b "), r.ok ? r.answer : r.error);
      const back = await lab.connect("pod-b", proto, a, 8080);
      record(`pod-b -> pod-a ${proto}/8080`, "answer from pod-a", back.ok && back.answer.startsWith("pod-a "), back.ok ? back.answer : back.error);
      const out = await lab.connect("pod-a", proto, "198.18.0.2", 8080);
      record(`pod-a -> outside ${proto}/8080 (masquerade)`, "outside sees the node's address", out.ok && out.answer.endsWith(" 198.18.0.1"), out.ok ? out.answer : out.error);
    }

    step("a Service: ClusterIP 10.96.0.10:80 -> pod-a, pod-b :8080, and one without endpoints");
    // loaded the way the agent loads them: compiled, then applied through the datapath
    writeFileSync(`${work}/services.json`, JSON.stringify([
      { kind: "Service", metadata: { name: "web", namespace: "demo" }, spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }] } },
      {
        kind: "EndpointSlice",
        metadata: { name: "web-1", namespace: "demo", labels: { "kubernetes.io/service-name": "web" } },
        addressType: "IPv4",
        ports: [{ name: "http", port: 8080 }],
        endpoints: [a, b].map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: "node1" })),
      },
      { kind: "Service", metadata: { name: "empty", namespace: "demo" }, spec: { clusterIP: "10.96.0.99", ports: [{ port: 80 }] } },
    ]));
    await lab.exec("node1", [bin, "tables", "--state", `${work}/services.json`, "--apply", "--node-name", "node1", "--node-ip", "198.18.0.1"]);
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const r = await lab.connect("pod-a", "tcp", "10.96.0.10", 80);
      if (r.ok) seen.add(r.answer.split(" ")[0]!);
    }
    record("pod-a -> ClusterIP 10.96.0.10:80", "both backends answer", seen.size === 2, [...seen].sort().join(", ") || "no answer");
    const t0 = performance.now();
    const none = await lab.connect("pod-a", "tcp", "10.96.0.99", 80, 3000);
    const ms = performance.now() - t0;
    record("pod-a -> service without endpoints", "refused at once", !none.ok && ms < 1000, `${none.ok ? "answered" : "refused"} in ${ms.toFixed(0)} ms`);

    step("CNI CHECK, then DEL");
    for (const p of ["pod-a", "pod-b"]) {
      await cni.check(conflist, { containerId: `demo-${p}`, netns: lab.path(p), ifname: "eth0" });
      record(`CHECK ${p}`, "passes", true, "interface, address, routes as ADD left them");
    }
    for (const p of ["pod-a", "pod-b"]) await cni.del(conflist, { containerId: `demo-${p}`, netns: lab.path(p), ifname: "eth0" });
    const links = (await lab.exec("node1", ["ip", "-o", "link", "show"])).stdout.match(/\bsk[0-9a-f]{13}\b/g) ?? [];
    record("DEL removes the pods' host links", "none left", links.length === 0, links.join(" ") || "none left");
  } finally {
    process.off("SIGINT", onSignal);
    if (o.keep) o.log(`\nkept namespaces ${DEMO_PREFIX}*: remove them with 'skein cleanup'\n`);
    else lab.destroy();
    rmSync(work, { recursive: true, force: true });
  }
  const failed = checks.filter((c) => !c.ok);
  o.log(`\n${checks.length - failed.length} of ${checks.length} checks passed${failed.length ? `; failed: ${failed.map((c) => c.what).join(", ")}` : ""}\n`);
  o.log("The Service tables were compiled and loaded from objects in this demo; the agent that keeps them in step with a Kubernetes API, NetworkPolicy and several nodes join the demo as those parts of skein land (README: What works today).\n");
  return failed.length === 0;
}
