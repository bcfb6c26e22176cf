// What the policy fault tests (test/policy-restart.e2e.test.ts, test/policy-failclosed.e2e.test.ts)
// add to the truth-table lab (testing/policy-lab.ts): the two-node cluster with the lab's nine
// pods, a writer of scenes that can hold a Pod object back (absent, or without its addresses),
// and the expectation of a pod that must be blocked both ways (fail closed).
import { type Cluster, buildUnderlay, startCluster } from "./multinode.ts";
import type { Lab } from "./lab.ts";
import { agentFixture, pathOf, type Applier, type Cell, type Fixture, type K8sObject, objects, type Scene } from "./policy-lab.ts";

/** The lab's two nodes with an agent each, and its nine pods wired by skein's CNI (no Pod objects yet). */
export async function startPolicyCluster(lab: Lab, dir: string): Promise<{ c: Cluster; fx: Fixture }> {
  const c = await startCluster({ underlay: await buildUnderlay(lab, { nodes: ["n1", "n2"] }), dir });
  return { c, fx: await agentFixture(c) };
}

const collection = (path: string) => path.slice(0, path.lastIndexOf("/"));

/** How a Pod object of the lab is held back: not in the API server, or there without status (no addresses). */
export type Hold = "absent" | "no-status";

/**
 * Gets a scene (Namespaces, Pods, NetworkPolicies; no Services) into the API server, creating,
 * replacing and deleting objects to match what it last wrote. `hold` names the lab pods whose
 * Pod object is kept out, or kept without status.podIPs: a pod wired on its node that the
 * agents cannot know the address of.
 */
export class SceneWriter implements Applier {
  readonly kind = "agent";
  hold: Record<string, Hold> = {};
  /** Pods written in the reverse of the lab's order, one at a time: an agent that sees them
   * arrive gives their identities ids in that order, unlike one that lists them all at once
   * (ids in key order) */
  reversePods = false;
  private readonly now = new Map<string, string>();

  constructor(
    readonly cluster: Cluster,
    readonly fx: Fixture,
  ) {}

  private want(s: Scene): Map<string, K8sObject> {
    const out = new Map<string, K8sObject>();
    for (const o of objects(this.fx, s)) {
      const key = o.kind === "Pod" ? `${o.metadata.namespace}/${o.metadata.name}` : undefined;
      const h = key === undefined ? undefined : this.hold[key];
      if (h === "absent") continue;
      if (h === "no-status") {
        const { status: _s, ...rest } = o;
        out.set(pathOf(o), rest as K8sObject);
      } else out.set(pathOf(o), o);
    }
    return out;
  }

  async apply(s: Scene): Promise<void> {
    const api = this.cluster.api;
    const want = this.want(s);
    // Namespaces first, then Pods, then policies: what a policy selects exists before it
    const kind = (k: string) => [...want].filter(([, o]) => o.kind === k);
    const pods = kind("Pod");
    const objs = [...kind("Namespace"), ...(this.reversePods ? pods.reverse() : pods), ...kind("NetworkPolicy")];
    for (const [path, o] of objs) {
      const text = JSON.stringify(o);
      if (this.now.get(path) === text) continue;
      const { status, ...body } = o as K8sObject & { status?: unknown };
      if (this.now.has(path)) await api.replace(path, (x) => ({ ...body, metadata: { ...body.metadata, resourceVersion: x.metadata.resourceVersion } }));
      else await api.create(collection(path), body);
      if (status !== undefined) await api.request("PATCH", `${path}/status`, { status }, "application/merge-patch+json");
      this.now.set(path, text);
    }
    for (const path of [...this.now.keys()].reverse()) {
      if (want.has(path)) continue;
      // a Pod gone from the API server while its sandbox still runs: at once, not gracefully
      await api.delete(path.includes("/pods/") ? `${path}?gracePeriodSeconds=0` : path);
      this.now.delete(path);
    }
  }
}

/**
 * The truth table with the pods of `blocked` blocked both ways, as fail closed says: a blocked
 * pod reaches nothing and nothing reaches it, but itself and its own node's host (traffic
 * between a node and its own pods is never policed).
 */
export function withBlocked(cells: Cell[], fx: Fixture, blocked: Iterable<string>, why: string): Cell[] {
  const b = new Set(blocked);
  return cells.map((c) => {
    if (!b.has(c.from) && !b.has(c.to)) return c;
    const own = c.from === c.to || c.from === `host ${fx.pod(c.to).node}`;
    return { ...c, expect: own, why: own ? `${c.why}; ${c.from === c.to ? "a pod reaches itself" : "a node reaches its own pods"}` : `${why} (${[c.from, c.to].filter((k) => b.has(k)).join(", ")} blocked)` };
  });
}

/**
 * `n` Pod objects in namespace `namespace` (created), Running with addresses of 10.244.200.0/22
 * (the pod network, but no node's pod CIDR) on a node that does not exist, each labelled
 * filler=<i>: n more identities for every agent, and nothing the lab probes.
 */
export async function addFillerPods(c: Cluster, namespace: string, n: number, nodeName = "nowhere"): Promise<void> {
  if (n > 1000) throw new Error(`at most 1000 filler pods (10.244.200.0/22), not ${n}`);
  await c.api.create("/api/v1/namespaces", { metadata: { name: namespace } });
  const batch = 25;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, async (_, k) => {
        const j = i + k;
        const name = `f${j}`;
        const ip = `10.244.${200 + Math.floor(j / 250)}.${1 + (j % 250)}`;
        await c.api.create(`/api/v1/namespaces/${namespace}/pods`, { metadata: { name, labels: { filler: String(j) } }, spec: { nodeName, containers: [{ name: "c", image: "filler" }] } });
        await c.api.request("PATCH", `/api/v1/namespaces/${namespace}/pods/${name}/status`, { status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } }, "application/merge-patch+json");
      }),
    );
  }
}
