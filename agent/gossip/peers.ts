// Who the peers are, from two sources: the Kubernetes Node objects (the authority on which node
// owns which pod CIDRs) and the records on the gossip bus (what the API does not carry: public
// address, VTEP MAC, liveness). A record that contradicts its Node, or whose Node is unknown,
// is kept out; it is kept aside (bounded) and checked again when the Node changes, since the
// record of a joining node often arrives before its Node object does. Without gossip (not
// configured, not connected yet, or lost) the Node objects alone make the peers; with gossip
// live, a Node without a record is not a peer, because its agent is gone or not started.
import { AddressError, addressFamily, parseCidr, unicastProblem } from "../../compiler/address.ts";
import { RecordError, decodeRecord, nodeNameProblem, vtepMacFor, type NodeRecord } from "./record.ts";

export interface NodeFacts {
  name: string;
  podCIDRs: string[];
  internalIPs: string[];
  /** every address of the Node (InternalIP and ExternalIP): a record's underlay address must be
   * one of them (default: internalIPs) */
  addresses?: string[];
  /** annotation skein.io/public-ip */
  publicIP?: string;
  /** label skein.io/site */
  site?: string;
}

export interface Peer {
  name: string;
  podCIDRs: string[];
  underlay: string;
  public?: string;
  vtepMac: string;
  site?: string;
  source: "gossip" | "node";
}

export type Level = "debug" | "info" | "warn";
export type Log = (level: Level, obj: Record<string, unknown>, msg: string) => void;

/** Refused records kept for names that have no Node: enough for the nodes of a burst of joins,
 * little enough that a writer inventing names cannot grow the agent's memory. */
export const MAX_UNKNOWN_KEPT = 64;

/** A refused record is logged once per key this often at most (a writer can put thousands a
 * second); the rest are counted into the next line. */
export const REFUSED_LOG_EVERY_MS = 60_000;
/** keys whose refusals are being counted; past this the oldest are forgotten */
const REFUSED_LOG_KEYS = 1024;

interface Held {
  rec: NodeRecord;
  /** when the record was last put (or got a fresh ttl on becoming live) */
  at: number;
}

export class PeerBook {
  private readonly self: string;
  private readonly ttlMs: number;
  private readonly log: Log;
  private readonly nodes = new Map<string, NodeFacts>();
  /** valid records, one per known Node */
  private readonly accepted = new Map<string, Held>();
  /** the last decodable but refused record of a known Node, newer than its accepted one */
  private readonly refused = new Map<string, Held & { why: string }>();
  /** the same for names without a Node; insertion order evicts the oldest */
  private readonly unknown = new Map<string, Held>();
  private live = false;
  /** after becoming live, Nodes without a record stay peers from their Node facts until then */
  private graceUntil: number | undefined;
  /** Nodes whose records expired or were deleted while live (or that had none when the grace
   * ended): their agents are gone, so losing the bus does not bring them back from their Node
   * objects. A record accepted again, or the Node deleted, takes a name off. */
  private readonly gone = new Set<string>();

  /** how long Nodes without a record stay peers after gossip becomes live (default: the ttl) */
  private readonly graceMs: number;

  constructor(o: { self: string; ttlMs: number; graceMs?: number; log?: Log }) {
    this.self = o.self;
    this.ttlMs = o.ttlMs;
    this.graceMs = o.graceMs ?? o.ttlMs;
    this.log = o.log ?? (() => {});
  }

  /** The Node `name` as the API shows it now, or undefined when it is gone. */
  setNode(name: string, facts: NodeFacts | undefined): void {
    if (facts === undefined) {
      this.gone.delete(name);
      if (!this.nodes.delete(name)) return;
      // its records wait among the unknown ones: the Node may come back
      const held = this.refused.get(name) ?? this.accepted.get(name);
      this.accepted.delete(name);
      this.refused.delete(name);
      if (held) this.keepUnknown(name, held);
      return;
    }
    const node = clean(facts, this.log);
    this.nodes.set(name, node);
    const waiting = this.refused.get(name) ?? this.unknown.get(name);
    this.unknown.delete(name);
    this.refused.delete(name);
    const held = this.accepted.get(name);
    if (held && !sameSet(held.rec.podCIDRs, node.podCIDRs)) {
      this.accepted.delete(name);
      // re-checked like any refused record when the Node changes again, unless a newer one waits
      if (waiting) this.log("warn", { key: name, podCIDRs: node.podCIDRs }, "node record no longer matches its Node: removed");
      else this.admit(name, held);
    }
    if (waiting) this.admit(name, waiting);
  }

  /** A record put on the bus under `key`. */
  put(key: string, bytes: Uint8Array, nowMs: number): { ok: true } | { ok: false; why: string } {
    let rec: NodeRecord;
    try {
      rec = decodeRecord(key, bytes);
    } catch (e) {
      const why = e instanceof RecordError ? e.message : `node record: ${String(e)}`;
      // what was accepted before stays until it expires: a garbage write cannot remove a peer
      this.refusal(key.slice(0, 253), why, "node record refused", nowMs);
      return { ok: false, why };
    }
    return this.admit(key, { rec, at: nowMs });
  }

  /** The key was deleted or purged on the bus. */
  delete(key: string): void {
    if (this.live && this.nodes.has(key)) this.gone.add(key);
    this.accepted.delete(key);
    this.refused.delete(key);
    this.unknown.delete(key);
  }

  /** Whether gossip is live: connected and the watch has delivered what the bucket holds. */
  setLive(live: boolean, nowMs: number): void {
    if (live && !this.live) {
      // time spent not live does not count against a record
      for (const h of this.accepted.values()) h.at = nowMs;
      // Nodes known only from the API (joined while the bus was down, or whose agents have
      // not put their records again yet after a server lost its state) stay peers for one
      // ttl: their agents' heartbeats bring their records within it, and dropping them at
      // once would cut their pods off for that while
      this.graceUntil = this.graceMs > 0 ? nowMs + this.graceMs : undefined;
    }
    if (!live) this.graceUntil = undefined;
    this.live = live;
  }

  /** Removes records not refreshed within the ttl; only while live. Returns the names removed. */
  expire(nowMs: number): string[] {
    if (!this.live) return [];
    const gone: string[] = [];
    if (this.graceUntil !== undefined && nowMs >= this.graceUntil) {
      this.graceUntil = undefined;
      // those still without a record are no peers any more
      for (const [name, n] of this.nodes) {
        if (name === this.self || this.accepted.has(name)) continue;
        this.gone.add(name);
        if (n.podCIDRs.length && n.internalIPs.length) gone.push(name);
      }
      if (gone.length) this.log("info", { nodes: gone }, "Nodes without a node record since gossip became live: no longer peers");
    }
    for (const [name, h] of this.accepted) {
      if (nowMs - h.at >= this.ttlMs) {
        this.accepted.delete(name);
        this.gone.add(name);
        gone.push(name);
      }
    }
    for (const m of [this.refused, this.unknown] as Map<string, Held>[]) for (const [name, h] of m) if (nowMs - h.at >= this.ttlMs) m.delete(name);
    if (gone.length) this.log("info", { nodes: gone }, "node records expired");
    return gone.sort();
  }

  /** When each peer's record was last put (ms, the clock `put` was given), and whether
   * gossip is live: what `skein status` shows as heartbeats. */
  heartbeats(): { live: boolean; at: Map<string, number> } {
    return { live: this.live, at: new Map([...this.accepted].map(([name, h]) => [name, h.at])) };
  }

  /** Every peer but self, sorted by name. */
  peers(): Peer[] {
    const out: Peer[] = [];
    for (const [name, n] of this.nodes) {
      if (name === this.self || n.podCIDRs.length === 0) continue;
      const h = this.accepted.get(name);
      if (h) {
        const r = h.rec;
        const p: Peer = { name, podCIDRs: [...n.podCIDRs], underlay: r.underlay, vtepMac: r.vtepMac, source: "gossip" };
        const pub = r.public ?? n.publicIP;
        if (pub !== undefined) p.public = pub;
        const site = r.site ?? n.site;
        if (site !== undefined) p.site = site;
        out.push(p);
      } else if ((!this.live || this.graceUntil !== undefined) && !this.gone.has(name) && n.internalIPs.length > 0) {
        const p: Peer = { name, podCIDRs: [...n.podCIDRs], underlay: n.internalIPs[0]!, vtepMac: vtepMacFor(name), source: "node" };
        if (n.publicIP !== undefined) p.public = n.publicIP;
        if (n.site !== undefined) p.site = n.site;
        out.push(p);
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Checks a decoded record against its Node and files it as accepted or refused. */
  private admit(key: string, h: Held): { ok: true } | { ok: false; why: string } {
    const node = this.nodes.get(key);
    if (!node) {
      const why = `node record "${key}": no Node of that name`;
      this.keepUnknown(key, h);
      this.refusal(key, why, "node record refused (kept until its Node appears)", h.at);
      return { ok: false, why };
    }
    const addresses = node.addresses ?? node.internalIPs;
    const why = !sameSet(h.rec.podCIDRs, node.podCIDRs)
      ? `node record "${key}": field podCIDRs: ${JSON.stringify(h.rec.podCIDRs)} differ from the Node's spec.podCIDRs ${JSON.stringify(node.podCIDRs)}`
      : // whoever can write the bucket could otherwise point another node's pod traffic anywhere
        !addresses.includes(h.rec.underlay)
        ? `node record "${key}": field underlay: ${h.rec.underlay} is none of the Node's addresses (${addresses.join(", ") || "it has none"})`
        : undefined;
    if (why) {
      // an accepted record stays until it expires; the refused one is re-checked when the Node changes
      this.refused.set(key, { ...h, why });
      this.refusal(key, why, "node record refused", h.at);
      return { ok: false, why };
    }
    const prev = this.accepted.get(key);
    this.gone.delete(key);
    this.refused.delete(key);
    this.accepted.set(key, h);
    if (!prev) this.log("info", { key, underlay: h.rec.underlay, public: h.rec.public, site: h.rec.site }, "node record accepted");
    return { ok: true };
  }

  /** when each key's refusal was last logged, and how many were not since */
  private readonly refusals = new Map<string, { at: number; why: string; more: number }>();

  /** Logs a refused record: the first of a key, a new reason, or the first after
   * REFUSED_LOG_EVERY_MS with the count of those in between. */
  private refusal(key: string, why: string, msg: string, nowMs: number): void {
    const r = this.refusals.get(key);
    if (r && r.why === why && nowMs - r.at < REFUSED_LOG_EVERY_MS) {
      r.more++;
      return;
    }
    this.log("warn", { key, why, ...(r?.more ? { refusedSinceLastLine: r.more } : {}) }, msg);
    this.refusals.delete(key);
    this.refusals.set(key, { at: nowMs, why, more: 0 });
    while (this.refusals.size > REFUSED_LOG_KEYS) this.refusals.delete(this.refusals.keys().next().value!);
  }

  private keepUnknown(key: string, h: Held): void {
    this.unknown.delete(key);
    this.unknown.set(key, h);
    while (this.unknown.size > MAX_UNKNOWN_KEPT) this.unknown.delete(this.unknown.keys().next().value!);
  }
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** The Node facts with whatever does not read strictly left out (and logged). */
function clean(f: NodeFacts, log: Log): NodeFacts {
  const bad = (field: string, e: unknown) => log("warn", { node: f.name, field, why: (e as Error).message }, "Node field ignored");
  const nameBad = nodeNameProblem(f.name);
  if (nameBad) bad("metadata.name", new Error(nameBad));
  let podCIDRs: string[] = [];
  try {
    if (f.podCIDRs.length > 2) throw new AddressError(`${f.podCIDRs.length} pod CIDRs, at most 2`);
    podCIDRs = f.podCIDRs.map((c) => parseCidr(c).text);
  } catch (e) {
    bad("spec.podCIDRs", e);
  }
  const internalIPs = f.internalIPs.filter((ip) => {
    try {
      addressFamily(ip);
      return true;
    } catch (e) {
      bad("status.addresses", e);
      return false;
    }
  });
  const readable = (ip: string) => {
    try {
      addressFamily(ip);
      return true;
    } catch {
      return false;
    }
  };
  const out: NodeFacts = { name: f.name, podCIDRs: nameBad ? [] : podCIDRs, internalIPs };
  if (f.addresses) out.addresses = f.addresses.filter(readable);
  if (f.publicIP !== undefined) {
    try {
      addressFamily(f.publicIP);
      const why = unicastProblem(f.publicIP);
      if (why) throw new AddressError(`${f.publicIP} is ${why}`);
      out.publicIP = f.publicIP;
    } catch (e) {
      bad("metadata.annotations[skein.io/public-ip]", e);
    }
  }
  if (f.site !== undefined) out.site = f.site;
  return out;
}
