// `skein agent`: watch → state → compile → datapath, on one node. Events are coalesced: the
// first one of a burst schedules a sync `coalesceMs` later, and everything that arrived by
// then goes in as one delta. The agent programs nothing until every resource has been
// listed once (an empty table from a half-read cluster would cut traffic), keeps the last
// good tables in force while the API server is unreachable or a transaction is refused, and
// leaves them in place when it stops, so that a restart never interrupts traffic: the next
// agent adopts what it finds (Datapath.adopt) and replaces it in one transaction.
import type { Logger } from "pino";
import { IncrementalCompiler } from "../../compiler/incremental.ts";
import { loadCompiler, wasmUnits, type CompilerExports } from "../../compiler/wasm.ts";
import { PolicyCompiler, type AdoptedIds, type PolicyEngine } from "../../compiler/policy/incremental.ts";
import { policyEngine } from "../../compiler/policy/engine.ts";
import { DEFAULT_MARKS, maxIdentity, type Marks } from "../datapath/marks.ts";
import { writeNodeFile } from "../ipam/node-file.ts";
import { Datapath, type SyncResult } from "../datapath/datapath.ts";
import { flushStaleFlows, staleUdpFlows } from "../datapath/conntrack.ts";
import type { KubeClient } from "../watch/kube.ts";
import { Watcher } from "../watch/watcher.ts";
import { ClusterStore, keep, type NodeInfo } from "./state.ts";
import { cidrContains } from "../ipam/cidr.ts";
import type { Listing } from "../datapath/adopt.ts";
import type { Findings } from "../datapath/owner.ts";
import type { PolicyTables } from "../../compiler/policy/types.ts";
import { BLOCKED_POLICY, countersByPolicy, type PolicyCounts, type PolicyReadings } from "../datapath/policy-counters.ts";
import type { Metrics } from "../http/metrics.ts";
import { TraceQueryError, type AgentView, type ObjectRef } from "../http/app.ts";
import { explainAcrossNodes, type TraceInput } from "../trace/explain.ts";
import { parseQuery, QueryError } from "../trace/query.ts";
import { renderTrace } from "../trace/render.ts";
import { tablesView } from "../datapath/tables-view.ts";
import { backendCount } from "../../compiler/tables.ts";
import type { NetworkStatus } from "./network.ts";
import type { NodeReport, Reporter } from "../report/types.ts";
import { VERSION } from "../version.ts";

export interface AgentOptions {
  nodeName: string;
  /** the pod network(s): written to the node file, where the CNI plugin masquerades traffic leaving them */
  clusterCIDRs: string[];
  /** the Service ClusterIP range(s), logged (the datapath refuses their unserved addresses) */
  serviceCIDRs: string[];
  /** CIDRs selecting the node addresses NodePorts listen on (kube-proxy's --nodeport-addresses);
   * empty: every InternalIP and ExternalIP of the Node */
  nodePortAddresses: string[];
  ringFactor: number;
  coalesceMs: number;
  nodeFile: string;
  /** delete conntrack entries of UDP flows whose backend left (needs conntrack(8)) */
  flushUdp: boolean;
  /** how often the kernel's tables are checked against what the agent holds when no
   * notification said anything (ms; 0: never) */
  verifyMs?: number;
  /** skein's bits of the packet and conntrack marks: how many policy identities they hold */
  marks?: Marks;
  /** how often the policy counters are read and new drops logged, per policy (ms; 0: never) */
  policyReportMs?: number;
}

/** The kernel side of owning the tables (datapath/owner.ts, adopt.ts): what others changed. */
export interface KernelWatch {
  /** what other processes changed since the last call, never blocking */
  poll(): Findings;
  /** whether the ruleset changed at all since everything was last accounted for */
  changed(): boolean;
  /** take the ruleset as it is now as accounted for (before reading it for a comparison) */
  settle(): void;
  /** a reason to compare again at the next poll (a comparison that could not be made) */
  doubt(why: string): void;
  /** the kernel's `inet skein`, listed (off the event loop; bounded in time) */
  list(): Promise<Listing | undefined>;
  /** skein's base chains as the kernel lists them (from a dormant table of their own) */
  reference(): Promise<Listing>;
}

/** The CNI plugin's masquerade table, which the agent keeps in place while it runs. */
export interface MasqueradeKeeper {
  /** the node's pod CIDRs and the cluster's: what the table holds from now on */
  set(podCIDRs: string[], clusterCIDRs: string[]): void;
  /** puts the table back when it is missing or not as set (`force`: whatever it holds); says
   * what it found, or undefined when it was as set */
  ensure(force?: boolean): string | undefined;
}

/** How often the listener is read: a change by someone else is repaired within about this. */
const POLL_MS = 200;
/** The least time between two rewrites of the whole tables for a doubt that found nothing. */
const REWRITE_EVERY_MS = 60_000;
/** The wait before the next try after `n` failures in a row: 1 s, doubling up to 30 s. */
const backoffMs = (n: number) => Math.min(30_000, 1000 * 2 ** Math.min(5, n - 1));

export interface AgentDeps {
  log: Logger;
  datapath: Pick<Datapath, "apply" | "sync" | "setLocalCIDRs" | "drift" | "policy">;
  /** what the kernel held at start: an adopted table (the first sync replaces it whole, in a
   * bank switch), one to replace cold (not one this version can adopt), or none */
  found?: "adopted" | "replace";
  /** the identity ids of the adopted table's pod addresses (agent/datapath/policy-adopt.ts):
   * the first policy compile keeps them */
  adoptedIds?: AdoptedIds;
  kube: KubeClient;
  compiler?: CompilerExports;
  /** the policy compile (default: compiler.wasm's) */
  policyEngine?: PolicyEngine;
  /** the kernel's change notifications and listings; without it, no drift is looked for */
  kernel?: KernelWatch;
  masquerade?: MasqueradeKeeper;
  /** the pod network between the nodes (agent/loop/network.ts); absent: this node alone */
  network?: NodeNetwork;
  /** the policy verdict counters in the kernel (datapath/policy-counters.ts); absent: not read */
  policyCounters?: () => PolicyReadings;
  /** where the agent's metrics go (agent/http/metrics.ts); absent: none kept */
  metrics?: Metrics;
  /** the SkeinNode and Events (agent/report); absent: nothing reported to the cluster */
  report?: Reporter;
}

/** What the agent hands the pod network between the nodes, and asks of it. */
export interface NodeNetwork {
  start(): void;
  stop(): Promise<void>;
  setNode(name: string, n: NodeInfo | undefined): void;
  /** the pods' MTU once this node's underlay is known */
  podMtu(): number | undefined;
  /** peers, paths, probes (agent/loop/network.ts) */
  status?(): NetworkStatus;
}

/** The node addresses NodePorts listen on: the Node's, filtered by --nodeport-addresses. */
export function nodePortIPs(node: NodeInfo | undefined, cidrs: string[]): string[] {
  const addrs = node?.addresses ?? [];
  if (!cidrs.length) return [...new Set(addrs)];
  return [...new Set(addrs.filter((a) => cidrs.some((c) => cidrContains(c, a))))];
}

export class Agent implements AgentView {
  private readonly kube: KubeClient;
  private readonly log: Logger;
  private watcher: Watcher | undefined;
  private store!: ClusterStore;
  private compiler!: IncrementalCompiler<Uint32Array>;
  private policy!: PolicyCompiler;
  private nodeIPs: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private idle: ReturnType<typeof setTimeout> | undefined;
  /** when the first event not yet applied arrived */
  private pendingSince: number | undefined;
  private syncing = false;
  private again = false;
  /** a sync failed, or the tables in force were adopted: the next one applies the whole tables, not a delta */
  private resync = false;
  private replace = false;
  /** a sync failed: the next one checks the kernel against the model and applies the whole
   * tables, as a new table when they differ, else in a bank switch */
  private recover = false;
  /** syncs failed in a row: the retry waits longer each time, up to 30 s */
  private failures = 0;
  /** the table agreed with the model, but something may have changed what no comparison
   * reads (a rule's text, ring slots): the next sync writes every ring and target chain anew
   * in a bank switch */
  private rewrite = false;
  /** the masquerade table was written by this agent once */
  private masqueradeWritten = false;
  /** a comparison with the kernel is under way */
  private checking = false;
  /** no rewrite for a doubt before then (REWRITE_EVERY_MS) */
  private rewriteAfter = 0;
  private stopped = false;
  /** comparisons that failed in a row (the table could not be listed), and when to try again */
  private compareFailures = 0;
  private compareAfter = 0;
  private synced = false;
  private kernelTimers: ReturnType<typeof setInterval>[] = [];
  generation = 0;
  lastResult: (SyncResult & { generation: number }) | undefined;
  lastError: string | undefined;
  /** the pod network the masquerade table and node file were last given (joined) */
  private lastCluster = "";
  /** frontends left out because another Service serves them, as last logged */
  private conflicts = new Set<string>();

  readonly node: string;
  private readonly startedAt = Date.now();
  /** when the tables in force were applied (Date.now()) */
  private appliedAt: number | undefined;

  constructor(
    private readonly o: AgentOptions,
    private readonly deps: AgentDeps,
  ) {
    this.node = o.nodeName;
    this.kube = deps.kube;
    this.log = deps.log;
    this.resync = deps.found === "adopted";
    this.replace = deps.found === "replace";
  }

  async start(): Promise<void> {
    const wasm = this.deps.compiler ?? (await loadCompiler());
    const opts = { nodeName: this.o.nodeName, nodeIPs: this.nodeIPs, ringFactor: this.o.ringFactor };
    this.compiler = new IncrementalCompiler(opts, wasmUnits(wasm, opts));
    this.policy = new PolicyCompiler({ nodeName: this.o.nodeName, podCIDRs: [], maxIdentity: maxIdentity(this.o.marks ?? DEFAULT_MARKS) }, this.deps.policyEngine ?? policyEngine(wasm));
    if (this.deps.adoptedIds) this.policy.adoptIds(this.deps.adoptedIds);
    this.store = new ClusterStore(this.compiler, this.o.nodeName, this.policy, {
      onReject: (what, message, kept, ref) => {
        this.log.warn({ object: what }, `refused; ${kept ? "the earlier version stays in force" : "left out (no earlier version of it is in force)"}: ${message}`);
        this.deps.report?.refused(ref, message, kept ? "kept" : "left-out");
      },
      onClosed: (what, message, ref) => {
        this.log.warn({ object: what }, `skein cannot apply it as written: ${message}; the pods it selects are isolated with nothing allowed until it can (fail closed)`);
        this.deps.report?.refused(ref, message, "closed");
      },
      onNode: (n) => this.nodeChanged(n),
      onNodes: (name, n) => this.anyNodeChanged(name, n),
    });
    this.watcher = new Watcher(this.kube, {
      nodeName: this.o.nodeName,
      keep,
      onEvent: (e) => {
        this.deps.metrics?.watchEvent(e.kind, e.op);
        if (!this.store.apply(e)) return;
        this.pendingSince ??= performance.now();
        this.schedule();
      },
      // Each page of a list is a few hundred objects of JSON of which little is kept; with
      // the page's garbage collected before the next one is read, what is kept packs into
      // the memory the last page used instead of spreading over memory that then stays
      // resident (less RSS for a little more time until the first tables: docs/measurements.md)
      // (a page of a few objects leaves little to collect, and each full collection is CPU
      // a starting agent spends: many agents starting on one machine add up)
      onPage: (items) => {
        if (items >= 100) Bun.gc(true);
      },
      onSynced: () => {
        this.synced = true;
        this.log.info(this.store.counts(), "cluster state listed; programming the datapath");
        this.schedule(0);
      },
      onError: (kind, err) => this.log.warn({ resource: kind, err: String((err as Error)?.message ?? err) }, "watch failed; retrying (the tables in force stay)"),
    });
    this.log.info({ server: this.kube.server, node: this.o.nodeName, clusterCIDRs: this.o.clusterCIDRs, serviceCIDRs: this.o.serviceCIDRs }, "agent starting");
    if (this.deps.kernel) {
      this.kernelTimers.push(setInterval(() => void this.checkKernel(false), POLL_MS));
      if (this.o.verifyMs) this.kernelTimers.push(setInterval(() => void this.checkKernel(true), this.o.verifyMs));
      for (const t of this.kernelTimers) t.unref?.();
    }
    const every = this.o.policyReportMs ?? 10_000;
    if (this.deps.policyCounters && every > 0) {
      const t = setInterval(() => this.reportDrops(), every);
      t.unref?.();
      this.kernelTimers.push(t);
    }
    this.deps.network?.start();
    this.deps.report?.start({ report: () => this.nodeReport(), nodeUid: () => this.store.node?.uid });
    await this.watcher.start();
  }

  async stop(): Promise<void> {
    // nothing is scheduled from now on: a comparison or sync under way finishes, and no
    // retry, check or collection follows it (the process can then end)
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.idle);
    for (const t of this.kernelTimers.splice(0)) clearInterval(t);
    await this.watcher?.stop();
    await this.deps.network?.stop();
    await this.deps.report?.stop();
    this.log.info({ generation: this.generation }, "agent stopped; the tables stay in force");
  }

  /**
   * What someone else did to the kernel's tables. The listener names what they changed; a
   * doubt (notifications lost, a generation unaccounted for) or the periodic check with the
   * ruleset changed since it was last accounted for compares the table with the model. Any
   * difference in `inet skein` makes the next sync a new table, at once; the masquerade table
   * is put back when it is not as the agent set it.
   */
  private async checkKernel(periodic: boolean): Promise<void> {
    const k = this.deps.kernel;
    // one at a time: a comparison lists the table, which takes a while at scale
    if (!k || this.checking || this.stopped) return;
    this.checking = true;
    try {
      const f = k.poll();
      this.keepMasquerade(f.cni, f.cni.length > 0, periodic);
      const found = [...f.skein];
      if (!found.length && (f.doubt.length || (periodic && k.changed()))) {
        if (performance.now() < this.compareAfter) {
          // the last listing failed (nft gives up while the ruleset keeps changing): keep
          // the doubts for later rather than list again every poll
          for (const d of f.doubt) k.doubt(d);
          return;
        }
        const why = f.doubt.length ? f.doubt : ["periodic check: the ruleset changed"];
        k.settle();
        const gen = this.generation;
        const listed = await k.list();
        const reference = await k.reference();
        this.compareFailures = 0;
        if (gen !== this.generation || this.syncing) {
          // a sync changed the table while it was listed: the listing is older than the
          // model, and comparing them would find differences that are not there
          for (const d of why) k.doubt(d);
          return;
        }
        const d = this.deps.datapath.drift(listed, reference);
        this.log.info({ why, differences: d.length }, "compared table inet skein with the kernel");
        found.push(...d);
        // what was not heard may have changed what the comparison does not read (a rule's
        // text, a ring slot, the masquerade table's rules): a bank switch writes all of it anew
        // without a moment's gap. At most once a minute: such a rewrite is large, so unheard
        // itself, and a neighbour writing nftables all the while would make each one the
        // doubt of the next
        if (!d.length && performance.now() >= this.rewriteAfter) {
          this.rewriteAfter = performance.now() + REWRITE_EVERY_MS;
          if (f.doubt.length) this.keepMasquerade(f.doubt, true, false);
          this.rewrite = true;
          this.schedule(0);
        }
      }
      if (found.length) {
        this.deps.metrics?.repaired("table");
        this.log.warn({ found: found.slice(0, 20), more: Math.max(0, found.length - 20) }, "table inet skein was changed by someone else: restoring the whole table");
        this.replace = true;
        this.pendingSince ??= performance.now();
        // at once, even when a retry after failures was waiting out its backoff: what failed
        // may be what was just heard
        clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(0);
      }
    } catch (e) {
      // the doubt stays: the next check compares again
      k.doubt(`the last comparison failed: ${(e as Error).message}`);
      this.compareAfter = performance.now() + backoffMs(++this.compareFailures);
      this.log.warn({ err: (e as Error).message }, "checking the kernel's tables failed; trying again");
    } finally {
      this.checking = false;
    }
  }

  /**
   * The node's state as the SkeinNode tells it: /readyz's answer (ready()), and the peers:
   * the other Nodes and the peers the network knows, reachable when their health probe
   * answered (without a probe result yet: when the plan has a path to them).
   */
  nodeReport(): NodeReport {
    const net = this.deps.network?.status?.();
    const { ready, reasons } = this.ready(net);
    const node = this.store?.node;
    const reached = new Set(net?.peers.filter((p) => (p.probe ? p.probe.ok : p.paths.some((x) => x.how !== "none"))).map((p) => p.name));
    // (a Node without pod CIDRs has no pods to reach: not a peer)
    const nodes = [...(this.store?.nodes.values() ?? [])].filter((n) => n.podCIDRs.length).map((n) => n.name);
    const others = net ? [...new Set([...nodes, ...net.peers.map((p) => p.name)])].filter((n) => n !== this.o.nodeName).sort() : [];
    const unreachable = others.filter((n) => !reached.has(n));
    const underlay = net?.self?.underlay ?? node?.internalIPs[0];
    const pub = net?.self?.public ?? node?.publicIP;
    return {
      ready,
      reasons,
      mode: net?.mode ?? "none",
      version: VERSION,
      addresses: { ...(underlay ? { underlay } : {}), ...(pub ? { public: pub } : {}), podCIDRs: node?.podCIDRs ?? [] },
      peers: { total: others.length, reachable: others.length - unreachable.length, unreachable },
      tableGeneration: this.lastResult?.generation ?? 0,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /**
   * The masquerade table: rewritten (`force`) when another process changed it, or when a
   * comparison is made for a doubt (a change may have gone unheard, and its comment says
   * nothing of the rules inside); else its fingerprint is checked (`periodic`).
   */
  private keepMasquerade(found: string[], force: boolean, periodic: boolean): void {
    const m = this.deps.masquerade;
    if (!m || !(force || periodic)) return;
    try {
      const restored = m.ensure(force);
      if (restored) {
        this.deps.metrics?.repaired("masquerade");
        this.log.warn({ found: found.length ? found : [restored] }, `the masquerade table ${restored}: restored`);
      }
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "cannot restore the masquerade table; trying again at the next check");
    }
  }

  /**
   * The pod network: --cluster-cidr, else every Node's pod CIDRs (traffic between pods of
   * different nodes is never masqueraded, so without the flag it is what the Nodes own).
   */
  private clusterCIDRs(): string[] {
    if (this.o.clusterCIDRs.length) return this.o.clusterCIDRs;
    return [...new Set([...this.store.nodes.values()].flatMap((n) => n.podCIDRs))].sort();
  }

  private anyNodeChanged(name: string, n: NodeInfo | undefined): void {
    this.deps.network?.setNode(name, n);
    // every node's pod CIDRs: where connections through a Service come from (policy)
    this.policy.setNodes([...this.store.nodes.values()].map((x) => ({ name: x.name, podCIDRs: x.podCIDRs })));
    // without --cluster-cidr the pod network is what the Nodes own: a Node joining or leaving
    // changes what the masquerade table and the node file say of it
    if (name === this.o.nodeName || this.o.clusterCIDRs.length) return;
    const cluster = this.clusterCIDRs().join();
    if (cluster === this.lastCluster) return;
    this.nodeChanged(this.store.node, false);
  }

  private nodeChanged(n: NodeInfo | undefined, recompile = true): void {
    const cluster = this.clusterCIDRs();
    this.lastCluster = cluster.join();
    this.deps.datapath.setLocalCIDRs(n?.podCIDRs ?? []);
    this.policy?.setPodCIDRs(n?.podCIDRs ?? []);
    if (n?.podCIDRs.length && this.deps.masquerade) {
      try {
        this.deps.masquerade.set(n.podCIDRs, cluster);
        // written anew the first time: its comment says nothing of what was done to its rules
        // while no agent ran
        const restored = this.deps.masquerade.ensure(!this.masqueradeWritten);
        this.masqueradeWritten = true;
        if (restored) this.log.info({ podCIDRs: n.podCIDRs }, `the masquerade table ${restored}: written`);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "cannot write the masquerade table");
      }
    }
    if (n?.podCIDRs.length) {
      try {
        const mtu = this.deps.network?.podMtu();
        writeNodeFile(this.o.nodeFile, { nodeName: this.o.nodeName, podCIDRs: n.podCIDRs, clusterCIDRs: cluster, ...(mtu ? { mtu } : {}) });
      } catch (e) {
        this.log.error({ path: this.o.nodeFile, err: (e as Error).message }, "cannot write the node file for CNI IPAM");
      }
    } else if (n) this.log.warn("the Node has no spec.podCIDRs yet: CNI IPAM waits for them");
    if (!recompile) return;
    const ips = nodePortIPs(n, this.o.nodePortAddresses);
    if (ips.join() === this.nodeIPs.join()) return;
    // NodePort frontends are compiled per node address: the Services with NodePorts recompile
    this.nodeIPs = ips;
    this.compiler.setNodeIPs(ips);
    this.log.info({ nodeIPs: ips }, "NodePort addresses");
  }

  private lastErrorAt: number | undefined;

  /** Entries of the tables in force, by table (the metrics' skein_table_entries, read when
   * scraped: counting them walks every target, which a sync need not pay for). */
  tableSizes(): Record<string, number> {
    const t = this.compiler.tables();
    const p = this.policy.tables();
    let backends = 0;
    let slots = 0;
    for (const x of t.targets) {
      backends += backendCount(x);
      slots += x.ringSize;
    }
    return {
      frontends: t.frontends.length,
      targets: t.targets.length,
      backends,
      ring_slots: slots,
      identities: p?.identities.length ?? 0,
      pod_addresses: p?.pods.length ?? 0,
      allow_ingress: p?.allowIngress.length ?? 0,
      allow_egress: p?.allowEgress.length ?? 0,
    };
  }

  /** /readyz: the cluster listed, the tables applied without error, the pod network planned
   * (the reasons when not). */
  ready(n = this.deps.network?.status?.()): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.synced) reasons.push("the cluster is not listed yet");
    else if (!this.lastResult && !this.lastError) reasons.push("no tables applied yet");
    if (this.lastError) reasons.push(`the last sync failed (the tables before it stay in force): ${this.lastError}`);
    if (n && !n.planned) reasons.push(n.waiting ? `the pod network waits: ${n.waiting}` : "the pod network has no plan yet");
    return { ready: reasons.length === 0, reasons };
  }

  /** /v1/status and `skein status`. */
  status(): unknown {
    const n = this.deps.network?.status?.();
    const r = this.ready(n);
    return {
      node: this.o.nodeName,
      version: VERSION,
      mode: n?.mode ?? "none",
      ready: r.ready,
      reasons: r.reasons,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      apiServer: this.kube.server,
      listed: this.synced,
      generation: this.lastResult?.generation ?? 0,
      ...(this.lastResult ? { lastSync: { kind: this.lastResult.kind, ms: Math.round(this.lastResult.ms * 10) / 10, at: new Date(this.appliedAt!).toISOString() } } : {}),
      ...(this.lastError ? { lastError: this.lastError, lastErrorAt: new Date(this.lastErrorAt!).toISOString() } : {}),
      objects: this.store ? this.store.counts() : undefined,
      tables: this.store ? this.tableSizes() : undefined,
      ...(n ? { network: n } : {}),
    };
  }

  /** /v1/peers. */
  peers(): unknown {
    return this.deps.network?.status?.() ?? { mode: "none", gossip: "off", planned: false, peers: [], note: "the agent runs with --no-overlay: no pod network between the nodes" };
  }

  /** /v1/state: what the agent holds of the cluster, as checked. */
  state(): unknown {
    if (!this.store) return { node: this.o.nodeName, listed: false };
    const ps = this.policy.state();
    return {
      node: this.o.nodeName,
      listed: this.synced,
      counts: this.store.counts(),
      nodes: [...this.store.nodes.values()],
      services: this.compiler.serviceList(),
      namespaces: ps.namespaces,
      pods: ps.pods,
      policies: ps.policies,
    };
  }

  /** /v1/tables and `skein tables` on the live agent. */
  tables(filter: { service?: ObjectRef; pod?: ObjectRef }): { json: unknown; text: string } | { missing: string } | undefined {
    if (!this.lastResult || !this.store) return undefined;
    return tablesView(this.compiler.tables(), this.policy.tables(), this.policy.state().pods, filter);
  }

  /** What a trace reads (agent/trace): the tables in force and the pod network's paths. */
  traceInput(): TraceInput {
    const n = this.deps.network?.status?.();
    return {
      node: this.o.nodeName,
      mode: "live",
      nodeIPs: this.nodeIPs,
      tables: this.compiler.tables(),
      ringFactor: this.o.ringFactor,
      policy: this.policy.tables(),
      podCIDRs: this.store.node?.podCIDRs ?? [],
      peers: (n?.peers ?? []).flatMap((p) => p.paths.map((x) => ({ peer: p.name, ...x }))),
      peersFrom: n ? `the agent's plan, mode ${n.mode}, gossip ${n.gossip}` : "no pod network between the nodes (--no-overlay)",
      clusterCIDRs: this.clusterCIDRs(),
      serviceCIDRs: this.o.serviceCIDRs,
      pods: this.policy.state().pods,
      services: this.compiler.serviceList(),
      masquerade: this.deps.masquerade !== undefined,
    };
  }

  /** /v1/trace and `skein trace` on the live agent: a query it cannot read throws TraceQueryError. */
  trace(src: string, dst: string): { json: unknown; text: string } | undefined {
    let q;
    try {
      q = parseQuery(src, dst);
    } catch (e) {
      if (e instanceof QueryError) throw new TraceQueryError(e.message);
      throw e;
    }
    if (!this.lastResult || !this.store) return undefined;
    // a verdict judged on another node: that node's tables, compiled from what this agent
    // holds of the cluster (every Pod, Namespace and NetworkPolicy, as that node's are)
    const r = explainAcrossNodes(this.traceInput(), q, (n) => this.policy.tablesFor(n));
    return { json: r, text: renderTrace(r, { color: false }) };
  }

  /** Verdicts per policy as last read (allowed and dropped packets and bytes since the
   * counters' elements were made). */
  policyCounts = new Map<string, PolicyCounts>();

  /**
   * Reads the verdict counters and logs, per policy, the packets it dropped since the last
   * read: one line per policy per period at most, however many packets, so a flood of denied
   * traffic cannot flood the log. A counter that went down was made anew (its element was
   * replaced): what it holds now is new.
   */
  private reportDrops(): void {
    const tables = this.policy?.tables();
    if (!tables || !this.deps.policyCounters || this.stopped) return;
    let now: Map<string, PolicyCounts>;
    try {
      now = countersByPolicy(tables, this.deps.policyCounters());
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "cannot read the policy counters");
      return;
    }
    for (const [policy, c] of now) {
      const was = this.policyCounts.get(policy)?.droppedPackets ?? 0;
      const dropped = c.droppedPackets >= was ? c.droppedPackets - was : c.droppedPackets;
      if (!dropped) continue;
      if (policy === BLOCKED_POLICY) this.log.warn({ policy, dropped, total: c.droppedPackets }, `dropped ${dropped} packets of addresses blocked until their policy is known (fail closed)`);
      else this.log.warn({ policy, dropped, total: c.droppedPackets, allowed: c.allowedPackets }, `NetworkPolicy ${policy} dropped ${dropped} packets`);
    }
    this.policyCounts = now;
  }

  /** The policy counters read now, per policy (for /metrics); throws when they cannot be read. */
  readPolicyCounts(): Map<string, PolicyCounts> {
    const tables = this.policy?.tables();
    if (!tables || !this.deps.policyCounters) return new Map();
    return countersByPolicy(tables, this.deps.policyCounters());
  }

  /** Problems of the policy compile are logged when they arise and when they end. */
  private policyProblems = new Set<string>();
  private reportPolicy(_before: PolicyTables | undefined, after: PolicyTables): void {
    const now = new Set(after.problems);
    for (const p of now) if (!this.policyProblems.has(p)) this.log.warn({ policy: p.split(":")[0] }, p);
    for (const p of this.policyProblems) if (!now.has(p)) this.log.info(`resolved: ${p}`);
    this.policyProblems = now;
  }

  /**
   * A full collection once updates have stopped for a second. The collector runs as memory
   * is allocated, so the garbage of the last updates (their compiles, deltas and batches)
   * would otherwise stay resident for as long as the cluster is quiet (docs/measurements.md).
   */
  private collectWhenIdle(): void {
    clearTimeout(this.idle);
    if (this.stopped) return;
    this.idle = setTimeout(() => Bun.gc(true), 1000);
    this.idle.unref?.();
  }

  /** A sync `delay` ms from now, unless one is already due; one after the running sync if busy. */
  private schedule(delay = this.o.coalesceMs): void {
    if (!this.synced || this.stopped) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sync();
    }, delay);
  }

  private async sync(): Promise<void> {
    this.syncing = true;
    const gen = ++this.generation;
    const since = this.pendingSince;
    this.pendingSince = undefined;
    let collected = false;
    const m = this.deps.metrics;
    /** which part was under way when a step failed */
    let part: "services" | "policy" = "policy";
    try {
      if (this.recover && !this.replace && this.deps.kernel) {
        // after a failure the kernel may not hold what the model says: a table that differs is
        // made new; one that agrees gets the whole tables in a bank switch, which keeps the
        // tables in force if it is refused too
        const k = this.deps.kernel;
        k.settle();
        const found = this.deps.datapath.drift(await k.list(), await k.reference());
        if (found.length) {
          this.log.warn({ generation: gen, found: found.slice(0, 20) }, "after the failure the kernel's table differs from the model: making it new");
          this.replace = true;
        }
      }
      // policy before services: with no table yet it waits for the sync below, which loads it
      // with the skeleton; with one, it goes in now as one transaction of its own
      let t0 = performance.now();
      const pc = this.policy.compile();
      if (pc) m?.compiled("policy", (performance.now() - t0) / 1000);
      // after a failure or an unheard change, what the kernel holds of the policy is not
      // known for sure: it is replaced whole
      const forced = this.resync || this.replace || this.recover || this.rewrite;
      const tables = pc?.after ?? this.policy.tables();
      if (tables && (pc || forced)) {
        // a table made new below takes the policy with its skeleton
        if (this.replace) this.deps.datapath.policy(tables, false);
        else {
          const r = this.deps.datapath.policy(tables, true, this.recover || this.rewrite);
          if (r.kind !== "none") m?.applied("policy", r.kind, r.ms / 1000);
          if (r.kind !== "none") this.log.info({ generation: gen, nftLines: r.lines, ms: Math.round(r.ms * 10) / 10, identities: tables.identities.length, ingress: tables.allowIngress.length, egress: tables.allowEgress.length }, "policy applied");
        }
        if (pc) this.reportPolicy(pc.before, pc.after);
      }
      part = "services";
      t0 = performance.now();
      const changes = this.compiler.compile();
      m?.compiled("services", (performance.now() - t0) / 1000);
      const rebuild = this.recover || this.rewrite;
      const full = this.resync || this.replace || rebuild;
      const r = full ? this.deps.datapath.sync(this.compiler.tables(), { full: this.replace, rebuild }) : this.deps.datapath.apply(changes, () => this.compiler.tables());
      if (r.kind !== "none") m?.applied("services", r.kind, r.ms / 1000);
      this.resync = false;
      this.replace = false;
      this.recover = false;
      this.rewrite = false;
      this.failures = 0;
      this.lastResult = { ...r, generation: gen };
      this.lastError = undefined;
      this.appliedAt = Date.now();
      // latencyMs: from the first event of this update arriving to the kernel holding it
      const latencyMs = since === undefined ? undefined : Math.round((performance.now() - since) * 10) / 10;
      if (r.kind !== "none") this.log.info({ generation: gen, kind: r.kind, services: changes.length, nftLines: r.lines, ringOps: r.ringOps, ms: Math.round(r.ms * 10) / 10, latencyMs }, "tables applied");
      // a whole-table load leaves tens of MB of garbage at 10k services (the list pages, the
      // compile's output, a million ring slots' netlink batch); collect it now rather than
      // let the heap sit at its peak until the collector gets round to it
      if (r.kind === "full" || r.kind === "rebuild") {
        Bun.gc(true);
        // and hand the freed heap blocks and the startup's compiled code back to the OS
        // (Bun.shrink, docs/measurements.md); it is deprecated, so only asked for
        (Bun as { shrink?: () => void }).shrink?.();
        collected = true;
      }
      // a conflict is logged when it arises and when it ends, not again at every sync
      const conflicts = new Set(this.compiler.conflicts());
      for (const c of conflicts) if (!this.conflicts.has(c)) this.log.warn({ generation: gen }, c);
      for (const c of this.conflicts) if (!conflicts.has(c)) this.log.info({ generation: gen }, `resolved: ${c}`);
      this.conflicts = conflicts;
      if (this.o.flushUdp && !full) {
        const stale = staleUdpFlows(changes);
        if (stale.length) {
          flushStaleFlows(stale).then(
            (n) => n && this.log.info({ generation: gen, entries: n }, "conntrack entries of removed UDP backends deleted"),
            (e) => this.log.warn({ err: (e as Error).message }, "conntrack flush failed"),
          );
        }
      }
    } catch (e) {
      // the previous tables stay in force (the datapath undoes a refused step); the next sync
      // checks them against the kernel and applies the whole tables
      this.recover = true;
      this.failures++;
      this.lastError = (e as Error).message;
      this.lastErrorAt = Date.now();
      m?.transactionError(part);
      this.log.error({ generation: gen, err: this.lastError }, "applying the tables failed; the previous ones stay in force, retrying");
      this.again = true;
    } finally {
      this.syncing = false;
      this.deps.report?.changed();
    }
    // the collection just made needs no second one a second later
    if (collected) clearTimeout(this.idle);
    else this.collectWhenIdle();
    if (this.again) {
      this.again = false;
      this.schedule(this.lastError ? backoffMs(this.failures) : this.o.coalesceMs);
    }
  }
}
