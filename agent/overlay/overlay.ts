// Makes the kernel hold an overlay plan (plan.ts) and keeps it so: the device skein.vxlan,
// routes of protocol RTPROT_SKEIN in the main table, and the permanent neighbour and FDB
// entries on skein.vxlan. Everything is compared with what the kernel holds and only the
// difference is written, so applying the same plan twice writes nothing, and a restarted
// agent finds its entries in place (traffic never stopped).
//
// Ownership: a route is skein's by its protocol, and only those are ever replaced or deleted;
// a route of anyone else to a peer's pod CIDR is a conflict, logged and left alone (the peer
// is then unreachable through skein, which the operator must see). The device and every
// neighbour and FDB entry on it are skein's, when it is a VXLAN device: one of another kind
// with its name is someone else's, never changed or deleted, and skein goes without VXLAN
// (logged, reported as failed, retried) until it is gone. A VXLAN device of that name whose
// settings differ is taken for an earlier skein's and replaced.
//
// Repair: the rtnetlink groups (rtevents.ts) are read every poll; a notification that takes
// the kernel away from the plan (an entry of ours deleted or changed, the device deleted or
// set down, a foreign route appearing or leaving) makes a comparison run within the next
// poll, and a periodic comparison catches what is not notified at all. Any message telling the
// underlay link or the device down counts, even when a later one of the same poll tells it up
// again: its IPv4 routes went with the down, unnotified.
import { Netlink } from "../sys/netlink.ts";
import { RtEvents } from "../sys/rtevents.ts";
import {
  addAddress,
  createVxlan,
  deleteAddress,
  deleteFdb,
  deleteLinkIndex,
  deleteNeighbour,
  deleteRoute,
  getLink,
  IFF_UP,
  listAddresses,
  listNeighbours,
  listRoutes,
  NUD_PERMANENT,
  RT_TABLE_MAIN,
  RTNH_F_ONLINK,
  RTPROT_SKEIN,
  setLink,
  setTxChecksum,
  txChecksum,
  writeFdb,
  writeNeighbour,
  writeRoute,
  type LinkMsg,
  type RouteMsg,
  type RtMsg,
} from "../sys/rtnl.ts";
import { NetlinkError } from "../sys/nlsock.ts";
import { VXLAN_DEV, type OverlayPlan, type PlannedRoute, type VxlanSpec } from "./plan.ts";
import { underlayOf, type Underlay } from "./underlay.ts";
import { planOverlayCleanup, readKernel, removeRtnl, type CleanupItem } from "./cleanup.ts";

export interface OverlayLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface OverlayOptions {
  log: OverlayLog;
  /** the namespace to work in (tests); the caller's own when undefined */
  netnsPath?: string;
  /** listen to rtnetlink and repair (default true); false for a one-shot use such as cleanup */
  watch?: boolean;
  /** how often notifications are read, in ms (default 100) */
  pollMs?: number;
  /** how often the whole plan is compared with the kernel, in ms (default 10,000; 0: never) */
  checkEveryMs?: number;
}

export interface ApplyResult {
  /** entries written or deleted */
  changes: number;
  ms: number;
  /** what could not be written (retried by the next comparison) */
  failed: string[];
  /** planned routes left out because a route of someone else has their destination */
  conflicts: string[];
}

const POLL_MS = 100;
const CHECK_EVERY_MS = 10_000;
/** a failed write is retried after this, doubling up to RETRY_MAX_MS */
const RETRY_MS = 1000;
const RETRY_MAX_MS = 30_000;

/** The plan as the kernel's entries are keyed, for comparing notifications. */
interface Wanted {
  plan: OverlayPlan;
  routes: Map<string, PlannedRoute>;
  neighbours: Map<string, string>;
  fdb: Map<string, string>;
  addrs: Set<string>;
}

function wanted(plan: OverlayPlan): Wanted {
  return {
    plan,
    routes: new Map(plan.routes.map((r) => [r.dst, r])),
    neighbours: new Map(plan.neighbours.map((n) => [n.ip, n.mac])),
    fdb: new Map(plan.fdb.map((f) => [f.mac, f.dst])),
    addrs: new Set(plan.vxlan?.addrs ?? []),
  };
}

const isLinkLocal6 = (ip: string) => /^fe[89ab][0-9a-f]:/.test(ip);
const errText = (e: unknown) => (e as Error)?.message ?? String(e);

/** How the VXLAN link differs from the spec in what only re-creating it changes; empty when it does not. */
function linkMismatch(l: LinkMsg, v: VxlanSpec, underlay: number): string[] {
  if (l.type !== "vxlan") return [`it is a ${l.type ?? "link of no kind"}, not vxlan`];
  const x = l.vxlan ?? {};
  const out: string[] = [];
  if (x.id !== v.vni) out.push(`VNI ${x.id} (want ${v.vni})`);
  if (x.port !== v.port) out.push(`port ${x.port} (want ${v.port})`);
  if (x.local !== v.local) out.push(`local ${x.local ?? "none"} (want ${v.local})`);
  if (x.link !== underlay) out.push(`underlay link ${x.link ?? "none"} (want ${underlay}, ${v.dev})`);
  if (x.learning !== false) out.push("learning on");
  if (x.group) out.push(`group/remote ${x.group}`);
  return out;
}

/** A link named skein.vxlan that is not a VXLAN device: not skein's, whatever is planned. */
const foreignKind = (l: LinkMsg | undefined) => (l && l.type !== "vxlan" ? (l.type ?? "link of no kind") : undefined);

const sameRoute = (k: RouteMsg, r: PlannedRoute, oif: number | undefined) =>
  k.gateway === r.via && k.oif === oif && !!(k.flags & RTNH_F_ONLINK) === r.onlink;

export class Overlay {
  private readonly nl: Netlink;
  private events: RtEvents | undefined;
  private want: Wanted | undefined;
  private vxIndex: number | undefined;
  private underlayIndex: number | undefined;
  private underlayName: string | undefined;
  private underlayFlags = 0;
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private soon: ReturnType<typeof setTimeout> | undefined;
  private retryMs = RETRY_MS;
  /** conflicting destinations already logged (logged again once they clear and return) */
  private conflicts = new Set<string>();
  private csumWarned = false;
  /** the foreign skein.vxlan already logged, as "index kind" */
  private foreignWarned: string | undefined;
  private closed = false;
  /** entries put back by the comparisons that notifications, the period or a retry started */
  repairs = 0;

  private constructor(private readonly o: OverlayOptions) {
    this.nl = Netlink.open(o.netnsPath);
    if (o.watch === false) return;
    try {
      this.events = RtEvents.open(o.netnsPath);
    } catch (e) {
      this.nl.close();
      throw e;
    }
    this.timers.push(setInterval(() => this.poll(), o.pollMs ?? POLL_MS));
    const every = o.checkEveryMs ?? CHECK_EVERY_MS;
    if (every > 0) this.timers.push(setInterval(() => this.repair("periodic check"), every));
    for (const t of this.timers) t.unref?.();
  }

  static open(o: OverlayOptions): Overlay {
    return new Overlay(o);
  }

  /** Makes the kernel hold `plan` (and keeps it so until the next apply, cleanup or close). */
  apply(plan: OverlayPlan): ApplyResult {
    if (this.closed) throw new Error("the overlay is closed");
    const t0 = performance.now();
    this.want = wanted(plan);
    const r = this.sync(this.want);
    this.afterSync(r.failed);
    const ms = performance.now() - t0;
    if (r.failed.length) this.o.log.warn({ changes: r.changes.length, failed: r.failed.slice(0, 20), ms: Math.round(ms * 10) / 10 }, "overlay applied in part; what failed is retried");
    else if (r.changes.length) this.o.log.info({ changes: r.changes.length, ms: Math.round(ms * 10) / 10 }, "overlay applied");
    return { changes: r.changes.length, ms, failed: r.failed, conflicts: r.conflicts };
  }

  /** Compares the kernel with the plan last applied and puts back what differs; what it changed. */
  check(): string[] {
    if (!this.want || this.closed) return [];
    const r = this.sync(this.want);
    this.afterSync(r.failed);
    return r.changes;
  }

  /** The interface holding this node's address `ip`, its subnet and MTU (underlay.ts), read
   * on the overlay's own socket. */
  underlayOf(ip: string): Underlay | undefined {
    return underlayOf(this.nl, ip);
  }

  /** Stops listening and closes the sockets; the kernel keeps what was applied. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    clearTimeout(this.soon);
    this.events?.close();
    this.nl.close();
  }

  /** What cleanup() would remove (and a skein.vxlan of someone else's, left alone), read from
   * the kernel, nothing changed. */
  describeCleanup(): CleanupItem[] {
    return planOverlayCleanup(readKernel(this.nl));
  }

  /** Removes every route of skein's and the device (its entries go with it); stops repairing.
   * What it found, those removed meanwhile by someone else left out. */
  cleanup(): CleanupItem[] {
    this.want = undefined;
    const plan = this.describeCleanup();
    for (const item of plan) {
      if (item.action === "leave") this.o.log.warn({ [item.kind]: item.name }, `${item.kind} ${item.name} left alone: ${item.reason}`);
    }
    return plan.filter((item) => item.action === "remove" && (item.with !== undefined || removeRtnl(this.nl, item)));
  }

  private afterSync(failed: string[]): void {
    if (!failed.length) {
      this.retryMs = RETRY_MS;
      return;
    }
    // a failed write waits for the next comparison, sooner than the periodic one
    this.schedule(this.retryMs, "retrying what failed");
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  private schedule(ms: number, why: string): void {
    if (this.soon || this.closed || !this.events) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.repair(why);
    }, ms);
    this.soon.unref?.();
  }

  private repair(why: string): void {
    if (!this.want || this.closed) return;
    try {
      const changes = this.check();
      if (changes.length) {
        this.repairs += changes.length;
        this.o.log.warn({ why, repaired: changes.slice(0, 20), more: Math.max(0, changes.length - 20) }, "overlay: put back what differed from the plan");
      }
    } catch (e) {
      this.o.log.warn({ why, err: errText(e) }, "comparing the overlay with the kernel failed; trying again");
      this.schedule(this.retryMs, "retrying a failed comparison");
    }
  }

  /** Reads the notifications; one that takes the kernel away from the plan schedules a comparison. */
  private poll(): void {
    if (!this.events || this.closed) return;
    const { messages, lost } = this.events.read();
    if (!this.want) return;
    if (lost) return this.schedule(0, "rtnetlink notifications were lost");
    // a link's state is its last message's (its creation is told down, then up)
    const last = new Map<number, RtMsg>();
    for (const m of messages) {
      if (m.kind !== "link") continue;
      last.set(m.index, m);
      const why = this.wentDown(m, this.want);
      if (why) return this.schedule(0, why);
    }
    for (const m of messages) {
      if (m.kind === "link" && last.get(m.index) !== m) continue;
      const why = this.concerns(m, this.want);
      if (why) return this.schedule(0, why);
    }
  }

  /** A link that goes down loses its IPv4 routes without a route notification; set up again
   * within the same poll, its last message tells it as before, so every message counts. */
  private wentDown(m: LinkMsg, w: Wanted): string | undefined {
    if (!m.deleted && m.flags & IFF_UP) return undefined;
    const underlay = m.index === this.underlayIndex || (m.name !== undefined && m.name === this.underlayName);
    if (underlay) return `underlay link ${m.name ?? m.index} went ${m.deleted ? "away" : "down"}`;
    if (w.plan.vxlan && (m.index === this.vxIndex || m.name === VXLAN_DEV)) return `${VXLAN_DEV} went ${m.deleted ? "away" : "down"}`;
    return undefined;
  }

  /** Why the notification `m` may mean the kernel no longer holds the plan; undefined when it cannot. */
  private concerns(m: RtMsg, w: Wanted): string | undefined {
    const vx = this.vxIndex;
    switch (m.kind) {
      case "link": {
        // set down, the underlay loses its IPv4 routes unheard: the direct ones among them are ours
        if (m.index === this.underlayIndex) return m.deleted || (m.flags & IFF_UP) !== (this.underlayFlags & IFF_UP) ? `underlay link ${m.name ?? m.index} went ${m.deleted ? "away" : m.flags & IFF_UP ? "up" : "down"}` : undefined;
        if (m.index !== vx && m.name !== VXLAN_DEV) return undefined;
        const v = w.plan.vxlan;
        if (!v) return m.deleted ? undefined : `${VXLAN_DEV} appeared`;
        if (m.deleted) return `${VXLAN_DEV} was deleted`;
        if (!(m.flags & IFF_UP)) return `${VXLAN_DEV} is down`;
        if ((m.mtu !== undefined && m.mtu !== v.mtu) || (m.mac !== undefined && m.mac !== v.mac)) return `${VXLAN_DEV} changed`;
        if (m.index !== vx || (m.vxlan && this.underlayIndex !== undefined && linkMismatch(m, v, this.underlayIndex).length)) return `${VXLAN_DEV} was replaced`;
        return undefined;
      }
      case "addr": {
        if (m.index !== vx || !m.address) return undefined;
        const a = `${m.address}/${m.prefix}`;
        if (m.deleted) return w.addrs.has(a) ? `address ${a} was deleted` : undefined;
        return !w.addrs.has(a) && !isLinkLocal6(m.address) ? `address ${a} was added` : undefined;
      }
      case "route": {
        if (m.table !== RT_TABLE_MAIN) return undefined;
        const r = w.routes.get(m.dst);
        if (m.deleted) return r ? `route ${m.dst} was deleted` : undefined;
        if (m.protocol === RTPROT_SKEIN) return r && sameRoute(m, r, r.dev === VXLAN_DEV ? vx : this.underlayIndex) ? undefined : `route ${m.dst} was changed`;
        return r ? `a route of protocol ${m.protocol} to ${m.dst} appeared` : undefined;
      }
      case "neigh": {
        if (m.index !== vx || !m.ip) return undefined;
        if (m.family === "bridge") {
          if (!m.mac) return undefined;
          const dst = w.fdb.get(m.mac);
          if (m.deleted) return dst === m.ip ? `FDB entry ${m.mac} was deleted` : undefined;
          return dst !== m.ip || !(m.state & NUD_PERMANENT) ? `FDB entry ${m.mac} dst ${m.ip} appeared` : undefined;
        }
        const mac = w.neighbours.get(m.ip);
        if (m.deleted) return mac !== undefined ? `neighbour ${m.ip} was deleted` : undefined;
        if (mac !== undefined) return mac !== m.mac || !(m.state & NUD_PERMANENT) ? `neighbour ${m.ip} was changed` : undefined;
        return m.state & NUD_PERMANENT ? `neighbour ${m.ip} appeared` : undefined;
      }
    }
  }

  /** Writes what the kernel lacks of `w`, deletes what it holds of ours beyond it. */
  private sync(w: Wanted): { changes: string[]; failed: string[]; conflicts: string[] } {
    const nl = this.nl;
    const plan = w.plan;
    const changes: string[] = [];
    const failed: string[] = [];
    const conflicts: string[] = [];
    const attempt = (what: string, f: () => boolean | void) => {
      try {
        if (f() !== false) changes.push(what);
      } catch (e) {
        failed.push(`${what}: ${errText(e)}`);
      }
    };

    // the device
    const underlayDev = plan.vxlan?.dev ?? plan.routes.find((r) => r.dev !== VXLAN_DEV)?.dev;
    const underlay = underlayDev === undefined ? undefined : getLink(nl, underlayDev);
    this.underlayIndex = underlay?.index;
    this.underlayName = underlayDev;
    this.underlayFlags = underlay?.flags ?? 0;
    if (underlayDev !== undefined && !underlay) failed.push(`underlay link ${underlayDev} does not exist`);
    let vx = getLink(nl, VXLAN_DEV);
    const v = plan.vxlan;
    const foreignDev = foreignKind(vx);
    if (foreignDev) {
      // someone else's: with the name taken, skein has no device until it goes
      const key = `${vx!.index} ${foreignDev}`;
      if (v) {
        failed.push(`${VXLAN_DEV}: the name is taken by a ${foreignDev} that is not skein's (left alone)`);
        if (this.foreignWarned !== key) this.o.log.warn({ link: VXLAN_DEV, index: vx!.index, kind: foreignDev }, `a ${foreignDev} named ${VXLAN_DEV} is not skein's: left alone, and no peer is reached over VXLAN until it is gone`);
      }
      this.foreignWarned = v ? key : undefined;
      vx = undefined;
    } else this.foreignWarned = undefined;
    if (vx && (!v || (underlay && linkMismatch(vx, v, underlay.index).length))) {
      const why = v && underlay ? linkMismatch(vx, v, underlay.index).join(", ") : "the plan has none";
      const index = vx.index;
      attempt(`deleted ${VXLAN_DEV} (${why})`, () => deleteLinkIndex(nl, index));
      vx = undefined;
    }
    if (v && underlay && !foreignDev) {
      if (!vx) {
        attempt(`created ${VXLAN_DEV}`, () => createVxlan(nl, { name: VXLAN_DEV, vni: v.vni, port: v.port, local: v.local, link: underlay.index, mtu: v.mtu, mac: v.mac }));
        vx = getLink(nl, VXLAN_DEV);
      }
      if (vx) {
        const index = vx.index;
        if (vx.mtu !== v.mtu || vx.mac !== v.mac) attempt(`${VXLAN_DEV} mtu ${v.mtu} address ${v.mac}`, () => setLink(nl, index, { mtu: v.mtu, mac: v.mac }));
        if (!(vx.flags & IFF_UP)) attempt(`${VXLAN_DEV} up`, () => setLink(nl, index, { up: true }));
        this.checksumOff();
      }
    }
    this.vxIndex = vx?.index;
    const vxIndex = vx?.index;

    // its addresses: only the plan's (and the IPv6 link-local address the kernel gives it)
    if (vxIndex !== undefined) {
      const have = new Set<string>();
      for (const a of listAddresses(nl)) {
        if (a.index !== vxIndex || !a.address) continue;
        const cidr = `${a.address}/${a.prefix}`;
        have.add(cidr);
        if (!w.addrs.has(cidr) && !isLinkLocal6(a.address)) attempt(`deleted address ${cidr} from ${VXLAN_DEV}`, () => deleteAddress(nl, vxIndex, cidr));
      }
      for (const cidr of w.addrs) if (!have.has(cidr)) attempt(`address ${cidr} on ${VXLAN_DEV}`, () => addAddress(nl, vxIndex, cidr));
    }

    // routes of ours that the plan no longer has go first (a peer that left)
    const main = [...listRoutes(nl, 4), ...listRoutes(nl, 6)].filter((r) => r.table === RT_TABLE_MAIN);
    const byDst = new Map<string, RouteMsg[]>();
    for (const r of main) {
      if (r.protocol === RTPROT_SKEIN && !w.routes.has(r.dst)) {
        attempt(`deleted route ${r.dst} (not planned)`, () => deleteRoute(nl, r.dst, RTPROT_SKEIN));
        continue;
      }
      if (w.routes.has(r.dst)) byDst.set(r.dst, [...(byDst.get(r.dst) ?? []), r]);
    }

    // the FDB and neighbour entries before the routes that need them
    if (vxIndex !== undefined) {
      const fdbOk = new Set<string>();
      for (const f of listNeighbours(nl, "bridge")) {
        if (f.index !== vxIndex || !f.mac || !f.ip) continue;
        const mac = f.mac;
        const ip = f.ip;
        if (w.fdb.get(mac) === ip && f.state & NUD_PERMANENT) fdbOk.add(mac);
        else attempt(`deleted FDB entry ${mac} dst ${ip}`, () => deleteFdb(nl, vxIndex, mac, ip));
      }
      for (const [mac, dst] of w.fdb) if (!fdbOk.has(mac)) attempt(`FDB entry ${mac} dst ${dst}`, () => writeFdb(nl, vxIndex, mac, dst));

      const neighOk = new Set<string>();
      for (const n of [...listNeighbours(nl, 4), ...listNeighbours(nl, 6)]) {
        if (n.index !== vxIndex || !n.ip) continue;
        const ip = n.ip;
        const mac = w.neighbours.get(ip);
        if (mac !== undefined && mac === n.mac && n.state & NUD_PERMANENT) neighOk.add(ip);
        else if (mac === undefined && n.state & NUD_PERMANENT) attempt(`deleted neighbour ${ip}`, () => deleteNeighbour(nl, vxIndex, ip));
      }
      for (const [ip, mac] of w.neighbours) if (!neighOk.has(ip)) attempt(`neighbour ${ip} lladdr ${mac}`, () => writeNeighbour(nl, vxIndex, ip, mac));
    }

    const seen = new Set<string>();
    for (const r of plan.routes) {
      const oif = r.dev === VXLAN_DEV ? vxIndex : underlay?.index;
      if (oif === undefined) {
        failed.push(`route ${r.dst}: ${r.dev === VXLAN_DEV && foreignDev ? `${VXLAN_DEV} is not skein's` : `link ${r.dev} does not exist`}`);
        continue;
      }
      const have = byDst.get(r.dst) ?? [];
      const foreign = have.filter((k) => k.protocol !== RTPROT_SKEIN);
      if (foreign.length) {
        conflicts.push(r.dst);
        seen.add(r.dst);
        if (!this.conflicts.has(r.dst)) {
          this.conflicts.add(r.dst);
          this.o.log.warn({ dst: r.dst, protocol: foreign[0]!.protocol, gateway: foreign[0]!.gateway, oif: foreign[0]!.oif }, "a route that is not skein's goes to a peer's pod CIDR: left alone, so that pod CIDR is not routed by skein");
        }
        continue;
      }
      const ours = have.filter((k) => k.protocol === RTPROT_SKEIN);
      if (ours.some((k) => sameRoute(k, r, oif))) continue;
      const write = { dst: r.dst, gateway: r.via, oif, onlink: r.onlink, protocol: RTPROT_SKEIN };
      const desc = `route ${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`;
      try {
        writeRoute(nl, write, ours.length > 0);
        changes.push(desc);
      } catch (e) {
        if (e instanceof NetlinkError && e.errno === 17) {
          // a route to it came between the listing and the write: someone else's
          conflicts.push(r.dst);
          seen.add(r.dst);
        } else failed.push(`${desc}: ${errText(e)}`);
      }
    }
    for (const d of this.conflicts) if (!seen.has(d)) this.conflicts.delete(d);
    return { changes, failed, conflicts };
  }

  /** TX checksum offload off on the device: with source NAT on the way, offloaded checksums of
   * VXLAN packets come out wrong on some kernels and connections hang (flannel #1279). */
  private checksumOff(): void {
    try {
      if (txChecksum(this.nl, VXLAN_DEV)) setTxChecksum(this.nl, VXLAN_DEV, false);
    } catch (e) {
      if (!this.csumWarned) this.o.log.warn({ err: errText(e) }, `cannot turn TX checksum offload off on ${VXLAN_DEV}; going on with it on`);
      this.csumWarned = true;
    }
  }
}
