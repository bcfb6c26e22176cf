// The demo cluster's scheduler: what kube-scheduler's default profile does that a cluster
// without resources to count needs. Every pending Pod for "default-scheduler" is bound
// (pods/binding) to a node that passes the filters kube-scheduler runs first, in its order:
// NodeUnschedulable, TaintToleration (NoSchedule and NoExecute taints, and the not-ready and
// unreachable taints the node lifecycle controller would put on a node whose Ready condition
// is False or Unknown), NodeAffinity (nodeSelector and required node affinity); among those,
// the node with the fewest pods bound to it, then by name, so the choice is deterministic.
// A pod no node takes gets PodScheduled=False, reason Unschedulable, with kube-scheduler's
// message, and is tried again when the nodes change.
import { KubeError } from "../../agent/watch/kube.ts";
import { Controller, RETRY_MS, type Obj } from "./informer.ts";

export const SCHEDULER_NAME = "default-scheduler";

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}
export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}

/** v1 Toleration.ToleratesTaint: an empty effect or key matches any, Exists any value. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  if (!t.operator || t.operator === "Equal") return (t.value ?? "") === (taint.value ?? "");
  return t.operator === "Exists";
}

const conditionOf = (o: Obj | undefined, type: string): Record<string, any> | undefined => (Array.isArray(o?.status?.conditions) ? o!.status.conditions.find((c: any) => c?.type === type) : undefined);

/** The node's taints, with the one the node lifecycle controller adds for a Ready condition
 * False (not-ready) or Unknown (unreachable); a node without the condition has neither. */
export function taintsOf(node: Obj): Taint[] {
  const taints: Taint[] = Array.isArray(node.spec?.taints) ? node.spec.taints.filter((t: any) => t && typeof t.key === "string") : [];
  const ready = conditionOf(node, "Ready")?.status;
  const implied = ready === "False" ? "node.kubernetes.io/not-ready" : ready === "Unknown" ? "node.kubernetes.io/unreachable" : undefined;
  if (implied && !taints.some((t) => t.key === implied && t.effect === "NoSchedule")) taints.push({ key: implied, effect: "NoSchedule" });
  return taints;
}

/** One nodeSelectorRequirement against the node's labels (or, for matchFields, its name). */
function requirementMatches(r: any, value: string | undefined): boolean {
  const values: string[] = Array.isArray(r?.values) ? r.values : [];
  switch (r?.operator) {
    case "In":
      return value !== undefined && values.includes(value);
    case "NotIn":
      return value === undefined || !values.includes(value);
    case "Exists":
      return value !== undefined;
    case "DoesNotExist":
      return value === undefined;
    case "Gt":
    case "Lt": {
      const [v, bound] = [Number(value), Number(values[0])];
      if (value === undefined || !/^-?\d+$/.test(value) || values.length !== 1 || !/^-?\d+$/.test(values[0]!)) return false;
      return r.operator === "Gt" ? v > bound : v < bound;
    }
  }
  return false;
}

/** NodeAffinity's filter: spec.nodeSelector, and the terms of requiredDuringScheduling (any one). */
export function matchesNodeAffinity(pod: Obj, node: Obj): boolean {
  const labels: Record<string, string> = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries((pod.spec?.nodeSelector ?? {}) as Record<string, string>)) if (labels[k] !== v) return false;
  const terms = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (!Array.isArray(terms)) return true;
  // a term with no requirements matches nothing (nodeaffinity.NewNodeSelector)
  return terms.some((t: any) => {
    const exprs: any[] = Array.isArray(t?.matchExpressions) ? t.matchExpressions : [];
    const fields: any[] = Array.isArray(t?.matchFields) ? t.matchFields : [];
    if (!exprs.length && !fields.length) return false;
    return exprs.every((r) => requirementMatches(r, Object.hasOwn(labels, r?.key) ? labels[r.key] : undefined)) && fields.every((r) => r?.key === "metadata.name" && requirementMatches(r, node.metadata?.name));
  });
}

/** Why `node` cannot take `pod` (kube-scheduler's reason), or undefined if it can. */
export function unfit(pod: Obj, node: Obj): string | undefined {
  const tolerations: Toleration[] = Array.isArray(pod.spec?.tolerations) ? pod.spec.tolerations.filter((t: unknown) => typeof t === "object" && t !== null) : [];
  if (node.spec?.unschedulable === true && !tolerations.some((t) => tolerates(t, { key: "node.kubernetes.io/unschedulable", effect: "NoSchedule" }))) return "node(s) were unschedulable";
  const untolerated = taintsOf(node).find((taint) => (taint.effect === "NoSchedule" || taint.effect === "NoExecute") && !tolerations.some((t) => tolerates(t, taint)));
  if (untolerated) return `node(s) had untolerated taint {${untolerated.key}: ${untolerated.value ?? ""}}`;
  if (!matchesNodeAffinity(pod, node)) return "node(s) didn't match Pod's node affinity/selector";
  return undefined;
}

/** kube-scheduler's FitError message: how many nodes failed for each reason, sorted. */
export function fitErrorMessage(nodes: number, reasons: string[]): string {
  if (!nodes) return "no nodes available to schedule pods";
  const count = new Map<string, number>();
  for (const r of reasons) count.set(r, (count.get(r) ?? 0) + 1);
  const histogram = [...count].map(([r, n]) => `${n} ${r}`).sort();
  // the default profile's preemption finds nothing to evict for these reasons, and says so
  return `0/${nodes} nodes are available: ${histogram.join(", ")}. preemption: 0/${nodes} nodes are available: ${nodes} Preemption is not helpful for scheduling.`;
}

const terminated = (p: Obj) => p.status?.phase === "Succeeded" || p.status?.phase === "Failed";

/** Is `pod` for this scheduler and waiting for a node? */
export function pending(pod: Obj): boolean {
  const name = pod.spec?.schedulerName;
  // a gated pod waits for its gates to go (kube-scheduler: SchedulingGated)
  if (Array.isArray(pod.spec?.schedulingGates) && pod.spec.schedulingGates.length) return false;
  return !pod.spec?.nodeName && (name === undefined || name === "" || name === SCHEDULER_NAME) && !pod.metadata?.deletionTimestamp && !terminated(pod);
}

/**
 * Where `pod` goes: the fitting node with the fewest non-terminated pods bound to it
 * (`load`, by node name), ties by name; or the message of why none fits.
 */
export function choose(pod: Obj, nodes: Obj[], load: Map<string, number>): { node: string } | { message: string } {
  const reasons: string[] = [];
  let best: string | undefined;
  for (const n of [...nodes].sort((a, b) => (a.metadata!.name! < b.metadata!.name! ? -1 : 1))) {
    const why = unfit(pod, n);
    if (why) reasons.push(why);
    else if (best === undefined || (load.get(n.metadata!.name!) ?? 0) < (load.get(best) ?? 0)) best = n.metadata!.name!;
  }
  return best !== undefined ? { node: best } : { message: fitErrorMessage(nodes.length, reasons) };
}

/** Non-terminated pods per node, counting `assumed` bindings the cache has yet to show. */
export function loadOf(pods: Obj[], assumed: Map<string, string>): Map<string, number> {
  const load = new Map<string, number>();
  const add = (node: string) => load.set(node, (load.get(node) ?? 0) + 1);
  for (const p of pods) {
    const node = p.spec?.nodeName || assumed.get(keyOf(p));
    if (node && !terminated(p)) add(node);
  }
  return load;
}

export const keyOf = (o: Obj) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export class Scheduler extends Controller {
  private readonly pods = this.watch("/api/v1/pods");
  private readonly nodes = this.watch("/api/v1/nodes");
  /** pod key → node it was bound to, until the cache shows the binding (kube-scheduler's assume) */
  private readonly assumed = new Map<string, string>();
  /** pod key → failed writes in a row and when to try again */
  private readonly backoff = new Map<string, { failures: number; at: number }>();

  protected async pass(): Promise<void> {
    const pods = this.pods.items();
    const nodes = this.nodes.items();
    for (const p of pods) {
      const node = this.assumed.get(keyOf(p));
      // the cache caught up with (or went past) a binding: no longer assumed
      if (node !== undefined && (p.spec?.nodeName || !pending(p))) this.assumed.delete(keyOf(p));
    }
    const live = new Set(pods.map(keyOf));
    for (const k of [...this.assumed.keys(), ...this.backoff.keys()]) if (!live.has(k)) (this.assumed.delete(k), this.backoff.delete(k));
    const load = loadOf(pods, this.assumed);
    const waiting = pods.filter((p) => pending(p) && !this.assumed.has(keyOf(p))).sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
    for (const pod of waiting) {
      if (this.stopped) return;
      const k = keyOf(pod);
      const b = this.backoff.get(k);
      if (b && b.at > Date.now()) {
        this.sync.at(b.at);
        continue;
      }
      const choice = choose(pod, nodes, load);
      try {
        if ("node" in choice) {
          await this.bind(pod, choice.node);
          this.assumed.set(k, choice.node);
          load.set(choice.node, (load.get(choice.node) ?? 0) + 1);
        } else await this.unschedulable(pod, choice.message);
        this.backoff.delete(k);
      } catch (e) {
        // gone, or changed under us: the watch brings the news and another pass
        if (e instanceof KubeError && (e.statusCode === 404 || e.statusCode === 409)) continue;
        const failures = (b?.failures ?? 0) + 1;
        const at = Date.now() + Math.min(RETRY_MS.max * 6, RETRY_MS.min * 2 ** failures);
        this.backoff.set(k, { failures, at });
        this.sync.at(at);
        this.log(`scheduler: ${k}: ${(e as Error).message}`);
      }
    }
  }

  private async bind(pod: Obj, node: string): Promise<void> {
    const { namespace, name, uid } = pod.metadata!;
    await this.client.request("POST", `/api/v1/namespaces/${namespace}/pods/${name}/binding`, { body: { apiVersion: "v1", kind: "Binding", metadata: { name, namespace, uid }, target: { apiVersion: "v1", kind: "Node", name: node } } });
    this.log(`scheduler: ${namespace}/${name} → ${node}`);
    void this.event(pod, "Normal", "Scheduled", "Binding", `Successfully assigned ${namespace}/${name} to ${node}`);
  }

  /** PodScheduled=False with the reason, written only when it says something new. */
  private async unschedulable(pod: Obj, message: string): Promise<void> {
    const was = conditionOf(pod, "PodScheduled");
    if (was?.status === "False" && was.reason === "Unschedulable" && was.message === message) return;
    const condition = { type: "PodScheduled", status: "False", lastProbeTime: null, lastTransitionTime: was?.status === "False" ? was.lastTransitionTime : now(), reason: "Unschedulable", message };
    const conditions: any[] = Array.isArray(pod.status?.conditions) ? pod.status.conditions.filter((c: any) => c?.type !== "PodScheduled") : [];
    const { namespace, name, resourceVersion } = pod.metadata!;
    // the resourceVersion makes it a compare-and-swap: a pod changed since is looked at again
    await this.client.request("PATCH", `/api/v1/namespaces/${namespace}/pods/${name}/status`, { body: { metadata: { resourceVersion }, status: { conditions: [...conditions, condition] } }, contentType: "application/merge-patch+json" });
    this.log(`scheduler: ${namespace}/${name}: ${message}`);
    void this.event(pod, "Warning", "FailedScheduling", "Scheduling", message);
  }

  /** A core v1 Event about `pod`, as kube-scheduler records it; best effort. */
  private async event(pod: Obj, type: string, reason: string, action: string, message: string): Promise<void> {
    const { namespace, name, uid, resourceVersion } = pod.metadata!;
    const t = now();
    const body = {
      metadata: { name: `${name}.${Date.now().toString(16)}${Math.random().toString(16).slice(2, 6)}`, namespace },
      involvedObject: { kind: "Pod", apiVersion: "v1", namespace, name, uid, resourceVersion },
      reason,
      message,
      type,
      action,
      source: { component: SCHEDULER_NAME },
      reportingComponent: SCHEDULER_NAME,
      reportingInstance: SCHEDULER_NAME,
      firstTimestamp: t,
      lastTimestamp: t,
      count: 1,
    };
    try {
      await this.client.request("POST", `/api/v1/namespaces/${namespace}/events`, { body });
    } catch (e) {
      this.log(`scheduler: event ${reason} for ${namespace}/${name}: ${(e as Error).message}`);
    }
  }
}
