// The tables in force as `skein tables` and the agent's /v1/tables show them: whole, or the
// share of one Service (its frontends and targets, with their rings) or of one Pod (its
// identity, the policies that police it, the allowed pairs it is in, and the Service targets
// it backs). Pure: the agent hands in what it holds.
import { targetBackends, type Tables, type Target } from "../../compiler/tables.ts";
import type { PodInfo, PolicyTables } from "../../compiler/policy/types.ts";
import { readableServices } from "./readable-services.ts";
import { readablePolicy } from "./readable-policy.ts";

export interface ObjectRef {
  namespace: string;
  name: string;
}

const targetJson = ({ keys, ring, ...t }: Target, withRing: boolean) => ({ ...t, backends: targetBackends({ keys, family: t.family }), ...(withRing ? { ring: [...ring] } : {}) });

/** Every table as JSON; rings only when asked (a million slots at 10k services). */
export function tablesJson(t: Tables, policy: PolicyTables | undefined, withRings: boolean) {
  return { ...t, targets: t.targets.map((x) => targetJson(x, withRings)), ...(policy ? { policy } : {}) };
}

export function tablesView(t: Tables, policy: PolicyTables | undefined, pods: readonly PodInfo[], filter: { service?: ObjectRef; pod?: ObjectRef }): { json: unknown; text: string } | { missing: string } {
  if (filter.service) {
    const { namespace, name } = filter.service;
    const prefix = `${namespace}/${name}:`;
    const targets = t.targets.filter((x) => x.service.startsWith(prefix));
    const ids = new Set(targets.map((x) => x.id));
    const frontends = t.frontends.filter((f) => ids.has(f.target));
    const conflicts = t.conflicts.filter((c) => c.includes(`${namespace}/${name}`));
    if (!targets.length) return { missing: `Service ${namespace}/${name} has nothing in this node's tables (not known, headless, without ports, or refused: the agent's log says why)` };
    const sub: Tables = { frontends, targets, conflicts };
    return { json: { service: `${namespace}/${name}`, ...tablesJson(sub, undefined, true) }, text: readableServices(sub) + conflicts.map((c) => `conflict: ${c}\n`).join("") };
  }
  if (filter.pod) {
    const { namespace, name } = filter.pod;
    const pod = pods.find((p) => p.namespace === namespace && p.name === name);
    if (!pod) return { missing: `Pod ${namespace}/${name} is not known to this agent` };
    const ips = new Set(pod.ips);
    const addrs = (policy?.pods ?? []).filter((a) => ips.has(a.ip));
    const idset = new Set(addrs.map((a) => a.id));
    const identities = (policy?.identities ?? []).filter((i) => idset.has(i.id));
    const touches = (e: { src: number; srcLast: number; dst: number; dstLast: number }) => [...idset].some((id) => (id >= e.src && id <= e.srcLast) || (id >= e.dst && id <= e.dstLast));
    const allowIngress = (policy?.allowIngress ?? []).filter(touches);
    const allowEgress = (policy?.allowEgress ?? []).filter(touches);
    const backs = t.targets.filter((x) => targetBackends(x).some((b) => ips.has(b.ip)));
    const json = {
      pod: `${namespace}/${name}`,
      node: pod.nodeName,
      ips: pod.ips,
      labels: pod.labels,
      identities: addrs.map((a) => ({ ip: a.ip, id: a.id })),
      policedBy: identities.map((i) => ({ id: i.id, name: i.name, ingress: i.ingressBy, egress: i.egressBy })),
      allowIngress,
      allowEgress,
      backendOf: backs.map((x) => ({ target: x.id, service: x.service, scope: x.scope })),
    };
    const lines = [`POD ${namespace}/${name} on ${pod.nodeName || "(no node)"}  ${pod.ips.join(" ") || "(no address)"}`];
    const labels = Object.entries(pod.labels).map(([k, v]) => `${k}=${v}`).join(",");
    lines.push(`labels: ${labels || "(none)"}`);
    if (!policy) lines.push("identity: no NetworkPolicy tables (no policy compiled yet)");
    for (const a of addrs) {
      const i = identities.find((x) => x.id === a.id);
      lines.push(`identity of ${a.ip}: ${a.id}${i ? ` (${i.name})` : a.id === 2 ? " (blocked: fail closed)" : ""}`);
      if (i) lines.push(`  ingress policed by: ${i.ingressBy.join(", ") || "none (open)"}`, `  egress policed by: ${i.egressBy.join(", ") || "none (open)"}`);
    }
    lines.push(`allowed pairs with it: ${allowIngress.length} ingress, ${allowEgress.length} egress${allowIngress.length + allowEgress.length ? " (--json lists them)" : ""}`);
    lines.push(backs.length ? `backend of: ${backs.map((x) => `t${x.id} ${x.service} (${x.scope})`).join(", ")}` : "backend of: no Service target");
    return { json, text: lines.join("\n") + "\n" };
  }
  return { json: tablesJson(t, policy, false), text: readableServices(t) + (policy ? "\n" + readablePolicy(policy) : "\nno NetworkPolicy tables yet\n") };
}
