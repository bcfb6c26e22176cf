// The agent's cluster state, fed by the watcher's events: Services and EndpointSlices are
// checked (compiler/state.ts) and handed to the incremental compiler; this node's Node gives
// the pod CIDRs and the addresses NodePorts listen on; the rest is kept for the parts that
// need it (policy). An object that fails its checks is reported and the previous good
// version of it stays in force: bad input never removes what was there.
import type { IncrementalCompiler } from "../../compiler/incremental.ts";
import { ObjectError, parseEndpointSlice, parseService, type EndpointSlice, type Service } from "../../compiler/state.ts";
import type { WatchEvent } from "../watch/watcher.ts";

export interface NodeInfo {
  podCIDRs: string[];
  /** InternalIP addresses first, then ExternalIP */
  addresses: string[];
}

type Raw = WatchEvent["object"];
const nameOf = (o: Raw) => ({ namespace: o.metadata?.namespace ?? "default", name: o.metadata?.name ?? "" });
const keyOf = (o: Raw) => `${o.metadata?.namespace ?? "default"}/${o.metadata?.name ?? ""}`;

export function nodeInfo(node: Raw): NodeInfo {
  const spec = (node.spec ?? {}) as { podCIDRs?: unknown; podCIDR?: unknown };
  const status = (node.status ?? {}) as { addresses?: Array<{ type?: string; address?: string }> };
  const cidrs = Array.isArray(spec.podCIDRs) ? spec.podCIDRs.filter((c): c is string => typeof c === "string") : typeof spec.podCIDR === "string" ? [spec.podCIDR] : [];
  const addrs = (type: string) => (status.addresses ?? []).filter((a) => a.type === type && typeof a.address === "string").map((a) => a.address!);
  return { podCIDRs: cidrs, addresses: [...addrs("InternalIP"), ...addrs("ExternalIP")] };
}

export class ClusterStore {
  /** objects not compiled yet, kept for the parts of skein that use them */
  readonly namespaces = new Map<string, Raw>();
  readonly pods = new Map<string, Raw>();
  readonly policies = new Map<string, Raw>();
  node: NodeInfo | undefined;
  /** objects that failed their checks, by kind/namespace/name: the message */
  readonly rejected = new Map<string, string>();

  /** the checked Services and slices in force: what a new compiler is loaded with */
  private readonly services = new Map<string, Service>();
  private readonly slices = new Map<string, EndpointSlice>();

  constructor(
    private compiler: IncrementalCompiler,
    private readonly nodeName: string,
    private readonly hooks: { onReject?: (what: string, message: string) => void; onNode?: (n: NodeInfo | undefined) => void } = {},
  ) {}

  /** Hands every Service and slice to `c`, which from now on gets the changes. */
  useCompiler(c: IncrementalCompiler): void {
    this.compiler = c;
    c.load({ services: [...this.services.values()], slices: [...this.slices.values()] });
  }

  counts(): { services: number; slices: number; pods: number } {
    return { services: this.services.size, slices: this.slices.size, pods: this.pods.size };
  }

  /** Applies one event; returns whether the compiled state may have changed. */
  apply(e: WatchEvent): boolean {
    const o = e.object;
    const id = `${e.kind} ${keyOf(o)}`;
    const del = e.op === "delete";
    try {
      switch (e.kind) {
        case "Service": {
          const s = del ? undefined : parseService(o);
          // deleted, or an ExternalName Service now: nothing to program
          const { namespace, name } = nameOf(o);
          if (s) {
            this.services.set(keyOf(o), s);
            this.compiler.setService(s);
          } else if (this.services.delete(`${namespace}/${name}`)) this.compiler.deleteService(namespace, name);
          break;
        }
        case "EndpointSlice": {
          const s = del ? undefined : parseEndpointSlice(o);
          const { namespace, name } = nameOf(o);
          if (s) {
            this.slices.set(keyOf(o), s);
            this.compiler.setSlice(s);
          } else if (this.slices.delete(`${namespace}/${name}`)) this.compiler.deleteSlice(namespace, name);
          break;
        }
        case "Node":
          if (o.metadata?.name !== this.nodeName) return false;
          this.node = del ? undefined : nodeInfo(o);
          this.hooks.onNode?.(this.node);
          return true;
        case "Namespace":
          this.keep(this.namespaces, o, del);
          return false;
        case "Pod":
          this.keep(this.pods, o, del);
          return false;
        case "NetworkPolicy":
          this.keep(this.policies, o, del);
          return false;
      }
    } catch (err) {
      if (!(err instanceof ObjectError)) throw err;
      this.rejected.set(id, err.message);
      this.hooks.onReject?.(id, err.message);
      return false;
    }
    this.rejected.delete(id);
    return true;
  }

  private keep(m: Map<string, Raw>, o: Raw, del: boolean): void {
    if (del) m.delete(keyOf(o));
    else m.set(keyOf(o), o);
  }
}
