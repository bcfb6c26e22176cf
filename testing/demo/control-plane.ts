// `skein demo --control-plane DIR`: the long-lived process of a demo cluster, beside the API
// server, NATS and the agents. It serves the API to kubectl on the machine's loopback (the
// API server itself is only reachable inside the lab), and runs what kube-controller-manager,
// kube-scheduler and each node's kubelet would: the EndpointSlice controller, the pod garbage
// collector, the scheduler and a pod runner per node. They all talk to the API through the
// proxy with the credentials a user gets (on a listener of their own), so what they do is
// what kubectl sees.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { KubeClient, loadKubeConfig } from "../../agent/watch/kube.ts";
import { PodRunner } from "../cluster/pod-runner.ts";
import { proxiedKubeconfig, startApiProxy } from "../cluster/api-proxy.ts";
import { Scheduler } from "../cluster/scheduler.ts";
import { EndpointSliceController } from "../cluster/endpointslices.ts";
import { PodGC } from "../cluster/pod-gc.ts";
import { DEMO_PREFIX, Lab } from "../lab.ts";
import { readState } from "./cluster.ts";

/** kubectl's usual port, when free on this machine's loopback */
const PREFERRED_PORT = 6443;

export async function runControlPlane(dir: string, bin: string, log: (s: string) => void): Promise<never> {
  const state = readState(dir);
  if (!state) throw new Error(`${dir}/state.json: no demo state to run (start the demo with 'skein demo')`);
  const say = (s: string) => log(`${new Date().toISOString()} ${s}\n`);
  let proxy;
  try {
    proxy = startApiProxy({ unix: `${dir}/api.sock`, certsFile: `${dir}/api/certs.json`, port: PREFERRED_PORT });
  } catch {
    proxy = startApiProxy({ unix: `${dir}/api.sock`, certsFile: `${dir}/api/certs.json` });
  }
  // the controllers' own listener: what users hold open on theirs (watches up to its cap)
  // never keeps the scheduler or a pod runner out
  const own = startApiProxy({ unix: `${dir}/api.sock`, certsFile: `${dir}/api/certs.json`, maxWatches: 1000 });
  const write = (file: string, url: string) => {
    writeFileSync(`${file}.tmp`, proxiedKubeconfig(readFileSync(`${dir}/api/kubeconfig`, "utf8"), url), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  };
  write(`${dir}/kubeconfig`, proxy.url);
  write(`${dir}/kubeconfig.controllers`, own.url);
  const client = () => new KubeClient(loadKubeConfig(`${dir}/kubeconfig.controllers`), { requestTimeoutMs: 30_000 });
  const lab = new Lab(DEMO_PREFIX, bin);
  const parts: Array<{ start(): Promise<void>; stop(): Promise<void> | void }> = [new Scheduler(client(), say), new EndpointSliceController(client(), say), new PodGC(client(), say)];
  for (const n of state.nodes) {
    parts.push(
      new PodRunner({
        client: client(),
        node: n.name,
        nodeNs: n.ns,
        lab,
        conflistFile: `${dir}/nodes/${n.name}/10-skein.conflist`,
        cniPath: [`${dir}/cni-bin`],
        logDir: `${dir}/logs`,
        log: say,
      }),
    );
  }
  const stop = async () => {
    say("stopping (the pods, agents and API server keep running: 'skein demo --stop' ends them)");
    await Promise.all(parts.map((p) => p.stop()));
    await Promise.all([proxy.stop(), own.stop()]);
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop());
  process.once("SIGINT", () => void stop());
  await Promise.all(parts.map((p) => p.start()));
  say(`control plane ready: ${proxy.url}`);
  return new Promise<never>(() => {});
}
