// The pod network between the nodes, as the agent keeps it: who the peers are (the Node
// objects, with what their agents announce over the gossip bus), how this node reaches each
// one (agent/overlay/plan.ts), and the kernel's routes, VXLAN device, FDB and neighbour
// entries that carry it (agent/overlay/overlay.ts). The Node objects are the authority on
// who owns which pod CIDR; gossip adds the public address, the VTEP MAC and liveness. Without
// a bus (none configured, or not reached yet) the Node objects alone build the network.
import type { Logger } from "pino";
import { PeerBook, type NodeFacts } from "../gossip/peers.ts";
import { vtepMacFor, type NodeRecord } from "../gossip/record.ts";
import { networkAddress, planOverlay, type Mode, type OverlayPlan, type PeerPath, type SelfInfo } from "../overlay/plan.ts";
import { parseCidr } from "../../compiler/address.ts";
import type { ProbeResult, ProbeTarget } from "../health/prober.ts";
import type { Underlay } from "../overlay/underlay.ts";
import type { NodeInfo } from "./state.ts";

/** The kernel side: makes the kernel hold a plan, and keeps it so. */
export interface OverlayKernel {
  apply(plan: OverlayPlan): { changes: number; ms: number };
}

/** The gossip side: the bus this node announces itself on and hears its peers from. */
export interface Bus {
  /** put this node's record now (it changed) */
  announce(): void;
  stop(): Promise<void>;
}

export interface BusHooks {
  /** this node's record (the bus numbers its puts: it sets `seq`) */
  record: () => Omit<NodeRecord, "seq">;
  onPut(key: string, bytes: Uint8Array): void;
  onDelete(key: string): void;
  onLive(live: boolean): void;
}

export interface NetworkOptions {
  nodeName: string;
  mode: Mode;
  /** this node's underlay address (default: its Node's first InternalIP) */
  underlayIP?: string;
  /** its public address (default: the Node's annotation skein.io/public-ip) */
  publicIP?: string;
  /** its site (default: the Node's label skein.io/site) */
  site?: string;
  /** how long a peer's record lives without a heartbeat */
  ttlMs: number;
  /** --cluster-cidr: peers' pod CIDRs outside it are not routed (empty: not checked) */
  clusterCIDRs?: string[];
  /** --service-cidr: peers' pod CIDRs overlapping it are not routed */
  serviceCIDRs?: string[];
  /** addresses no peer's pod CIDR may take over (the API server's, the NATS servers') */
  protect?: string[];
  version: string;
}

export interface NetworkStatus {
  mode: Mode;
  self?: { underlay: string; underlayDev: string; public?: string; site?: string; podCIDRs: string[]; podMtu: number };
  /** off: no NATS configured */
  gossip: "live" | "not live" | "off";
  /** a plan is in force */
  planned: boolean;
  /** why this node has no plan */
  waiting?: string;
  peers: Array<{ name: string; source: "gossip" | "node"; podCIDRs: string[]; underlay: string; public?: string; site?: string; lastHeartbeatMsAgo?: number; paths: Array<{ cidr?: string; how: PeerPath["how"]; endpoint?: string; why: string }>; probe?: ProbeResult }>;
}

export interface NetworkDeps {
  log: Logger;
  overlay: OverlayKernel;
  /** finds the interface holding an address of this node (undefined: none does) */
  underlayOf(ip: string): Underlay | undefined;
  /** starts the bus once this node knows what to announce; absent: no gossip */
  startBus?: (hooks: BusHooks) => Bus;
  /** the node health probes (agent/health/prober.ts): told whom to probe after each plan */
  prober?: { setTargets(t: ProbeTarget[]): void; last(): Map<string, ProbeResult> };
  now?: () => number;
}

/** How often expiry is looked at: a dead peer's routes go within about this after its TTL. */
const EXPIRE_EVERY_MS = 500;

export class PodNetwork {
  private readonly book: PeerBook;
  /** this node's Node, as last read */
  private node: NodeInfo | undefined;
  private self: SelfInfo | undefined;
  private bus: Bus | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private expiry: ReturnType<typeof setInterval> | undefined;
  private readonly startedAt: number;
  private stopped = false;
  /** the plan in force */
  private plan: OverlayPlan | undefined;
  /** why this node has no plan, when it cannot make one */
  private waiting: string | undefined;
  private readonly now: () => number;
  /** what the plan in force was made from */
  private input = "";
  private retry = false;
  /** plans the kernel refused (for the metrics) */
  applyFailures = 0;

  constructor(
    private readonly o: NetworkOptions,
    private readonly deps: NetworkDeps,
  ) {
    this.now = deps.now ?? Date.now;
    this.startedAt = this.now();
    this.book = new PeerBook({
      self: o.nodeName,
      ttlMs: o.ttlMs,
      log: (level, obj, msg) => deps.log[level](obj, msg),
    });
  }

  start(): void {
    this.expiry = setInterval(() => {
      const gone = this.book.expire(this.now());
      if (gone.length) {
        this.deps.log.info({ peers: gone }, "peers expired (no heartbeat within the TTL): their routes go");
        this.schedule();
      }
    }, EXPIRE_EVERY_MS);
    this.expiry.unref?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.expiry);
    await this.bus?.stop();
  }

  /** A Node was added, changed or deleted (this one too). */
  setNode(name: string, n: NodeInfo | undefined): void {
    this.book.setNode(name, n && factsOf(n));
    if (name === this.o.nodeName) {
      this.node = n;
      this.selfChanged();
    }
    this.schedule();
  }

  /** What `skein status`, /v1/peers and /readyz say of the pod network. */
  status(): NetworkStatus {
    const hb = this.book.heartbeats();
    const probes = this.deps.prober?.last() ?? new Map<string, ProbeResult>();
    const now = this.now();
    const paths = this.plan?.paths ?? [];
    const peers = this.book.peers().map((p) => {
      const at = hb.at.get(p.name);
      return {
        name: p.name,
        source: p.source,
        podCIDRs: p.podCIDRs,
        underlay: p.underlay,
        ...(p.public ? { public: p.public } : {}),
        ...(p.site ? { site: p.site } : {}),
        ...(at !== undefined ? { lastHeartbeatMsAgo: Math.max(0, now - at) } : {}),
        paths: paths.filter((x) => x.peer === p.name).map(({ cidr, how, endpoint, why }) => ({ ...(cidr ? { cidr } : {}), how, ...(endpoint ? { endpoint } : {}), why })),
        ...(probes.has(p.name) ? { probe: probes.get(p.name) } : {}),
      };
    });
    const self = this.self;
    return {
      mode: this.o.mode,
      ...(self ? { self: { underlay: self.underlay, underlayDev: self.underlayDev, ...(self.public ? { public: self.public } : {}), ...(self.site ? { site: self.site } : {}), podCIDRs: self.podCIDRs, podMtu: this.podMtu()! } } : {}),
      gossip: this.deps.startBus ? (hb.live ? "live" : "not live") : "off",
      planned: this.plan !== undefined,
      ...(this.waiting ? { waiting: this.waiting } : {}),
      peers,
    };
  }

  /** Where each peer is probed: its pod-network address (the network address of its first
   * routed pod CIDR, which its VXLAN device holds), so the probe takes the route or tunnel
   * its pods' traffic takes; in direct mode (no VXLAN device anywhere) its underlay address. */
  private probeTargets(paths: PeerPath[]): ProbeTarget[] {
    const out: ProbeTarget[] = [];
    const seen = new Set<string>();
    for (const p of paths) {
      if (p.how === "none" || !p.cidr || seen.has(p.peer)) continue;
      seen.add(p.peer);
      out.push({ name: p.peer, address: this.o.mode === "direct" ? p.endpoint! : networkAddress(parseCidr(p.cidr)) });
    }
    return out;
  }

  /** The pods' MTU, once this node's underlay is known (the overlay's plan decides it). */
  podMtu(): number | undefined {
    return this.self && planOverlay(this.self, []).podMtu;
  }

  private selfChanged(): void {
    const n = this.node;
    const before = this.self;
    this.self = undefined;
    if (!n?.podCIDRs.length) return this.wait("this Node has no spec.podCIDRs yet");
    const ip = this.o.underlayIP ?? n.internalIPs.find((a) => !a.includes(":")) ?? n.internalIPs[0];
    if (!ip) return this.wait("this Node has no InternalIP address and --underlay-ip is not set: no underlay address to reach the peers from");
    const u = this.deps.underlayOf(ip);
    if (!u) return this.wait(`no interface of this node holds the underlay address ${ip}`);
    this.waiting = undefined;
    this.self = {
      name: this.o.nodeName,
      podCIDRs: n.podCIDRs,
      underlay: ip,
      underlaySubnet: u.subnet,
      underlayDev: u.dev,
      underlayMtu: u.mtu,
      public: this.o.publicIP ?? n.publicIP,
      site: this.o.site ?? n.site,
      mode: this.o.mode,
      vtepMac: vtepMacFor(this.o.nodeName),
      clusterCIDRs: this.o.clusterCIDRs ?? [],
      serviceCIDRs: this.o.serviceCIDRs ?? [],
      protect: this.o.protect ?? [],
    };
    if (before && JSON.stringify(before) === JSON.stringify(this.self)) return;
    this.deps.log.info({ underlay: ip, dev: u.dev, subnet: u.subnet, mtu: u.mtu, public: this.self.public, site: this.self.site, mode: this.o.mode }, "this node on the pod network");
    if (!this.bus && this.deps.startBus) {
      this.bus = this.deps.startBus({
        record: () => this.record(),
        // (the peer book logs what it refuses, rate-limited per key)
        onPut: (key, bytes) => {
          if (this.book.put(key, bytes, this.now()).ok) this.schedule();
        },
        onDelete: (key) => {
          this.book.delete(key);
          this.schedule();
        },
        onLive: (live) => {
          this.book.setLive(live, this.now());
          this.deps.log.info({ live }, live ? "gossip live: peers from their records" : "gossip not live: the last known peers stay, and new Nodes join from their Node objects");
          this.schedule();
        },
      });
    } else this.bus?.announce();
  }

  private wait(why: string): void {
    if (this.waiting !== why) this.deps.log.warn(`the pod network waits: ${why}`);
    this.waiting = why;
  }

  private record(): Omit<NodeRecord, "seq"> {
    const s = this.self!;
    return {
      node: s.name,
      podCIDRs: s.podCIDRs,
      underlay: s.underlay,
      ...(s.public ? { public: s.public } : {}),
      vtepMac: s.vtepMac,
      ...(s.site ? { site: s.site } : {}),
      version: this.o.version,
      startedAt: this.startedAt,
    };
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    // a burst (the list of every Node, a watch's initial records) makes one plan
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.replan();
    }, 5);
  }

  private replan(): void {
    if (!this.self || this.stopped) return;
    const peers = this.book.peers();
    // a heartbeat re-puts a record as it was: nothing to plan, nothing to ask the kernel
    const input = JSON.stringify([this.self, peers]);
    if (input === this.input && !this.retry) return;
    const plan = planOverlay(this.self, peers);
    // one path per pod CIDR of a peer
    const key = (p: { peer: string; cidr?: string }) => `${p.peer} ${p.cidr ?? ""}`;
    const before = new Map((this.plan?.paths ?? []).map((p) => [key(p), p]));
    for (const p of plan.paths) {
      const b = before.get(key(p));
      const what = { peer: p.peer, cidr: p.cidr, how: p.how, endpoint: p.endpoint, why: p.why };
      if (!b) this.deps.log.info(what, "peer path");
      else if (b.how !== p.how || b.endpoint !== p.endpoint) this.deps.log.info(what, "peer path changed");
      before.delete(key(p));
    }
    for (const p of before.values()) this.deps.log.info({ peer: p.peer, cidr: p.cidr }, "peer path gone");
    try {
      const r = this.deps.overlay.apply(plan);
      this.plan = plan;
      this.input = input;
      this.retry = false;
      this.deps.prober?.setTargets(this.probeTargets(plan.paths));
      // the overlay logs what it wrote; this line says whom the network now reaches
      this.deps.log.info({ peers: peers.map((p) => p.name), changes: r.changes }, "pod network programmed");
    } catch (e) {
      this.applyFailures++;
      this.deps.log.error({ err: (e as Error).message }, "applying the overlay failed; retrying");
      this.retry = true;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.replan();
      }, 1000);
    }
  }
}

/** A Node's facts as the peer book takes them (also the offline trace's plan). */
export function factsOf(n: NodeInfo): NodeFacts {
  return { name: n.name, podCIDRs: n.podCIDRs, internalIPs: n.internalIPs, addresses: n.addresses, ...(n.publicIP ? { publicIP: n.publicIP } : {}), ...(n.site ? { site: n.site } : {}) };
}
