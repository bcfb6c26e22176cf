// The agent's cluster state, fed by the watcher's events: Services and EndpointSlices are
// checked (compiler/state.ts) and handed to the incremental compiler; Pods, Namespaces and
// NetworkPolicies are checked (compiler/policy/state.ts) and handed to the policy compiler;
// this node's Node gives the pod CIDRs and the addresses NodePorts listen on, every Node the
// pod network between the nodes. An object that fails its checks is reported and the previous
// good version of it stays in force: bad input never removes what was there.
//
// `keep` decides what of each object is held at all: the informers cache whatever it returns.
// A compiled kind is checked once, as it arrives, and its checked form handed to its compiler,
// which holds it from then on (a slice packed, not as objects); the informer keeps only the
// name and resourceVersion it needs to tell a change from a repeat. Nodes keep just the fields
// skein reads. managedFields and annotations are never held (but the two skein reads).
import { AddressError, addressFamily, quote, unicastProblem } from "../../compiler/address.ts";
import type { IncrementalCompiler } from "../../compiler/incremental.ts";
import { ObjectError, parseEndpointSlice, parseService, type EndpointSlice, type Service } from "../../compiler/state.ts";
import { parseNamespace, parseNetworkPolicy, parsePod } from "../../compiler/policy/state.ts";
import type { PolicyCompiler } from "../../compiler/policy/incremental.ts";
import type { NamespaceInfo, Policy, PodInfo } from "../../compiler/policy/types.ts";
import { poolFromCidr, poolsFromCidrs } from "../ipam/cidr.ts";
import type { WatchEvent } from "../watch/watcher.ts";
import type { ObjectRef } from "../report/types.ts";

export interface NodeInfo {
  name: string;
  /** the Node's uid (what owns this node's SkeinNode) */
  uid?: string;
  podCIDRs: string[];
  /** InternalIP addresses first, then ExternalIP */
  addresses: string[];
  internalIPs: string[];
  /** the address the node is reached at from outside its site (behind a NAT: the NAT's),
   * from the annotation skein.io/public-ip */
  publicIP?: string;
  /** nodes of one site reach each other at their private addresses (label skein.io/site) */
  site?: string;
  /** fields left out as unreadable, each naming the Node and the field (the rest was taken) */
  problems?: string[];
}

/** The Node annotation naming its public address (the only annotation held). */
export const PUBLIC_IP_ANNOTATION = "skein.io/public-ip";
/** The Node label naming its site. */
export const SITE_LABEL = "skein.io/site";

type Raw = WatchEvent["object"];

/** What is held of an object: its identity, and the checked form or the fields skein uses. */
export interface Kept {
  metadata: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec?: unknown;
  status?: unknown;
  /** a Service, slice, Pod, Namespace or NetworkPolicy as compiler/state.ts or
   * compiler/policy/state.ts checked it, until ClusterStore hands it to a compiler; null:
   * nothing to program (ExternalName, FQDN, a hostNetwork or finished pod) */
  checked?: Service | EndpointSlice | PodInfo | NamespaceInfo | Policy | null;
  /** why the checks refused it */
  error?: string;
  [k: string]: unknown;
}

const pick = (o: unknown, keys: string[]): Record<string, unknown> | undefined => {
  if (!o || typeof o !== "object") return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) if ((o as Record<string, unknown>)[k] !== undefined) out[k] = (o as Record<string, unknown>)[k];
  return out;
};

/** The metadata held of compiled kinds (what ListWatch needs), and of the others. */
const COMPILED = ["name", "namespace", "resourceVersion"];
/** The kinds held only in checked form once handed over. */
const CHECKED = new Set<WatchEvent["kind"]>(["Service", "EndpointSlice", "Pod", "Namespace", "NetworkPolicy"]);
const OTHERS = ["name", "namespace", "resourceVersion", "uid", "labels", "deletionTimestamp"];

/** Namespace names, one string each: every object of a namespace holds the same one rather
 * than its own copy from its JSON (20,000 copies of "default" at 10k services). */
const namespaces = new Map<string, string>();
function intern(ns: string): string {
  let s = namespaces.get(ns);
  if (s === undefined) {
    if (namespaces.size >= 4096) namespaces.clear(); // namespaces come and go: no lasting growth
    namespaces.set(ns, (s = ns));
  }
  return s;
}

/** Trims an object as it arrives (the watcher's `keep`). */
export function keep(kind: WatchEvent["kind"], o: Record<string, unknown>): Kept & WatchEvent["object"] {
  const m = o.metadata as { namespace?: unknown } | undefined;
  if (m && typeof m.namespace === "string") m.namespace = intern(m.namespace);
  const metadata = pick(o.metadata, CHECKED.has(kind) ? COMPILED : OTHERS) as Kept["metadata"];
  const k: Kept = { metadata };
  try {
    switch (kind) {
      case "Service":
        k.checked = parseService(o) ?? null;
        break;
      case "EndpointSlice":
        k.checked = parseEndpointSlice(o) ?? null;
        break;
      case "Node": {
        k.spec = pick(o.spec, ["podCIDRs", "podCIDR", "unschedulable"]);
        k.status = pick(o.status, ["addresses"]);
        const ann = (o.metadata as { annotations?: Record<string, unknown> } | undefined)?.annotations;
        if (ann && typeof ann === "object" && ann[PUBLIC_IP_ANNOTATION] !== undefined) k.publicIP = ann[PUBLIC_IP_ANNOTATION];
        break;
      }
      case "Pod":
        k.checked = parsePod(o) ?? null;
        break;
      case "NetworkPolicy":
        k.checked = parseNetworkPolicy(o);
        break;
      case "Namespace":
        k.checked = parseNamespace(o);
        break;
    }
  } catch (e) {
    if (!(e instanceof ObjectError)) throw e;
    k.error = e.message;
  }
  // what the Event on an object skein cannot honour names it by (agent/report/events.ts)
  if (metadata && (k.error || (k.checked as Policy | undefined)?.closed)) {
    const uid = (o.metadata as { uid?: unknown } | undefined)?.uid;
    if (typeof uid === "string") metadata.uid = uid;
  }
  return k as Kept & WatchEvent["object"];
}
const nameOf = (o: Raw) => ({ namespace: o.metadata?.namespace ?? "default", name: o.metadata?.name ?? "" });
const refOf = (kind: string, o: Raw): ObjectRef => {
  const m = (o as Kept).metadata ?? {};
  const ref: ObjectRef = { kind, name: m.name ?? "" };
  if (kind !== "Node" && kind !== "Namespace") ref.namespace = m.namespace ?? "default";
  if (m.uid) ref.uid = m.uid;
  if (m.resourceVersion) ref.resourceVersion = m.resourceVersion;
  return ref;
};
const keyOf = (o: Raw) => `${o.metadata?.namespace ?? "default"}/${o.metadata?.name ?? ""}`;

/**
 * What skein uses of a Node, read strictly: its pod CIDRs (compiler/address.ts, and whether
 * they can work as pod CIDRs, agent/ipam/cidr.ts) and its InternalIP and ExternalIP
 * addresses. Throws an ObjectError naming the Node and the field.
 */
export function nodeInfo(node: Raw): NodeInfo {
  const id = `Node ${node.metadata?.name ?? "?"}`;
  const field = <T>(name: string, read: () => T): T => {
    try {
      return read();
    } catch (e) {
      if (e instanceof AddressError) throw new ObjectError(id, name, e.message);
      throw e;
    }
  };
  const spec = (node.spec ?? {}) as { podCIDRs?: unknown; podCIDR?: unknown };
  const status = (node.status ?? {}) as { addresses?: unknown };
  // podCIDRs when given (podCIDR is its first element), else the older podCIDR alone
  const byList = spec.podCIDRs !== undefined && spec.podCIDRs !== null;
  const raw = byList ? spec.podCIDRs : spec.podCIDR === undefined || spec.podCIDR === null ? [] : [spec.podCIDR];
  if (!Array.isArray(raw)) throw new ObjectError(id, "spec.podCIDRs", `${quote(raw)} is not a list`);
  const cidrs = raw.map((c, i) => field(byList ? `spec.podCIDRs[${i}]` : "spec.podCIDR", () => poolFromCidr(c as string).cidr));
  field("spec.podCIDRs", () => poolsFromCidrs(cidrs));
  const list = status.addresses === undefined || status.addresses === null ? [] : status.addresses;
  if (!Array.isArray(list)) throw new ObjectError(id, "status.addresses", `${quote(list)} is not a list`);
  const addrs = (type: string) =>
    list.flatMap((a: unknown, i) => {
      if (typeof a !== "object" || a === null || (a as { type?: unknown }).type !== type) return [];
      const address = (a as { address?: unknown }).address;
      field(`status.addresses[${i}].address`, () => addressFamily(address));
      return [address as string];
    });
  const internalIPs = addrs("InternalIP");
  const info: NodeInfo = { name: node.metadata?.name ?? "", ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}), podCIDRs: cidrs, addresses: [...internalIPs, ...addrs("ExternalIP")], internalIPs };
  const pub = (node as Kept).publicIP ?? (node.metadata as { annotations?: Record<string, unknown> } | undefined)?.annotations?.[PUBLIC_IP_ANNOTATION];
  if (pub !== undefined) {
    // an annotation anyone with write access to Nodes can set: a bad one is left out and
    // reported, not a reason to refuse the Node (a restarted agent would lose the peer)
    try {
      field(`metadata.annotations[${PUBLIC_IP_ANNOTATION}]`, () => {
        addressFamily(pub);
        const why = unicastProblem(pub as string);
        if (why) throw new AddressError(`${quote(pub)} is ${why}: not an address a node is reached at`);
      });
      info.publicIP = pub as string;
    } catch (e) {
      if (!(e instanceof ObjectError)) throw e;
      info.problems = [e.message];
    }
  }
  const site = node.metadata?.labels?.[SITE_LABEL];
  if (site) info.site = site;
  return info;
}

export class ClusterStore {
  node: NodeInfo | undefined;
  /** every Node as read (this one too), for the pod network between the nodes */
  readonly nodes = new Map<string, NodeInfo>();
  /** objects that failed their checks, by kind/namespace/name: the message */
  readonly rejected = new Map<string, string>();
  /** compiled objects handed to a compiler and not deleted since, by kind namespace/name */
  private readonly held = new Set<string>();

  constructor(
    private readonly compiler: Pick<IncrementalCompiler, "setService" | "setSlice" | "deleteService" | "deleteSlice" | "counts">,
    private readonly nodeName: string,
    private readonly policy: Pick<PolicyCompiler, "setPod" | "deletePod" | "setNamespace" | "deleteNamespace" | "setPolicy" | "deletePolicy" | "counts">,
    private readonly hooks: {
      /** an object refused; `kept`: an earlier version of it stays in force */
      onReject?: (what: string, message: string, kept: boolean, ref: ObjectRef) => void;
      /** a NetworkPolicy skein cannot apply as written, applied closed (compiler/policy/state.ts) */
      onClosed?: (what: string, message: string, ref: ObjectRef) => void;
      /** this node's Node changed */
      onNode?: (n: NodeInfo | undefined) => void;
      /** any Node changed (this one too): the peers of the pod network */
      onNodes?: (name: string, n: NodeInfo | undefined) => void;
    } = {},
  ) {}

  counts(): { services: number; slices: number; pods: number; namespaces: number; policies: number } {
    return { ...this.compiler.counts(), ...this.policy.counts() };
  }

  /** Applies one event; returns whether the compiled state may have changed. */
  apply(e: WatchEvent): boolean {
    const o = e.object;
    const key = keyOf(o);
    const id = `${e.kind} ${key}`;
    const del = e.op === "delete";
    switch (e.kind) {
      case "Service":
      case "EndpointSlice":
      case "Pod":
      case "Namespace":
      case "NetworkPolicy": {
        const kept = o as Kept;
        if (!del && kept.error) {
          // kept.error names the object and the field (compiler/state.ts)
          this.rejected.set(id, kept.error);
          this.hooks.onReject?.(id, kept.error, this.held.has(id), refOf(e.kind, o));
          return false;
        }
        // this very object was handed over before (the informer repeats what it caches)
        if (!del && kept.checked === undefined) return false;
        const checked = del ? undefined : (kept.checked ?? undefined);
        const closed = (checked as Policy | undefined)?.closed;
        if (closed && e.kind === "NetworkPolicy") {
          kept.checked = undefined;
          if (this.held.has(id)) {
            // valid, but skein cannot apply it: the version in force stays rather than one
            // that isolates everything it selects
            this.rejected.set(id, closed);
            this.hooks.onReject?.(id, closed, true, refOf(e.kind, o));
            return false;
          }
          this.hooks.onClosed?.(id, closed, refOf(e.kind, o));
        }
        if (checked) {
          this.hand(e.kind, checked);
          this.held.add(id);
          // the compiler holds it now; the informer's copy keeps only the metadata
          kept.checked = undefined;
        } else {
          // deleted, or an ExternalName Service (FQDN slice, finished pod) now: nothing to program
          const { namespace, name } = nameOf(o);
          this.drop(e.kind, e.kind === "Namespace" ? name : namespace, name);
          this.held.delete(id);
        }
        if (!closed) this.rejected.delete(id);
        return true;
      }
      case "Node": {
        const name = o.metadata?.name ?? "";
        let info: NodeInfo | undefined;
        try {
          info = del ? undefined : nodeInfo(o);
        } catch (e) {
          if (!(e instanceof ObjectError)) throw e;
          // what was read from the Node before stays in force (node file, NodePort addresses)
          this.rejected.set(id, e.message);
          this.hooks.onReject?.(id, e.message, this.nodes.has(name), refOf("Node", o));
          return false;
        }
        this.rejected.delete(id);
        for (const p of info?.problems ?? []) this.hooks.onReject?.(id, p, true, refOf(e.kind, o));
        if (info) this.nodes.set(name, info);
        else this.nodes.delete(name);
        this.hooks.onNodes?.(name, info);
        if (name !== this.nodeName) return false;
        this.node = info;
        this.hooks.onNode?.(this.node);
        return true;
      }
    }
  }

  /** A checked object to the compiler that holds its kind. */
  private hand(kind: WatchEvent["kind"], checked: NonNullable<Kept["checked"]>): void {
    switch (kind) {
      case "Service":
        return this.compiler.setService(checked as Service);
      case "EndpointSlice":
        return this.compiler.setSlice(checked as EndpointSlice);
      case "Pod":
        return this.policy.setPod(checked as PodInfo);
      case "Namespace":
        return this.policy.setNamespace(checked as NamespaceInfo);
      case "NetworkPolicy":
        return this.policy.setPolicy(checked as Policy);
    }
  }

  private drop(kind: WatchEvent["kind"], namespace: string, name: string): void {
    switch (kind) {
      case "Service":
        return this.compiler.deleteService(namespace, name);
      case "EndpointSlice":
        return this.compiler.deleteSlice(namespace, name);
      case "Pod":
        return this.policy.deletePod(namespace, name);
      case "Namespace":
        return this.policy.deleteNamespace(name);
      case "NetworkPolicy":
        return this.policy.deletePolicy(namespace, name);
    }
  }
}
