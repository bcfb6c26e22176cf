// What the kernel must hold for this node to reach every peer's pods: pure, from this node's
// facts and the peers' (agent/gossip/peers.ts), decided per pair of nodes.
//
// Two nodes of one site (equal non-empty site labels, or equal public addresses: both behind
// one NAT) use their private (underlay) addresses to each other and public ones to the rest;
// a pod CIDR is routed directly via the peer's underlay address when that address is on this
// node's underlay subnet, else over VXLAN. VXLAN routes go via the network address of the
// peer's pod CIDR, on-link through skein.vxlan, with a permanent neighbour entry (that address
// → the peer's VTEP MAC) and a permanent FDB entry (that MAC → the endpoint), so that no
// packet waits for ARP or learning and a restarted agent finds the kernel already right.
//
// A peer's facts come from untrusted records (checked by the peer book), but whatever slips
// through must not make the plan hurt anyone: a peer whose pod CIDR overlaps this node's or an
// earlier peer's, whose MAC is another's, or whose addresses cannot be used gets no route,
// and its path says why.
import { addressBytes, addressFamily, addressFromBytes, cidrsOverlap, parseCidr, type Cidr, type Family } from "../../compiler/address.ts";

export type Mode = "auto" | "vxlan" | "direct";

/** Structurally agent/gossip/peers.ts's Peer (without `source`, which the plan ignores). */
export interface OverlayPeer {
  name: string;
  podCIDRs: string[];
  underlay: string;
  public?: string;
  vtepMac: string;
  site?: string;
}

export interface SelfInfo {
  name: string;
  podCIDRs: string[];
  underlay: string;
  /** the CIDR of the underlay interface's address (its network) */
  underlaySubnet: string;
  underlayDev: string;
  underlayMtu: number;
  public?: string;
  site?: string;
  mode: Mode;
  vtepMac: string;
  /** the pod network (--cluster-cidr): a peer's pod CIDR outside it gets no route; empty: not checked */
  clusterCIDRs?: string[];
  /** the Service ranges: a peer's pod CIDR overlapping one gets no route */
  serviceCIDRs?: string[];
  /** addresses no peer's pod CIDR may hold (the API server's, the NATS servers'): routed into
   * the pod network they would cut this node off */
  protect?: string[];
}

/** How one pod CIDR of a peer is reached (one path per pod CIDR: a dual-stack peer on this
 * node's subnet is direct for IPv4 and VXLAN for IPv6). */
export interface PeerPath {
  peer: string;
  /** the pod CIDR; absent when the peer has none */
  cidr?: string;
  how: "direct" | "vxlan" | "none";
  /** the underlay address packets to this CIDR go to (direct: the next hop; vxlan: the outer destination) */
  endpoint?: string;
  why: string;
}

export { VXLAN_DEV, VXLAN_PORT } from "../sys/devices.ts";
import { VXLAN_DEV, VXLAN_PORT } from "../sys/devices.ts";
export const VXLAN_VNI = 1;

export interface VxlanSpec {
  name: typeof VXLAN_DEV;
  vni: number;
  port: typeof VXLAN_PORT;
  local: string;
  dev: string;
  mtu: number;
  mac: string;
  /** the network address of each own pod CIDR, as a /32 or /128 */
  addrs: string[];
}

export interface PlannedRoute {
  dst: string;
  via: string;
  dev: string;
  onlink: boolean;
}

export interface OverlayPlan {
  vxlan?: VxlanSpec;
  routes: PlannedRoute[];
  neighbours: Array<{ dev: typeof VXLAN_DEV; ip: string; mac: string }>;
  fdb: Array<{ dev: typeof VXLAN_DEV; mac: string; dst: string }>;
  paths: PeerPath[];
  podMtu: number;
}

/** Outer headers VXLAN adds: Ethernet 14 + VXLAN 8 + UDP 8 + IP (20 for IPv4, 40 for IPv6). */
export const vxlanOverhead = (underlay: Family) => (underlay === 4 ? 50 : 70);

const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** Why `mac` cannot be a VTEP's MAC, or undefined. */
function macProblem(mac: string): string | undefined {
  if (!MAC.test(mac)) return `VTEP MAC ${JSON.stringify(mac)} is not a lower-case aa:bb:cc:dd:ee:ff`;
  if (parseInt(mac.slice(0, 2), 16) & 1) return `VTEP MAC ${mac} is a multicast address`;
  if (mac === "00:00:00:00:00:00") return "VTEP MAC is all zeros";
  return undefined;
}

function familyOf(ip: string): Family | undefined {
  try {
    return addressFamily(ip);
  } catch {
    return undefined;
  }
}

/** Whether the address `ip` lies in `net`. */
function contains(net: Cidr, ip: string): boolean {
  if (familyOf(ip) !== net.family) return false;
  const bits = net.family === 4 ? 32 : 128;
  return cidrsOverlap(net, { family: net.family, bytes: addressBytes(ip), prefix: bits, text: `${ip}/${bits}` });
}

/** A pod CIDR's network address: what a node's VXLAN device holds as its address on the pod network. */
export const networkAddress = (c: Cidr) => addressFromBytes(c.bytes, 0, c.family);

/**
 * Pod CIDRs of different peers that overlap, keyed "<peer> <cidr>" with what they overlap.
 * Per family, sorted by first address; a sweep keeps the CIDR reaching furthest so far, and
 * any CIDR starting within it overlaps it (every overlapping pair is found this way or
 * through a CIDR between them), in n log n rather than n² for a thousand peers.
 */
function contestedCidrs(peers: readonly OverlayPeer[]): Map<string, string> {
  const out = new Map<string, string>();
  const all: Array<{ key: string; owner: string; text: string; family: Family; start: bigint; end: bigint }> = [];
  for (const p of peers) {
    for (const text of p.podCIDRs) {
      let c: Cidr;
      try {
        c = parseCidr(text);
      } catch {
        continue;
      }
      const bits = c.family === 4 ? 32 : 128;
      let start = 0n;
      for (const b of c.bytes) start = (start << 8n) | BigInt(b);
      all.push({ key: `${p.name} ${text}`, owner: p.name, text, family: c.family, start, end: start + (1n << BigInt(bits - c.prefix)) - 1n });
    }
  }
  all.sort((a, b) => a.family - b.family || (a.start < b.start ? -1 : a.start > b.start ? 1 : b.end > a.end ? 1 : b.end < a.end ? -1 : 0));
  let reach: (typeof all)[number] | undefined;
  for (const x of all) {
    if (reach && reach.family === x.family && x.start <= reach.end && reach.owner !== x.owner) {
      out.set(x.key, `${reach.text} of ${reach.owner}`);
      if (!out.has(reach.key)) out.set(reach.key, `${x.text} of ${x.owner}`);
    }
    if (!reach || reach.family !== x.family || x.end > reach.end) reach = x;
  }
  return out;
}

export function planOverlay(self: SelfInfo, peers: readonly OverlayPeer[]): OverlayPlan {
  const uFamily = addressFamily(self.underlay);
  const subnet = parseCidr(self.underlaySubnet);
  if (subnet.family !== uFamily || !contains(subnet, self.underlay)) {
    throw new Error(`underlay address ${self.underlay} is not in the underlay subnet ${self.underlaySubnet}`);
  }
  const selfMac = macProblem(self.vtepMac);
  if (selfMac) throw new Error(`this node's ${selfMac}`);
  const own = self.podCIDRs.map((c) => parseCidr(c));
  const overhead = vxlanOverhead(uFamily);
  const plan: OverlayPlan = { routes: [], neighbours: [], fdb: [], paths: [], podMtu: self.mode === "direct" ? self.underlayMtu : self.underlayMtu - overhead };
  if (self.mode !== "direct") {
    plan.vxlan = {
      name: VXLAN_DEV,
      vni: VXLAN_VNI,
      port: VXLAN_PORT,
      local: self.underlay,
      dev: self.underlayDev,
      mtu: self.underlayMtu - overhead,
      mac: self.vtepMac,
      addrs: own.map((c) => `${networkAddress(c)}/${c.family === 4 ? 32 : 128}`),
    };
  }

  /** the MACs given out */
  const macs = new Map<string, string>([[self.vtepMac, `this node (${self.name})`]]);
  const sorted = [...peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seen = new Set<string>();
  const cluster = (self.clusterCIDRs ?? []).map((c) => parseCidr(c));
  const services = (self.serviceCIDRs ?? []).map((c) => parseCidr(c));
  // what a pod CIDR must not hold: where this node and its peers are reached (a route there
  // into the tunnel would loop the tunnel's own packets), and what the node must keep reaching
  const endpoints = [
    ...[self.underlay, ...(self.public ? [self.public] : []), ...(self.protect ?? [])].map((ip) => ({ ip, what: ip === self.underlay ? "this node's underlay address" : ip === self.public ? "this node's public address" : "an address this node must reach (API server, NATS)" })),
    ...sorted.flatMap((p) => [p.underlay, ...(p.public ? [p.public] : [])].map((ip) => ({ ip, what: `${p.name}'s address` }))),
  ];
  // pod CIDRs that two peers claim: neither gets a route (which one owns it is not known here)
  const contested = contestedCidrs(sorted);

  for (const p of sorted) {
    const none = (why: string, cidr?: string) => plan.paths.push({ peer: p.name, ...(cidr !== undefined ? { cidr } : {}), how: "none", why });
    if (p.name === self.name || seen.has(p.name)) {
      none(p.name === self.name ? "this node itself" : "a second peer of this name");
      continue;
    }
    seen.add(p.name);
    if (!p.podCIDRs.length) {
      none("no pod CIDR");
      continue;
    }
    const pFamily = familyOf(p.underlay);
    const pubFamily = p.public === undefined ? undefined : familyOf(p.public);
    const sameSite = (!!self.site && self.site === p.site) || (self.public !== undefined && self.public === p.public);
    const endpoint = sameSite || p.public === undefined ? p.underlay : p.public;
    const endpointFamily = endpoint === p.underlay ? pFamily : pubFamily;
    const where = sameSite ? "same site" : p.public === undefined ? "no public address" : "other site";
    let fdbDone = false;

    for (const text of p.podCIDRs) {
      let cidr: Cidr;
      try {
        cidr = parseCidr(text);
      } catch (e) {
        none(`pod CIDR: ${(e as Error).message}`, text);
        continue;
      }
      // (overlaps between peers are contested, below)
      const clash = own.find((c) => cidrsOverlap(c, cidr));
      if (clash) {
        none(`pod CIDR ${text} overlaps ${clash.text} of this node (${self.name})`, text);
        continue;
      }
      const rival = contested.get(`${p.name} ${text}`);
      if (rival) {
        none(`pod CIDR ${text} overlaps ${rival}: neither is routed`, text);
        continue;
      }
      const net = cluster.filter((c) => c.family === cidr.family);
      if (net.length && !net.some((c) => c.prefix <= cidr.prefix && cidrsOverlap(c, cidr))) {
        none(`pod CIDR ${text} is outside the pod network ${net.map((c) => c.text).join(", ")}`, text);
        continue;
      }
      const svc = services.find((c) => cidrsOverlap(c, cidr));
      if (svc) {
        none(`pod CIDR ${text} overlaps the Service range ${svc.text}`, text);
        continue;
      }
      if (cidrsOverlap(subnet, cidr)) {
        none(`pod CIDR ${text} overlaps this node's underlay subnet ${self.underlaySubnet}`, text);
        continue;
      }
      const held = endpoints.find((e) => contains(cidr, e.ip));
      if (held) {
        none(`pod CIDR ${text} holds ${held.ip}, ${held.what}`, text);
        continue;
      }
      if (pFamily === undefined) {
        none(`underlay address ${JSON.stringify(p.underlay)} is not an IP address`, text);
        continue;
      }
      const onLink = endpoint === p.underlay && pFamily === uFamily && contains(subnet, p.underlay) && p.underlay !== self.underlay;
      if (self.mode !== "vxlan" && onLink && cidr.family === uFamily) {
        plan.routes.push({ dst: text, via: p.underlay, dev: self.underlayDev, onlink: false });
        plan.paths.push({ peer: p.name, cidr: text, how: "direct", endpoint: p.underlay, why: `${where}, ${p.underlay} is on ${self.underlaySubnet}` });
        continue;
      }
      if (self.mode === "direct") {
        none(cidr.family !== uFamily ? `mode direct: an IPv${cidr.family} pod CIDR cannot be routed over an IPv${uFamily} underlay without VXLAN` : `mode direct: ${endpoint} is not on ${self.underlaySubnet}`, text);
        continue;
      }
      if (endpointFamily !== uFamily) {
        none(endpointFamily === undefined ? `endpoint ${JSON.stringify(endpoint)} is not an IP address` : `endpoint ${endpoint} is IPv${endpointFamily}, this node's underlay is IPv${uFamily}`, text);
        continue;
      }
      if (endpoint === self.underlay) {
        none(`endpoint ${endpoint} is this node's own underlay address`, text);
        continue;
      }
      const macBad = macProblem(p.vtepMac);
      if (macBad) {
        none(macBad, text);
        continue;
      }
      const macOwner = macs.get(p.vtepMac);
      if (macOwner !== undefined && macOwner !== p.name) {
        none(`VTEP MAC ${p.vtepMac} is already ${macOwner}'s`, text);
        continue;
      }
      macs.set(p.vtepMac, p.name);
      const gw = networkAddress(cidr);
      plan.routes.push({ dst: text, via: gw, dev: VXLAN_DEV, onlink: true });
      plan.neighbours.push({ dev: VXLAN_DEV, ip: gw, mac: p.vtepMac });
      if (!fdbDone) plan.fdb.push({ dev: VXLAN_DEV, mac: p.vtepMac, dst: endpoint });
      fdbDone = true;
      const why = self.mode === "vxlan" ? "mode vxlan" : endpoint !== p.underlay ? `${where}: to its public address` : cidr.family !== uFamily ? `IPv${cidr.family} pod CIDR over an IPv${uFamily} underlay` : `${where}, ${p.underlay} is not on ${self.underlaySubnet}`;
      plan.paths.push({ peer: p.name, cidr: text, how: "vxlan", endpoint, why });
    }
  }
  return plan;
}
