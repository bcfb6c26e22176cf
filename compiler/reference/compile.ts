// The TypeScript reference of the rule compiler: ClusterState in, datapath tables out. A pure
// function: the same state gives the same tables whatever the order of its objects.
// compiler.wasm will compute the same tables from packed input; the tests hold the two equal.
import type { Family } from "../../agent/ipam/cidr.ts";
import { parseIp } from "../../agent/ipam/cidr.ts";
import type { ClusterState, EndpointSlice, Protocol, Service, ServicePort } from "../state.ts";
import { maglevRing, ringSize } from "./maglev.ts";
import { backendKeyBytes, compareKeys, KEY_BYTES } from "../keys.ts";

export interface CompileOptions {
  /** this node's name: selects node-local endpoints for the Local traffic policies */
  nodeName: string;
  /** this node's addresses, on which NodePorts listen */
  nodeIPs: string[];
  /** ring size = smallest prime ≥ ringFactor × backends */
  ringFactor: number;
  /** the previous compile's tables: a target keeps its id from one compile to the next, so
   * that a change elsewhere never renumbers it (and the datapath delta stays small) */
  previous?: Tables;
}

/** What identifies a target across compiles. */
export const targetKey = (t: Pick<Target, "service" | "family" | "scope">) => `${t.service}|${t.family}|${t.scope}`;

export type FrontendKind = "cluster" | "external" | "loadbalancer" | "nodeport";

export interface Frontend {
  family: Family;
  ip: string;
  protocol: Protocol;
  port: number;
  kind: FrontendKind;
  /** the target it dispatches to */
  target: number;
  /** source-NAT to the node: traffic from outside to a Cluster-policy NodePort, external or
   * load-balancer address, so that replies come back through this node */
  masquerade: boolean;
}

export interface Backend {
  ip: string;
  port: number;
}

/** One backend set of one service port, family and traffic scope, with its Maglev ring. */
export interface Target {
  id: number;
  /** namespace/name:port-name/protocol, for people */
  service: string;
  family: Family;
  scope: "internal" | "external";
  backends: Backend[];
  /** the backends' keys (compiler/keys.ts), packed in the backends' order: what the ring hashes */
  keys: Uint8Array;
  /** 0 when there are no backends (the frontend rejects) */
  ringSize: number;
  ring: Int32Array;
  /** sessionAffinity ClientIP: hash the client address only */
  affinity: boolean;
}

export interface Tables {
  frontends: Frontend[];
  targets: Target[];
}

/** Fills every target's ring from its (sorted) backends and ring size. */
export type RingFiller = (targets: Target[]) => void;

/** The reference ring fill: maglevRing per target. */
export const referenceRings: RingFiller = (targets) => {
  for (const t of targets) {
    if (!t.ringSize) continue;
    const keys = t.backends.map((_, i) => t.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES));
    const { backends, ring } = maglevRing(keys, t.ringSize);
    // ring entries index the sorted keys; they must be the target's own order
    if (backends.some((k, i) => k !== keys[i])) throw new Error(`backends of target ${t.id} (${t.service}) are not sorted by key`);
    t.ring = ring;
  }
};

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Backends of a service port from its slices: ready endpoints; if there are none, serving
 * and terminating ones (as kube-proxy does, so connections drain rather than fail).
 * Named target ports resolve per slice, through the slice's port of the same name.
 */
function backendsOf(svc: Service, sp: ServicePort, family: Family, slices: EndpointSlice[], local: boolean, nodeName: string): { backends: Backend[]; keys: Uint8Array } {
  // addresses are canonical (compiler/state.ts), so ip|port identifies a backend
  const ready = new Map<string, Backend>();
  const draining = new Map<string, Backend>();
  for (const sl of slices) {
    if (sl.family !== family) continue;
    const p = sl.ports.find((x) => x.name === sp.name && x.protocol === sp.protocol);
    if (!p) continue;
    for (const e of sl.endpoints) {
      if (local && e.nodeName !== nodeName) continue;
      for (const ip of e.addresses) {
        const id = `${ip}|${p.port}`;
        if (e.ready) ready.set(id, { ip, port: p.port });
        else if (e.serving && e.terminating) draining.set(id, { ip, port: p.port });
      }
    }
  }
  const chosen = [...(ready.size ? ready : draining).values()].map((b) => ({ b, k: backendKeyBytes(b.ip, b.port) }));
  // sorted by the key the ring hashes, so the ring's indexes follow this order
  chosen.sort((x, y) => compareKeys(x.k, y.k));
  const keys = new Uint8Array(chosen.length * KEY_BYTES);
  chosen.forEach((c, i) => keys.set(c.k, i * KEY_BYTES));
  return { backends: chosen.map((c) => c.b), keys };
}

export function compile(state: ClusterState, opts: CompileOptions, fillRings: RingFiller = referenceRings): Tables {
  const services = [...state.services].sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  const slicesBySvc = new Map<string, EndpointSlice[]>();
  for (const sl of [...state.slices].sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`))) {
    const k = `${sl.namespace}/${sl.service}`;
    slicesBySvc.set(k, [...(slicesBySvc.get(k) ?? []), sl]);
  }
  const frontends: Frontend[] = [];
  const targets: Target[] = [];
  const nodeIPs = opts.nodeIPs.map((ip) => ({ ip, family: parseIp(ip).family }));

  for (const svc of services) {
    const slices = slicesBySvc.get(`${svc.namespace}/${svc.name}`) ?? [];
    const ports = [...svc.ports].sort((a, b) => cmp(`${a.protocol}/${a.port}`, `${b.protocol}/${b.port}`));
    for (const sp of ports) {
      const families = [...new Set([...svc.clusterIPs, ...svc.externalIPs, ...svc.loadBalancerIPs].map((ip) => parseIp(ip).family))];
      if (sp.nodePort) for (const n of nodeIPs) if (!families.includes(n.family) && svc.clusterIPs.some((c) => parseIp(c).family === n.family)) families.push(n.family);
      for (const family of families.sort()) {
        const make = (scope: "internal" | "external", local: boolean): number => {
          const { backends, keys } = backendsOf(svc, sp, family, slices, local, opts.nodeName);
          const m = backends.length ? ringSize(backends.length, opts.ringFactor) : 0;
          targets.push({
            id: 0, // assigned below, once every target is known
            service: `${svc.namespace}/${svc.name}:${sp.name || sp.port}/${sp.protocol}`,
            family,
            scope,
            backends,
            keys,
            ringSize: m,
            ring: new Int32Array(0),
            affinity: svc.affinityTimeout > 0,
          });
          return targets.length - 1;
        };
        const internal = make("internal", svc.internalTrafficLocal);
        const external = svc.externalTrafficLocal === svc.internalTrafficLocal ? internal : make("external", svc.externalTrafficLocal);
        const add = (ip: string, kind: FrontendKind, port: number, target: number) => {
          const masquerade = kind !== "cluster" && !svc.externalTrafficLocal;
          if (parseIp(ip).family === family) frontends.push({ family, ip, protocol: sp.protocol, port, kind, target, masquerade });
        };
        // `target` holds an index into `targets` until ids are assigned
        for (const ip of svc.clusterIPs) add(ip, "cluster", sp.port, internal);
        for (const ip of svc.externalIPs) add(ip, "external", sp.port, external);
        for (const ip of svc.loadBalancerIPs) add(ip, "loadbalancer", sp.port, external);
        if (sp.nodePort) for (const n of nodeIPs) add(n.ip, "nodeport", sp.nodePort, external);
      }
    }
  }
  assignIds(targets, opts.previous);
  for (const f of frontends) f.target = targets[f.target]!.id;
  fillRings(targets);
  return { frontends, targets };
}

/**
 * Previous ids where the target existed before, else the smallest ids free now and not used
 * by the previous compile either: an id freed by this change is never handed to another
 * target in the same change, so a delta never repoints a live id at other backends.
 */
function assignIds(targets: Target[], previous: Tables | undefined): void {
  const before = new Map((previous?.targets ?? []).map((t) => [targetKey(t), t.id]));
  const used = new Set<number>(before.values());
  const kept = new Set<number>();
  for (const t of targets) {
    const id = before.get(targetKey(t));
    if (id !== undefined && !kept.has(id)) {
      t.id = id;
      kept.add(id);
    }
  }
  let next = 1;
  for (const t of targets) {
    if (t.id) continue;
    while (used.has(next)) next++;
    t.id = next;
    used.add(next);
  }
}
