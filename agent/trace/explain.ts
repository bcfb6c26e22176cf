// `skein trace`: what the datapath does with one packet (the first of a new connection), step
// by step, from the tables the agent holds: (1) the Service frontend it hits, (2) the backends
// the Maglev ring may pick and the one this 5-tuple picks, (3) the NetworkPolicy verdicts,
// egress where the source is and ingress where the destination is, (4) the route or tunnel
// it leaves by. Each step is read off the same tables the kernel was given, with the kernel's
// own hash (jhash.ts), so the trace says what the kernel does rather than what it should do.
// Pure: plain data in (TraceInput, which the live agent and the offline CLI both build),
// JSON-serialisable data out.
import { addressBytes, addressFamily, cidrsOverlap, parseCidr, type Cidr, type Family } from "../../compiler/address.ts";
import { backendCount, targetBackends, type Frontend, type Tables, type Target } from "../../compiler/tables.ts";
import { BLOCKED, IP_PROTOCOL, VIA_SERVICE, WORLD, type PolicyTables } from "../../compiler/policy/types.ts";
import { allows, describe, identityOf } from "../../compiler/policy/verdict.ts";
import type { PeerPath } from "../overlay/plan.ts";
import { VXLAN_DEV, VXLAN_PORT } from "../sys/devices.ts";
import { ringKey, ringSlot } from "./jhash.ts";
import type { TraceQuery } from "./query.ts";

export type { TraceQuery } from "./query.ts";

/** What the agent holds that a trace reads: plain data, no handles. */
export interface TraceInput {
  node: string;
  /** "live": the agent's tables in force; "offline": compiled from a state file */
  mode: "live" | "offline";
  /** the node's addresses that NodePorts listen on (also: packets from them are the node's own) */
  nodeIPs: string[];
  /** the compiled service tables (IncrementalCompiler.tables(), compiler/tables.ts) */
  tables: Pick<Tables, "frontends" | "targets">;
  /** --ring-factor: a ring has the smallest prime ≥ factor × backends slots */
  ringFactor: number;
  /** this node's policy tables; undefined: no NetworkPolicy is in force */
  policy?: PolicyTables;
  /** other nodes' policy tables, where known (offline: compiled from the same file), for the
   * ingress verdict on a backend's own node */
  peerPolicies?: Record<string, PolicyTables>;
  /** this node's pod CIDRs */
  podCIDRs: string[];
  /** how each pod CIDR of each peer is reached (agent/overlay/plan.ts) */
  peers: PeerPath[];
  /** where `peers` comes from, said in the route step (offline: what the Node objects imply) */
  peersFrom?: string;
  /** the pod network (traffic from a pod leaving it is masqueraded by the CNI's table) */
  clusterCIDRs: string[];
  serviceCIDRs: string[];
  /** pods by address, to name backends and ends (optional) */
  pods?: Array<{ namespace: string; name: string; nodeName: string; ips: string[] }>;
  /** the Services' traffic policies, to say why a target holds only this node's endpoints
   * (the tables keep the backends, not the policy that chose them); optional */
  services?: Array<{ namespace: string; name: string; internalTrafficLocal: boolean; externalTrafficLocal: boolean }>;
  /** the CNI masquerade of pod traffic leaving the cluster is in force (default true) */
  masquerade?: boolean;
}

export type Outcome = "delivered" | "rejected" | "dropped" | "undecided";

export interface Where {
  ip: string;
  /** local-pod: a pod of this node; peer-pod: of another node's pod CIDR; node: this node itself;
   * pod-network: in the cluster CIDRs, no node's; outside: beyond the cluster */
  kind: "local-pod" | "peer-pod" | "node" | "pod-network" | "outside";
  node?: string;
  pod?: string;
}

export interface FrontendStep {
  kind: "frontend";
  /** translated: DNAT to a backend; rejected: TCP reset / ICMP unreachable; none: not a Service address */
  result: "translated" | "rejected" | "none";
  frontend?: { kind: Frontend["kind"]; ip: string; port: number; protocol: string; service: string; target: number; scope: Target["scope"]; masquerade: boolean; affinity: boolean };
  hook: "prerouting" | "output";
  lines: string[];
}

export interface BackendChoice {
  ip: string;
  port: number;
  /** ring slots that point at it */
  slots: number;
  where: Where;
}

export interface BackendStep {
  kind: "backend";
  ringSize: number;
  /** what the ring hashes */
  hash: "saddr . sport" | "saddr";
  candidates: BackendChoice[];
  /** undefined when the source port decides and none was given */
  chosen?: BackendChoice & { slot: number; key: string };
  lines: string[];
}

export interface PolicySide {
  direction: "egress" | "ingress";
  /** the node whose tables judge it */
  node: string;
  /** judged: its tables are known here; skipped: not policed (not forwarded, not a pod) */
  result: "allowed" | "denied" | "unknown" | "not-policed";
  src?: string;
  dst?: string;
  srcIdentity?: string;
  dstIdentity?: string;
  /** the policies that isolate the pod in this direction */
  isolatedBy?: string[];
  /** the policies whose rule allows it */
  allowedBy?: string[];
  lines: string[];
}

export interface PolicyStep {
  kind: "policy";
  sides: PolicySide[];
  lines: string[];
}

export interface RouteStep {
  kind: "route";
  how: "local-pod" | "this-node" | "direct" | "vxlan" | "no-route" | "outside";
  peer?: string;
  cidr?: string;
  endpoint?: string;
  /** source NAT on the way out, and why */
  snat?: string;
  lines: string[];
}

export type TraceStep = FrontendStep | BackendStep | PolicyStep | RouteStep;

export interface TraceResult {
  node: string;
  mode: TraceInput["mode"];
  query: TraceQuery;
  source: Where;
  /** where the packet goes after translation (undefined: rejected before) */
  destination?: Where & { port: number };
  steps: TraceStep[];
  outcome: Outcome;
  summary: string;
  notes: string[];
}

// ---------------------------------------------------------------------------------------

/** What explain looks up many times (a ring of 1,000 backends, a cluster of 1,000 peers):
 * pods by address and CIDRs read once. Inputs are not changed once given: kept beside them. */
interface Index {
  pods: Map<string, { pod: string; node: string }>;
  cidrs: Map<string, Cidr | undefined>;
  /** addresses as /32 or /128 CIDRs */
  hosts: Map<string, Cidr>;
}
const indexes = new WeakMap<TraceInput, Index>();

function indexOf(input: TraceInput): Index {
  let x = indexes.get(input);
  if (!x) {
    const pods = new Map<string, { pod: string; node: string }>();
    for (const p of input.pods ?? []) for (const ip of p.ips) if (!pods.has(ip)) pods.set(ip, { pod: `${p.namespace}/${p.name}`, node: p.nodeName });
    x = { pods, cidrs: new Map(), hosts: new Map() };
    indexes.set(input, x);
  }
  return x;
}

/** Whether `ip` lies in `cidr` (a CIDR that does not read holds nothing). */
function within(input: TraceInput, cidr: string, ip: string): boolean {
  const x = indexOf(input);
  let c = x.cidrs.get(cidr);
  if (c === undefined && !x.cidrs.has(cidr)) {
    try {
      c = parseCidr(cidr);
    } catch {
      c = undefined;
    }
    x.cidrs.set(cidr, c);
  }
  if (!c) return false;
  let h = x.hosts.get(ip);
  if (!h) {
    const f: Family = ip.includes(":") ? 6 : 4;
    x.hosts.set(ip, (h = { family: f, bytes: addressBytes(ip), prefix: f === 4 ? 32 : 128, text: ip }));
  }
  return h.family === c.family && cidrsOverlap(c, h);
}

const hp = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

/** The pod holding `ip`, as "namespace/name". */
function podOf(input: TraceInput, ip: string): { pod: string; node: string } | undefined {
  return indexOf(input).pods.get(ip);
}

/** Where an address is, seen from this node. */
function whereIs(input: TraceInput, ip: string): Where {
  const pod = podOf(input, ip);
  const named = pod ? { pod: pod.pod } : {};
  if (input.nodeIPs.includes(ip)) return { ip, kind: "node", node: input.node };
  if (input.podCIDRs.some((c) => within(input, c, ip))) return { ip, kind: "local-pod", node: input.node, ...named };
  const path = peerPathOf(input, ip);
  if (path) return { ip, kind: "peer-pod", node: path.peer, ...named };
  if (input.clusterCIDRs.some((c) => within(input, c, ip))) return { ip, kind: "pod-network", ...named, ...(pod ? { node: pod.node } : {}) };
  // another node's own address (its underlay or public address, as its path names it)
  const peer = input.peers.find((p) => p.endpoint === ip);
  return { ip, kind: "outside", ...(peer ? { node: peer.peer } : {}) };
}

function peerPathOf(input: TraceInput, ip: string): PeerPath | undefined {
  return input.peers.find((p) => p.cidr !== undefined && within(input, p.cidr, ip));
}

const whereText = (w: Where) => {
  switch (w.kind) {
    case "local-pod":
      return w.pod ? `pod ${w.pod} on this node` : "a pod of this node";
    case "peer-pod":
      return w.pod ? `pod ${w.pod} on node ${w.node}` : `a pod of node ${w.node}`;
    case "node":
      return "this node itself";
    case "pod-network":
      return `in the pod network, in no node's pod CIDR${w.pod ? ` (pod ${w.pod})` : ""}`;
    case "outside":
      return w.node ? `node ${w.node}'s own address` : "outside the cluster";
  }
};

// ---------------------------------------------------------------------------------------
// 1. frontend

function findFrontend(input: TraceInput, q: TraceQuery): Frontend | undefined {
  return input.tables.frontends.find((f) => f.ip === q.dst && f.port === q.dport && f.protocol === q.proto);
}

const KIND_TEXT: Record<Frontend["kind"], string> = { cluster: "ClusterIP", external: "externalIP", loadbalancer: "LoadBalancer ingress IP", nodeport: "NodePort" };

function frontendStep(input: TraceInput, q: TraceQuery, source: Where, f: Frontend | undefined, t: Target | undefined): FrontendStep {
  const hook = source.kind === "node" ? "output" : "prerouting";
  const where = hook === "output" ? "nat output (a packet of the node itself)" : "nat prerouting";
  const key = `${hp(q.dst, q.dport)}/${q.proto.toLowerCase()}`;
  if (!f || !t) {
    const svc = input.serviceCIDRs.find((c) => within(input, c, q.dst));
    if (svc) {
      return { kind: "frontend", result: "rejected", hook, lines: [`${key} is in the Service range ${svc} but no Service serves it: rejected at once (${q.proto === "TCP" ? "TCP reset" : "ICMP port unreachable"}), as kube-proxy does`] };
    }
    const other = input.tables.frontends.filter((x) => x.ip === q.dst);
    const lines = [`${key} is no Service frontend: ${where} leaves it untranslated`];
    if (other.length) lines.push(`(${q.dst} is a frontend for ${[...new Set(other.map((x) => `${x.port}/${x.protocol.toLowerCase()}`))].join(", ")}, not for this port)`);
    return { kind: "frontend", result: "none", hook, lines };
  }
  const frontend = { kind: f.kind, ip: f.ip, port: f.port, protocol: f.protocol, service: t.service, target: t.id, scope: t.scope, masquerade: f.masquerade, affinity: t.affinity };
  const lines = [`${key} is the ${KIND_TEXT[f.kind]} frontend of ${t.service} (${where}, verdict map svc${f.family} → target t${t.id}, ${t.scope} backends)`];
  if (f.kind !== "cluster") lines.push(f.masquerade ? "externalTrafficPolicy Cluster: any node's endpoints; the connection is masqueraded to this node so that replies come back through it" : "externalTrafficPolicy Local: only this node's endpoints, and the client's address is kept");
  const name = t.service.slice(0, t.service.indexOf(":"));
  const svc = input.services?.find((x) => `${x.namespace}/${x.name}` === name);
  const internalLocal = f.kind === "cluster" && !!svc?.internalTrafficLocal;
  if (internalLocal) lines.push("internalTrafficPolicy Local: only this node's endpoints");
  if (t.affinity) lines.push("sessionAffinity ClientIP: the ring hashes the client address alone, so one client keeps one backend");
  if (!t.ringSize) {
    const local = (f.kind !== "cluster" && !f.masquerade) || internalLocal ? " on this node (the Local traffic policy takes only this node's endpoints)" : "";
    lines.push(`no endpoints${local}: rejected at once (set noep${f.family}: ${q.proto === "TCP" ? "TCP reset" : "ICMP port unreachable"}), never a silent drop`);
    return { kind: "frontend", result: "rejected", frontend, hook, lines };
  }
  return { kind: "frontend", result: "translated", frontend, hook, lines };
}

// ---------------------------------------------------------------------------------------
// 2. backend

/** Candidates listed in the text; the JSON has them all. */
const SHOWN = 16;

function backendStep(input: TraceInput, q: TraceQuery, t: Target): BackendStep {
  const backends = targetBackends(t);
  const slots = new Array<number>(backends.length).fill(0);
  for (let s = 0; s < t.ringSize; s++) slots[t.ring[s]!]!++;
  const candidates = backends.map((b, i) => ({ ip: b.ip, port: b.port, slots: slots[i]!, where: whereIs(input, b.ip) }));
  const hash = t.affinity ? "saddr" : "saddr . sport";
  const addr = t.family === 4 ? "ip" : "ip6";
  const lines = [
    `the Maglev ring of t${t.id} has ${t.ringSize} slots (the smallest prime ≥ ${input.ringFactor} × ${backendCount(t)} backends); the ring chain looks up slot jhash ${addr} saddr${t.affinity ? "" : " . th sport"} mod ${t.ringSize} seed 0x0`,
    ...candidates.slice(0, SHOWN).map((c) => `  ${hp(c.ip, c.port).padEnd(28)} ${String(c.slots).padStart(5)} slots  ${whereText(c.where)}`),
    ...(candidates.length > SHOWN ? [`  … and ${candidates.length - SHOWN} more (--json lists every one)`] : []),
  ];
  const step: BackendStep = { kind: "backend", ringSize: t.ringSize, hash, candidates, lines };
  if (!t.affinity && q.sport === undefined) {
    lines.push(`no source port given: any of these ${candidates.length} may answer; the source port decides (give SRC:PORT to see which)`);
    return step;
  }
  const slot = ringSlot(q.src, t.affinity ? undefined : q.sport, t.ringSize);
  const key = [...ringKey(q.src, t.affinity ? undefined : q.sport)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const c = candidates[t.ring[slot]!]!;
  step.chosen = { ...c, slot, key };
  lines.push(`this ${t.affinity ? "client" : "5-tuple"} hashes (key ${key}) to slot ${slot}: ${hp(c.ip, c.port)} (${whereText(c.where)})`);
  lines.push("(a connection conntrack already holds keeps the backend it was given)");
  return step;
}

// ---------------------------------------------------------------------------------------
// 3. policy

const RESERVED: Record<number, string> = { [WORLD]: " (no pod, no ipBlock)", [VIA_SERVICE]: " (a Service source address)" };
const identityName = (t: PolicyTables, id: number) => describe(t, id) + (RESERVED[id] ?? "");

const BLOCKED_WHY = "BLOCKED: an address of this node's pod CIDRs that no known pod holds, or a pod whose identity could not be given an id; it is cut off both ways until the agent knows it (fail closed)";

/** One direction as `t` (the tables of `node`) judges it, the way pol_forward does. */
function judge(t: PolicyTables, node: string, direction: "egress" | "ingress", src: string, dst: string, proto: number, port: number, dnat: boolean): PolicySide {
  // as pol_spod has it: every node's Service source address is VIA_SERVICE as a source
  const s = t.serviceSources?.some((x) => x.ip === src) ? VIA_SERVICE : identityOf(t, src);
  const d = identityOf(t, dst);
  const own = direction === "egress" ? s : d;
  const base = { direction, node, src, dst, srcIdentity: identityName(t, s), dstIdentity: identityName(t, d) };
  const name = Object.entries(IP_PROTOCOL).find(([, n]) => n === proto)?.[0].toLowerCase() ?? `protocol ${proto}`;
  const lines = [`${direction} on node ${node}: identities ${identityName(t, s)} → ${identityName(t, d)}, ${name} port ${port}`];
  const isolated = direction === "egress" ? t.isolatedEgress : t.isolatedIngress;
  if (!isolated.includes(own)) {
    lines.push(`the ${direction === "egress" ? "source" : "destination"} is not isolated for ${direction}: no NetworkPolicy selects it for ${direction}, so it is allowed`);
    return { ...base, result: "allowed", isolatedBy: [], allowedBy: [], lines };
  }
  const by = own === BLOCKED ? [] : (t.identities.find((x) => x.id === own)?.[direction === "egress" ? "egressBy" : "ingressBy"] ?? []);
  const set = direction === "egress" ? t.allowEgress : t.allowIngress;
  let e = allows(set, s, d, proto, port);
  let via = false;
  if (!e && direction === "ingress" && dnat) {
    e = allows(set, VIA_SERVICE, d, proto, port);
    via = !!e;
  }
  if (own === BLOCKED) lines.push(BLOCKED_WHY);
  else lines.push(`isolated for ${direction} by ${by.join(", ") || "(no policy named)"}`);
  if (e) {
    lines.push(`allowed by ${e.policies.join(", ")}${via ? " (it admits connections through a Service: VIA_SERVICE)" : ""}`);
    return { ...base, result: "allowed", isolatedBy: by, allowedBy: e.policies, lines };
  }
  const closed = by.filter((p) => t.problems.some((x) => x.startsWith(p)));
  lines.push(`nothing allows it: DROPPED (counted in pol_drop_${direction === "egress" ? "out" : "in"})${closed.length ? `; note: ${closed.join(", ")} has problems (see skein tables)` : ""}`);
  return { ...base, result: "denied", isolatedBy: by, allowedBy: [], lines };
}

function policyStep(input: TraceInput, q: TraceQuery, source: Where, dest: Where & { port: number }, translated: boolean, hairpin: boolean, serviceSnat: string | undefined): PolicyStep {
  const proto = IP_PROTOCOL[q.proto];
  // the forward hook sees the packet translated: the backend's port
  const port = dest.port;
  const sides: PolicySide[] = [];
  const lines: string[] = [];
  const tablesOf = (node: string) => (node === input.node ? input.policy : input.peerPolicies?.[node]);
  const anyPolicy = input.policy !== undefined;
  if (hairpin) {
    lines.push("a pod reaching itself through a Service (hairpin): accepted before any policy lookup, and masqueraded so its reply is translated back");
    return { kind: "policy", sides, lines };
  }
  // egress: on the source's own node, when it is a pod there (the node's own packets are not policed)
  const egressNode = source.kind === "local-pod" ? input.node : source.kind === "peer-pod" ? source.node : undefined;
  if (egressNode) {
    const t = tablesOf(egressNode);
    if (t) sides.push(judge(t, egressNode, "egress", q.src, dest.ip, proto, port, false));
    else if (egressNode === input.node) sides.push({ direction: "egress", node: egressNode, result: "allowed", src: q.src, dst: dest.ip, lines: ["no NetworkPolicy is in force on this node: egress allowed"] });
    else sides.push({ direction: "egress", node: egressNode, result: "unknown", src: q.src, dst: dest.ip, lines: [`egress is judged on node ${egressNode} by its own tables, which this node does not hold (run skein trace there)`] });
  } else {
    sides.push({ direction: "egress", node: input.node, result: "not-policed", src: q.src, dst: dest.ip, lines: [source.kind === "node" ? "the source is this node: its own packets (output) are not policed" : "the source is no pod: no egress policy applies"] });
  }
  // ingress: on the destination's node, when it is a pod there
  const ingressNode = dest.kind === "local-pod" ? input.node : dest.kind === "peer-pod" ? dest.node : undefined;
  if (ingressNode) {
    const here = ingressNode === input.node;
    // the node's own packets to its own pods go out through output, not forward: not policed
    if (here && source.kind === "node") sides.push({ direction: "ingress", node: ingressNode, result: "not-policed", src: q.src, dst: dest.ip, lines: ["from this node to its own pod: not forwarded, not policed (kubelet probes always reach pods)"] });
    else {
      const t = tablesOf(ingressNode);
      // across nodes the destination node sees no DNAT of its own; a Service source address
      // (VIA_SERVICE) stands in for it when this node rewrote the source
      const src = !here && serviceSnat ? serviceSnat : q.src;
      if (t) sides.push(judge(t, ingressNode, "ingress", src, dest.ip, proto, port, here && translated));
      else if (here) sides.push({ direction: "ingress", node: ingressNode, result: "allowed", src, dst: dest.ip, lines: ["no NetworkPolicy is in force on this node: ingress allowed"] });
      else sides.push({ direction: "ingress", node: ingressNode, result: "unknown", src, dst: dest.ip, lines: [`ingress is judged on node ${ingressNode} by its own tables, which this node does not hold (run skein trace there${serviceSnat ? `; the connection arrives there from ${serviceSnat}, this node's Service source address, read as VIA_SERVICE` : ""})`] });
    }
  } else sides.push({ direction: "ingress", node: input.node, result: "not-policed", src: q.src, dst: dest.ip, lines: [dest.kind === "node" ? "the destination is this node (input): not policed" : "the destination is no pod: no ingress policy applies"] });
  if (!anyPolicy && !input.peerPolicies) lines.push("no NetworkPolicy is in force on this node");
  return { kind: "policy", sides, lines };
}

// ---------------------------------------------------------------------------------------
// 4. route

function routeStep(input: TraceInput, q: TraceQuery, source: Where, dest: Where, f: Frontend | undefined, hairpin: boolean, serviceSnat: string | undefined): RouteStep {
  const snat: string[] = [];
  if (serviceSnat) snat.push(`to ${serviceSnat}, this node's Service source address (pol_svcsrc: the backend's identity admits connections through a Service, and its node reads this address as VIA_SERVICE)`);
  else if (f?.masquerade) snat.push(`masqueraded to this node's address (${KIND_TEXT[f.kind]} with externalTrafficPolicy Cluster: the ct mark's masquerade bit)`);
  else if (hairpin) snat.push("masqueraded (hairpin: a pod reaching itself through a Service)");
  const fromPod = input.podCIDRs.some((c) => within(input, c, q.src));
  const cluster = input.clusterCIDRs.length ? input.clusterCIDRs : [...input.podCIDRs, ...input.peers.flatMap((p) => (p.cidr ? [p.cidr] : []))];
  const inCluster = cluster.some((c) => within(input, c, dest.ip));
  const lines: string[] = [];
  const out = (r: Omit<RouteStep, "kind" | "lines" | "snat">): RouteStep => ({ kind: "route", ...r, ...(snat.length ? { snat: snat.join("; ") } : {}), lines: [...lines, ...snat.map((s) => `source NAT: ${s}`)] });
  switch (dest.kind) {
    case "node":
      lines.push(`${dest.ip} is this node's address: delivered locally (input)`);
      return out({ how: "this-node" });
    case "local-pod":
      lines.push(`${dest.ip} is in this node's pod CIDR ${input.podCIDRs.find((c) => within(input, c, dest.ip))}: its host route leads into the pod's veth${dest.pod ? ` (pod ${dest.pod})` : ""}`);
      return out({ how: "local-pod" });
    case "peer-pod": {
      const p = peerPathOf(input, dest.ip)!;
      if (p.how === "direct") lines.push(`${dest.ip} is in ${p.cidr}, node ${p.peer}'s pod CIDR: routed directly via its underlay address ${p.endpoint} (${p.why})`);
      else if (p.how === "vxlan") {
        lines.push(`${dest.ip} is in ${p.cidr}, node ${p.peer}'s pod CIDR: over ${VXLAN_DEV} (VXLAN, UDP ${VXLAN_PORT}) to ${p.endpoint} (${p.why})`);
        // inet skein_cni: a source outside the pod network going into the tunnel
        if (!snat.length && !cluster.some((c) => within(input, c, q.src)) && input.masquerade !== false) snat.push(`masqueraded to ${VXLAN_DEV}'s address: its source is outside the pod network, and replies must come back through the tunnel`);
      } else lines.push(`${dest.ip} is in ${p.cidr}, node ${p.peer}'s pod CIDR, but this node has no route to it: ${p.why}; the packet follows the node's other routes`);
      if (input.peersFrom) lines.push(`(paths: ${input.peersFrom})`);
      return out({ how: p.how === "none" ? "no-route" : p.how, peer: p.peer, ...(p.cidr ? { cidr: p.cidr } : {}), ...(p.endpoint ? { endpoint: p.endpoint } : {}) });
    }
    case "pod-network":
      lines.push(`${dest.ip} is in the pod network but in no known node's pod CIDR: no route of skein's leads there`);
      return out({ how: "no-route" });
    case "outside":
      lines.push(dest.node ? `${dest.ip} is node ${dest.node}'s own address, outside the pod network: it leaves by the node's own routes` : `${dest.ip} is outside the cluster: it leaves by the node's own routes`);
      if (fromPod && !inCluster && input.masquerade !== false && !snat.length) snat.push("masqueraded to the node's address (inet skein_cni: pod traffic leaving the cluster)");
      else if (!fromPod && !snat.length) lines.push("its source is not a pod of this node: not masqueraded");
      return out({ how: "outside" });
  }
}

// ---------------------------------------------------------------------------------------

export function explain(input: TraceInput, q: TraceQuery): TraceResult {
  const source = whereIs(input, q.src);
  const notes: string[] = [];
  if (source.kind === "peer-pod") notes.push(`the source is a pod of node ${source.node}: that node translates and polices its packets first; this trace follows it through this node's tables (the same for every node, apart from Local traffic policies and NodePort addresses)`);
  const f = findFrontend(input, q);
  const t = f ? input.tables.targets.find((x) => x.id === f.target) : undefined;
  const steps: TraceStep[] = [];
  const fs = frontendStep(input, q, source, f, t);
  steps.push(fs);
  const result = (outcome: Outcome, summary: string, destination?: Where & { port: number }): TraceResult => ({ node: input.node, mode: input.mode, query: q, source, ...(destination ? { destination } : {}), steps, outcome, summary, notes });
  if (fs.result === "rejected") return result("rejected", `rejected by ${fs.frontend ? `${fs.frontend.service}: no endpoints` : "the Service range: no Service serves it"}`);
  let dstIp = q.dst;
  let dport = q.dport;
  let translated = false;
  if (fs.result === "translated") {
    const bs = backendStep(input, q, t!);
    steps.push(bs);
    if (!bs.chosen) {
      // the source port decides: every candidate's policy and route may differ; the first's is
      // shown when they agree on where they are
      const first = bs.candidates[0]!;
      dstIp = first.ip;
      dport = first.port;
      notes.push(`steps 3 and 4 follow ${hp(first.ip, first.port)}, the first candidate; another source port may pick another`);
    } else {
      dstIp = bs.chosen.ip;
      dport = bs.chosen.port;
    }
    translated = true;
  }
  const dest = { ...whereIs(input, dstIp), port: dport };
  const hairpin = translated && dstIp === q.src;
  // pol_svcsrc: a connection this node translated, to another node's pod whose identity a
  // viaService policy isolates, leaves with this node's Service source address
  let serviceSnat: string | undefined;
  const pt = input.policy;
  if (translated && pt && dest.kind !== "local-pod" && dest.kind !== "node" && source.kind !== "peer-pod") {
    const fam: Family = addressFamily(dstIp);
    const id = identityOf(pt, dstIp);
    const mine = pt.serviceSource?.[fam];
    if (mine && (pt.viaService ?? []).includes(id) && !pt.localAddresses.includes(dstIp)) serviceSnat = mine;
  }
  const ps = policyStep(input, q, source, dest, translated, hairpin, serviceSnat);
  steps.push(ps);
  const rs = routeStep(input, q, source, dest, f, hairpin, serviceSnat);
  steps.push(rs);
  const denied = ps.sides.find((s) => s.result === "denied");
  const unknown = ps.sides.find((s) => s.result === "unknown");
  const to = `${hp(dest.ip, dest.port)} (${whereText(dest)})`;
  if (denied) return result("dropped", `dropped by NetworkPolicy: ${denied.direction} on node ${denied.node}${denied.isolatedBy?.length ? ` (isolated by ${denied.isolatedBy.join(", ")}, nothing allows it)` : ""}`, dest);
  if (rs.how === "no-route" && dest.kind !== "outside") return result("undecided", `no route of skein's to ${to}`, dest);
  const pick = fs.result === "translated" && !(steps[1] as BackendStep).chosen ? " (one backend of several: the source port decides)" : "";
  if (unknown) return result("undecided", `reaches ${to}${pick}, unless ${unknown.direction} policy on node ${unknown.node} drops it`, dest);
  return result("delivered", `delivered to ${to}${pick}`, dest);
}

/**
 * `explain`, with a verdict judged on another node (a side "unknown" here) judged again with
 * that node's tables from `tablesOf` (the live agent and the offline trace both compile them
 * from the whole cluster's Pods, Namespaces and NetworkPolicies, which every node holds).
 */
export function explainAcrossNodes(input: TraceInput, q: TraceQuery, tablesOf: (node: string) => PolicyTables): TraceResult {
  const r = explain(input, q);
  const elsewhere = [...new Set(r.steps.flatMap((s) => (s.kind === "policy" ? s.sides.filter((x) => x.result === "unknown").map((x) => x.node) : [])))];
  if (!elsewhere.length) return r;
  return explain({ ...input, peerPolicies: Object.fromEntries(elsewhere.map((n) => [n, tablesOf(n)])) }, q);
}

