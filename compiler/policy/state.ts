// Pods, Namespaces and NetworkPolicies read strictly into the policy compiler's types
// (types.ts), as the API server validates them (networking/validation.go,
// ValidateNetworkPolicy): an object the API server would refuse is reported (object, field)
// and left out, the others are still compiled. Every list is bounded, so that one hostile
// object cannot make the compile run long or the tables grow without end.
//
// ipBlock CIDRs are read by compiler/address.ts, with two allowances: host bits are cleared
// ("10.1.2.3/8" is 10.0.0.0/8) and IPv6 may be spelt any way ("FD00:0::/16" is fd00::/16).
// The API server refuses host bits for new objects only from 1.33 (StrictIPCIDRValidation)
// and reads IPv6 in any spelling; such a policy is in force and means that network, as the
// Go parser reads it, so refusing it would leave the pods it isolates open. IPv4 with
// leading zeros stays refused (address.ts: CVE-2021-29923, refused by the API server since
// 1.22). The Policy keeps the network's canonical text.
import ipaddr from "ipaddr.js";
import { AddressError, MAX_TEXT, addressBytes, addressFromBytes, parseCidr, quote, type Cidr } from "../address.ts";
import { ObjectError, PORT_NAME, ip, isObj, list, meta, port, protocol, readObjects, type Obj } from "../state.ts";
import type { ContainerPort, NamespaceInfo, PodInfo, Policy, PolicyPeer, PolicyPort, PolicyRule, PolicyState, Requirement, Selector } from "./types.ts";

/** Bounds on one object: far above what real policies use, low enough that the compile of
 * one object stays small. */
export const LIMITS = {
  rules: 256,
  peers: 256,
  ports: 256,
  requirements: 64,
  values: 256,
  labels: 128,
  except: 64,
  containers: 64,
  containerPorts: 256,
} as const;

export const ISOLATION_ANNOTATION = "skein.io/isolation";
export const NAME_LABEL = "kubernetes.io/metadata.name";

// Kubernetes' syntax for label keys (a qualified name with an optional DNS subdomain prefix)
// and values, object names (DNS subdomain) and namespace names (DNS label).
const QUALIFIED = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function labelKeyProblem(k: string): string | undefined {
  const slash = k.indexOf("/");
  const prefix = slash < 0 ? undefined : k.slice(0, slash);
  const name = slash < 0 ? k : k.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `${quote(k)} is not a label key: the prefix must be a DNS subdomain`;
  if (!QUALIFIED.test(name)) return `${quote(k)} is not a label key: the name must be 1-63 characters, alphanumeric, '-', '_' or '.', starting and ending alphanumeric`;
  return undefined;
}

function labelValueProblem(v: unknown): string | undefined {
  if (typeof v !== "string") return `${quote(v)} is not a label value (a string)`;
  if (v !== "" && !QUALIFIED.test(v)) return `${quote(v)} is not a label value: at most 63 characters, alphanumeric, '-', '_' or '.', starting and ending alphanumeric`;
  return undefined;
}

/** Past one of skein's bounds (LIMITS), where the API server has none: the object may be
 * valid Kubernetes that skein cannot hold. */
export class LimitError extends ObjectError {}

function count(l: unknown[], max: number, obj: string, field: string): void {
  if (l.length > max) throw new LimitError(obj, field, `${l.length} entries: at most ${max}`);
}

/** A map of labels checked key by key; `field` names the map. */
function labels(v: unknown, obj: string, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new ObjectError(obj, field, `${quote(v)} is not a map`);
  const entries = Object.entries(v);
  count(entries, LIMITS.labels, obj, field);
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    const bad = labelKeyProblem(k) ?? labelValueProblem(val);
    if (bad) throw new ObjectError(obj, `${field}[${k.length > 64 ? `${k.slice(0, 64)}…` : k}]`, bad);
    out[k] = val as string;
  }
  return out;
}

function name(v: string, dns: RegExp, obj: string, field: string): void {
  if (v.length > 253 || !dns.test(v)) throw new ObjectError(obj, field, `${quote(v)} is not a valid name`);
}

/** A label selector: matchLabels become `In` with one value, in key order, then
 * matchExpressions in their order. */
export function parseSelector(v: unknown, obj: string, field: string): Selector {
  if (v === null || v === undefined) return { requirements: [] };
  if (!isObj(v)) throw new ObjectError(obj, field, `${quote(v)} is not a label selector`);
  for (const k of Object.keys(v)) if (k !== "matchLabels" && k !== "matchExpressions") throw new ObjectError(obj, `${field}.${k}`, "unknown field");
  const ml = labels(v.matchLabels, obj, `${field}.matchLabels`);
  const me = list(v.matchExpressions, obj, `${field}.matchExpressions`);
  const requirements: Requirement[] = Object.keys(ml)
    .sort()
    .map((key) => ({ key, operator: "In", values: [ml[key]!] }));
  count([...requirements, ...me], LIMITS.requirements, obj, `${field}`);
  me.forEach((e, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    if (!isObj(e)) throw new ObjectError(obj, f, "not an object");
    if (typeof e.key !== "string") throw new ObjectError(obj, `${f}.key`, `${quote(e.key)} is not a label key`);
    const bad = labelKeyProblem(e.key);
    if (bad) throw new ObjectError(obj, `${f}.key`, bad);
    const op = e.operator;
    if (op !== "In" && op !== "NotIn" && op !== "Exists" && op !== "DoesNotExist") throw new ObjectError(obj, `${f}.operator`, `${quote(op)} is not one of In, NotIn, Exists, DoesNotExist`);
    const values = list(e.values, obj, `${f}.values`);
    count(values, LIMITS.values, obj, `${f}.values`);
    if ((op === "In" || op === "NotIn") && !values.length) throw new ObjectError(obj, `${f}.values`, `must be non-empty for ${op}`);
    if ((op === "Exists" || op === "DoesNotExist") && values.length) throw new ObjectError(obj, `${f}.values`, `must be empty for ${op}`);
    values.forEach((x, j) => {
      const why = labelValueProblem(x);
      if (why) throw new ObjectError(obj, `${f}.values[${j}]`, why);
    });
    requirements.push({ key: e.key, operator: op, values: [...new Set(values as string[])].sort() });
  });
  return { requirements };
}

/** A CIDR of an ipBlock: canonical address, host bits cleared (see the top of this file). */
function blockCidr(v: unknown, obj: string, field: string): Cidr {
  try {
    return parseCidr(v);
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
    const masked = typeof v === "string" ? networkOf(v) : undefined;
    if (masked) return masked;
    throw new ObjectError(obj, field, e.message);
  }
}

/** The network of a CIDR whose only faults are host bits or IPv6 text not in its canonical
 * form, else undefined. */
function networkOf(v: string): Cidr | undefined {
  if (v.length > MAX_TEXT || !/^[0-9A-Fa-f:.]+\/[0-9]+$/.test(v)) return undefined;
  const slash = v.indexOf("/");
  const len = v.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(len)) return undefined;
  const addr = v.slice(0, slash);
  let bytes: number[];
  try {
    // IPv6 is read by the API server in any spelling (upper case, leading zeros in a group,
    // "::" anywhere); an IPv4 address inside IPv6 stays refused, as address.ts says why
    bytes = addr.includes(":") && !addr.includes(".") && ipaddr.IPv6.isValid(addr) ? ipaddr.IPv6.parse(addr).toByteArray() : addressBytes(addr);
  } catch {
    return undefined;
  }
  const prefix = Number(len);
  if (prefix > bytes.length * 8) return undefined;
  const net = bytes.map((b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff));
  return parseCidr(`${addressFromBytes(net, 0, bytes.length === 4 ? 4 : 6)}/${prefix}`);
}

/** Whether `inner` lies inside `outer` and is narrower (both of one family). */
function strictlyInside(inner: Cidr, outer: Cidr): boolean {
  if (inner.family !== outer.family || inner.prefix <= outer.prefix) return false;
  for (let i = 0; i * 8 < outer.prefix; i++) {
    const mask = (0xff << (8 - Math.min(8, outer.prefix - 8 * i))) & 0xff;
    if ((inner.bytes[i]! & mask) !== outer.bytes[i]) return false;
  }
  return true;
}

function parsePeer(v: unknown, obj: string, f: string): PolicyPeer {
  if (!isObj(v)) throw new ObjectError(obj, f, "not an object");
  for (const k of Object.keys(v)) if (k !== "podSelector" && k !== "namespaceSelector" && k !== "ipBlock") throw new ObjectError(obj, `${f}.${k}`, "unknown field");
  const has = (k: string) => v[k] !== undefined && v[k] !== null;
  if (has("ipBlock")) {
    if (has("podSelector") || has("namespaceSelector")) throw new ObjectError(obj, f, "may not specify both ipBlock and another peer");
    const b = v.ipBlock;
    if (!isObj(b)) throw new ObjectError(obj, `${f}.ipBlock`, "not an object");
    if (b.cidr === undefined || b.cidr === "") throw new ObjectError(obj, `${f}.ipBlock.cidr`, "required");
    const cidr = blockCidr(b.cidr, obj, `${f}.ipBlock.cidr`);
    const ex = list(b.except, obj, `${f}.ipBlock.except`);
    count(ex, LIMITS.except, obj, `${f}.ipBlock.except`);
    const except = ex.map((e, i) => {
      const x = blockCidr(e, obj, `${f}.ipBlock.except[${i}]`);
      if (!strictlyInside(x, cidr)) throw new ObjectError(obj, `${f}.ipBlock.except[${i}]`, `${x.text} must be a strict subset of ${cidr.text}`);
      return x.text;
    });
    return { kind: "cidr", cidr: cidr.text, except };
  }
  if (!has("podSelector") && !has("namespaceSelector")) throw new ObjectError(obj, f, "must specify a peer");
  const peer: PolicyPeer = { kind: "pods" };
  if (has("podSelector")) peer.pods = parseSelector(v.podSelector, obj, `${f}.podSelector`);
  if (has("namespaceSelector")) peer.namespaces = parseSelector(v.namespaceSelector, obj, `${f}.namespaceSelector`);
  return peer;
}

function parsePolicyPort(v: unknown, obj: string, f: string): PolicyPort {
  if (!isObj(v)) throw new ObjectError(obj, f, "not an object");
  const out: PolicyPort = { protocol: protocol(v.protocol ?? undefined, obj, `${f}.protocol`) };
  const has = (k: string) => v[k] !== undefined && v[k] !== null;
  if (!has("port")) {
    if (has("endPort")) throw new ObjectError(obj, `${f}.endPort`, "may not be specified when `port` is not specified");
    return out;
  }
  if (typeof v.port === "string") {
    if (has("endPort")) throw new ObjectError(obj, `${f}.endPort`, "may not be specified when `port` is non-numeric");
    if (!PORT_NAME.test(v.port)) throw new ObjectError(obj, `${f}.port`, `${quote(v.port)} is not a port name (IANA_SVC_NAME: 1-15 lower case letters, digits and '-', with a letter)`);
    out.port = v.port;
    return out;
  }
  out.port = port(v.port, obj, `${f}.port`);
  if (has("endPort")) {
    const end = port(v.endPort, obj, `${f}.endPort`);
    if (end < out.port) throw new ObjectError(obj, `${f}.endPort`, `${end} must be greater than or equal to port ${out.port}`);
    out.endPort = end;
  }
  return out;
}

function parseRules(v: unknown, obj: string, dir: "ingress" | "egress"): PolicyRule[] {
  const rules = list(v, obj, `spec.${dir}`);
  count(rules, LIMITS.rules, obj, `spec.${dir}`);
  const peersField = dir === "ingress" ? "from" : "to";
  return rules.map((r, i) => {
    const f = `spec.${dir}[${i}]`;
    if (!isObj(r)) throw new ObjectError(obj, f, "not an object");
    for (const k of Object.keys(r)) if (k !== peersField && k !== "ports") throw new ObjectError(obj, `${f}.${k}`, "unknown field");
    const peers = list(r[peersField], obj, `${f}.${peersField}`);
    count(peers, LIMITS.peers, obj, `${f}.${peersField}`);
    const ports = list(r.ports, obj, `${f}.ports`);
    count(ports, LIMITS.ports, obj, `${f}.ports`);
    return {
      peers: peers.map((p, j) => parsePeer(p, obj, `${f}.${peersField}[${j}]`)),
      ports: ports.map((p, j) => parsePolicyPort(p, obj, `${f}.ports[${j}]`)),
    };
  });
}

/**
 * A NetworkPolicy. One the API server would refuse throws (ObjectError). One past skein's
 * bounds alone (LimitError: more rules, peers, ports or selector terms than skein holds, which
 * the API server does not bound) is valid Kubernetes skein cannot apply: it comes back
 * `closed`, isolating the pods it selects in the directions it names with nothing allowed, so
 * that they are not left open (every pod of its namespace when its podSelector is the part
 * past the bounds). Whether an earlier version stays in force instead is the caller's call.
 */
export function parseNetworkPolicy(o: Obj): Policy {
  const m = meta(o, "NetworkPolicy");
  name(m.namespace, DNS_LABEL, m.id, "metadata.namespace");
  name(m.name, DNS_SUBDOMAIN, m.id, "metadata.name");
  if (!isObj(o.spec)) throw new ObjectError(m.id, "spec", o.spec === undefined ? "missing" : "not an object");
  const spec = o.spec;
  const types = list(spec.policyTypes, m.id, "spec.policyTypes");
  if (types.length > 2) throw new ObjectError(m.id, "spec.policyTypes", "may not specify more than two policyTypes");
  types.forEach((t, i) => {
    if (t !== "Ingress" && t !== "Egress") throw new ObjectError(m.id, `spec.policyTypes[${i}]`, `${quote(t)} is not one of Ingress, Egress`);
  });
  // the API server's defaults: Ingress always, Egress when there are egress rules
  const egressGiven = Array.isArray(spec.egress) && spec.egress.length > 0;
  const has = types.length ? new Set(types) : new Set(egressGiven ? ["Ingress", "Egress"] : ["Ingress"]);
  let podSelector: Selector = { requirements: [] };
  try {
    podSelector = parseSelector(spec.podSelector, m.id, "spec.podSelector");
    const ingress = parseRules(spec.ingress, m.id, "ingress");
    const egress = parseRules(spec.egress, m.id, "egress");
    return { namespace: m.namespace, name: m.name, podSelector, ingress: has.has("Ingress") ? ingress : null, egress: has.has("Egress") ? egress : null };
  } catch (e) {
    if (!(e instanceof LimitError)) throw e;
    return { namespace: m.namespace, name: m.name, podSelector, ingress: has.has("Ingress") ? [] : null, egress: has.has("Egress") ? [] : null, closed: e.message };
  }
}

/** Named ports of one container list; `all` collects names across the pod (Kubernetes wants
 * them unique in the pod). */
function containerPorts(cs: unknown[], obj: string, field: string, sidecarsOnly: boolean, out: ContainerPort[], all: Set<string>): void {
  count(cs, LIMITS.containers, obj, field);
  cs.forEach((c, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(c)) throw new ObjectError(obj, f, "not an object");
    // an init container runs beside the others only as a sidecar (restartPolicy Always)
    if (sidecarsOnly && c.restartPolicy !== "Always") return;
    const ps = list(c.ports, obj, `${f}.ports`);
    count(ps, LIMITS.containerPorts, obj, `${f}.ports`);
    ps.forEach((p, j) => {
      const pf = `${f}.ports[${j}]`;
      if (!isObj(p)) throw new ObjectError(obj, pf, "not an object");
      const num = port(p.containerPort, obj, `${pf}.containerPort`);
      const proto = protocol(p.protocol ?? undefined, obj, `${pf}.protocol`);
      if (p.name === undefined || p.name === null || p.name === "") return;
      if (typeof p.name !== "string" || !PORT_NAME.test(p.name)) throw new ObjectError(obj, `${pf}.name`, `${quote(p.name)} is not a port name`);
      if (all.has(p.name)) throw new ObjectError(obj, `${pf}.name`, `${quote(p.name)} is used twice in the pod`);
      all.add(p.name);
      out.push({ name: p.name, protocol: proto, port: num });
    });
  });
  if (out.length > LIMITS.containerPorts) throw new ObjectError(obj, field, `more than ${LIMITS.containerPorts} named ports`);
}

/** A Pod, or undefined for one that has no address of its own to police (host network) or
 * no longer runs (Succeeded, Failed). */
export function parsePod(o: Obj): PodInfo | undefined {
  const m = meta(o, "Pod");
  name(m.namespace, DNS_LABEL, m.id, "metadata.namespace");
  name(m.name, DNS_SUBDOMAIN, m.id, "metadata.name");
  for (const f of ["spec", "status"] as const) if (o[f] !== undefined && o[f] !== null && !isObj(o[f])) throw new ObjectError(m.id, f, `${quote(o[f])} is not an object`);
  const spec = isObj(o.spec) ? o.spec : {};
  const status = isObj(o.status) ? o.status : {};
  if (spec.hostNetwork === true) return undefined;
  if (status.phase === "Succeeded" || status.phase === "Failed") return undefined;
  const podLabels = labels(isObj(o.metadata) ? o.metadata.labels : undefined, m.id, "metadata.labels");
  if (spec.nodeName !== undefined && spec.nodeName !== null && typeof spec.nodeName !== "string") throw new ObjectError(m.id, "spec.nodeName", `${quote(spec.nodeName)} is not a string`);
  const nodeName = (spec.nodeName as string | undefined | null) ?? "";
  let ips: string[];
  const byList = status.podIPs !== undefined && status.podIPs !== null;
  if (byList) {
    const l = list(status.podIPs, m.id, "status.podIPs");
    if (l.length > 2) throw new ObjectError(m.id, "status.podIPs", `${l.length} entries: at most 2, one per family`);
    ips = l.map((x, i) => {
      if (!isObj(x)) throw new ObjectError(m.id, `status.podIPs[${i}]`, "not an object");
      return ip(x.ip, m.id, `status.podIPs[${i}].ip`);
    });
    if (ips.length === 2 && ips[0]!.includes(":") === ips[1]!.includes(":")) throw new ObjectError(m.id, "status.podIPs[1].ip", "two addresses of one family");
  } else {
    ips = status.podIP === undefined || status.podIP === null || status.podIP === "" ? [] : [ip(status.podIP, m.id, "status.podIP")];
  }
  const ports: ContainerPort[] = [];
  const seen = new Set<string>();
  containerPorts(list(spec.containers, m.id, "spec.containers"), m.id, "spec.containers", false, ports, seen);
  containerPorts(list(spec.initContainers, m.id, "spec.initContainers"), m.id, "spec.initContainers", true, ports, seen);
  return { namespace: m.namespace, name: m.name, nodeName, ips, labels: podLabels, ports };
}

export function parseNamespace(o: Obj): NamespaceInfo {
  const md = isObj(o.metadata) ? o.metadata : {};
  const n = typeof md.name === "string" ? md.name : "";
  const id = `Namespace ${n || "?"}`;
  if (!n) throw new ObjectError(id, "metadata.name", "missing");
  name(n, DNS_LABEL, id, "metadata.name");
  const l = labels(md.labels, id, "metadata.labels");
  const ann = md.annotations;
  if (ann !== undefined && ann !== null && !isObj(ann)) throw new ObjectError(id, "metadata.annotations", `${quote(ann)} is not a map`);
  const iso = isObj(ann) ? ann[ISOLATION_ANNOTATION] : undefined;
  if (iso !== undefined && iso !== "namespace") throw new ObjectError(id, `metadata.annotations[${ISOLATION_ANNOTATION}]`, `${quote(iso)} is not a known isolation mode (only "namespace")`);
  return { name: n, labels: { ...l, [NAME_LABEL]: n }, isolation: iso === "namespace" };
}

/** Kubernetes objects (any order, any kinds; others are ignored) to a PolicyState, with one
 * error per object refused. */
export function policyStateFrom(objects: unknown[]): { state: PolicyState; errors: string[]; closed: string[] } {
  const state: PolicyState = { namespaces: [], pods: [], policies: [] };
  const closed: string[] = [];
  const errors = readObjects(objects, (o) => {
    if (o.kind === "Pod") {
      const p = parsePod(o);
      if (p) state.pods.push(p);
    } else if (o.kind === "Namespace") state.namespaces.push(parseNamespace(o));
    else if (o.kind === "NetworkPolicy") {
      const p = parseNetworkPolicy(o);
      state.policies.push(p);
      if (p.closed) closed.push(`${p.closed} (skein cannot apply it: the pods it selects are isolated with nothing allowed, fail closed)`);
    }
  });
  return { state, errors, closed };
}
