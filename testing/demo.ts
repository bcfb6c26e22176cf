// `skein demo`: a live virtual cluster in network namespaces. Three nodes by default (two on a
// shared subnet, one behind a NAT), the test API server and NATS on a control-plane host, a
// skein agent per node, and a control-plane process with a scheduler, an EndpointSlice
// controller and a pod runner per node. Then a two-tier app is deployed through the API as a
// user would, and real packets (TCP and UDP) show who reaches whom, with `skein trace`
// explaining a few verdicts and the compiled tables. The end (or Ctrl-C) takes it all down;
// `--keep` leaves it running for kubectl until `skein demo --stop`.
import { hostname } from "node:os";
import { runAsync, inNetns } from "../agent/sys/exec.ts";
import { skeinBinary } from "./skein-bin.ts";
import { appObjects, APP_NS, APP_PORT, expected, judge, renderMatrix, type Cell, type Source, type Target } from "./demo/app.ts";
import { buildCluster, DEMO_DIR, demoRunning, stopDemo, type DemoCluster } from "./demo/cluster.ts";
import { Progress } from "./demo/progress.ts";
import { OUTSIDE_NS } from "./multinode.ts";
import { podNetnsName } from "./cluster/pod-runner.ts";

export interface DemoOptions {
  keep: boolean;
  nodes: number;
  pods: number;
  log: (s: string) => void;
  /** a terminal: a spinner while a step runs */
  tty: boolean;
}

type Obj = Record<string, any>;

const STEPS = 9;

async function waitFor<T>(what: string, f: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? ` (last: ${(last as Error).message})` : ""}`);
    await Bun.sleep(100);
  }
}

export async function runDemo(o: DemoOptions): Promise<boolean> {
  if (process.getuid?.() !== 0) throw new Error("skein demo builds network namespaces and needs root");
  const running = demoRunning();
  if (running) throw new Error(`a demo cluster is running already (${running.started ? `started ${running.started}, ` : ""}control plane pid ${running.pid}): 'skein demo --stop' ends it`);
  const bin = skeinBinary();
  // what an earlier demo left (interrupted, or its control plane killed)
  await stopDemo();
  const p = new Progress(STEPS, o.log, o.tty);
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    p.done(false);
    o.log("\ninterrupted: taking the demo cluster down\n");
    // the build goes on meanwhile and may start one more process or write one more file
    // before it fails: a second pass takes that too
    void stopDemo()
      .then(() => Bun.sleep(300))
      .then(() => stopDemo())
      .finally(() => process.exit(130));
  };
  // a closed terminal (SIGHUP) ends the demo as Ctrl-C does: its processes would run on unseen
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, onSignal);
  let ok = false;
  let keep = false;
  try {
    const c = await buildCluster({ bin, nodes: o.nodes, step: (s) => p.step(s), info: (s) => p.info(s) });
    ok = await exercise(c, o, p);
    keep = o.keep;
    if (keep) printKeep(c, o);
  } catch (e) {
    p.done(false);
    o.log(`\nthe demo failed: ${(e as Error).message}\nlogs: ${DEMO_DIR}/logs (kept until the cluster is taken down)\n`);
    ok = false;
    keep = o.keep;
    if (keep) o.log(`the cluster is left as it is ('skein demo --stop' ends it)\n`);
  } finally {
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.off(sig, onSignal);
    if (!keep && !interrupted) {
      const gone = await stopDemo();
      o.log(`\ntaken down: ${gone.join(", ")}\n`);
    }
  }
  return ok;
}

/** Deploys the app, waits for it, and runs the matrix, traces and tables. */
async function exercise(c: DemoCluster, o: DemoOptions, p: Progress): Promise<boolean> {
  const api = c.api;
  const app = appObjects(o.pods);
  p.step(`app: namespace ${APP_NS}, Services backend and frontend (NodePort), ${app.pods.length} pods, NetworkPolicy backend-from-frontend`);
  await api.create("/api/v1/namespaces", app.namespace);
  for (const s of app.services) await api.create(`/api/v1/namespaces/${APP_NS}/services`, s);
  await api.create(`/apis/networking.k8s.io/v1/namespaces/${APP_NS}/networkpolicies`, app.policy);
  // unbound pods, as `kubectl apply` leaves them: the scheduler binds them, the node's pod
  // runner starts them. A tier at a time, each bound before the next comes, so that the
  // scheduler's spreading puts the tiers on different nodes
  for (const tier of ["backend", "frontend", "client"]) {
    const these = app.pods.filter((x) => (x.metadata as Obj).labels.app === tier);
    for (const pod of these) await api.create(`/api/v1/namespaces/${APP_NS}/pods`, pod);
    await waitFor(
      `the ${tier} pods bound to nodes`,
      async () => (await Promise.all(these.map((x) => api.request<Obj>("GET", `/api/v1/namespaces/${APP_NS}/pods/${(x.metadata as Obj).name}`)))).every((x) => x.spec.nodeName),
      30_000,
    );
  }
  const pods = await waitFor(
    "every pod Running and Ready",
    async () => {
      const l = await api.request<{ items: Obj[] }>("GET", `/api/v1/namespaces/${APP_NS}/pods`);
      const ready = l.items.filter((x) => x.status?.phase === "Running" && x.status?.conditions?.some((k: Obj) => k.type === "Ready" && k.status === "True"));
      return ready.length === app.pods.length && ready;
    },
    60_000,
  );
  const byName = new Map(pods.map((x) => [x.metadata.name as string, x]));
  for (const x of pods) p.info(`${String(x.metadata.name).padEnd(12)} ${String(x.status.podIP).padEnd(12)} on ${x.spec.nodeName}`);
  const svc = async (name: string) => api.request<Obj>("GET", `/api/v1/namespaces/${APP_NS}/services/${name}`);
  const [backend, frontend] = [await svc("backend"), await svc("frontend")];
  const nodePort = frontend.spec.ports.find((x: Obj) => x.protocol === "TCP").nodePort as number;
  const nodePortUdp = frontend.spec.ports.find((x: Obj) => x.protocol === "UDP").nodePort as number;
  p.info(`backend  ClusterIP ${backend.spec.clusterIP}:80; frontend ClusterIP ${frontend.spec.clusterIP}:80, NodePort ${nodePort}/tcp ${nodePortUdp}/udp`);

  p.step("waiting for the agents: every pod reaches the frontend Service, which calls the backend");
  const fronts = pods.filter((x) => x.metadata.labels.app === "frontend");
  const probe = (ns: string, proto: "tcp" | "udp", host: string, port: number, ms = 1500) => c.lab.connect(ns, proto, host, port, ms);
  const t0 = performance.now();
  // every pod's identity known on every node it talks to (until then a policy fails closed):
  // each pod reaches the frontend, which calls the backend, and the outside host a NodePort
  for (const x of pods) await waitFor(`${x.metadata.name} -> frontend Service`, async () => judge("reply", frontTarget(frontend), await probe(podNetnsName(x), "tcp", frontend.spec.clusterIP, 80)), 30_000);
  const n1 = c.nodes.find((n) => !n.public)!;
  await waitFor("outside -> NodePort", async () => judge("reply", frontTarget(frontend), await probe(OUTSIDE_NS, "tcp", n1.address, nodePort)), 30_000);
  p.info(`the app answers end to end after ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  p.step("connectivity matrix: real TCP and UDP packets from pods and the outside host");
  const sources: Source[] = [
    ...pods.filter((x) => x.metadata.labels.app !== "backend").map((x) => ({ name: x.metadata.name as string, ns: podNetnsName(x), app: x.metadata.labels.app as Source["app"] })),
    ...pods.filter((x) => x.metadata.labels.app === "backend").slice(0, 1).map((x) => ({ name: x.metadata.name as string, ns: podNetnsName(x), app: "backend" as const })),
    { name: "outside", ns: OUTSIDE_NS, app: "outside" },
  ];
  const reachable = c.nodes.filter((n) => !n.public);
  const targets: Target[] = [
    frontTarget(frontend),
    { label: "backend svc", address: backend.spec.clusterIP, port: 80, app: "backend", via: "clusterip" },
    ...pods.filter((x) => x.metadata.labels.app === "backend").map((x) => ({ label: `${x.metadata.name} pod`, address: x.status.podIP as string, port: APP_PORT, app: "backend" as const, via: "pod" as const })),
    ...reachable.map((n) => ({ label: `${n.name}:nodeport`, address: n.address, port: nodePort, app: "frontend" as const, via: "nodeport" as const })),
  ];
  const cells: Cell[] = [];
  const jobs: Array<() => Promise<void>> = [];
  for (const proto of ["tcp", "udp"] as const) {
    for (const from of sources) {
      for (const to of targets) {
        // a backend to itself, directly or through its own Service (the ring may pick it: a
        // hairpin, which no policy blocks, as in Cilium): not a question of the policy
        if (from.app === "backend" && ((to.via === "pod" && byName.get(from.name)?.status.podIP === to.address) || (to.via === "clusterip" && to.app === "backend"))) continue;
        jobs.push(async () => {
          const port = to.via === "nodeport" && proto === "udp" ? nodePortUdp : to.port;
          const want = expected(from, to);
          const r = await probe(from.ns, proto, to.address, port, want === "reply" ? 3000 : 1000);
          cells.push({ from, to, proto, expect: want, answered: r.ok, ok: judge(want, to, r), detail: r.ok ? r.answer : r.error });
        });
      }
    }
  }
  let next = 0;
  await Promise.all(Array.from({ length: 6 }, async () => { for (let i = next++; i < jobs.length; i = next++) await jobs[i]!(); }));
  o.log(`\n${renderMatrix(cells)}\n\n`);
  const example = cells.find((x) => x.ok && x.to.via === "nodeport" && x.proto === "tcp");
  if (example) o.log(`e.g. outside -> ${example.to.label}: "${example.detail}"\n  (the frontend pod answers with the address it saw, then what its backend said)\n\n`);
  for (const bad of cells.filter((x) => !x.ok)) o.log(`  unexpected: ${bad.from.name} -> ${bad.to.label} ${bad.proto}: expected ${bad.expect}, got ${bad.answered ? `"${bad.detail}"` : bad.detail}\n`);

  p.step("skein trace: the agents explain three of those verdicts");
  const client = byName.get("client")!;
  const f1 = fronts[0]!;
  const traces = [
    { what: `${f1.metadata.name} -> backend Service (allowed)`, node: f1.spec.nodeName, src: f1.status.podIP, dst: `${backend.spec.clusterIP}:80/tcp`, want: /ALLOW|allow/ },
    { what: "client -> backend Service (denied by backend-from-frontend)", node: client.spec.nodeName, src: client.status.podIP, dst: `${backend.spec.clusterIP}:80/tcp`, want: /backend-from-frontend/ },
    { what: "client -> frontend Service (no policy selects the frontend)", node: client.spec.nodeName, src: client.status.podIP, dst: `${frontend.spec.clusterIP}:80/udp`, want: /frontend/ },
  ];
  let tracesOk = true;
  for (const t of traces) {
    const r = await runAsync(inNetns(c.lab.path(t.node), [c.lab.skeinBin, "trace", t.src, t.dst]), { allowFail: true, env: { ...process.env, NO_COLOR: "1" } });
    const good = r.exitCode === 0 && t.want.test(r.stdout);
    tracesOk &&= good;
    o.log(`\n$ ip netns exec ${c.lab.name(t.node)} skein trace ${t.src} ${t.dst}    # ${t.what}\n${r.stdout.trimEnd()}${r.exitCode !== 0 ? `\n${r.stderr.trim()}` : ""}\n`);
  }

  p.step("the tables the agent compiled for the backend Service (node1)");
  const tables = await runAsync(inNetns(c.lab.path(c.nodes[0]!.ns), [c.lab.skeinBin, "tables", "--service", `${APP_NS}/backend`]), { allowFail: true, env: { ...process.env, NO_COLOR: "1" } });
  o.log(`\n$ ip netns exec ${c.lab.name(c.nodes[0]!.ns)} skein tables --service ${APP_NS}/backend\n${tables.stdout.trimEnd()}\n`);
  p.done();

  const failed = cells.filter((x) => !x.ok).length + (tracesOk ? 0 : 1) + (tables.exitCode === 0 ? 0 : 1);
  const total = cells.length + 2;
  o.log(`\n${total - failed} of ${total} checks passed (${cells.length} probes in the matrix, the traces, the tables)\n`);
  return failed === 0;
}

function frontTarget(frontend: Obj): Target {
  return { label: "frontend svc", address: frontend.spec.clusterIP, port: 80, app: "frontend", via: "clusterip" };
}

function printKeep(c: DemoCluster, o: DemoOptions): void {
  const n1 = c.lab.name(c.nodes[0]!.ns);
  o.log(`
The cluster keeps running (API server, NATS, ${c.nodes.length} agents, the pods). Try:

  export KUBECONFIG=${c.kubeconfig}
  kubectl get nodes,pods -A -o wide
  kubectl get skeinnodes
  kubectl -n ${APP_NS} get svc,endpointslices,networkpolicies
  kubectl run web --image=any --port=8080          # the image is not run: a built-in server answers
  kubectl expose pod web --port=80 --target-port=8080
  kubectl get svc web                              # then, from a pod's namespace:
  ip netns exec ${c.lab.name("out")} ${c.lab.skeinBin} probe connect tcp ${c.nodes[0]!.address} <nodeport>
  ip netns exec ${n1} ${c.lab.skeinBin} status
  ip netns exec ${n1} ${c.lab.skeinBin} tables --service default/web
  ip netns list | grep ${c.lab.prefix}             # every node, pod and host is a namespace
  logs: ${c.dir}/logs

End it with: ${c.lab.skeinBin} demo --stop   (or ${c.lab.skeinBin} cleanup)
(on ${hostname()})
`);
}
