// Runs the agent in this process and this network namespace until SIGTERM or SIGINT. The
// tables stay in the kernel when it stops.
import pino from "pino";
import { Datapath } from "../datapath/datapath.ts";
import { openNft } from "../datapath/nft.ts";
import { Netlink } from "../sys/netlink.ts";
import { readKernelPolicy, type KernelPolicy } from "../datapath/policy-adopt.ts";
import { adoptedModel, listTable, structureDrift, type Adoption, type Listing } from "../datapath/adopt.ts";
import { TABLE } from "../datapath/model.ts";
import { REF_TABLE, renderReference } from "../datapath/nft-text.ts";
import { IDENTITY_CHAIN } from "../datapath/policy-text.ts";
import { readPolicyCounters } from "../datapath/policy-counters.ts";
import { KernelOwner } from "../datapath/owner.ts";
import { NftEvents } from "../sys/nfevents.ts";
import { MASQ_TABLE } from "../cni/masquerade.ts";
import { Agent, type AgentOptions, type KernelWatch } from "./agent.ts";
import { Masquerade } from "./masquerade.ts";
import { agentSocketPath, holdNetnsAgentLock } from "../sys/flock.ts";
import { Metrics } from "../http/metrics.ts";
import { startHttp, type Listening } from "../http/serve.ts";
import { HealthProber } from "../health/prober.ts";
import { KubeClient, loadKubeConfig } from "../watch/kube.ts";
import type { Marks } from "../datapath/marks.ts";
import type { Mode } from "../overlay/plan.ts";
import type { NatsConfig } from "../gossip/config.ts";
import { Overlay } from "../overlay/overlay.ts";
import { PodNetwork } from "./network.ts";
import { VERSION } from "../version.ts";
import { clusterReporter } from "../report/index.ts";
import { addressFamily } from "../../compiler/address.ts";

/** The pod network between the nodes (agent/loop/network.ts), as the flags give it. */
export interface NetworkFlags {
  mode: Mode;
  underlayIP?: string;
  publicIP?: string;
  site?: string;
  ttlMs: number;
  heartbeatMs: number;
  bucket: string;
  replicas: number;
  /** absent: no gossip, the Node objects alone build the network */
  nats?: NatsConfig;
}

/** The agent's HTTP API and health port (agent/http). */
export interface HttpFlags {
  /** the API over TCP; undefined: none */
  listen?: { host: string; port: number };
  /** the API's unix socket; undefined: the default for this namespace; null: none */
  socket?: string | null;
  token?: string;
  /** the health port peers and kubelet probe (0: none) */
  healthPort: number;
  /** how often each peer is probed (ms) */
  probeEveryMs: number;
}

export async function runAgent(o: AgentOptions & { kubeconfig?: string; logLevel: string; masquerade: boolean; marks: Marks; /** where the one-agent-per-namespace lock lives */ lockDir?: string; network?: NetworkFlags; http?: HttpFlags }): Promise<number> {
  const log = pino({ level: o.logLevel, base: { node: o.nodeName } });
  // the cluster first: without one the agent stops before it looks at the kernel at all
  let kube: KubeClient;
  try {
    kube = new KubeClient(loadKubeConfig(o.kubeconfig));
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    return 1;
  }
  let lock: ReturnType<typeof holdNetnsAgentLock>;
  let nl: Netlink;
  let events: NftEvents;
  let self: number;
  try {
    lock = holdNetnsAgentLock(o.lockDir ?? "/run/skein");
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    return 1;
  }
  try {
    nl = Netlink.openNetfilter();
    // what the agent writes it does not hear; everything else changed in nftables it does
    events = NftEvents.open();
    // the pid the kernel names this thread with (in a pid namespace of its own, not process.pid)
    self = nl.generation().pid;
  } catch (e) {
    const eperm = /EPERM|EACCES/.test((e as Error).message);
    log.fatal({ err: (e as Error).message }, eperm ? "cannot start: nftables refuses this process (the agent needs CAP_NET_ADMIN in the node's network namespace)" : "cannot start: nftables cannot be reached");
    lock.release();
    return 1;
  }
  const metrics = new Metrics({ version: VERSION, node: o.nodeName });
  kube.observe = (method, path, watch, code, seconds) => metrics.apiRequest(method, path, watch, code, seconds);
  const owner = new KernelOwner(events, nl, self);
  const nft = owner.nft(openNft());
  const datapath = new Datapath(nft, owner.sink({ send: (b) => nl.sendBatch(b) }), o.serviceCIDRs, undefined, o.marks);
  // skein's base chains as this kernel lists them, from a dormant table loaded and dropped
  // once (the mark ranges, and so the rules, stay for the agent's life)
  // (a failed load is not kept: the next comparison tries again)
  let ref: Listing | undefined;
  const loadReference = (): Listing => {
    const r = renderReference(o.marks);
    nft.run(r.load);
    try {
      const l = listTable(nl, REF_TABLE, false);
      if (!l) throw new Error(`the reference table inet ${REF_TABLE} vanished before it was read`);
      return l;
    } finally {
      nft.run(r.drop);
    }
  };
  const reference = async (): Promise<Listing> => (ref ??= loadReference());
  const kernel: KernelWatch = { poll: () => owner.poll(), changed: () => owner.changed(), settle: () => owner.settle(), doubt: (why) => owner.doubt(why), list: async () => listTable(nl), reference };
  const masquerade = o.masquerade ? new Masquerade(nft, () => nl.tableUserdata("inet", MASQ_TABLE)) : undefined;
  // the tables an earlier agent left keep serving until the new ones are whole
  // (one whose base chains or other parts were changed while no agent ran is not adopted: a
  // bank switch would leave those as they are)
  let found: Adoption | undefined;
  /** identity chains of the policy in the adopted table: its replace removes them */
  let policyChains: string[] = [];
  try {
    const listing = listTable(nl);
    policyChains = (listing?.terse ?? []).flatMap((x) => (x.chain && IDENTITY_CHAIN.test(x.chain.name) ? [x.chain.name as string] : []));
    found = listing && adoptedModel(listing.terse, listing.sets, listing.comment, o.marks);
    if (listing && found?.ok) {
      const changed = structureDrift(listing, await reference());
      if (changed.length) {
        // what was put in it may be what keeps the agent from the API server (a base chain
        // set to drop, a chain of someone else's hooked before skein's), and the tables that
        // replace it come only once the cluster is listed: it goes now
        nft.run(`delete table inet ${TABLE}\n`);
        found = undefined;
        log.warn({ found: changed.slice(0, 20) }, "the table in the kernel was changed while no agent ran: deleted; Services come back with the first tables");
      }
    }
  } catch (e) {
    // what is there is not known, so it is not adopted but replaced cold once the tables are
    // compiled
    found = { ok: false, why: `it could not be read: ${(e as Error).message}` };
  }
  let kernelPolicy: KernelPolicy | undefined;
  if (found?.ok) {
    try {
      kernelPolicy = readKernelPolicy(nl, o.marks);
    } catch (e) {
      // not read: the first policy write replaces every set whole
      log.warn({ err: (e as Error).message }, "the policy sets of the adopted table could not be read: the first policy write replaces them whole");
    }
    datapath.adopt(found.model, found.stale, policyChains, kernelPolicy?.allow);
    log.info({ bank: found.model.bank, targets: found.model.chains.size }, "adopted the tables in the kernel; they serve until the new ones replace them in one transaction");
  } else if (found) log.warn({ why: found.why }, "the table in the kernel cannot be adopted: it will be replaced cold");
  let network: PodNetwork | undefined;
  let overlay: Overlay | undefined;
  let prober: HealthProber | undefined;
  const net = o.network;
  if (net) {
    try {
      overlay = Overlay.open({ log: log.child({ part: "overlay" }) });
    } catch (e) {
      log.fatal({ err: (e as Error).message }, "cannot start: rtnetlink cannot be reached for the pod network");
      events.close();
      nl.close();
      lock.release();
      return 1;
    }
    const ov = overlay;
    const glog = log.child({ part: "gossip" });
    const nats = net.nats;
    if (nats) glog.info({ nats: (await import("../gossip/config.ts")).redacted(nats), bucket: net.bucket }, "gossip over NATS");
    else log.info("no NATS server given: the Node objects alone build the pod network");
    const { GossipBus } = nats ? await import("../gossip/bus.ts") : { GossipBus: undefined };
    // what no peer's pod CIDR may take over: the API server and the NATS servers, when named
    // by address (a route for them into the tunnel would cut this node off from both)
    const hostIP = (url: string) => {
      try {
        const h = new URL(url).hostname.replace(/^\[|\]$/g, "");
        addressFamily(h);
        return [h];
      } catch {
        return [];
      }
    };
    const protect = [...new Set([...hostIP(kube.server), ...(nats?.servers ?? []).flatMap(hostIP)])];
    const http = o.http;
    if (http?.healthPort) {
      prober = new HealthProber({ port: http.healthPort, intervalMs: http.probeEveryMs, timeoutMs: Math.min(2000, http.probeEveryMs), onRound: (r) => metrics.probes(network!.status().peers.map((p) => ({ name: p.name, ok: r.get(p.name)?.ok, rttMs: r.get(p.name)?.rttMs }))) });
    }
    network = new PodNetwork(
      { nodeName: o.nodeName, mode: net.mode, underlayIP: net.underlayIP, publicIP: net.publicIP, site: net.site, ttlMs: net.ttlMs, version: VERSION, clusterCIDRs: o.clusterCIDRs, serviceCIDRs: o.serviceCIDRs, protect },
      {
        log: log.child({ part: "network" }),
        overlay,
        underlayOf: (ip) => ov.underlayOf(ip),
        prober,
        startBus:
          nats && GossipBus
            ? (hooks) => GossipBus.start({ config: nats, bucket: net.bucket, replicas: net.replicas, ttlMs: net.ttlMs, heartbeatMs: net.heartbeatMs, log: glog, ...hooks })
            : undefined,
      },
    );
  }
  const policyCounters = () => readPolicyCounters(nl, o.marks);
  const report = clusterReporter({ kube, nodeName: o.nodeName, log: log.child({ part: "report" }) });
  metrics.followEvents(report.events);
  const agent = new Agent(o, { log, datapath, kube, kernel, masquerade, network, policyCounters, metrics, report, found: found ? (found.ok ? "adopted" : "replace") : undefined, adoptedIds: kernelPolicy?.ids });
  metrics.policyCounters(() => agent.readPolicyCounts());
  metrics.tables(() => agent.lastResult && { generation: agent.lastResult.generation, sizes: agent.tableSizes() });
  if (network && overlay) {
    const [n, ov] = [network, overlay];
    metrics.follow({ repairs: () => ov.repairs, failures: () => n.applyFailures }, "overlay");
  }
  // the API serves from the start: /healthz answers and /readyz says why not ready while the
  // cluster is listed
  let listening: Listening | undefined;
  if (o.http) {
    const socket = o.http.socket === undefined ? agentSocketPath(o.lockDir ?? "/run/skein") : (o.http.socket ?? undefined);
    listening = startHttp({ view: agent, metrics, listen: o.http.listen, socket, token: o.http.token, healthPort: o.http.healthPort });
    if (listening.addresses.length) log.info({ listen: listening.addresses }, "HTTP API");
    for (const e of listening.errors) log.error({ err: e }, "an HTTP listener cannot start; the others serve");
  }
  const done = Promise.withResolvers<number>();
  const stop = (signal: string) => {
    log.info({ signal }, "stopping");
    agent.stop().then(
      () => done.resolve(0),
      () => done.resolve(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  try {
    await agent.start();
    prober?.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    listening?.stop();
    return 1;
  }
  const code = await done.promise;
  prober?.stop();
  listening?.stop();
  overlay?.close();
  events.close();
  nl.close();
  lock.release();
  return code;
}
