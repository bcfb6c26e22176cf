// The demo cluster's container runtime and kubelet in one, per virtual node: it realizes the
// Pods bound to its node as a kubelet with a CNI-driven runtime would, except that no image
// is run. A Pod gets a network namespace, CNI ADD through the node's conflist (with the
// K8S_POD_* arguments kubelet passes), and a built-in server (`skein probe serve`) answering
// TCP and UDP on every container port with the pod's name; then its status says Running and
// Ready with its IPs. A Pod being deleted (deletionTimestamp) loses its server, CNI DEL runs,
// its namespace goes, and the Pod object is deleted for good (gracePeriodSeconds=0, as kubelet
// does once the containers stopped).
import { existsSync, readFileSync } from "node:fs";
import { CniRuntime, type Conflist } from "../../agent/cni/runtime.ts";
import { deleteNetns, listNetns } from "../../agent/sys/netns.ts";
import { KubeError, type KubeClient } from "../../agent/watch/kube.ts";
import { Informer } from "./informer.ts";
import type { Lab } from "../lab.ts";

/** a pod annotation naming a Service of its namespace (`name:port`) its server calls on every
 * request, appending the answer: how the demo's frontend calls its backend */
export const UPSTREAM_ANNOTATION = "demo.skein.io/upstream";

type Obj = Record<string, any>;

export interface PodRunnerOptions {
  client: KubeClient;
  /** the Node's name */
  node: string;
  /** the node's network namespace (lab short name): where CNI plugins run */
  nodeNs: string;
  lab: Lab;
  /** the node's conflist file (its /etc/cni/net.d/10-skein.conflist) */
  conflistFile: string;
  /** where the CNI plugins are (its /opt/cni/bin) */
  cniPath: string[];
  /** one log file per pod server */
  logDir: string;
  log: (msg: string) => void;
}

interface Running {
  uid: string;
  key: string;
  /** lab short name of the pod's network namespace */
  ns: string;
  containerId: string;
  args: string;
  pid?: number;
  ips: string[];
}

/** The pod's namespace in the lab: its name (cut short) and a piece of its uid, so that two
 * pods of one name in different namespaces (or one deleted and made again) never share one. */
export function podNetnsName(pod: Obj): string {
  const name = String(pod.metadata.name).slice(0, 40).replace(/\.+$/, "");
  return `${name}-${String(pod.metadata.uid).replace(/-/g, "").slice(0, 6)}`;
}

/** The ports a pod's server answers on: every container port, TCP and UDP alike (the issue of
 * which protocol a port was declared for is the Service's, not the server's). */
export function podPorts(pod: Obj): number[] {
  const ports = new Set<number>();
  for (const c of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
    for (const p of c.ports ?? []) if (Number.isInteger(p.containerPort) && p.containerPort > 0 && p.containerPort < 65536) ports.add(p.containerPort);
  }
  return [...ports].sort((a, b) => a - b);
}

/** The status a kubelet writes for a running pod whose containers are ready. */
export function runningStatus(pod: Obj, o: { ips: string[]; hostIP: string; now: string }): Obj {
  const cond = (type: string) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: o.now });
  return {
    phase: "Running",
    conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map(cond),
    hostIP: o.hostIP,
    hostIPs: [{ ip: o.hostIP }],
    podIP: o.ips[0],
    podIPs: o.ips.map((ip) => ({ ip })),
    startTime: o.now,
    containerStatuses: (pod.spec?.containers ?? []).map((c: Obj) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      containerID: `skein-demo://${pod.metadata.uid}-${c.name}`,
      ready: true,
      started: true,
      restartCount: 0,
      state: { running: { startedAt: o.now } },
    })),
  };
}

/** An Event's name as client-go's recorder makes it (`<object>.<hex time>`), the object's
 * name cut so that the whole stays within the 253 characters a name may have. */
export function eventName(object: string, now = Date.now()): string {
  const suffix = `.${(now * 1000 + Math.floor(Math.random() * 1000)).toString(16)}`;
  return `${object.slice(0, 253 - suffix.length).replace(/[.-]+$/, "")}${suffix}`;
}

export class PodRunner {
  private readonly pods: Informer;
  private readonly cni: CniRuntime;
  private readonly running = new Map<string, Running>();
  /** per pod uid, the work queued for it: one ADD or teardown at a time */
  private readonly queue = new Map<string, Promise<void>>();
  /** pods whose realization failed, retried with a growing delay while they exist */
  private readonly retries = new Map<string, { n: number; timer: ReturnType<typeof setTimeout> }>();
  private readonly latest = new Map<string, Obj>();
  private hostIP = "";
  private stopped = false;

  constructor(private readonly o: PodRunnerOptions) {
    this.cni = new CniRuntime({ path: o.cniPath, hostNetns: o.lab.path(o.nodeNs) });
    this.pods = new Informer(
      o.client,
      "/api/v1/pods",
      (pod, op) => {
        const uid = String(pod.metadata!.uid);
        if (op === "delete") {
          this.latest.delete(uid);
          this.enqueue(uid, () => this.teardown(uid, undefined));
          return;
        }
        this.latest.set(uid, pod);
        this.enqueue(uid, () => this.sync(uid));
      },
      (m) => o.log(`pod runner ${o.node}: ${m}`),
      undefined,
      `spec.nodeName=${o.node}`,
    );
  }

  async start(): Promise<void> {
    // as a kubelet posts its node's status: Ready, so that `kubectl get nodes` says so
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await this.o.client.request("PATCH", `/api/v1/nodes/${this.o.node}/status`, {
      body: { status: { conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "skein demo pod runner is posting ready status", lastHeartbeatTime: now, lastTransitionTime: now }] } },
      contentType: "application/strategic-merge-patch+json",
    });
    await this.pods.start();
  }

  /** Stops watching; the pods keep running (a kubelet restart leaves containers alone). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.retries.values()) clearTimeout(r.timer);
    await this.pods.stop();
    await Promise.all(this.queue.values());
  }

  /** How many pods run here now. */
  get count(): number {
    return this.running.size;
  }

  private enqueue(uid: string, work: () => Promise<void>): void {
    const prev = this.queue.get(uid) ?? Promise.resolve();
    const next = prev.then(work).catch((e) => this.o.log(`pod runner ${this.o.node}: ${(e as Error).message}`));
    this.queue.set(uid, next);
    void next.then(() => {
      if (this.queue.get(uid) === next) this.queue.delete(uid);
    });
  }

  private async sync(uid: string): Promise<void> {
    const pod = this.latest.get(uid);
    if (!pod) return;
    if (pod.metadata.deletionTimestamp) {
      await this.teardown(uid, pod);
      return;
    }
    if (this.running.has(uid) || this.stopped) return;
    try {
      await this.realize(pod);
      this.retries.delete(uid);
    } catch (e) {
      const msg = (e as Error).message;
      this.o.log(`pod runner ${this.o.node}: pod ${pod.metadata.namespace}/${pod.metadata.name}: ${msg}`);
      await this.event(pod, "Warning", "FailedCreatePodSandBox", `Failed to create pod sandbox: ${msg}`.slice(0, 1024));
      await this.teardown(uid, undefined);
      const n = (this.retries.get(uid)?.n ?? 0) + 1;
      const timer = setTimeout(() => this.enqueue(uid, () => this.sync(uid)), Math.min(30_000, 500 * 2 ** n));
      this.retries.set(uid, { n, timer });
    }
  }

  private async realize(pod: Obj): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    const ns = podNetnsName(pod);
    const containerId = `demo${String(uid).replace(/-/g, "")}`;
    const args = `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${uid}`;
    const run: Running = { uid, key: `${namespace}/${name}`, ns, containerId, args, ips: [] };
    // what an earlier runner left (a pod made again under the same uid cannot be, but a crash
    // between namespace and ADD can)
    if (listNetns().includes(this.o.lab.name(ns))) deleteNetns(this.o.lab.name(ns));
    this.o.lab.host(ns);
    this.running.set(uid, run);
    const conflist = this.conflist();
    const r = (await this.cni.add(conflist, { containerId, netns: this.o.lab.path(ns), ifname: "eth0", args })) as { ips?: Array<{ address: string }> };
    run.ips = (r.ips ?? []).map((i) => i.address.split("/")[0]!);
    if (run.ips.length === 0) throw new Error("CNI ADD gave the pod no address");
    const ports = podPorts(pod);
    if (ports.length > 0) {
      const upstream = await this.upstream(pod);
      const argv = [this.o.lab.skeinBin, "probe", "serve", "--name", name, ...ports.flatMap((p) => ["--tcp", String(p), "--udp", String(p)]), ...(upstream ? ["--upstream", upstream] : [])];
      // named as its namespace is: a pod's name may be as long as a file name may be
      run.pid = await this.o.lab.spawnDetached(ns, argv, { log: `${this.o.logDir}/pod-${ns}.log`, ready: "ready", what: `the server of pod ${run.key}` });
    }
    if (!this.hostIP) {
      // the node's address, for the pod's hostIP (a Node's addresses do not change in the demo)
      const node = await this.o.client.request<Obj>("GET", `/api/v1/nodes/${this.o.node}`);
      this.hostIP = node.status?.addresses?.find((x: Obj) => x.type === "InternalIP")?.address ?? "";
    }
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await this.o.client.request("PATCH", `/api/v1/namespaces/${namespace}/pods/${name}/status`, {
      body: { metadata: { uid }, status: runningStatus(pod, { ips: run.ips, hostIP: this.hostIP, now }) },
      contentType: "application/merge-patch+json",
    });
    this.o.log(`pod ${run.key} running on ${this.o.node}: ${run.ips.join(", ")}${ports.length ? `, serving ${ports.join(", ")}` : ""}`);
  }

  /** The Service the pod's upstream annotation names, as address:port (its ClusterIP). */
  private async upstream(pod: Obj): Promise<string | undefined> {
    const want = pod.metadata.annotations?.[UPSTREAM_ANNOTATION];
    if (typeof want !== "string") return undefined;
    const m = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):(\d{1,5})$/.exec(want);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new Error(`annotation ${UPSTREAM_ANNOTATION}: ${JSON.stringify(want)} is not <service>:<port>`);
    const svc = await this.o.client.request<Obj>("GET", `/api/v1/namespaces/${pod.metadata.namespace}/services/${m[1]}`).catch((e) => {
      throw new Error(`annotation ${UPSTREAM_ANNOTATION}: Service ${pod.metadata.namespace}/${m[1]}: ${(e as Error).message}`);
    });
    const ip = svc.spec?.clusterIP;
    if (typeof ip !== "string" || ip === "None" || ip === "") throw new Error(`annotation ${UPSTREAM_ANNOTATION}: Service ${pod.metadata.namespace}/${m[1]} has no ClusterIP`);
    return ip.includes(":") ? `[${ip}]:${m[3]}` : `${ip}:${m[3]}`;
  }

  private conflist(): Conflist {
    if (!existsSync(this.o.conflistFile)) throw new Error(`no CNI configuration at ${this.o.conflistFile} yet`);
    return JSON.parse(readFileSync(this.o.conflistFile, "utf8")) as Conflist;
  }

  /** Stops the pod's server, CNI DEL, removes its namespace; then, for a pod being deleted,
   * deletes the object for good. */
  private async teardown(uid: string, pod: Obj | undefined): Promise<void> {
    const retry = this.retries.get(uid);
    if (retry && pod) {
      clearTimeout(retry.timer);
      this.retries.delete(uid);
    }
    const run = this.running.get(uid);
    if (run) {
      if (run.pid !== undefined) {
        try {
          process.kill(run.pid, "SIGTERM");
        } catch {}
      }
      try {
        await this.cni.del(this.conflist(), { containerId: run.containerId, netns: this.o.lab.path(run.ns), ifname: "eth0", args: run.args });
      } catch (e) {
        this.o.log(`pod runner ${this.o.node}: CNI DEL of ${run.key}: ${(e as Error).message}`);
      }
      deleteNetns(this.o.lab.name(run.ns));
      this.running.delete(uid);
      this.o.log(`pod ${run.key} stopped on ${this.o.node}`);
    }
    if (pod) {
      try {
        await this.o.client.request("DELETE", `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { body: { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 0, preconditions: { uid } } });
      } catch (e) {
        // gone already, or a new pod of the same name (another uid): not ours to delete
        if (!(e instanceof KubeError && (e.statusCode === 404 || e.statusCode === 409))) throw e;
      }
    }
  }

  private async event(pod: Obj, type: string, reason: string, message: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await this.o.client
      .request("POST", `/api/v1/namespaces/${pod.metadata.namespace}/events`, {
        body: {
          // named as client-go's recorder names them (a generateName may not end in a dot)
          metadata: { name: eventName(pod.metadata.name) },
          involvedObject: { kind: "Pod", apiVersion: "v1", namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
          type,
          reason,
          message,
          source: { component: "kubelet", host: this.o.node },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((e) => this.o.log(`pod runner ${this.o.node}: Event ${reason} for ${pod.metadata.namespace}/${pod.metadata.name}: ${(e as Error).message}`));
  }
}
