// NetworkPolicy as the rule compiler sees it (the checked, plain form of Pods, Namespaces and
// NetworkPolicies) and the identity tables it makes of them for one node, which the datapath
// loads (agent/datapath/policy-*.ts). Types and the constants both sides agree on.
//
// Identities, as Cilium keys policy: every pod address, and every range of other addresses
// that ipBlocks cut, gets a numeric identity; policy becomes a set of allowed
// (source identity, destination identity, protocol range, port range) elements. A packet then
// costs a few lookups whatever the number of policies, and a pod's label change moves its
// address to another identity instead of rewriting rules.
//   - A pod's identity is keyed by what policies can see of it: its namespace (and that
//     namespace's labels), its labels, its named container ports and the ipBlocks its address
//     falls in. Pods alike in all of that share one identity, on every node.
//   - A range of non-pod addresses is keyed by the ipBlocks that hold it.
//   - Ids are small numbers, stable from one compile to the next (an identity keeps its id
//     while its key exists), so that the kernel's maps change only where the cluster did.
import type { Family } from "../address.ts";
import type { Protocol } from "../state.ts";

/** A label selector in checked form: every requirement must hold (matchLabels are `In` with one value). */
export interface Selector {
  requirements: Requirement[];
}
export interface Requirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  /** sorted, no repeats; empty for Exists and DoesNotExist */
  values: string[];
}

export interface PolicyPort {
  protocol: Protocol;
  /** absent: every port of the protocol; a string: a named container port */
  port?: number | string;
  /** with a numeric port: the last port of the range */
  endPort?: number;
}

export type PolicyPeer =
  /** pods: `pods` absent means every pod of the selected namespaces; `namespaces` absent means
   * the policy's own namespace only */
  | { kind: "pods"; pods?: Selector; namespaces?: Selector }
  /** addresses: canonical CIDR text (compiler/address.ts), excepts inside it */
  | { kind: "cidr"; cidr: string; except: string[] };

export interface PolicyRule {
  /** empty: every source (ingress) or destination (egress) */
  peers: PolicyPeer[];
  /** empty: every protocol and port */
  ports: PolicyPort[];
}

export interface Policy {
  namespace: string;
  name: string;
  podSelector: Selector;
  /** null: the policy says nothing of ingress (policyTypes lacks Ingress) */
  ingress: PolicyRule[] | null;
  /** null: the policy says nothing of egress */
  egress: PolicyRule[] | null;
  /** set for policies skein makes itself (isolation modes): what made it */
  generated?: "namespace-isolation" | "app-isolation";
  /** only for generated policies: connections that reached the pod through a Service
   * (DNAT by the service datapath) are allowed whatever their source */
  viaService?: boolean;  /** set when skein cannot apply the policy as written (past its bounds): why. It then
   * isolates the pods it selects with nothing allowed (compiler/policy/state.ts) */
  closed?: string;
}

export interface ContainerPort {
  name: string;
  protocol: Protocol;
  port: number;
}

export interface PodInfo {
  namespace: string;
  name: string;
  nodeName: string;
  /** canonical addresses (compiler/address.ts); empty until the pod has one */
  ips: string[];
  labels: Record<string, string>;
  /** the pod's named container ports (unnamed ones cannot be referred to by policy) */
  ports: ContainerPort[];
}

export interface NamespaceInfo {
  name: string;
  /** with kubernetes.io/metadata.name set to the name, as the control plane does */
  labels: Record<string, string>;
  /** annotation skein.io/isolation: "namespace" */
  isolation: boolean;
}

export interface PolicyState {
  namespaces: NamespaceInfo[];
  pods: PodInfo[];
  /** NetworkPolicies, checked; generated ones are made by the compiler, not given here */
  policies: Policy[];
}

export interface PolicyOptions {
  /** the node whose pods the tables enforce for (spec.nodeName) */
  nodeName: string;
  /** this node's pod CIDRs: an address in them that no known pod holds is blocked while any
   * policy exists (a pod the agent has not seen yet is not left open) */
  podCIDRs: string[];
  /** the largest identity the datapath's mark bits hold; identities past it cannot be
   * represented and their pods are blocked (fail closed) */
  maxIdentity: number;
}

/** Reserved identities. 0 is every address no pod holds and no ipBlock names. */
export const WORLD = 0;
/** A pseudo-source: the connection reached the pod through a Service (isolation modes). */
export const VIA_SERVICE = 1;
/** Blocked both ways: an unknown address of this node's pod CIDRs, or a pod whose identity
 * could not be given an id. */
export const BLOCKED = 2;
/** The first id given to an identity. */
export const FIRST_ID = 3;

export interface Identity {
  id: number;
  /** canonical key (what keeps the id stable across compiles) */
  key: string;
  /** for people: "pod prod app=web,tier=front" or "cidr 10.0.0.0/8 except 10.1.0.0/16" */
  name: string;
  /** some pod of this identity is on this node */
  local: boolean;
  /** policies (namespace/name) selecting it that say something of ingress / egress;
   * non-empty means isolated in that direction (only local identities are listed as isolated) */
  ingressBy: string[];
  egressBy: string[];
}

/** An address of a pod, with its identity. */
export interface PodAddress {
  family: Family;
  ip: string;
  id: number;
}

/** A range of addresses, first..last inclusive, with its identity (never WORLD). It may hold pod
 * addresses: those are looked up in the pods first (POLICY.md step 3 cuts the whole space). */
export interface AddressRange {
  family: Family;
  first: string;
  last: string;
  id: number;
}

/**
 * One element of an allow set: identities src..srcLast may open connections to dst..dstLast
 * with a protocol in proto..protoLast (IP protocol numbers; 0..255 is every protocol) and a
 * destination port in port..portLast (0..65535 when every port). Elements of one direction
 * never overlap. `policies`: what allows it (namespace/name, sorted), for the counters.
 */
export interface AllowElement {
  src: number;
  srcLast: number;
  dst: number;
  dstLast: number;
  proto: number;
  protoLast: number;
  port: number;
  portLast: number;
  policies: string[];
}

export interface PolicyTables {
  /** every identity in use (reserved ones excluded), by id */
  identities: Identity[];
  /** every pod address of the cluster, sorted by family then address */
  pods: PodAddress[];
  /** sorted by family then first address; disjoint */
  ranges: AddressRange[];
  /** identities whose ingress / egress is policed on this node (local and selected), sorted;
   * BLOCKED is in both when it is used */
  isolatedIngress: number[];
  isolatedEgress: number[];
  /** ingress: checked at the destination; egress: at the source. Sorted by
   * (src, dst, proto, port). */
  allowIngress: AllowElement[];
  allowEgress: AllowElement[];
  /** addresses of this node's pods (anti-spoofing), sorted by family then address */
  localAddresses: string[];
  /** policies generated for isolation modes, as they are compiled (visible in dumps) */
  generated: Policy[];
  /** warnings on valid policies (a named port no selected pod has, ...), each naming the
   * policy and field; sorted */
  problems: string[];
  /** Added after the compile (via-service.ts), for connections through a Service to a
   * backend on another node: the identities, on any node, a viaService policy selects */
  viaService?: number[];
  /** every node's Service source addresses, read as VIA_SERVICE (sorted like `pods`) */
  serviceSources?: PodAddress[];
  /** this node's, by family: what it gives such connections as their source */
  serviceSource?: Partial<Record<Family, string>>;
}

export const IP_PROTOCOL: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
