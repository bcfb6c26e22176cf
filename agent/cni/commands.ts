// cmdAdd / cmdDel / cmdCheck / cmdStatus / cmdGc: plain functions over a parsed config and
// environment. main.ts only wires them to stdin, stdout and the exit code.
import { existsSync } from "node:fs";
import { allocate, allocationsOf, RangeExhaustedError, release, releaseAllBut, type Allocation } from "../ipam/allocator.ts";
import { parseIp, poolSize, type Pool } from "../ipam/cidr.ts";
import { DiskStore } from "../ipam/disk-store.ts";
import { NodeFileError, NodeFileInvalid, readNodeFile } from "../ipam/node-file.ts";
import type { IpamStore } from "../ipam/store.ts";
import type { Nft } from "../datapath/nft.ts";
import { poolsFrom, type NetConf } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { applyOps, deleteHostLink, ensureForwarding, hostLinkExists, listHostLinks, nftTableHas, readLink, readNeighbours, readRoutes } from "./links.ts";
import { MASQ_TABLE, renderMasquerade } from "./masquerade.ts";
import { gatewayOf, hostPrefix, hostVethName, HOST_MAC, planAdd, type PodAddress } from "./plan.ts";
import { buildResult, type CniResult } from "./result.ts";
import { CniError, ErrorCode } from "./spec.ts";

export interface Deps {
  store(conf: NetConf): IpamStore;
  nft(): Nft;
  now(): number;
}

export const defaultStore = (conf: NetConf): IpamStore => new DiskStore(conf.dataDir, conf.name);

interface Network {
  pools: Pool[];
  clusterCIDRs: string[];
}

/** The node's pod CIDRs: from the config when it names them, else from the agent's node file. */
export function resolveNetwork(conf: NetConf): Network {
  if (conf.podCIDRs) return { pools: poolsFrom(conf.podCIDRs, "podCIDRs"), clusterCIDRs: conf.clusterCIDRs ?? [] };
  let node;
  try {
    node = readNodeFile(conf.nodeFile);
  } catch (e) {
    if (e instanceof NodeFileError) throw new CniError(e instanceof NodeFileInvalid ? ErrorCode.InvalidNetworkConfig : ErrorCode.IoFailure, e.message);
    throw e;
  }
  if (!node) {
    throw new CniError(
      ErrorCode.TryAgainLater,
      `no pod CIDR for this node yet: ${conf.nodeFile} does not exist (the skein agent writes it once the Node has spec.podCIDRs); or set podCIDRs in the network configuration`,
    );
  }
  return { pools: poolsFrom(node.podCIDRs, `${conf.nodeFile}: podCIDRs`), clusterCIDRs: conf.clusterCIDRs ?? node.clusterCIDRs ?? [] };
}

const addrsOf = (allocs: Allocation[]): PodAddress[] => allocs.map((a) => ({ ip: a.ip, family: parseIp(a.ip).family }));

export function cmdAdd(env: CniEnv, conf: NetConf, deps: Deps): CniResult {
  if (!existsSync(env.netns)) throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${env.netns} does not exist`);
  const net = resolveNetwork(conf);
  const store = deps.store(conf);
  const owner = { containerId: env.containerId, ifname: env.ifname };
  let allocations: Allocation[];
  try {
    allocations = store.update((st) => {
      const r = allocate(st, net.pools, owner, deps.now());
      return { state: r.state, result: r.allocations };
    });
  } catch (e) {
    if (e instanceof RangeExhaustedError) throw new CniError(ErrorCode.RangeExhausted, e.message);
    throw e;
  }
  const addrs = addrsOf(allocations);
  const plan = planAdd({ containerId: env.containerId, ifname: env.ifname, netnsPath: env.netns, mtu: conf.mtu, addrs });
  try {
    // A link left by an ADD that died half-way (or a retried ADD) would make `link add` fail.
    if (hostLinkExists(plan.hostIf)) deleteHostLink(plan.hostIf);
    ensureForwarding([...new Set(addrs.map((a) => a.family))]);
    applyOps(undefined, plan.host);
    applyOps(env.netns, plan.pod);
    if (conf.masquerade) {
      const m = renderMasquerade(net.pools, net.clusterCIDRs);
      if (!nftTableHas("inet", MASQ_TABLE, m.fingerprint)) deps.nft().run(m.script);
    }
  } catch (e) {
    // A failed ADD leaves nothing behind: no link, no address held.
    try {
      deleteHostLink(plan.hostIf);
    } finally {
      store.update((st) => ({ state: release(st, owner).state, result: null }));
    }
    throw e;
  }
  return buildResult(conf.cniVersion, { plan, netns: env.netns, mtu: conf.mtu, allocations, dns: conf.dns });
}

/** Idempotent: a missing link, netns or allocation is what DEL wants anyway. */
export function cmdDel(env: CniEnv, conf: NetConf, deps: Deps): void {
  deleteHostLink(hostVethName(env.containerId, env.ifname));
  deps.store(conf).update((st) => {
    const r = release(st, { containerId: env.containerId, ifname: env.ifname });
    return { state: r.released.length ? r.state : undefined, result: null };
  });
}

const CHECK_FAILED = 101;

export function cmdCheck(env: CniEnv, conf: NetConf, deps: Deps): void {
  const held = allocationsOf(deps.store(conf).read(), { containerId: env.containerId, ifname: env.ifname });
  if (held.length === 0) throw new CniError(ErrorCode.UnknownContainer, `no address is allocated to container ${env.containerId} interface ${env.ifname}`);
  if (!existsSync(env.netns)) throw new CniError(ErrorCode.UnknownContainer, `CNI_NETNS ${env.netns} of container ${env.containerId} does not exist`);
  const problems: string[] = [];
  const addrs = addrsOf(held);
  const expected = addrs.map(hostPrefix);

  const prev = conf.prevResult as { ips?: Array<{ address?: string }> } | undefined;
  if (prev?.ips) {
    const got = prev.ips.map((i) => i.address ?? "").sort();
    if (got.join() !== [...expected].sort().join()) problems.push(`prevResult has addresses ${got.join(", ")} but ${expected.join(", ")} are allocated`);
  }

  const hostIf = hostVethName(env.containerId, env.ifname);
  const host = readLink(undefined, hostIf);
  if (!host) problems.push(`host interface ${hostIf} is missing`);
  else {
    if (!host.up) problems.push(`host interface ${hostIf} is down`);
    if (host.mac !== HOST_MAC) problems.push(`host interface ${hostIf} has MAC ${host.mac}, expected ${HOST_MAC}`);
  }
  for (const a of addrs) {
    const routes = readRoutes(undefined, a.family);
    if (!routes.some((r) => (r.dst === a.ip || r.dst === hostPrefix(a)) && r.dev === hostIf)) problems.push(`node has no route to ${hostPrefix(a)} via ${hostIf}`);
  }

  const pod = readLink(env.netns, env.ifname);
  if (!pod) problems.push(`interface ${env.ifname} is missing in ${env.netns}`);
  else {
    if (!pod.up) problems.push(`interface ${env.ifname} in ${env.netns} is down`);
    if (pod.mtu !== conf.mtu) problems.push(`interface ${env.ifname} has MTU ${pod.mtu}, expected ${conf.mtu}`);
    for (const e of expected) if (!pod.addrs.includes(e)) problems.push(`interface ${env.ifname} lacks address ${e}`);
    const neigh = readNeighbours(env.netns, env.ifname);
    for (const a of addrs) {
      const gw = gatewayOf(a.family);
      if (!readRoutes(env.netns, a.family).some((r) => r.dst === "default" && r.gateway === gw && r.dev === env.ifname)) {
        problems.push(`pod has no IPv${a.family} default route via ${gw} dev ${env.ifname}`);
      }
      if (!neigh.some((n) => n.dst === gw && n.mac === HOST_MAC && n.permanent)) problems.push(`pod has no permanent neighbour ${gw} -> ${HOST_MAC}`);
    }
  }
  if (conf.masquerade) {
    let net: Network | undefined;
    try {
      net = resolveNetwork(conf);
    } catch (e) {
      problems.push((e as Error).message);
    }
    if (net && !nftTableHas("inet", MASQ_TABLE, renderMasquerade(net.pools, net.clusterCIDRs).fingerprint)) {
      problems.push(`masquerade table inet ${MASQ_TABLE} is missing or not what this configuration asks for`);
    }
  }
  if (problems.length) throw new CniError(CHECK_FAILED, `CHECK of container ${env.containerId} ${env.ifname}: ${problems.join("; ")}`);
}

export function cmdStatus(conf: NetConf, deps: Deps): void {
  let net: Network;
  let used: Allocation[];
  try {
    net = resolveNetwork(conf);
    used = Object.values(deps.store(conf).read().allocations);
  } catch (e) {
    throw new CniError(ErrorCode.NotAvailable, `skein cannot add pods: ${(e as Error).message}`);
  }
  for (const p of net.pools) {
    const n = used.filter((a) => a.pool === p.cidr).length;
    if (BigInt(n) >= poolSize(p)) throw new CniError(ErrorCode.NotAvailable, `skein cannot add pods: pod CIDR ${p.cidr} has no free address (${n} in use)`);
  }
}

/**
 * Releases every allocation of this network not among the valid attachments, and removes the
 * host links of those released. Links are matched through the allocations, never by name
 * pattern alone, so another network's pods on the same node are left alone.
 */
export function cmdGc(conf: NetConf, deps: Deps): void {
  const valid = (conf["cni.dev/valid-attachments"] ?? []).map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
  const released = deps.store(conf).update((st) => {
    const r = releaseAllBut(st, valid);
    return { state: r.released.length ? r.state : undefined, result: r.released };
  });
  const present = new Set(listHostLinks());
  const errors: string[] = [];
  for (const link of new Set(released.map((a) => hostVethName(a.containerId, a.ifname)))) {
    if (!present.has(link)) continue;
    try {
      deleteHostLink(link);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  if (errors.length) throw new CniError(ErrorCode.IoFailure, `GC released addresses but could not remove links: ${errors.join("; ")}`);
}
