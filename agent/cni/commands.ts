// cmdAdd / cmdDel / cmdCheck / cmdStatus / cmdGc: plain functions over a parsed config and
// environment. main.ts only wires them to stdin, stdout and the exit code.
import { mkdirSync, readdirSync } from "node:fs";
import { allocate, allocationsOf, countInPool, RangeExhaustedError, release, releaseAllBut, type Allocation, type IpamState } from "../ipam/allocator.ts";
import { parseIp, poolSize, type Family, type Pool } from "../ipam/cidr.ts";
import { DiskStore } from "../ipam/disk-store.ts";
import { NodeFileError, NodeFileInvalid, readNodeFile } from "../ipam/node-file.ts";
import type { IpamStore } from "../ipam/store.ts";
import type { Nft } from "../datapath/nft.ts";
import { LockTimeoutError, withFileLock, withNetnsLockFile } from "../sys/flock.ts";
import { DEFAULT_DATA_DIR, NETWORK_NAME, poolsFrom, type NetConf } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { withCleanupFailures, toCniError } from "./errors.ts";
import { applyOps, deleteHostLink, ensureForwarding, hostLinkExists, hostLinkServes, hostRoutesTo, listHostLinks, netnsLinkExists, nftTableHas, readLink, readNeighbours, readRoutes } from "./links.ts";
import { openPodNetns, shownPath, type PodNetns } from "./pod-netns.ts";
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
  /** the pod interface's MTU: the configuration's, else the node file's, else 1500 */
  mtu: number;
}

export const DEFAULT_MTU = 1500;

/** The node's pod CIDRs: from the config when it names them, else from the agent's node file. */
export function resolveNetwork(conf: NetConf): Network {
  if (conf.podCIDRs) return { pools: poolsFrom(conf.podCIDRs, "podCIDRs"), clusterCIDRs: conf.clusterCIDRs ?? [], mtu: conf.mtu ?? DEFAULT_MTU };
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
  return { pools: poolsFrom(node.podCIDRs, `${conf.nodeFile}: podCIDRs`), clusterCIDRs: conf.clusterCIDRs ?? node.clusterCIDRs ?? [], mtu: conf.mtu ?? node.mtu ?? DEFAULT_MTU };
}

const addrsOf = (allocs: Allocation[]): PodAddress[] => allocs.map((a) => ({ ip: a.ip, family: parseIp(a.ip).family }));

/** plugin-specific (100+): an address this ADD got is already in use on the node (routed to another interface, its own, or in a connected subnet) */
export const ADDRESS_CONFLICT = 103;

/** where the node-wide lock of ADDs lives (next to the agent's lock files) */
export const NODE_LOCK_DIR = "/run/skein";
/** far above the few milliseconds an ADD holds it: a holder this slow is stuck */
const NODE_LOCK_TIMEOUT_MS = 15_000;

function withNodeLock<T>(fn: () => T): T {
  try {
    return withNetnsLockFile(NODE_LOCK_DIR, fn, NODE_LOCK_TIMEOUT_MS);
  } catch (e) {
    if (e instanceof LockTimeoutError) throw new CniError(ErrorCode.TryAgainLater, `${e.message} (every ADD in this network namespace takes it to check and claim its addresses)`);
    throw e;
  }
}

export function cmdAdd(env: CniEnv, conf: NetConf, deps: Deps): CniResult {
  // Refused when it is not a namespace or is the node's own (wiring it would rewrite the
  // node's routes); every step below reaches it through this one descriptor.
  const ns = openPodNetns(env.netns);
  try {
    return addIn(ns, env, conf, deps);
  } finally {
    ns.close();
  }
}

function addIn(ns: PodNetns, env: CniEnv, conf: NetConf, deps: Deps): CniResult {
  const hostIf = hostVethName(env.containerId, env.ifname);
  // The spec: an interface of the requested name that already exists is an error. A repeated
  // ADD must not touch what the first one made (it is serialized behind it by the container lock).
  if (netnsLinkExists(ns.path, env.ifname)) {
    throw new CniError(ErrorCode.InvalidEnv, `CNI_IFNAME ${env.ifname} already exists in ${shownPath(env.netns)}: container ${env.containerId} is already attached (DEL it first)`);
  }
  // Its peer is alive elsewhere (a veth pair dies whole): another attachment of this
  // container id and interface name, which must not be cut off.
  if (hostLinkExists(hostIf)) {
    throw new CniError(ErrorCode.InvalidEnv, `host interface ${hostIf} of container ${env.containerId} ${env.ifname} already exists, wired to another namespace than ${shownPath(env.netns)}: DEL that attachment first`);
  }
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
  const plan = planAdd({ containerId: env.containerId, ifname: env.ifname, netnsPath: ns.path, mtu: net.mtu, addrs });
  let madeLink = false;
  let routesKept = new Set<Family>();
  try {
    // Looking for a route to the address and adding ours is one step for every ADD on the
    // node, whatever its network: two networks' ADDs of one address at once cannot both pass.
    withNodeLock(() => {
      for (const a of addrs) {
        const taken = hostRoutesTo(a.ip, a.family);
        if (taken.length) {
          throw new CniError(
            ADDRESS_CONFLICT,
            `address ${a.ip} allocated by network ${conf.name} (${conf.dataDir}) is already ${taken.join("; ")}: another network over the same pod CIDR, a pod this network's state does not know, or a pod CIDR that overlaps the node's own addresses; refusing to take it over`,
          );
        }
      }
      ensureForwarding([...new Set(addrs.map((a) => a.family))]);
      const [veth, ...hostRest] = plan.host;
      applyOps(undefined, [veth!]);
      madeLink = true;
      applyOps(undefined, hostRest);
    });
    // a pod attached before through another interface keeps its routes: this one's result
    // then lists none of that family (it installed none)
    routesKept = applyOps(ns.path, plan.pod);
    if (conf.masquerade) {
      const m = renderMasquerade(net.pools, net.clusterCIDRs);
      if (!nftTableHas("inet", MASQ_TABLE, m.fingerprint)) deps.nft().run(m.script);
    }
  } catch (e) {
    // A failed ADD leaves nothing behind: no link, no address held. Only what this ADD made
    // is removed: a link of the same name it failed to create belongs to someone else.
    const cleanup: unknown[] = [];
    if (madeLink) {
      try {
        deleteHostLink(plan.hostIf);
      } catch (c) {
        cleanup.push(c);
      }
    }
    try {
      store.update((st) => ({ state: release(st, owner).state, result: null }));
    } catch (c) {
      cleanup.push(c);
    }
    throw withCleanupFailures(e, cleanup);
  }
  return buildResult(conf.cniVersion, { plan, netns: env.netns, mtu: net.mtu, allocations, dns: conf.dns, routesKept });
}

/**
 * Idempotent: a missing link, netns or allocation is what DEL wants anyway. The host routes
 * to the pod go with its veth; DEL removes no route itself, so it cannot cut off another
 * pod that holds the same address through another network.
 */
export function cmdDel(env: CniEnv, conf: NetConf, deps: Deps): void {
  const owner = { containerId: env.containerId, ifname: env.ifname };
  const link = hostVethName(env.containerId, env.ifname);
  deps.store(conf).update((st) => {
    // The link of that name may be another network's attachment of the same container id
    // and interface: it goes only when it is this network's.
    if (hostLinkServes(link, allocationsOf(st, owner).map((a) => a.ip))) deleteHostLink(link);
    const r = release(st, owner);
    return { state: r.released.length ? r.state : undefined, result: null };
  });
}

/**
 * DEL under a configuration that does not validate (kubelet must still be able to tear the
 * pod down): removes the container's host veth, found by name, and releases its addresses
 * when the network's name and data directory can still be read from the configuration.
 * Returns what it did; throws, naming the configuration's problem, only when something of
 * the container may be left.
 */
export function cmdDelLenient(env: CniEnv, where: ReturnType<typeof storeOf>, confError: CniError, deps: Pick<Deps, "store">): string {
  const done: string[] = [];
  const failed: string[] = [];
  const hostIf = hostVethName(env.containerId, env.ifname);
  try {
    done.push(deleteHostLink(hostIf) ? `removed host interface ${hostIf}` : `host interface ${hostIf} was already gone`);
  } catch (e) {
    failed.push(toCniError(e).message);
  }
  if (typeof where === "string") failed.push(`cannot release its addresses: ${where}`);
  else {
    try {
      const n = deps.store(where as NetConf).update((st) => {
        const r = release(st, { containerId: env.containerId, ifname: env.ifname });
        return { state: r.released.length ? r.state : undefined, result: r.released.length };
      });
      done.push(`released ${n} address(es) of network ${where.name} in ${where.dataDir}`);
    } catch (e) {
      failed.push(`cannot release its addresses: ${toCniError(e).message}`);
    }
  }
  const report = `DEL of container ${env.containerId} ${env.ifname} under an invalid configuration (${confError.message}): ${done.join("; ")}`;
  if (failed.length) throw new CniError(confError.code, `${report}; ${failed.join("; ")}`);
  return report;
}

/** The network name and data directory of a configuration that failed validation, or why not. */
export function storeOf(stdin: string): { name: string; dataDir: string } | string {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch {
    return "the configuration is not JSON, so the network's name is unknown";
  }
  const o = (typeof raw === "object" && raw !== null ? raw : {}) as { name?: unknown; dataDir?: unknown };
  if (typeof o.name !== "string" || !NETWORK_NAME.test(o.name)) return `the network name ${JSON.stringify(o.name ?? null)} is unusable`;
  const dataDir = o.dataDir === undefined ? DEFAULT_DATA_DIR : o.dataDir;
  if (typeof dataDir !== "string" || !dataDir.startsWith("/")) return `dataDir ${JSON.stringify(dataDir)} is not an absolute path`;
  return { name: o.name, dataDir };
}

/**
 * Runs one container's ADD, DEL or CHECK end to end under a lock of its own, in the data
 * directory: calls for the same container wait for each other, other containers' do not.
 * Every call removes the lock file as it ends (waiters then start over on a fresh one), so
 * they do not pile up over a node's life: only a plugin killed while holding one leaves it,
 * for GC.
 */
export function withContainerLock<T>(dataDir: string, containerId: string, fn: () => T): T {
  mkdirSync(lockDir(dataDir), { recursive: true, mode: 0o700 });
  return withFileLock(lockPath(dataDir, containerId), fn, { remove: true });
}

const lockDir = (dataDir: string) => `${dataDir}/containers`;
// A container id is a file name (checked in env.ts); a very long one is hashed to fit.
const lockPath = (dataDir: string, containerId: string) =>
  `${lockDir(dataDir)}/${containerId.length <= 200 ? containerId : `sha256-${new Bun.CryptoHasher("sha256").update(containerId).digest("hex")}`}.lock`;

/** Removes the lock files of containers not kept (a plugin killed while holding one leaves it). */
function removeStaleLocks(dataDir: string, keep: string[]): void {
  let files: string[];
  try {
    files = readdirSync(lockDir(dataDir));
  } catch {
    return; // no container has been locked here yet
  }
  const kept = new Set(keep.map((id) => lockPath(dataDir, id)));
  for (const f of files) {
    const path = `${lockDir(dataDir)}/${f}`;
    // Taken first: a command still running for that container finishes before its file goes.
    if (f.endsWith(".lock") && !kept.has(path)) withFileLock(path, () => undefined, { remove: true });
  }
}

const CHECK_FAILED = 101;

export function cmdCheck(env: CniEnv, conf: NetConf, deps: Deps): void {
  let ns: PodNetns | undefined;
  let missing: CniError | undefined;
  try {
    ns = openPodNetns(env.netns, ErrorCode.UnknownContainer);
  } catch (e) {
    // A namespace that is gone is the container's problem, reported after its addresses;
    // one that is the node's or no namespace at all is refused at once.
    if (!(e instanceof CniError) || e.code !== ErrorCode.UnknownContainer) throw e;
    missing = new CniError(ErrorCode.UnknownContainer, `${e.message} (container ${env.containerId})`);
  }
  try {
    const held = allocationsOf(deps.store(conf).read(), { containerId: env.containerId, ifname: env.ifname });
    if (held.length === 0) throw new CniError(ErrorCode.UnknownContainer, `no address is allocated to container ${env.containerId} interface ${env.ifname}`);
    if (missing || !ns) throw missing;
    checkIn(ns, held, env, conf);
  } finally {
    ns?.close();
  }
}

function checkIn(ns: PodNetns, held: Allocation[], env: CniEnv, conf: NetConf): void {
  const problems: string[] = [];
  // the MTU and the masquerade table follow the node file when the configuration leaves them to it
  let net: Network | undefined;
  try {
    net = resolveNetwork(conf);
  } catch (e) {
    problems.push((e as Error).message);
  }
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

  const pod = readLink(ns.path, env.ifname);
  if (!pod) problems.push(`interface ${env.ifname} is missing in ${shownPath(env.netns)}`);
  else {
    if (!pod.up) problems.push(`interface ${env.ifname} in ${shownPath(env.netns)} is down`);
    if (net && pod.mtu !== net.mtu) problems.push(`interface ${env.ifname} has MTU ${pod.mtu}, expected ${net.mtu}`);
    for (const e of expected) if (!pod.addrs.includes(e)) problems.push(`interface ${env.ifname} lacks address ${e}`);
    const neigh = readNeighbours(ns.path, env.ifname);
    for (const a of addrs) {
      const gw = gatewayOf(a.family);
      // Another interface's default route (an attachment made before this one) was kept.
      const defaults = readRoutes(ns.path, a.family).filter((r) => r.dst === "default");
      if (!defaults.some((r) => (r.gateway === gw && r.dev === env.ifname) || r.dev !== env.ifname)) {
        problems.push(`pod has no IPv${a.family} default route via ${gw} dev ${env.ifname}`);
      }
      if (!neigh.some((n) => n.dst === gw && n.mac === HOST_MAC && n.permanent)) problems.push(`pod has no permanent neighbour ${gw} -> ${HOST_MAC}`);
    }
  }
  if (conf.masquerade) {
    if (net && !nftTableHas("inet", MASQ_TABLE, renderMasquerade(net.pools, net.clusterCIDRs).fingerprint)) {
      problems.push(`masquerade table inet ${MASQ_TABLE} is missing or not what this configuration asks for`);
    }
  }
  if (problems.length) throw new CniError(CHECK_FAILED, `CHECK of container ${env.containerId} ${env.ifname}: ${problems.join("; ")}`);
}

export function cmdStatus(conf: NetConf, deps: Deps): void {
  let net: Network;
  let state: IpamState;
  try {
    net = resolveNetwork(conf);
    state = deps.store(conf).read();
  } catch (e) {
    throw new CniError(ErrorCode.NotAvailable, `skein cannot add pods: ${(e as Error).message}`);
  }
  for (const p of net.pools) {
    const n = countInPool(state, p);
    if (BigInt(n) >= poolSize(p)) throw new CniError(ErrorCode.NotAvailable, `skein cannot add pods: pod CIDR ${p.cidr} has no free address (${n} in use)`);
  }
}

/**
 * Releases every allocation of this network not among the valid attachments, and removes the
 * host links of those released. Links are matched through the allocations, never by name
 * pattern alone, so another network's pods on the same node are left alone.
 */
export function cmdGc(conf: NetConf, deps: Deps): void {
  const list = conf["cni.dev/valid-attachments"];
  // Without the list, "nothing is valid" would release every pod of the network.
  if (!list) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "invalid network configuration: cni.dev/valid-attachments is missing: GC needs the list of attachments to keep (an empty list, given explicitly, releases all)");
  }
  const valid = list.map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
  const released = deps.store(conf).update((st) => {
    const r = releaseAllBut(st, valid);
    return { state: r.released.length ? r.state : undefined, result: r.released };
  });
  const present = new Set(listHostLinks());
  const errors: string[] = [];
  const byLink = Map.groupBy(released, (a) => hostVethName(a.containerId, a.ifname));
  for (const [link, allocs] of byLink) {
    if (!present.has(link) || !hostLinkServes(link, allocs.map((a) => a.ip))) continue;
    try {
      deleteHostLink(link);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  removeStaleLocks(conf.dataDir, valid.map((v) => v.containerId));
  if (errors.length) throw new CniError(ErrorCode.IoFailure, `GC released addresses but could not remove links: ${errors.join("; ")}`);
}
