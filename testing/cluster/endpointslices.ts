// The demo cluster's EndpointSlice controller: what kube-controller-manager's endpointslice
// controller writes for a Service with a selector, from the Pods it selects. One endpoint per
// pod with an IP of the slice's family, on a node that exists, not Succeeded or Failed:
// conditions ready (Pod Ready and not terminating), serving (Pod Ready), terminating
// (deletionTimestamp); nodeName and the node's zone; ports resolved per pod (a named targetPort through the pod's container
// ports); endpoints grouped by their port list into slices of at most 100, IPv4 and IPv6
// apart; a placeholder slice with no endpoints when there are none. Only slices labelled as
// this controller's are touched; each is owned by its Service, so the garbage collector takes
// them with it. Services without a selector (and ExternalName ones) are left to their users.
import { KubeError } from "../../agent/watch/kube.ts";
import { Controller, RETRY_MS, type Obj } from "./informer.ts";

export const MANAGED_BY = "endpointslice.kubernetes.io/managed-by";
export const CONTROLLER = "endpointslice-controller.k8s.io";
export const SERVICE_NAME = "kubernetes.io/service-name";
export const MAX_ENDPOINTS_PER_SLICE = 100;
const SLICES = "/apis/discovery.k8s.io/v1";
const ZONE = "topology.kubernetes.io/zone";

export type AddressType = "IPv4" | "IPv6";
export interface EndpointPort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}
export interface Endpoint {
  addresses: string[];
  conditions: { ready: boolean; serving: boolean; terminating: boolean };
  nodeName?: string;
  zone?: string;
  hostname?: string;
  targetRef: { kind: "Pod"; namespace: string; name: string; uid: string };
}
/** what one slice should hold */
export interface Desired {
  addressType: AddressType;
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

const conditionTrue = (p: Obj, type: string) => Array.isArray(p.status?.conditions) && p.status.conditions.some((c: any) => c?.type === type && c.status === "True");
const familyOf = (ip: string): AddressType => (ip.includes(":") ? "IPv6" : "IPv4");

/** Is the Service this controller's to fill (a selector, not ExternalName)? An empty
 * selector is none: kube-apiserver stores `selector: {}` as no selector. */
export function managedService(svc: Obj): boolean {
  const sel = svc.spec?.selector;
  return svc.spec?.type !== "ExternalName" && sel !== null && typeof sel === "object" && Object.keys(sel).length > 0;
}

/** getAddressTypesForService: the Service's ipFamilies; else its clusterIP's; else both. */
export function addressTypes(svc: Obj): AddressType[] {
  const fams: string[] = Array.isArray(svc.spec?.ipFamilies) ? svc.spec.ipFamilies : [];
  const out = (["IPv4", "IPv6"] as const).filter((t) => fams.includes(t));
  if (out.length) return out;
  const ip = svc.spec?.clusterIP;
  if (typeof ip === "string" && ip && ip !== "None") return [familyOf(ip)];
  return ["IPv4", "IPv6"];
}

export function selects(svc: Obj, pod: Obj): boolean {
  const labels: Record<string, string> = pod.metadata?.labels ?? {};
  return pod.metadata?.namespace === svc.metadata?.namespace && Object.entries(svc.spec.selector as Record<string, string>).every(([k, v]) => labels[k] === v);
}

/** podutil.FindPort: a named targetPort by the pod's container ports (name and protocol), a number as it is, none: the port. */
export function endpointPorts(svc: Obj, pod: Obj): EndpointPort[] {
  const ports: any[] = Array.isArray(svc.spec?.ports) ? svc.spec.ports.filter((p: unknown) => typeof p === "object" && p !== null) : [];
  const out: EndpointPort[] = [];
  for (const sp of ports) {
    const protocol = sp.protocol || "TCP";
    const target = sp.targetPort ?? sp.port;
    let port: number | undefined;
    if (typeof target === "number") port = target;
    else if (typeof target === "string" && /^\d+$/.test(target)) port = Number(target);
    else if (typeof target === "string") {
      for (const c of Array.isArray(pod.spec?.containers) ? pod.spec.containers : []) {
        const hit = (Array.isArray(c?.ports) ? c.ports : []).find((cp: any) => cp?.name === target && (cp.protocol || "TCP") === protocol);
        if (hit) {
          port = hit.containerPort;
          break;
        }
      }
    }
    // a pod without the named port is in the slices without that port (kube: "Failed to find port")
    if (port === undefined) continue;
    out.push({ name: sp.name ?? "", port, protocol, ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}) });
  }
  return out;
}

/** The endpoint of `pod` in a slice of `type`, or undefined if it has none there. */
export function endpointOf(svc: Obj, pod: Obj, type: AddressType, node?: Obj): Endpoint | undefined {
  const ips: string[] = Array.isArray(pod.status?.podIPs) && pod.status.podIPs.length ? pod.status.podIPs.map((p: any) => p?.ip).filter((ip: unknown) => typeof ip === "string" && ip) : pod.status?.podIP ? [pod.status.podIP] : [];
  const addresses = ips.filter((ip) => familyOf(ip) === type);
  if (!addresses.length) return undefined;
  const publish = svc.spec?.publishNotReadyAddresses === true;
  const serving = publish || conditionTrue(pod, "Ready");
  const terminating = !!pod.metadata?.deletionTimestamp;
  const m = pod.metadata!;
  return {
    addresses,
    conditions: { ready: publish || (serving && !terminating), serving, terminating },
    ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    ...(node?.metadata?.labels?.[ZONE] ? { zone: node.metadata.labels[ZONE] as string } : {}),
    // endpointutil.ShouldSetHostname: a pod naming the Service as its subdomain
    ...(pod.spec?.hostname && pod.spec?.subdomain === svc.metadata?.name ? { hostname: pod.spec.hostname } : {}),
    targetRef: { kind: "Pod", namespace: m.namespace!, name: m.name!, uid: m.uid! },
  };
}

/** ShouldPodBeInEndpoints (terminating pods included): an IP, not Succeeded or Failed; and its node exists. */
function eligible(pod: Obj, nodes: Map<string, Obj> | undefined): boolean {
  if (!pod.status?.podIP && !(Array.isArray(pod.status?.podIPs) && pod.status.podIPs.length)) return false;
  if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") return false;
  // kube skips a pod whose Node it cannot find (and looks again when nodes change)
  return !nodes || nodes.has(pod.spec?.nodeName ?? "");
}

const portsKey = (ports: EndpointPort[]) => JSON.stringify([...ports].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.port - b.port)).map((p) => [p.name, p.port, p.protocol, p.appProtocol ?? ""]));
const byPod = (a: Endpoint, b: Endpoint) => (a.targetRef.name < b.targetRef.name ? -1 : a.targetRef.name > b.targetRef.name ? 1 : 0);

/** The endpoints of `svc`, per address type and port list: what its slices should hold, before they are cut to size. */
export function desiredEndpoints(svc: Obj, pods: Obj[], nodes?: Map<string, Obj>): Map<AddressType, Map<string, Desired>> {
  const out = new Map<AddressType, Map<string, Desired>>();
  for (const type of addressTypes(svc)) out.set(type, new Map());
  for (const pod of pods) {
    if (!selects(svc, pod) || !eligible(pod, nodes)) continue;
    const ports = endpointPorts(svc, pod);
    for (const [type, groups] of out) {
      const ep = endpointOf(svc, pod, type, nodes?.get(pod.spec?.nodeName ?? ""));
      if (!ep) continue;
      const k = portsKey(ports);
      if (!groups.has(k)) groups.set(k, { addressType: type, ports, endpoints: [] });
      groups.get(k)!.endpoints.push(ep);
    }
  }
  for (const groups of out.values()) for (const g of groups.values()) g.endpoints.sort(byPod);
  return out;
}

/** The labels of a slice of `svc` (setEndpointSliceLabels): the Service's, and the controller's own. */
export function sliceLabels(svc: Obj): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata?.labels ?? {}) };
  delete labels["service.kubernetes.io/headless"];
  if (svc.spec?.clusterIP === "None") labels["service.kubernetes.io/headless"] = "";
  labels[SERVICE_NAME] = svc.metadata!.name!;
  labels[MANAGED_BY] = CONTROLLER;
  return labels;
}

export const ownerRef = (svc: Obj) => ({ apiVersion: "v1", kind: "Service", name: svc.metadata!.name!, uid: svc.metadata!.uid!, controller: true, blockOwnerDeletion: true });
const ownedBy = (slice: Obj, svc: Obj) => Array.isArray(slice.metadata?.ownerReferences) && slice.metadata.ownerReferences.some((r: any) => r?.uid === svc.metadata?.uid && r?.controller === true);
const endpointKey = (e: { targetRef?: { uid?: string; name?: string } }) => `${e.targetRef?.uid ?? ""}/${e.targetRef?.name ?? ""}`;

export interface Plan {
  create: Obj[];
  update: Obj[];
  delete: Obj[];
}

/** The slice `existing` (or a new one) holding `d`, as it should be written. */
function sliceOf(svc: Obj, d: Desired, existing?: Obj): Obj {
  const meta = existing ? { ...existing.metadata } : { generateName: `${svc.metadata!.name}-`, namespace: svc.metadata!.namespace };
  return { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { ...meta, labels: sliceLabels(svc), ownerReferences: [ownerRef(svc)] }, addressType: d.addressType, endpoints: d.endpoints, ports: d.ports };
}

/** What a slice holds that this controller writes, to tell whether it needs writing. */
const content = (s: Obj) => JSON.stringify([s.metadata?.labels ?? {}, s.metadata?.ownerReferences ?? [], s.addressType, s.endpoints ?? [], [...(s.ports ?? [])].map((p: any) => [p.name ?? "", p.port, p.protocol ?? "TCP", p.appProtocol ?? ""])]);

/**
 * The writes that make the managed slices of `svc` (`existing`, all of its namespace's with
 * its service-name label and this controller's) hold `desired`. An endpoint stays in the
 * slice that has it; new ones fill slices with room before new slices are made; slices left
 * empty go, and slices of another owner (a Service of the same name before) or of an address
 * type the Service has no more. With no endpoints of a type, one empty placeholder slice.
 */
export function plan(svc: Obj, desired: Map<AddressType, Map<string, Desired>>, existing: Obj[]): Plan {
  const out: Plan = { create: [], update: [], delete: [] };
  const mine = existing.filter((s) => ownedBy(s, svc) && desired.has(s.addressType));
  out.delete.push(...existing.filter((s) => !mine.includes(s)));
  const byName = (a: Obj, b: Obj) => (a.metadata!.name! < b.metadata!.name! ? -1 : 1);
  for (const [type, groups] of desired) {
    const slices = mine.filter((s) => s.addressType === type).sort(byName);
    const wanted: Obj[] = [];
    const used = new Set<Obj>();
    for (const [k, g] of groups) {
      const todo = new Map(g.endpoints.map((e) => [endpointKey(e), e]));
      const slots: Array<{ slice?: Obj; endpoints: Endpoint[] }> = [];
      const same = slices.filter((s) => !used.has(s) && portsKey(Array.isArray(s.ports) ? s.ports.map((p: any) => ({ name: p.name ?? "", port: p.port, protocol: p.protocol ?? "TCP", appProtocol: p.appProtocol })) : []) === k);
      for (const s of same) {
        const keep = (Array.isArray(s.endpoints) ? s.endpoints : []).flatMap((e: any) => {
          const d = todo.get(endpointKey(e));
          if (!d) return [];
          todo.delete(endpointKey(e));
          return [d];
        });
        // a slice over the limit (written by hand) gives its surplus back
        for (const e of keep.splice(MAX_ENDPOINTS_PER_SLICE)) todo.set(endpointKey(e), e);
        slots.push({ slice: s, endpoints: keep });
      }
      // those that had endpoints left first, then the emptied ones, then new slices
      slots.sort((a, b) => Number(!a.endpoints.length) - Number(!b.endpoints.length));
      for (const e of [...todo.values()].sort(byPod)) {
        let slot = slots.find((s) => s.endpoints.length < MAX_ENDPOINTS_PER_SLICE);
        if (!slot) slots.push((slot = { endpoints: [] }));
        slot.endpoints.push(e);
      }
      for (const slot of slots) {
        if (slot.slice) used.add(slot.slice);
        if (!slot.endpoints.length) continue;
        wanted.push(sliceOf(svc, { addressType: type, ports: g.ports, endpoints: slot.endpoints.sort(byPod) }, slot.slice));
      }
    }
    if (!wanted.length) {
      // the placeholder: kept if there is exactly one and it is one already
      const placeholder = sliceOf(svc, { addressType: type, ports: [], endpoints: [] });
      const empty = slices.find((s) => !(s.endpoints ?? []).length && !(s.ports ?? []).length);
      wanted.push(empty ? sliceOf(svc, { addressType: type, ports: [], endpoints: [] }, empty) : placeholder);
    }
    for (const w of wanted) {
      const was = slices.find((s) => s.metadata!.name === w.metadata!.name && w.metadata!.name);
      if (!was) out.create.push(w);
      else if (content(was) !== content(w)) out.update.push(w);
    }
    const kept = new Set(wanted.map((w) => w.metadata!.name).filter(Boolean));
    out.delete.push(...slices.filter((s) => !kept.has(s.metadata!.name)));
  }
  return out;
}

const svcKey = (o: Obj) => `${o.metadata?.namespace}/${o.metadata?.name}`;

/**
 * The slices written per Service (uid → generation written, or "deleted") that the cache has
 * yet to show (kube's EndpointSliceTracker): a Service whose cache is behind its own writes
 * waits for the watch, so that it never makes a second slice for the same pods.
 */
export class SliceTracker {
  private readonly expected = new Map<string, Map<string, number | "deleted">>();

  wrote(key: string, slice: Obj): void {
    this.of(key).set(slice.metadata!.uid!, slice.metadata!.generation ?? 0);
  }

  deleted(key: string, slice: Obj): void {
    this.of(key).set(slice.metadata!.uid!, "deleted");
  }

  private of(key: string): Map<string, number | "deleted"> {
    let m = this.expected.get(key);
    if (!m) this.expected.set(key, (m = new Map()));
    return m;
  }

  /** Does `cached` (the Service's slices in the cache) show every write? Forgets those it does. */
  caughtUp(key: string, cached: Obj[]): boolean {
    const exp = this.expected.get(key);
    if (!exp) return true;
    const byUid = new Map(cached.map((s) => [s.metadata!.uid!, s]));
    for (const [uid, gen] of exp) {
      const s = byUid.get(uid);
      if (gen === "deleted" ? !s : s && (s.metadata!.generation ?? 0) >= gen) exp.delete(uid);
    }
    if (!exp.size) this.expected.delete(key);
    return !exp.size;
  }

  /** Forgets the Services not in `live`. */
  keep(live: Set<string>): void {
    for (const k of [...this.expected.keys()]) if (!live.has(k)) this.expected.delete(k);
  }
}

export class EndpointSliceController extends Controller {
  private readonly services = this.watch("/api/v1/services");
  private readonly pods = this.watch("/api/v1/pods");
  private readonly nodes = this.watch("/api/v1/nodes");
  private readonly slices = this.watch(`${SLICES}/endpointslices`, `${MANAGED_BY}=${CONTROLLER}`);
  private readonly tracker = new SliceTracker();
  /** per Service: failed writes in a row and when to try again */
  private readonly backoff = new Map<string, { failures: number; at: number }>();

  protected async pass(): Promise<void> {
    const services = this.services.items().filter(managedService);
    const pods = this.pods.items();
    const nodes = new Map(this.nodes.items().map((n) => [n.metadata!.name!, n]));
    const live = new Set(services.map(svcKey));
    this.tracker.keep(live);
    for (const k of [...this.backoff.keys()]) if (!live.has(k)) this.backoff.delete(k);
    const slicesOf = new Map<string, Obj[]>();
    for (const s of this.slices.items()) {
      if (s.metadata?.deletionTimestamp) continue;
      const k = `${s.metadata?.namespace}/${s.metadata?.labels?.[SERVICE_NAME]}`;
      if (!slicesOf.has(k)) slicesOf.set(k, []);
      slicesOf.get(k)!.push(s);
    }
    for (const svc of services) {
      if (this.stopped) return;
      const key = svcKey(svc);
      const cached = slicesOf.get(key) ?? [];
      // its own writes will bring another pass when the watch shows them
      if (!this.tracker.caughtUp(key, cached)) continue;
      const b = this.backoff.get(key);
      if (b && b.at > Date.now()) {
        this.sync.at(b.at);
        continue;
      }
      try {
        // inside: an object the computation trips on holds back its Service only
        await this.write(key, plan(svc, desiredEndpoints(svc, pods, nodes), cached));
        this.backoff.delete(key);
      } catch (e) {
        const failures = (b?.failures ?? 0) + 1;
        // a conflict (the cache was behind): again soon, from what the watch brings
        const at = Date.now() + (e instanceof KubeError && e.statusCode === 409 ? RETRY_MS.min : Math.min(RETRY_MS.max * 6, RETRY_MS.min * 2 ** failures));
        this.backoff.set(key, { failures, at });
        this.sync.at(at);
        this.log(`endpointslices: ${key}: ${(e as Error).message}`);
      }
    }
  }

  private async write(key: string, p: Plan): Promise<void> {
    if (!p.create.length && !p.update.length && !p.delete.length) return;
    const at = (ns: string) => `${SLICES}/namespaces/${ns}/endpointslices`;
    for (const s of p.update) {
      const r = await this.client.request<Obj>("PUT", `${at(s.metadata!.namespace!)}/${s.metadata!.name}`, { body: s });
      this.tracker.wrote(key, r);
    }
    for (const s of p.create) {
      const r = await this.client.request<Obj>("POST", at(s.metadata!.namespace!), { body: s });
      this.tracker.wrote(key, r);
    }
    for (const s of p.delete) {
      try {
        await this.client.request("DELETE", `${at(s.metadata!.namespace!)}/${s.metadata!.name}`, { body: { preconditions: { uid: s.metadata!.uid } } });
      } catch (e) {
        if (!(e instanceof KubeError && e.statusCode === 404)) throw e;
      }
      this.tracker.deleted(key, s);
    }
    this.log(`endpointslices: ${key}: ${p.create.length} created, ${p.update.length} updated, ${p.delete.length} deleted`);
  }
}
