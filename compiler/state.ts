// ClusterState: the minimal, plain view of the cluster that the rule compiler needs, and the
// checks that turn Kubernetes objects into it. An invalid object is reported (which object,
// which field) and left out; every other object is still compiled.
import { AddressError, addressFamily, quote, specialUse, type Family } from "./address.ts";

export type Protocol = "TCP" | "UDP" | "SCTP";

export interface ServicePort {
  name: string;
  protocol: Protocol;
  port: number;
  /** a number, or the name of a container port resolved per endpoint */
  targetPort: number | string;
  /** 0 when the Service has none */
  nodePort: number;
}

export interface Service {
  namespace: string;
  name: string;
  type: "ClusterIP" | "NodePort" | "LoadBalancer";
  /** empty for a headless Service: it gets no frontend */
  clusterIPs: string[];
  externalIPs: string[];
  loadBalancerIPs: string[];
  ports: ServicePort[];
  externalTrafficLocal: boolean;
  internalTrafficLocal: boolean;
  /** sessionAffinity ClientIP timeout in seconds; 0 for none */
  affinityTimeout: number;
}

export interface Endpoint {
  addresses: string[];
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string;
  zone: string;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** the owning Service's name (label kubernetes.io/service-name) */
  service: string;
  family: Family;
  ports: Array<{ name: string; protocol: Protocol; port: number }>;
  endpoints: Endpoint[];
}

export interface ClusterState {
  services: Service[];
  slices: EndpointSlice[];
}

/** One shared empty list for the address lists most Services leave empty (an agent holds
 * 10,000 Services at 10k services: each with its own empty arrays is 20,000 objects). */
const NONE: string[] = Object.freeze([]) as unknown as string[];
const none = (l: string[]) => (l.length ? l : NONE);

export class ObjectError extends Error {
  constructor(readonly object: string, readonly field: string, why: string) {
    super(`${object}: ${field}: ${why}`);
    this.name = "ObjectError";
  }
}

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
export const PROTOCOLS: Protocol[] = ["TCP", "UDP", "SCTP"];
// IANA service names, as Kubernetes validates named ports
export const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

export function port(v: unknown, obj: string, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) throw new ObjectError(obj, field, `${JSON.stringify(v)} is not a port (1-65535)`);
  return v;
}

export function protocol(v: unknown, obj: string, field: string): Protocol {
  const p = v ?? "TCP";
  if (!PROTOCOLS.includes(p as Protocol)) throw new ObjectError(obj, field, `${JSON.stringify(p)} is not one of TCP, UDP, SCTP`);
  return p as Protocol;
}

/** An address read strictly (compiler/address.ts): what passes is canonical text, so one
 * address has one spelling everywhere after this point. With `family`, of that family. */
export function ip(v: unknown, obj: string, field: string, family?: Family): string {
  try {
    addressFamily(v, family);
  } catch (e) {
    if (e instanceof AddressError) throw new ObjectError(obj, field, e.message);
    throw e;
  }
  return v as string;
}

/** An address a Service may send traffic to (an external IP, an endpoint): not one that stays
 * on the node or its link, as Kubernetes validates these fields. */
function remoteIp(v: unknown, obj: string, field: string, family?: Family): string {
  const s = ip(v, obj, field, family);
  const why = specialUse(s);
  if (why) throw new ObjectError(obj, field, `${quote(s)} may not be used here: it is ${why}`);
  return s;
}

/** A list field: absent is empty, anything but a list is refused. */
export function list(v: unknown, obj: string, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ObjectError(obj, field, `${quote(v)} is not a list`);
  return v;
}

/** Kubernetes' syntax for object names (a DNS subdomain) and namespaces (a DNS label). */
const OBJECT_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function meta(o: Obj, kind: string): { namespace: string; name: string; id: string; labels: Obj } {
  const m = isObj(o.metadata) ? o.metadata : {};
  const name = typeof m.name === "string" ? m.name : "";
  const namespace = typeof m.namespace === "string" ? m.namespace : "default";
  // a name the API server would refuse (only a file can hold one) may carry control
  // characters for the terminal that prints it, or run to any length: quoted in the id then
  const shown = (v: string) => (/^[\x21-\x7e]{1,253}$/.test(v) ? v : quote(v));
  const id = `${kind} ${shown(namespace)}/${name ? shown(name) : "?"}`;
  if (!name) throw new ObjectError(id, "metadata.name", "missing");
  if (!NAMESPACE_NAME.test(namespace)) throw new ObjectError(id, "metadata.namespace", `${quote(namespace)} is not a valid name`);
  if (!OBJECT_NAME.test(name)) throw new ObjectError(id, "metadata.name", `${quote(name)} is not a valid name`);
  return { namespace, name, id, labels: isObj(m.labels) ? m.labels : {} };
}

export function parseService(o: Obj): Service | undefined {
  const m = meta(o, "Service");
  const spec = isObj(o.spec) ? o.spec : {};
  const type = (spec.type ?? "ClusterIP") as string;
  if (type === "ExternalName") return undefined; // a DNS alias: nothing to program
  if (!["ClusterIP", "NodePort", "LoadBalancer"].includes(type)) throw new ObjectError(m.id, "spec.type", `${JSON.stringify(type)} is not a Service type`);
  // clusterIPs when given (clusterIP is its first element), else the older clusterIP alone
  const byList = spec.clusterIPs !== undefined && spec.clusterIPs !== null;
  const rawIPs = byList ? list(spec.clusterIPs, m.id, "spec.clusterIPs") : spec.clusterIP !== undefined ? [spec.clusterIP] : [];
  const clusterIPs = rawIPs[0] === "None" ? [] : rawIPs.map((v, i) => ip(v, m.id, byList ? `spec.clusterIPs[${i}]` : "spec.clusterIP"));
  const rawPorts = Array.isArray(spec.ports) ? spec.ports : [];
  const seen = new Set<string>();
  const ports = rawPorts.map((p: unknown, i: number): ServicePort => {
    const f = `spec.ports[${i}]`;
    if (!isObj(p)) throw new ObjectError(m.id, f, "not an object");
    const proto = protocol(p.protocol, m.id, `${f}.protocol`);
    const num = port(p.port, m.id, `${f}.port`);
    const key = `${proto}/${num}`;
    if (seen.has(key)) throw new ObjectError(m.id, `${f}.port`, `${proto} port ${num} is listed twice`);
    seen.add(key);
    let target: number | string = num;
    if (typeof p.targetPort === "string") {
      if (!PORT_NAME.test(p.targetPort)) throw new ObjectError(m.id, `${f}.targetPort`, `${JSON.stringify(p.targetPort)} is not a port name`);
      target = p.targetPort;
    } else if (p.targetPort !== undefined) target = port(p.targetPort, m.id, `${f}.targetPort`);
    const nodePort = p.nodePort === undefined || p.nodePort === 0 ? 0 : port(p.nodePort, m.id, `${f}.nodePort`);
    return { name: typeof p.name === "string" ? p.name : "", protocol: proto, port: num, targetPort: target, nodePort: type === "ClusterIP" ? 0 : nodePort };
  });
  const status = isObj(o.status) && isObj(o.status.loadBalancer) ? o.status.loadBalancer : {};
  const ingress = list(status.ingress, m.id, "status.loadBalancer.ingress");
  const affinity = spec.sessionAffinity === "ClientIP";
  const cfg = isObj(spec.sessionAffinityConfig) && isObj(spec.sessionAffinityConfig.clientIP) ? spec.sessionAffinityConfig.clientIP : {};
  const timeout = typeof cfg.timeoutSeconds === "number" ? cfg.timeoutSeconds : 10800;
  if (affinity && (!Number.isInteger(timeout) || timeout < 1 || timeout > 86400)) {
    throw new ObjectError(m.id, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", `${timeout} is not within 1-86400`);
  }
  return {
    namespace: m.namespace,
    name: m.name,
    type: type as Service["type"],
    clusterIPs,
    externalIPs: none(list(spec.externalIPs, m.id, "spec.externalIPs").map((v, i) => remoteIp(v, m.id, `spec.externalIPs[${i}]`))),
    // an ingress point may be a hostname instead: only its ip is read
    loadBalancerIPs: none(type === "LoadBalancer" ? ingress.flatMap((g, i) => (isObj(g) && g.ip !== undefined ? [ip(g.ip, m.id, `status.loadBalancer.ingress[${i}].ip`)] : [])) : []),
    ports,
    externalTrafficLocal: spec.externalTrafficPolicy === "Local",
    internalTrafficLocal: spec.internalTrafficPolicy === "Local",
    affinityTimeout: affinity ? timeout : 0,
  };
}

export function parseEndpointSlice(o: Obj): EndpointSlice | undefined {
  const m = meta(o, "EndpointSlice");
  const service = m.labels["kubernetes.io/service-name"];
  if (typeof service !== "string" || !service) throw new ObjectError(m.id, "metadata.labels[kubernetes.io/service-name]", "missing: the slice names no Service");
  const at = o.addressType;
  if (at === "FQDN") return undefined;
  if (at !== "IPv4" && at !== "IPv6") throw new ObjectError(m.id, "addressType", `${JSON.stringify(at)} is not IPv4, IPv6 or FQDN`);
  const family: Family = at === "IPv4" ? 4 : 6;
  const ports = (Array.isArray(o.ports) ? o.ports : []).map((p: unknown, i: number) => {
    if (!isObj(p)) throw new ObjectError(m.id, `ports[${i}]`, "not an object");
    return { name: typeof p.name === "string" ? p.name : "", protocol: protocol(p.protocol, m.id, `ports[${i}].protocol`), port: port(p.port, m.id, `ports[${i}].port`) };
  });
  const endpoints = list(o.endpoints, m.id, "endpoints").map((e: unknown, i: number): Endpoint => {
    if (!isObj(e)) throw new ObjectError(m.id, `endpoints[${i}]`, "not an object");
    const c = isObj(e.conditions) ? e.conditions : {};
    // addressType decides the family: an address of the other one is refused
    const addresses = list(e.addresses, m.id, `endpoints[${i}].addresses`).map((a, j) => remoteIp(a, m.id, `endpoints[${i}].addresses[${j}]`, family));
    // Kubernetes: a nil ready condition means ready; serving defaults to ready.
    const ready = c.ready !== false;
    return {
      addresses,
      ready,
      serving: c.serving === undefined ? ready : c.serving === true,
      terminating: c.terminating === true,
      nodeName: typeof e.nodeName === "string" ? e.nodeName : "",
      zone: typeof e.zone === "string" ? e.zone : "",
    };
  });
  return { namespace: m.namespace, name: m.name, service, family, ports, endpoints };
}

/** Hands each Kubernetes object to `read`; what is no object, or what `read` refuses with an
 * ObjectError, is one error each, and the others are still read. */
/** The apiVersion of each kind skein reads; an object of one of these kinds that names another
 * is refused (absent is taken as this one, as in a hand-written file). */
const API_VERSIONS: Record<string, string> = {
  Service: "v1",
  Pod: "v1",
  Namespace: "v1",
  Node: "v1",
  EndpointSlice: "discovery.k8s.io/v1",
  NetworkPolicy: "networking.k8s.io/v1",
};

export function readObjects(objects: unknown[], read: (o: Obj) => void): string[] {
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const [i, o] of objects.entries()) {
    if (!isObj(o)) {
      errors.push(`object ${i}: not a Kubernetes object`);
      continue;
    }
    try {
      const kind = typeof o.kind === "string" ? o.kind : "";
      const want = API_VERSIONS[kind];
      const md = isObj(o.metadata) ? o.metadata : {};
      // (an object without a name is the kind's reader's to refuse, naming it its way)
      if (want && typeof md.name === "string" && md.name) {
        const scoped = kind !== "Namespace" && kind !== "Node";
        const id = `${kind} ${scoped ? `${typeof md.namespace === "string" ? md.namespace : "default"}/` : ""}${md.name}`;
        if (o.apiVersion !== undefined && o.apiVersion !== want) throw new ObjectError(id, "apiVersion", `${quote(o.apiVersion)} is not ${want}`);
        // a cluster holds one object of a kind by a name: a second in a file is a mistake
        if (seen.has(id)) throw new ObjectError(id, "metadata.name", "a second object of this kind and name in the file: the first one is read");
        seen.add(id);
      }
      read(o);
    } catch (e) {
      if (e instanceof ObjectError) errors.push(e.message);
      else throw e;
    }
  }
  return errors;
}

/** Kubernetes objects (any order, any kinds) to a ClusterState, with one error per bad object. */
export function clusterStateFrom(objects: unknown[]): { state: ClusterState; errors: string[] } {
  const state: ClusterState = { services: [], slices: [] };
  const errors = readObjects(objects, (o) => {
    if (o.kind === "Service") {
      const s = parseService(o);
      if (s) state.services.push(s);
    } else if (o.kind === "EndpointSlice") {
      const s = parseEndpointSlice(o);
      if (s) state.slices.push(s);
    }
  });
  const known = new Set(state.services.map((s) => `${s.namespace}/${s.name}`));
  state.slices = state.slices.filter((s) => {
    if (known.has(`${s.namespace}/${s.service}`)) return true;
    errors.push(`EndpointSlice ${s.namespace}/${s.name}: Service ${s.namespace}/${s.service} does not exist`);
    return false;
  });
  return { state, errors };
}
