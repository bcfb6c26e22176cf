// The demo cluster's pod garbage collector, the part of kube-controller-manager's PodGC that a
// cluster of virtual nodes needs: a pod bound to a Node that does not exist (never did, or was
// deleted) has no kubelet to run it or to finish its deletion, so once the Node has been
// missing for a quarantine (kube's 40 s: a Node being re-registered is not missing) the pod is
// deleted for good, as PodGC does with orphaned pods.
import { KubeError, type KubeClient } from "../../agent/watch/kube.ts";
import { Controller, type Obj } from "./informer.ts";

export const QUARANTINE_MS = 40_000;

/** The pods bound to a node that is missing, each with when the node was first seen missing
 * (`since` keeps the earlier sightings; what is no longer orphaned drops out of it). */
export function orphans(pods: Obj[], nodes: Obj[], since: Map<string, number>, now: number): Obj[] {
  const names = new Set(nodes.map((n) => n.metadata?.name));
  const seen = new Set<string>();
  const out: Obj[] = [];
  for (const p of pods) {
    const node = p.spec?.nodeName;
    if (!node || names.has(node)) continue;
    const uid = String(p.metadata?.uid);
    seen.add(uid);
    if (!since.has(uid)) since.set(uid, now);
    out.push(p);
  }
  for (const uid of [...since.keys()]) if (!seen.has(uid)) since.delete(uid);
  return out;
}

export class PodGC extends Controller {
  private readonly pods = this.watch("/api/v1/pods");
  private readonly nodes = this.watch("/api/v1/nodes");
  private readonly since = new Map<string, number>();

  constructor(
    client: KubeClient,
    log: (msg: string) => void,
    private readonly quarantineMs = QUARANTINE_MS,
  ) {
    super(client, log);
  }

  protected async pass(): Promise<void> {
    const now = Date.now();
    let next = Infinity;
    for (const p of orphans(this.pods.items(), this.nodes.items(), this.since, now)) {
      const uid = String(p.metadata!.uid);
      const due = this.since.get(uid)! + this.quarantineMs;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      const { namespace, name } = p.metadata!;
      try {
        await this.client.request("DELETE", `/api/v1/namespaces/${namespace}/pods/${name}`, { body: { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 0, preconditions: { uid } } });
        this.log(`pod ${namespace}/${name} deleted: its node ${p.spec.nodeName} does not exist`);
      } catch (e) {
        // gone already, or another pod of that name now
        if (!(e instanceof KubeError && (e.statusCode === 404 || e.statusCode === 409))) throw e;
      }
    }
    if (next < Infinity) this.sync.at(next);
  }
}
