// The TypeScript reference of the rule compiler: ClusterState in, datapath tables out. A pure
// function: the same state gives the same tables whatever the order of its objects.
// compiler.wasm will compute the same tables from packed input; the tests hold the two equal.
import { addressFamily, type Family } from "../address.ts";
import type { ClusterState, EndpointSlice, Service, ServicePort } from "../state.ts";
import { maglevRing, ringSize } from "./maglev.ts";
import { backendKeyBytes, compareKeys, KEY_BYTES } from "../keys.ts";
import { backendCount, frontendKey, targetKey, type Backend, type Frontend, type FrontendKind, type ServiceUnit, type Tables, type Target } from "../tables.ts";

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

export const conflictMessage = (service: string, f: Frontend, owner: string) =>
  `Service ${service}: ${f.kind} frontend ${f.ip} ${f.protocol}/${f.port} is already served by Service ${owner}; left out`;

/**
 * A unit's frontends that it owns: those whose key `owner` gives to `service`, each key once
 * (a Service listing one address twice, as cluster and external IP, dispatches it once).
 */
export function ownFrontends(service: string, frontends: Frontend[], owner: (key: string) => string): Frontend[] {
  const seen = new Set<string>();
  return frontends.filter((f) => {
    const k = frontendKey(f);
    if (seen.has(k) || owner(k) !== service) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Compiles services, each with its slices in name order, to their units with the rings
 * filled (ids are the caller's). The reference is referenceUnits; compiler/wasm.ts runs the
 * same in compiler.wasm. `L` is what a caller holds of a slice between compiles: the slice
 * itself for the reference, its packed words for compiler.wasm (an agent at 10k services
 * holds 100,000 endpoints, which as objects would cost several times their packed size).
 */
export interface UnitCompiler<L = EndpointSlice> {
  /** What to hold of a slice: `units` reads this, not the slice. */
  slice(sl: EndpointSlice): L;
  units(batch: Array<{ service: Service; slices: L[] }>): ServiceUnit[];
  /** The node addresses NodePorts listen on, from the next `units` on. */
  setNodeIPs(ips: string[]): void;
}

/** `batch` of slices as they come, through the compiler's own form of them. */
export function unitsOf<L>(c: UnitCompiler<L>, batch: Array<{ service: Service; slices: EndpointSlice[] }>): ServiceUnit[] {
  return c.units(batch.map(({ service, slices }) => ({ service, slices: slices.map((sl) => c.slice(sl)) })));
}

/** The reference unit compile: compileService, then maglevRing per target. */
export function referenceUnits(options: Pick<CompileOptions, "nodeName" | "nodeIPs" | "ringFactor">): UnitCompiler {
  const opts = { ...options };
  return {
    slice: (sl) => sl,
    units: (batch) =>
      batch.map(({ service, slices }) => {
        const u = compileService(service, slices, opts);
        referenceRings(u.targets);
        return u;
      }),
    setNodeIPs: (ips) => void (opts.nodeIPs = ips),
  };
}

function referenceRings(targets: Target[]): void {
  for (const t of targets) {
    if (!t.ringSize) continue;
    const keys = Array.from({ length: backendCount(t) }, (_, i) => t.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES));
    const { backends, ring } = maglevRing(keys, t.ringSize);
    // ring entries index the sorted keys; they must be the target's own order
    if (backends.some((k, i) => k !== keys[i])) throw new Error(`backends of target ${t.service} are not sorted by key`);
    t.ring = ring;
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The backends of a service port from its slices, as their keys in key order: ready
 * endpoints; if there are none, serving and terminating ones (as kube-proxy does, so
 * connections drain rather than fail).
 * Named target ports resolve per slice, through the slice's port of the same name.
 */
function backendsOf(svc: Service, sp: ServicePort, family: Family, slices: EndpointSlice[], local: boolean, nodeName: string): Uint8Array {
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
  const chosen = [...(ready.size ? ready : draining).values()].map((b) => backendKeyBytes(b.ip, b.port));
  // sorted by the key the ring hashes, so the ring's indexes follow this order
  chosen.sort(compareKeys);
  const keys = new Uint8Array(chosen.length * KEY_BYTES);
  chosen.forEach((k, i) => keys.set(k, i * KEY_BYTES));
  return keys;
}

export const serviceKey = (s: { namespace: string; name: string }) => `${s.namespace}/${s.name}`;
/** The key of the Service a slice belongs to. */
export const sliceServiceKey = (sl: Pick<EndpointSlice, "namespace" | "service">) => serviceKey({ namespace: sl.namespace, name: sl.service });
/** `objects` sorted by namespace/name, keys built once each rather than per comparison. */
export function inNameOrder<T extends { namespace: string; name: string }>(objects: Iterable<T>): T[] {
  const keyed = [...objects].map((o) => ({ k: serviceKey(o), o }));
  keyed.sort((a, b) => cmp(a.k, b.k));
  return keyed.map((x) => x.o);
}

/** One service with its slices (in name order) to its unit. */
export function compileService(svc: Service, slices: EndpointSlice[], opts: Pick<CompileOptions, "nodeName" | "nodeIPs" | "ringFactor">): ServiceUnit {
  const frontends: Frontend[] = [];
  const targets: Target[] = [];
  const nodeIPs = opts.nodeIPs.map((ip) => ({ ip, family: addressFamily(ip) }));
  const ports = [...svc.ports].sort((a, b) => cmp(a.protocol, b.protocol) || a.port - b.port);
  for (const sp of ports) {
    const families = [...new Set([...svc.clusterIPs, ...svc.externalIPs, ...svc.loadBalancerIPs].map((ip) => addressFamily(ip)))];
    if (sp.nodePort) for (const n of nodeIPs) if (!families.includes(n.family) && svc.clusterIPs.some((c) => addressFamily(c) === n.family)) families.push(n.family);
    for (const family of families.sort()) {
      const make = (scope: "internal" | "external", local: boolean): number => {
        const keys = backendsOf(svc, sp, family, slices, local, opts.nodeName);
        const n = keys.length / KEY_BYTES;
        const m = n ? ringSize(n, opts.ringFactor) : 0;
        targets.push({
          id: 0, // assigned once every target of the compile is known
          service: `${svc.namespace}/${svc.name}:${sp.name || sp.port}/${sp.protocol}`,
          family,
          scope,
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
        if (addressFamily(ip) === family) frontends.push({ family, ip, protocol: sp.protocol, port, kind, target, masquerade });
      };
      for (const ip of svc.clusterIPs) add(ip, "cluster", sp.port, internal);
      for (const ip of svc.externalIPs) add(ip, "external", sp.port, external);
      for (const ip of svc.loadBalancerIPs) add(ip, "loadbalancer", sp.port, external);
      if (sp.nodePort) for (const n of nodeIPs) add(n.ip, "nodeport", sp.nodePort, external);
    }
  }
  return { frontends, targets };
}

/** Slices grouped by their service's key, each group in name order. */
export function slicesByService(slices: EndpointSlice[]): Map<string, EndpointSlice[]> {
  const out = new Map<string, EndpointSlice[]>();
  for (const sl of slices) {
    const k = sliceServiceKey(sl);
    let l = out.get(k);
    if (!l) out.set(k, (l = []));
    l.push(sl);
  }
  // a handful per service: sorting each group is cheaper than sorting them all
  for (const [k, l] of out) if (l.length > 1) out.set(k, inNameOrder(l));
  return out;
}

export function compile<L>(state: ClusterState, opts: CompileOptions, units: UnitCompiler<L> | UnitCompiler = referenceUnits(opts)): Tables {
  const slices = slicesByService(state.slices);
  const services = inNameOrder(state.services);
  const compiled = unitsOf(units as UnitCompiler<L>, services.map((service) => ({ service, slices: slices.get(serviceKey(service)) ?? [] })));
  const frontends: Frontend[] = [];
  const targets: Target[] = [];
  const owners = new Map<string, string>();
  const conflicts: string[] = [];
  for (const [i, svc] of services.entries()) {
    const key = serviceKey(svc);
    const u = compiled[i]!;
    // in name order, the first claim on a key is the owner; a key its owner lists twice is
    // dispatched once (as ownFrontends keeps it)
    for (const f of u.frontends) {
      const k = frontendKey(f);
      const o = owners.get(k);
      if (o === undefined) {
        owners.set(k, key);
        // `target` holds an index into `targets` until ids are assigned
        f.target += targets.length;
        frontends.push(f);
      } else if (o !== key) conflicts.push(conflictMessage(key, f, o));
    }
    for (const t of u.targets) targets.push(t);
  }
  if (opts.previous?.targets.length) {
    const ids = new IdAllocator(opts.previous.targets);
    ids.assign(targets, opts.previous.targets);
    ids.done();
  } else targets.forEach((t, i) => (t.id = i + 1)); // what an allocator with no past hands out
  for (const f of frontends) f.target = targets[f.target]!.id;
  return { frontends, targets, conflicts: conflicts.sort() };
}

/**
 * Target ids. A target keeps its id from one compile to the next (found by targetKey among
 * the targets it replaces); a new target takes the smallest id that neither this compile nor
 * the previous one uses: an id freed by a change is never handed to another target in the
 * same change, so a delta never repoints a live id at other backends. Kept across compiles
 * by the incremental compiler; built from the previous tables by the full one. Only the free
 * ids are held: which target has which id is in the targets themselves.
 */
export class IdAllocator {
  /** ids below `top` that no target holds, ascending */
  private holes: number[] = [];
  private top = 1;
  private freed: number[] = [];

  constructor(live: Array<Pick<Target, "id">> = []) {
    const used = new Set<number>();
    for (const t of live) {
      used.add(t.id);
      this.top = Math.max(this.top, t.id + 1);
    }
    for (let i = 1; i < this.top; i++) if (!used.has(i)) this.holes.push(i);
  }

  /**
   * Ids for `targets`, the whole of what replaces `gone` (the targets, with their ids, that
   * this compile recompiled): a target whose key was among them keeps its id, the others
   * get new ones. `gone`'s ids that nothing keeps become free once the compile ends
   * (`done`), not within it.
   */
  assign(targets: Target[], gone: Array<Pick<Target, "id" | "service" | "family" | "scope">>): void {
    const before = new Map(gone.map((t) => [targetKey(t), t.id]));
    const kept = new Set<number>();
    const fresh: Target[] = [];
    for (const t of targets) {
      const id = before.get(targetKey(t));
      if (id !== undefined && !kept.has(id)) {
        t.id = id;
        kept.add(id);
      } else fresh.push(t);
    }
    for (const t of gone) if (!kept.has(t.id)) this.freed.push(t.id);
    let h = 0;
    for (const t of fresh) t.id = h < this.holes.length ? this.holes[h++]! : this.top++;
    this.holes = this.holes.slice(h);
  }

  /** The compile is over: ids it freed may be handed out by the next one. */
  done(): void {
    if (this.freed.length) this.holes = [...this.holes, ...this.freed].sort((a, b) => a - b);
    this.freed = [];
  }
}
