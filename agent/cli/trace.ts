// `skein trace SRC[:PORT] DST:PORT[/PROTO]`: what the datapath does with that packet
// (agent/trace). With --state FILE it compiles the file as `skein tables --state` does and
// plans the routes to the peers from their Node objects as an agent without gossip would
// (the underlay subnet from --underlay-subnet, else from the interface holding the underlay
// address in this network namespace); without, it asks the running agent.
import { PeerBook } from "../gossip/peers.ts";
import { vtepMacFor } from "../gossip/record.ts";
import { planOverlay, type Mode, type PeerPath } from "../overlay/plan.ts";
import { explainAcrossNodes, type TraceInput, type TraceResult } from "../trace/explain.ts";
import { parseQuery, type TraceQuery } from "../trace/query.ts";
import { renderTrace } from "../trace/render.ts";
import { compileState, type CompiledState } from "./tables.ts";
import { nodeInfo, type NodeInfo } from "../loop/state.ts";
import { factsOf } from "../loop/network.ts";
import type { Marks } from "../datapath/marks.ts";

export interface TraceOptions {
  state: string;
  nodeName: string;
  nodeIp: string[];
  serviceCidr: string[];
  clusterCidr: string[];
  ringFactor: number;
  marks?: Marks;
  overlayMode: Mode;
  underlayIp?: string;
  underlaySubnet?: string;
  json?: boolean;
  color: boolean;
}

/** The interface of this network namespace holding `ip` (undefined: none, or netlink refused). */
async function localUnderlay(ip: string) {
  const { Netlink } = await import("../sys/netlink.ts");
  const { underlayOf } = await import("../overlay/underlay.ts");
  let nl;
  try {
    nl = Netlink.open();
  } catch {
    return undefined;
  }
  try {
    return underlayOf(nl, ip);
  } finally {
    nl.close();
  }
}

/** The peers' paths as an agent of `nodeName` without gossip plans them from the Node objects. */
async function offlinePaths(c: CompiledState, o: TraceOptions, err: (s: string) => void): Promise<{ paths: PeerPath[]; from: string }> {
  const book = new PeerBook({ self: o.nodeName, ttlMs: 60_000 });
  for (const x of c.objects) {
    if (!x || typeof x !== "object" || (x as { kind?: unknown }).kind !== "Node") continue;
    let n: NodeInfo;
    try {
      n = nodeInfo(x as Record<string, unknown>);
    } catch {
      continue; // said by the compile
    }
    // the facts as agent/loop/network.ts hands them to its peer book
    book.setNode(n.name, factsOf(n));
  }
  const peers = book.peers();
  const unplanned = (why: string) => ({ paths: peers.flatMap((p) => p.podCIDRs.map((cidr) => ({ peer: p.name, cidr, how: "none" as const, why }))), from: "offline: what the Node objects imply" });
  const self = c.node;
  if (!self?.podCIDRs.length) return unplanned(`node ${JSON.stringify(o.nodeName)} is not in the state file or has no spec.podCIDRs: no plan for its routes`);
  const ip = o.underlayIp ?? self.internalIPs.find((a) => !a.includes(":")) ?? self.internalIPs[0];
  if (!ip) return unplanned(`node ${o.nodeName} has no InternalIP and --underlay-ip is not given`);
  let subnet = o.underlaySubnet;
  let dev = "(underlay)";
  let mtu = 1500;
  let how = `underlay subnet ${subnet} from --underlay-subnet`;
  if (!subnet) {
    const u = await localUnderlay(ip);
    if (!u) return unplanned(`the underlay subnet of ${ip} is not known offline: give --underlay-subnet, or run skein trace in the node's network namespace`);
    ({ subnet, dev, mtu } = u);
    how = `underlay ${ip} on ${dev} (${subnet}) in this network namespace`;
  }
  try {
    const plan = planOverlay({ name: o.nodeName, podCIDRs: self.podCIDRs, underlay: ip, underlaySubnet: subnet, underlayDev: dev, underlayMtu: mtu, public: self.publicIP, site: self.site, mode: o.overlayMode, vtepMac: vtepMacFor(o.nodeName), clusterCIDRs: o.clusterCidr, serviceCIDRs: o.serviceCidr }, peers);
    return { paths: plan.paths, from: `offline: what the Node objects imply, ${how}, mode ${o.overlayMode}` };
  } catch (e) {
    err(`skein trace: no route plan: ${(e as Error).message}\n`);
    return unplanned(`no route plan: ${(e as Error).message}`);
  }
}

/** The trace of `q` from a state file, as the agent of --node-name would hold it. */
export async function traceOffline(o: TraceOptions, q: TraceQuery, err: (s: string) => void): Promise<TraceResult> {
  const c = await compileState({ state: o.state, nodeName: o.nodeName, nodeIp: o.nodeIp, ringFactor: o.ringFactor, marks: o.marks }, err, "trace");
  const { paths, from } = await offlinePaths(c, o, err);
  const input: TraceInput = {
    node: o.nodeName,
    mode: "offline",
    nodeIPs: c.nodeIPs,
    tables: c.tables,
    ringFactor: o.ringFactor,
    policy: c.policy,
    podCIDRs: c.podCIDRs,
    peers: paths,
    peersFrom: from,
    clusterCIDRs: o.clusterCidr.length ? o.clusterCidr : [...new Set(c.nodes.flatMap((n) => n.podCIDRs))].sort(),
    serviceCIDRs: o.serviceCidr,
    pods: c.pods,
    services: c.services,
  };
  // a verdict judged on another node: that node's tables, compiled from the same file
  return explainAcrossNodes(input, q, c.policyFor);
}

export function printTrace(r: TraceResult, o: { json?: boolean; color: boolean }, out: (s: string) => void): void {
  out(o.json ? JSON.stringify(r) + "\n" : renderTrace(r, { color: o.color }));
}

export { parseQuery };
