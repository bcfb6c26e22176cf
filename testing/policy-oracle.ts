// An independent NetworkPolicy oracle: decides whether a new connection is allowed by the
// union of networking.k8s.io/v1 NetworkPolicies, written from the Kubernetes documentation
// only (not from skein's compiler or agent), so that the datapath and the TypeScript reference
// can both be checked against it. Sources:
//   - Concept page:  https://kubernetes.io/docs/concepts/services-networking/network-policies/
//     (raw: https://raw.githubusercontent.com/kubernetes/website/main/content/en/docs/concepts/services-networking/network-policies.md)
//   - API reference: https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1
//   - Label selectors (matchLabels ANDed with matchExpressions; In/NotIn/Exists/DoesNotExist):
//     https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
//   - endPort: https://www.kubernetes.dev/resources/keps/2079/
//
// Choices where the documentation leaves room, stated once here:
//   - ipBlock matches the address the packet carries, whoever holds it, pod addresses included.
//     The concept page says ipBlocks "should be cluster-external IPs, since Pod IPs are ephemeral
//     and unpredictable" but does not exclude them; skein keys policy by address (issue 15), and
//     Kubernetes' own conformance tests put pod addresses in ipBlocks.
//   - Egress to a Service's ClusterIP is judged on the chosen backend: callers pass that backend
//     pod as `to`. The concept page leaves the before/after-rewrite order to the implementation.
//   - "a pod cannot block access to itself" (concept page): a pod connecting to itself is allowed.
//   - "traffic to and from the node where a Pod is running is always allowed" (concept page):
//     `{ host: node }` reaches that node's pods whatever the policies; a host reaching a pod on
//     another node is an ordinary address (the node's, from `world.nodes` or `from.ip`).
//   - A named port in an egress rule is resolved against the destination pod's containerPorts;
//     in an ingress rule the destination is the selected pod, so it is the same pod. The name
//     resolves only on the rule's protocol ("the port on the given protocol", API reference).
//   - Every namespace carries `kubernetes.io/metadata.name: <name>`, as the control plane sets it.
//   - Input the API server would reject (bad CIDR, unknown protocol or operator, except outside
//     its cidr, endPort with a named port) throws an error naming the policy and field: an
//     oracle that guessed would make the tests it feeds meaningless.
import ipaddr from "ipaddr.js";

export type Protocol = "TCP" | "UDP" | "SCTP";
const PROTOCOLS: readonly string[] = ["TCP", "UDP", "SCTP"];

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[] | null;
}
export interface LabelSelector {
  matchLabels?: Record<string, string> | null;
  matchExpressions?: LabelSelectorRequirement[] | null;
}
export interface IPBlock {
  cidr: string;
  except?: string[] | null;
}
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector | null;
  namespaceSelector?: LabelSelector | null;
  ipBlock?: IPBlock | null;
}
export interface NetworkPolicyPort {
  protocol?: string | null;
  port?: number | string | null;
  endPort?: number | null;
}
export interface NetworkPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string };
  spec: {
    podSelector?: LabelSelector | null;
    policyTypes?: string[] | null;
    ingress?: { from?: NetworkPolicyPeer[] | null; ports?: NetworkPolicyPort[] | null }[] | null;
    egress?: { to?: NetworkPolicyPeer[] | null; ports?: NetworkPolicyPort[] | null }[] | null;
  };
}

export interface Namespace {
  name: string;
  labels?: Record<string, string>;
}
export interface ContainerPort {
  name?: string;
  port: number;
  protocol?: string;
}
export interface Pod {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  ip: string;
  node?: string;
  containerPorts?: ContainerPort[];
}
export interface World {
  namespaces: Namespace[];
  pods: Pod[];
  policies: NetworkPolicy[];
  /** Node addresses, for a host reaching a pod on another node. */
  nodes?: { name: string; ip: string }[];
}

export interface PodRef {
  namespace: string;
  name: string;
}
/** A pod, an address outside the cluster's pods, or a node's host network namespace. */
export type Source = PodRef | { ip: string } | { host: string; ip?: string };

export interface Verdict {
  allowed: boolean;
  why: string;
}

const key = (r: PodRef) => `${r.namespace}/${r.name}`;
const policyName = (p: NetworkPolicy) => `${p.metadata.namespace ?? "default"}/${p.metadata.name}`;

class PolicyError extends Error {
  constructor(p: NetworkPolicy, field: string, detail: string) {
    super(`NetworkPolicy ${policyName(p)}: ${field}: ${detail}`);
  }
}

function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (text.includes(":") && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return undefined;
}

function parseCidr(text: unknown, p: NetworkPolicy, field: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  if (typeof text !== "string") throw new PolicyError(p, field, `expected a CIDR string, got ${JSON.stringify(text)}`);
  const slash = text.indexOf("/");
  const addr = slash > 0 ? parseAddress(text.slice(0, slash)) : undefined;
  const bits = slash > 0 ? text.slice(slash + 1) : "";
  const max = addr?.kind() === "ipv4" ? 32 : 128;
  if (!addr || !/^(0|[1-9][0-9]{0,2})$/.test(bits) || Number(bits) > max) {
    throw new PolicyError(p, field, `invalid CIDR ${JSON.stringify(text)}`);
  }
  return [addr, Number(bits)];
}

function inCidr(addr: ipaddr.IPv4 | ipaddr.IPv6, cidr: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean {
  return addr.kind() === cidr[0].kind() && addr.match(cidr);
}

function requirementMatches(e: LabelSelectorRequirement, labels: Record<string, string>, p: NetworkPolicy, f: string): boolean {
  const has = Object.hasOwn(labels, e.key);
  const values = e.values ?? [];
  switch (e.operator) {
    case "In":
    case "NotIn":
      if (!values.length) throw new PolicyError(p, `${f}.values`, `must be non-empty for ${e.operator}`);
      return (has && values.includes(labels[e.key]!)) === (e.operator === "In");
    case "Exists":
    case "DoesNotExist":
      if (values.length) throw new PolicyError(p, `${f}.values`, `must be empty for ${e.operator}`);
      return has === (e.operator === "Exists");
    default:
      throw new PolicyError(p, `${f}.operator`, `unknown operator ${JSON.stringify(e.operator)}`);
  }
}

function selectorMatches(sel: LabelSelector, labels: Record<string, string>, p: NetworkPolicy, field: string): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  return (sel.matchExpressions ?? []).every((e, i) => requirementMatches(e, labels, p, `${field}.matchExpressions[${i}]`));
}

/** What the connection looks like to a policy: the other end, and the destination pod for ports. */
interface Peer {
  /** the other end's address */
  ip: ipaddr.IPv4 | ipaddr.IPv6 | undefined;
  /** the other end when it is a pod, with its namespace's labels */
  pod?: { pod: Pod; nsLabels: Record<string, string> };
}

function peerMatches(peer: NetworkPolicyPeer, other: Peer, p: NetworkPolicy, field: string): boolean {
  const ns = p.metadata.namespace ?? "default";
  const hasPod = peer.podSelector != null;
  const hasNs = peer.namespaceSelector != null;
  if (peer.ipBlock != null) {
    if (hasPod || hasNs) throw new PolicyError(p, field, "may not specify both ipBlock and another peer");
    const cidr = parseCidr(peer.ipBlock.cidr, p, `${field}.ipBlock.cidr`);
    const excepts = (peer.ipBlock.except ?? []).map((e, i) => {
      const x = parseCidr(e, p, `${field}.ipBlock.except[${i}]`);
      if (!(x[0].kind() === cidr[0].kind() && x[1] > cidr[1] && x[0].match(cidr))) {
        throw new PolicyError(p, `${field}.ipBlock.except[${i}]`, `${e} must be a strict subset of ${peer.ipBlock!.cidr}`);
      }
      return x;
    });
    return !!other.ip && inCidr(other.ip, cidr) && !excepts.some((x) => inCidr(other.ip!, x));
  }
  if (!hasPod && !hasNs) throw new PolicyError(p, field, "must specify a peer");
  if (!other.pod) return false;
  // Both set: pods matching podSelector in the namespaces namespaceSelector selects. Only
  // namespaceSelector: every pod of those namespaces. Only podSelector: the policy's namespace.
  const nsOk = hasNs
    ? selectorMatches(peer.namespaceSelector!, other.pod.nsLabels, p, `${field}.namespaceSelector`)
    : other.pod.pod.namespace === ns;
  return nsOk && (!hasPod || selectorMatches(peer.podSelector!, other.pod.pod.labels ?? {}, p, `${field}.podSelector`));
}

function portMatches(pp: NetworkPolicyPort, proto: Protocol, port: number, dest: Pod | undefined, p: NetworkPolicy, field: string): boolean {
  const want = pp.protocol ?? "TCP";
  if (!PROTOCOLS.includes(want)) throw new PolicyError(p, `${field}.protocol`, `unsupported protocol ${JSON.stringify(want)}`);
  if (want !== proto) return false;
  if (pp.port == null) {
    if (pp.endPort != null) throw new PolicyError(p, `${field}.port`, "must specify port when endPort is set");
    return true;
  }
  if (typeof pp.port === "string") {
    if (pp.endPort != null) throw new PolicyError(p, `${field}.endPort`, "may not be specified when port is named");
    if (!pp.port) throw new PolicyError(p, `${field}.port`, "empty port name");
    return !!dest?.containerPorts?.some((c) => c.name === pp.port && (c.protocol ?? "TCP") === proto && c.port === port);
  }
  if (!Number.isInteger(pp.port) || pp.port < 1 || pp.port > 65535) throw new PolicyError(p, `${field}.port`, `invalid port ${pp.port}`);
  if (pp.endPort == null) return port === pp.port;
  if (!Number.isInteger(pp.endPort) || pp.endPort < pp.port || pp.endPort > 65535) {
    throw new PolicyError(p, `${field}.endPort`, `invalid endPort ${pp.endPort} for port ${pp.port}`);
  }
  return port >= pp.port && port <= pp.endPort;
}

function policyTypes(p: NetworkPolicy): Set<string> {
  const given = p.spec.policyTypes;
  if (given == null || given.length === 0) {
    // "If no policyTypes are specified ... Ingress will always be set and Egress will be set if
    // the NetworkPolicy has any egress rules" (concept page).
    return new Set(p.spec.egress?.length ? ["Ingress", "Egress"] : ["Ingress"]);
  }
  for (const [i, t] of given.entries()) {
    if (t !== "Ingress" && t !== "Egress") throw new PolicyError(p, `spec.policyTypes[${i}]`, `unsupported value ${JSON.stringify(t)}`);
  }
  return new Set(given);
}

function checkSelector(sel: LabelSelector | null | undefined, p: NetworkPolicy, field: string): void {
  for (const [i, e] of (sel?.matchExpressions ?? []).entries()) requirementMatches(e, {}, p, `${field}.matchExpressions[${i}]`);
}

/**
 * Walks the whole policy so that a malformed part throws even where evaluation would have
 * stopped before reaching it.
 */
function validatePolicy(p: NetworkPolicy): void {
  if (!p?.metadata?.name || !p.spec) throw new Error(`NetworkPolicy ${JSON.stringify(p?.metadata)}: needs metadata.name and spec`);
  policyTypes(p);
  checkSelector(p.spec.podSelector, p, "spec.podSelector");
  const none: Peer = { ip: undefined };
  for (const dir of ["ingress", "egress"] as const) {
    for (const [i, r] of (p.spec[dir] ?? []).entries()) {
      const name = dir === "ingress" ? "from" : "to";
      const peers = (r as Record<string, NetworkPolicyPeer[] | null | undefined>)[name] ?? [];
      for (const [j, x] of peers.entries()) {
        const f = `spec.${dir}[${i}].${name}[${j}]`;
        peerMatches(x, none, p, f);
        checkSelector(x.podSelector, p, `${f}.podSelector`);
        checkSelector(x.namespaceSelector, p, `${f}.namespaceSelector`);
      }
      for (const [j, x] of (r.ports ?? []).entries()) {
        const want = x.protocol ?? "TCP";
        portMatches(x, PROTOCOLS.includes(want) ? (want as Protocol) : "TCP", 1, undefined, p, `spec.${dir}[${i}].ports[${j}]`);
      }
    }
  }
}

type Direction = "Ingress" | "Egress";

/**
 * One direction's decision for `subject` (the pod whose policies apply): not isolated, or
 * isolated and the policies that allow the connection (empty when none does).
 */
function judge(
  world: World,
  dir: Direction,
  subject: Pod,
  other: Peer,
  dest: Pod | undefined,
  proto: Protocol,
  port: number,
): { isolatedBy: string[]; allowedBy: string[] } {
  const isolatedBy: string[] = [];
  const allowedBy: string[] = [];
  for (const p of world.policies) {
    if ((p.metadata.namespace ?? "default") !== subject.namespace) continue;
    if (!policyTypes(p).has(dir)) continue;
    if (!selectorMatches(p.spec.podSelector ?? {}, subject.labels ?? {}, p, "spec.podSelector")) continue;
    isolatedBy.push(policyName(p));
    const rules = (dir === "Ingress" ? p.spec.ingress : p.spec.egress) ?? [];
    const base = dir === "Ingress" ? "spec.ingress" : "spec.egress";
    const ok = rules.some((r, i) => {
      const peers = (dir === "Ingress" ? (r as { from?: NetworkPolicyPeer[] | null }).from : (r as { to?: NetworkPolicyPeer[] | null }).to) ?? [];
      const peersField = `${base}[${i}].${dir === "Ingress" ? "from" : "to"}`;
      // An empty or missing from/to matches every peer; an empty or missing ports every port.
      const peerOk = !peers.length || peers.some((x, j) => peerMatches(x, other, p, `${peersField}[${j}]`));
      const ports = r.ports ?? [];
      const portOk = !ports.length || ports.some((x, j) => portMatches(x, proto, port, dest, p, `${base}[${i}].ports[${j}]`));
      return peerOk && portOk;
    });
    if (ok) allowedBy.push(policyName(p));
  }
  return { isolatedBy, allowedBy };
}

function findPod(world: World, r: PodRef): Pod {
  const pod = world.pods.find((p) => p.namespace === r.namespace && p.name === r.name);
  if (!pod) throw new Error(`no pod ${key(r)} in the world`);
  return pod;
}

function nsLabels(world: World, name: string): Record<string, string> {
  const ns = world.namespaces.find((n) => n.name === name);
  if (!ns) throw new Error(`no namespace ${name} in the world`);
  return { ...ns.labels, "kubernetes.io/metadata.name": name };
}

function address(text: string, what: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const a = parseAddress(text);
  if (!a) throw new Error(`${what}: invalid address ${JSON.stringify(text)}`);
  return a;
}

function describe(dir: Direction, who: string, r: { isolatedBy: string[]; allowedBy: string[] }): string {
  if (!r.isolatedBy.length) return `${dir.toLowerCase()} of ${who} not isolated`;
  if (r.allowedBy.length) return `${dir.toLowerCase()} of ${who} allowed by ${r.allowedBy.join(", ")}`;
  return `${dir.toLowerCase()} of ${who} isolated by ${r.isolatedBy.join(", ")} and no rule allows it`;
}

/** Whether a new connection from → to on proto/port is allowed by the union of world.policies. */
export function allowed(world: World, from: Source, to: PodRef, proto: Protocol, port: number): Verdict {
  if (!PROTOCOLS.includes(proto)) throw new Error(`unsupported protocol ${JSON.stringify(proto)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid port ${port}`);
  for (const p of world.policies) validatePolicy(p);
  const dest = findPod(world, to);
  const destPeer: Peer = { ip: address(dest.ip, `pod ${key(dest)}`), pod: { pod: dest, nsLabels: nsLabels(world, dest.namespace) } };

  let src: Peer;
  let srcPod: Pod | undefined;
  let srcName: string;
  if ("host" in from) {
    if (dest.node !== undefined && dest.node === from.host) {
      return { allowed: true, why: `host ${from.host} to its own pod ${key(dest)} is always allowed` };
    }
    const ip = from.ip ?? world.nodes?.find((n) => n.name === from.host)?.ip;
    if (ip === undefined) throw new Error(`host ${from.host}: no address (give from.ip or world.nodes)`);
    src = { ip: address(ip, `host ${from.host}`) };
    srcName = `host ${from.host} (${ip})`;
  } else if ("ip" in from) {
    src = { ip: address(from.ip, "source") };
    srcName = from.ip;
  } else {
    srcPod = findPod(world, from);
    if (srcPod === dest) return { allowed: true, why: `a pod cannot block access to itself (${key(dest)})` };
    src = { ip: address(srcPod.ip, `pod ${key(srcPod)}`), pod: { pod: srcPod, nsLabels: nsLabels(world, srcPod.namespace) } };
    srcName = key(srcPod);
  }

  // "For a connection from a source pod to a destination pod to be allowed, both the egress
  // policy on the source pod and the ingress policy on the destination pod need to allow the
  // connection" (concept page). A source that is not a pod has no egress policy here.
  const why: string[] = [];
  if (srcPod) {
    const e = judge(world, "Egress", srcPod, destPeer, dest, proto, port);
    if (e.isolatedBy.length && !e.allowedBy.length) {
      return { allowed: false, why: `${describe("Egress", srcName, e)} (${proto}/${port} to ${key(dest)})` };
    }
    why.push(describe("Egress", srcName, e));
  }
  const i = judge(world, "Ingress", dest, src, dest, proto, port);
  if (i.isolatedBy.length && !i.allowedBy.length) {
    return { allowed: false, why: `${describe("Ingress", key(dest), i)} (${proto}/${port} from ${srcName})` };
  }
  why.push(describe("Ingress", key(dest), i));
  return { allowed: true, why: why.join("; ") };
}

export interface Matrix {
  /** "namespace/name" of each pod, in the order given: rows are sources, columns destinations */
  keys: string[];
  allowed: boolean[][];
  why: string[][];
}

/** The full reachability matrix among `pods` on proto/port. */
export function matrix(world: World, pods: PodRef[], proto: Protocol, port: number): Matrix {
  const rows = pods.map((f) => pods.map((t) => allowed(world, f, t, proto, port)));
  return { keys: pods.map(key), allowed: rows.map((r) => r.map((v) => v.allowed)), why: rows.map((r) => r.map((v) => v.why)) };
}

/** A matrix as text, one row per source ("." allowed, "X" denied), for readable test diffs. */
export function formatMatrix(m: Matrix): string {
  const w = Math.max(...m.keys.map((k) => k.length));
  const head = `${" ".repeat(w)} ${m.keys.map((_, j) => String(j % 10)).join("")}`;
  return [head, ...m.keys.map((k, i) => `${k.padEnd(w)} ${m.allowed[i]!.map((a) => (a ? "." : "X")).join("")}`)].join("\n");
}
