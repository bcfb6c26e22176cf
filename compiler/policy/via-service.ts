// "Services of an isolated namespace stay reachable from everywhere", across nodes. The
// connection is translated to a backend on the client's node, so the backend's node, which
// judges ingress, sees a plain pod-to-pod connection: nothing tells it a Service brought it.
// So the client's node tells it by the source: a connection it translated to a backend of an
// identity that a viaService policy isolates (isolation modes), on another node, leaves with
// the client node's Service source address, which every node reads as the pseudo-identity
// VIA_SERVICE. That address is the first host address of each pod CIDR of a node, which IPAM
// keeps for the node (agent/ipam/cidr.ts) and anti-spoofing keeps from any pod. Pure.
import { addressBytes, addressFromBytes, parseCidr } from "../address.ts";
import type { Family } from "../address.ts";
import { selectorMatches } from "./reference.ts";
import { VIA_SERVICE, type PodAddress, type PolicyTables } from "./types.ts";

export interface NodeCIDRs {
  name: string;
  podCIDRs: string[];
}

/** The Service source address of a pod CIDR: its first host address. */
export function serviceSource(cidr: string): { family: Family; ip: string } {
  const c = parseCidr(cidr);
  const b = [...c.bytes];
  for (let i = b.length - 1; i >= 0; i--) {
    b[i] = (b[i]! + 1) & 0xff;
    if (b[i] !== 0) break;
  }
  return { family: c.family, ip: addressFromBytes(b, 0, c.family) };
}

const cmp = (a: { family: Family; ip: string }, b: { family: Family; ip: string }) => {
  if (a.family !== b.family) return a.family - b.family;
  const x = addressBytes(a.ip);
  const y = addressBytes(b.ip);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
};

/** The labels of a pod identity's key (`pod|<ns>|k=v,…|…`): label keys and values hold
 * neither `,` nor `=` nor `|`. */
function keyParts(key: string): { namespace: string; labels: Record<string, string> } | undefined {
  const parts = key.split("|");
  if (parts[0] !== "pod" || parts.length < 3) return undefined;
  const labels: Record<string, string> = {};
  for (const kv of parts[2] ? parts[2].split(",") : []) {
    const eq = kv.indexOf("=");
    labels[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { namespace: parts[1]!, labels };
}

/** The identities, on any node, that a policy admitting connections through a Service selects. */
export function viaServiceIdentities(t: PolicyTables): number[] {
  const via = t.generated.filter((p) => p.viaService && p.ingress);
  if (!via.length) return [];
  const out: number[] = [];
  for (const i of t.identities) {
    const k = keyParts(i.key);
    if (k && via.some((p) => p.namespace === k.namespace && selectorMatches(p.podSelector, k.labels))) out.push(i.id);
  }
  return out;
}

/**
 * The tables with what carries "through a Service" between nodes: `viaService` (the identities
 * such connections are made for), every node's Service source addresses as VIA_SERVICE
 * (`serviceSources`, none a pod holds) and this node's (`serviceSource`), by family.
 */
export function withServiceSources(t: PolicyTables, nodes: NodeCIDRs[], nodeName: string): PolicyTables {
  const held = new Set(t.pods.map((p) => p.ip));
  const seen = new Set<string>();
  const sources: PodAddress[] = [];
  const mine: Partial<Record<Family, string>> = {};
  for (const n of nodes) {
    for (const cidr of n.podCIDRs) {
      let s: { family: Family; ip: string };
      try {
        s = serviceSource(cidr);
      } catch {
        continue; // a Node's CIDRs were checked when read (agent/loop/state.ts); nothing else comes here
      }
      if (n.name === nodeName) mine[s.family] ??= s.ip;
      if (!held.has(s.ip) && !seen.has(s.ip) && seen.add(s.ip)) sources.push({ family: s.family, ip: s.ip, id: VIA_SERVICE });
    }
  }
  sources.sort(cmp);
  return { ...t, viaService: viaServiceIdentities(t), serviceSources: sources, serviceSource: mine };
}
