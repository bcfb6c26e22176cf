// `skein demo`: a virtual node in network namespaces with a control plane beside it (the test
// API server, `skein apiserver`), `skein agent` on the node watching it, pods wired by skein's
// own CNI plugin through the same conflist path a container runtime takes (their addresses
// from the pod CIDR the agent learned from the Node), Services written to the API as a
// controller would, and real packets proving who reaches whom. Policy and more nodes join the
// demo as those parts of skein land.
import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { DEMO_PREFIX, Lab } from "./lab.ts";
import { skeinBinary } from "./skein-bin.ts";
import { ApiDriver } from "./apiserver/driver.ts";


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
    step("node1: a node namespace with an uplink to an outside host (198.18.0.0/24) and a control plane (198.18.9.0/24)");
    lab.host("node1");
    lab.host("outside");
    lab.host("cp");
    lab.wire({ ns: "node1", addr: "198.18.0.1/24" }, { ns: "outside", addr: "198.18.0.2/24" });
    lab.wire({ ns: "cp", addr: "198.18.9.1/24" }, { ns: "node1", addr: "198.18.9.2/24" });

    step("control plane: skein apiserver (a Kubernetes API for tests and demos) with Node node1, pod CIDR 10.244.1.0/24");
    const token = crypto.randomUUID();
    await lab.spawn("cp", [bin, "apiserver", "--dir", work, "--listen", "198.18.9.1:6443", "--token", token, "--unix", `${work}/api.sock`], { ready: "serving", what: "skein apiserver" });
    const api = new ApiDriver(`${work}/api.sock`, token);
    await api.create("/api/v1/namespaces", { metadata: { name: "demo" } });
    await api.create("/api/v1/nodes", { metadata: { name: "node1" }, spec: { podCIDRs: ["10.244.1.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.0.1" }] } });

    step("skein agent on node1: watches the API over HTTPS, writes the node's pod CIDR for CNI, programs Services");
    await lab.spawn("node1", [bin, "agent", "--kubeconfig", `${work}/kubeconfig`, "--node-name", "node1", "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16", "--node-file", `${work}/node.json`], { ready: "tables applied", timeoutMs: 15_000, what: "skein agent" });
    o.log("  agent up: the cluster listed, the first tables applied\n");

    const pluginDir = `${work}/bin`;
    mkdirSync(pluginDir);
    symlinkSync(bin, `${pluginDir}/skein`);
    // no podCIDRs here: the plugin reads the ones the agent wrote from the Node
    const conflist: Conflist = {
      cniVersion: "1.1.0",
      name: "skein-demo",
      plugins: [{ type: "skein", nodeFile: `${work}/node.json`, clusterCIDRs: ["10.244.0.0/16"], dataDir: `${work}/ipam` }],
    };
    const cni = new CniRuntime({ path: [pluginDir], hostNetns: lab.path("node1") });

    step("pods: CNI ADD for pod-a and pod-b, as kubelet's runtime would, then registered in the API as kubelet would");
    const pods: Record<string, string> = {};
    for (const p of ["pod-a", "pod-b"]) {
      const pod = await lab.pod(p, cni, conflist, "demo");
      pods[p] = pod.ip;
      o.log(`  ${p}: ${pod.addresses.join(", ")}\n`);
      await api.create("/api/v1/namespaces/demo/pods", { metadata: { name: p, labels: { app: "web" } }, spec: { nodeName: "node1", containers: [{ name: "probe", image: "skein-probe" }] } });
      await api.request("PATCH", `/api/v1/namespaces/demo/pods/${p}/status`, { status: { phase: "Running", podIP: pods[p], podIPs: [{ ip: pods[p] }] } }, "application/merge-patch+json");
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

    step("Services through the API: ClusterIP 10.96.0.10:80 -> pod-a, pod-b :8080 (named port), and one without endpoints");
    // written as a user and the EndpointSlice controller would; the agent does the rest
    const slice = (members: string[]) => ({
      metadata: { name: "web-1", namespace: "demo", labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080 }],
      endpoints: members.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: "node1" })),
    });
    const t1 = performance.now();
    await api.create("/api/v1/namespaces/demo/services", { metadata: { name: "web" }, spec: { clusterIP: "10.96.0.10", selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }] } });
    await api.create("/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices", slice([a, b]));
    await api.create("/api/v1/namespaces/demo/services", { metadata: { name: "empty" }, spec: { clusterIP: "10.96.0.99", ports: [{ port: 80 }] } });
    let first = -1;
    for (let i = 0; i < 100 && first < 0; i++) if ((await lab.connect("pod-a", "tcp", "10.96.0.10", 80, 300)).ok) first = performance.now() - t1;
    record("ClusterIP programmed by the agent", "within 1 s of the API write", first >= 0 && first < 1000, first >= 0 ? `${first.toFixed(0)} ms` : "never");
    const seenBy = async (n: number) => {
      const seen = new Set<string>();
      for (let i = 0; i < n; i++) {
        const r = await lab.connect("pod-a", "tcp", "10.96.0.10", 80);
        if (r.ok) seen.add(r.answer.split(" ")[0]!);
      }
      return [...seen].sort();
    };
    const both = await seenBy(20);
    record("pod-a -> ClusterIP 10.96.0.10:80", "both backends answer", both.length === 2, both.join(", ") || "no answer");
    const t0 = performance.now();
    const none = await lab.connect("pod-a", "tcp", "10.96.0.99", 80, 3000);
    const ms = performance.now() - t0;
    record("pod-a -> service without endpoints", "refused at once", !none.ok && ms < 1000, `${none.ok ? "answered" : "refused"} in ${ms.toFixed(0)} ms`);
    const cur = await api.request("GET", "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices/web-1");
    await api.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices/web-1", { ...cur, endpoints: slice([b]).endpoints });
    let only: string[] = [];
    for (let i = 0; i < 20 && only.join() !== "pod-b"; i++) only = await seenBy(8);
    record("scale web to pod-b only", "only pod-b answers", only.join() === "pod-b", only.join(", ") || "no answer");

    step("CNI CHECK, then DEL");
    const check = async (p: string) =>
      cni.check(conflist, { containerId: `demo-${p}`, netns: lab.path(p), ifname: "eth0" }).then(
        () => "",
        (e: Error) => e.message,
      );
    for (const p of ["pod-a", "pod-b"]) {
      const error = await check(p);
      record(`CHECK ${p}`, "passes", error === "", error || "interface, address, routes as ADD left them");
    }
    // CHECK is only worth something if it notices: take pod-b's default route away
    await lab.exec("pod-b", ["ip", "route", "del", "default"]);
    const broken = await check("pod-b");
    record("CHECK pod-b without its default route", "fails, naming the route", /route/i.test(broken), broken.split("\n")[0] || "passed");
    for (const p of ["pod-a", "pod-b"]) await cni.del(conflist, { containerId: `demo-${p}`, netns: lab.path(p), ifname: "eth0" });
    const links = (await lab.exec("node1", ["ip", "-o", "link", "show"])).stdout.match(/\bsk[0-9a-f]{13}\b/g) ?? [];
    record("DEL removes the pods' host links", "none left", links.length === 0, links.join(" ") || "none left");
  } finally {
    process.off("SIGINT", onSignal);
    if (o.keep) o.log(`\nkept namespaces ${DEMO_PREFIX}*: remove them with 'skein cleanup --namespaces-only'\n`);
    else lab.destroy();
    rmSync(work, { recursive: true, force: true });
  }
  const failed = checks.filter((c) => !c.ok);
  o.log(`\n${checks.length - failed.length} of ${checks.length} checks passed${failed.length ? `; failed: ${failed.map((c) => c.what).join(", ")}` : ""}\n`);
  o.log("NetworkPolicy and several nodes join the demo as those parts of skein land (README: What works today).\n");
  return failed.length === 0;
}
