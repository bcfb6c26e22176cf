// The rtnetlink requests and messages of the overlay (agent/overlay/overlay.ts): a VXLAN link,
// addresses, routes with a protocol of their own, permanent neighbours and FDB entries, read
// back by dumps and heard as notifications (rtevents.ts). Requests go through netlink.ts's one
// client; this file only writes their bodies and reads what the kernel answers.
//
// Decoding is bounded and never throws: a message the kernel (or a future kernel) sends that
// does not parse is undefined, as are the kinds the overlay does not read; the overlay's
// periodic comparison reads the kernel anew whatever a notification said.
import { addressFromBytes } from "../../compiler/address.ts";
import { HOST_LE, type AttrWriter } from "./nlattr.ts";
import {
  AF,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  ifinfomsg,
  ipBytes,
  macBytes,
  Msg,
  NDA_DST,
  NDA_LLADDR,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  addrMsg,
  ndmsg,
  type Netlink,
} from "./netlink.ts";
import { attrs, str } from "./nftmsg.ts";

export { IFF_UP, NUD_PERMANENT, RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_NEWADDR, RTM_NEWNEIGH };

/** skein's rtm_protocol ('V'): what marks a route as skein's, in dumps and for deletion. */
export { RTPROT_SKEIN } from "./devices.ts";
export const RT_TABLE_MAIN = 254;

export const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
export const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
export const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;

const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_GROUP = 2;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_GROUP6 = 16;
const IFLA_VXLAN_LOCAL6 = 17;

const IFLA_LINK_NETNSID = 37;

const RTA_PRIORITY = 6;
const RTA_TABLE = 15;
export const RTNH_F_ONLINK = 4;
const RTN_UNICAST = 1;

export const NTF_SELF = 0x02;

export interface VxlanInfo {
  id?: number;
  local?: string;
  /** the underlay link's index */
  link?: number;
  port?: number;
  learning?: boolean;
  /** a multicast group or a default remote (IFLA_VXLAN_GROUP/GROUP6), when set */
  group?: string;
}

export interface LinkMsg {
  kind: "link";
  deleted: boolean;
  index: number;
  flags: number;
  name?: string;
  mtu?: number;
  mac?: string;
  /** IFLA_INFO_KIND */
  type?: string;
  vxlan?: VxlanInfo;
  /** IFLA_LINK_NETNSID: the namespace of the link's peer (a veth's other end), when not this one */
  netnsid?: number;
}

export interface AddrMsg {
  kind: "addr";
  deleted: boolean;
  family: 4 | 6;
  index: number;
  prefix: number;
  address?: string;
}

export interface RouteMsg {
  kind: "route";
  deleted: boolean;
  family: 4 | 6;
  /** "a.b.c.d/n" or "x::/n" (the default route is 0.0.0.0/0, ::/0) */
  dst: string;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  gateway?: string;
  oif?: number;
  priority?: number;
}

export interface NeighMsg {
  kind: "neigh";
  deleted: boolean;
  /** 4, 6, or "bridge" (an FDB entry) */
  family: 4 | 6 | "bridge";
  index: number;
  state: number;
  flags: number;
  /** the IP address (a neighbour) or the remote's (an FDB entry of a VXLAN device) */
  ip?: string;
  mac?: string;
}

export type RtMsg = LinkMsg | AddrMsg | RouteMsg | NeighMsg;

const macText = (b: Uint8Array, at: number, end: number) =>
  end - at === 6 ? Array.from(b.subarray(at, end), (x) => x.toString(16).padStart(2, "0")).join(":") : undefined;

function ipText(b: Uint8Array, at: number, end: number): string | undefined {
  if (end - at === 4) return addressFromBytes(b, at, 4);
  if (end - at === 16) return addressFromBytes(b, at, 6);
  return undefined;
}

const familyOf = (af: number): 4 | 6 | undefined => (af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined);

/**
 * The rtnetlink message at b[at, at+len) (len from its netlink header) as far as the overlay
 * reads it; undefined for other message types, families, and anything malformed.
 */
export function decodeRt(b: Uint8Array, at = 0, len = b.length): RtMsg | undefined {
  if (len < 16 || at + len > b.length) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = dv.getUint16(at + 4, true);
  const end = at + len;
  const body = at + 16;
  const u32 = (o: number) => (HOST_LE ? dv.getUint32(o, true) : dv.getUint32(o, false));
  switch (type) {
    case RTM_NEWLINK:
    case RTM_DELLINK: {
      // other families' link messages are per-protocol state (IPv6's router solicitation,
      // a bridge port's): not the link itself
      if (len < 32 || b[body] !== 0) return undefined;
      const m: LinkMsg = { kind: "link", deleted: type === RTM_DELLINK, index: dv.getInt32(body + 4, HOST_LE), flags: u32(body + 8) };
      const ok = attrs(b, body + 16, end, (t, a, e) => {
        if (t === IFLA_IFNAME) m.name = str(b, a, e);
        else if (t === IFLA_MTU && e - a >= 4) m.mtu = u32(a);
        else if (t === IFLA_ADDRESS) m.mac = macText(b, a, e);
        else if (t === IFLA_LINK_NETNSID && e - a >= 4) m.netnsid = dv.getInt32(a, HOST_LE);
        else if (t === IFLA_LINKINFO)
          attrs(b, a, e, (it, ia, ie) => {
            if (it === IFLA_INFO_KIND) m.type = str(b, ia, ie);
            else if (it === IFLA_INFO_DATA) m.vxlan = vxlanInfo(b, dv, ia, ie, u32);
          });
      });
      if (!ok) return undefined;
      if (m.type !== "vxlan") delete m.vxlan;
      return m;
    }
    case RTM_NEWADDR:
    case RTM_DELADDR: {
      const family = familyOf(b[body]!);
      if (len < 24 || !family) return undefined;
      const m: AddrMsg = { kind: "addr", deleted: type === RTM_DELADDR, family, prefix: b[body + 1]!, index: u32(body + 4) };
      let local: string | undefined;
      const ok = attrs(b, body + 8, end, (t, a, e) => {
        if (t === IFA_ADDRESS) m.address = ipText(b, a, e);
        else if (t === IFA_LOCAL) local = ipText(b, a, e);
      });
      if (!ok) return undefined;
      // on a point-to-point link IFA_ADDRESS is the peer's; IFA_LOCAL is the address itself
      if (local) m.address = local;
      return m;
    }
    case RTM_NEWROUTE:
    case RTM_DELROUTE: {
      const family = familyOf(b[body]!);
      if (len < 28 || !family) return undefined;
      const prefix = b[body + 1]!;
      const m: RouteMsg = {
        kind: "route",
        deleted: type === RTM_DELROUTE,
        family,
        dst: `${family === 4 ? "0.0.0.0" : "::"}/${prefix}`,
        table: b[body + 4]!,
        protocol: b[body + 5]!,
        scope: b[body + 6]!,
        type: b[body + 7]!,
        flags: u32(body + 8),
      };
      const ok = attrs(b, body + 12, end, (t, a, e) => {
        if (t === RTA_DST) {
          const ip = ipText(b, a, e);
          if (ip) m.dst = `${ip}/${prefix}`;
        } else if (t === RTA_GATEWAY) m.gateway = ipText(b, a, e);
        else if (t === RTA_OIF && e - a >= 4) m.oif = u32(a);
        else if (t === RTA_TABLE && e - a >= 4) m.table = u32(a);
        else if (t === RTA_PRIORITY && e - a >= 4) m.priority = u32(a);
      });
      return ok ? m : undefined;
    }
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH: {
      const af = b[body]!;
      const family = af === AF_BRIDGE ? "bridge" : familyOf(af);
      if (len < 28 || !family) return undefined;
      const m: NeighMsg = { kind: "neigh", deleted: type === RTM_DELNEIGH, family, index: dv.getInt32(body + 4, HOST_LE), state: HOST_LE ? dv.getUint16(body + 8, true) : dv.getUint16(body + 8, false), flags: b[body + 10]! };
      const ok = attrs(b, body + 12, end, (t, a, e) => {
        if (t === NDA_DST) m.ip = ipText(b, a, e);
        else if (t === NDA_LLADDR) m.mac = macText(b, a, e);
      });
      return ok ? m : undefined;
    }
  }
  return undefined;
}

function vxlanInfo(b: Uint8Array, dv: DataView, from: number, to: number, u32: (o: number) => number): VxlanInfo {
  const v: VxlanInfo = {};
  const zero = (a: number, e: number) => b.subarray(a, e).every((x) => x === 0);
  attrs(b, from, to, (t, a, e) => {
    if (t === IFLA_VXLAN_ID && e - a >= 4) v.id = u32(a);
    else if (t === IFLA_VXLAN_LINK && e - a >= 4) v.link = u32(a);
    else if ((t === IFLA_VXLAN_LOCAL || t === IFLA_VXLAN_LOCAL6) && !zero(a, e)) v.local = ipText(b, a, e);
    else if ((t === IFLA_VXLAN_GROUP || t === IFLA_VXLAN_GROUP6) && !zero(a, e)) v.group = ipText(b, a, e);
    else if (t === IFLA_VXLAN_PORT && e - a >= 2) v.port = dv.getUint16(a, false);
    else if (t === IFLA_VXLAN_LEARNING && e - a >= 1) v.learning = b[a] !== 0;
  });
  return v;
}

/** Every message of a dump that decodes as `kind`. */
function dump<K extends RtMsg["kind"]>(nl: Netlink, what: string, type: number, head: Uint8Array, kind: K): Array<Extract<RtMsg, { kind: K }>> {
  const out: Array<Extract<RtMsg, { kind: K }>> = [];
  for (const r of nl.request(what, new Msg(type, NLM_F_DUMP, head))) {
    const m = decodeRt(r, 0, r.length);
    if (m?.kind === kind) out.push(m as Extract<RtMsg, { kind: K }>);
  }
  return out;
}

const isNoDevice = (e: unknown) => e instanceof NetlinkError && e.errno === 19;

/** The link called `name`, or undefined when there is none. */
export function getLink(nl: Netlink, name: string): LinkMsg | undefined {
  try {
    const r = nl.request(`look up link ${name}`, new Msg(RTM_GETLINK, 0, ifinfomsg(0)).str(IFLA_IFNAME, name))[0];
    const m = r && decodeRt(r);
    return m?.kind === "link" ? m : undefined;
  } catch (e) {
    if (isNoDevice(e)) return undefined;
    throw e;
  }
}

export interface VxlanLink {
  name: string;
  vni: number;
  port: number;
  local: string;
  /** the underlay link's index */
  link: number;
  mtu: number;
  mac: string;
}

/** Creates a VXLAN link without learning, group or default remote (every remote is an FDB entry). */
export function createVxlan(nl: Netlink, v: VxlanLink): void {
  const local = ipBytes(v.local);
  const port = new Uint8Array(2);
  new DataView(port.buffer).setUint16(0, v.port, false);
  nl.request(
    `create VXLAN link ${v.name}`,
    new Msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg(0))
      .str(IFLA_IFNAME, v.name)
      .attr(IFLA_ADDRESS, macBytes(v.mac))
      .u32(IFLA_MTU, v.mtu)
      .nest(IFLA_LINKINFO, (w: AttrWriter) => {
        w.str(IFLA_INFO_KIND, "vxlan");
        w.nest(IFLA_INFO_DATA, () => {
          w.u32(IFLA_VXLAN_ID, v.vni);
          w.bytes(local.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, local.bytes);
          w.u32(IFLA_VXLAN_LINK, v.link);
          w.bytes(IFLA_VXLAN_PORT, port);
          w.bytes(IFLA_VXLAN_LEARNING, Uint8Array.of(0));
        });
      }),
  );
}

/** Sets what is given of a link's MTU, MAC and up flag. */
export function setLink(nl: Netlink, index: number, o: { mtu?: number; mac?: string; up?: boolean }): void {
  const m = new Msg(RTM_NEWLINK, 0, o.up === undefined ? ifinfomsg(index) : ifinfomsg(index, o.up ? IFF_UP : 0, IFF_UP));
  if (o.mtu !== undefined) m.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) m.attr(IFLA_ADDRESS, macBytes(o.mac));
  nl.request(`set link ${index}${o.up ? " up" : ""}${o.mtu ? ` mtu ${o.mtu}` : ""}${o.mac ? ` address ${o.mac}` : ""}`, m);
}

/** Deletes the link `index`; false when it was already gone. */
export function deleteLinkIndex(nl: Netlink, index: number): boolean {
  try {
    nl.request(`delete link ${index}`, new Msg(RTM_DELLINK, 0, ifinfomsg(index)));
    return true;
  } catch (e) {
    if (isNoDevice(e)) return false;
    throw e;
  }
}

/** Every address of the namespace (both families). */
export function listAddresses(nl: Netlink): AddrMsg[] {
  return dump(nl, "list addresses", RTM_GETADDR, new Uint8Array(8), "addr");
}

/** The address and prefix of "ip/len". */
const splitCidr = (cidr: string): [string, number] => {
  const [ip, len] = cidr.split("/") as [string, string];
  return [ip, Number(len)];
};

/** Adds the address `cidr` ("ip/len") to link `index`, without duplicate address detection. */
export function addAddress(nl: Netlink, index: number, cidr: string): void {
  nl.addAddress(index, ...splitCidr(cidr), true);
}

export function deleteAddress(nl: Netlink, index: number, cidr: string): void {
  nl.request(`delete address ${cidr}`, addrMsg(RTM_DELADDR, 0, index, ...splitCidr(cidr), true));
}

/** The routes of one family in every table. */
export function listRoutes(nl: Netlink, family: 4 | 6): RouteMsg[] {
  const head = new Uint8Array(12);
  head[0] = AF(family);
  // a kernel without the family answers with every family's: only the one asked for counts
  return dump(nl, `list IPv${family} routes`, RTM_GETROUTE, head, "route").filter((r) => r.family === family);
}

export interface RouteWrite {
  /** "ip/len" */
  dst: string;
  gateway: string;
  oif: number;
  onlink: boolean;
  protocol: number;
}

function routeMsg(type: number, flags: number, dst: string, protocol: number, table: number, rtmFlags = 0): Msg {
  const [ip, len] = dst.split("/") as [string, string];
  const d = ipBytes(ip);
  const head = new Uint8Array(12);
  head[0] = AF(d.family);
  head[1] = Number(len);
  head[4] = table < 256 ? table : 0; // RT_TABLE_UNSPEC: RTA_TABLE names it
  head[5] = protocol;
  head[7] = RTN_UNICAST;
  new DataView(head.buffer).setUint32(8, rtmFlags, HOST_LE);
  const m = new Msg(type, flags, head).attr(RTA_DST, d.bytes);
  if (table >= 256) m.u32(RTA_TABLE, table);
  return m;
}

/**
 * A unicast route in the main table: created when no route to `dst` exists (EEXIST
 * otherwise), or with `replace` put in place of the one to the same destination and metric.
 */
export function writeRoute(nl: Netlink, r: RouteWrite, replace: boolean): void {
  const m = routeMsg(RTM_NEWROUTE, NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL), r.dst, r.protocol, RT_TABLE_MAIN, r.onlink ? RTNH_F_ONLINK : 0);
  m.attr(RTA_GATEWAY, ipBytes(r.gateway).bytes).u32(RTA_OIF, r.oif);
  nl.request(`route ${r.dst} via ${r.gateway}${r.onlink ? " onlink" : ""}`, m);
}

/** Deletes the main-table route to `dst` of `protocol` (the kernel matches the protocol, so
 * another owner's route to the same destination stays); false when there was none. */
export function deleteRoute(nl: Netlink, dst: string, protocol: number, table = RT_TABLE_MAIN): boolean {
  try {
    nl.request(`delete route ${dst}`, routeMsg(RTM_DELROUTE, 0, dst, protocol, table));
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && (e.errno === 3 || e.errno === 2)) return false; // ESRCH, ENOENT
    throw e;
  }
}

/** The neighbour entries of a family, or with "bridge" the FDB entries, of every link. */
export function listNeighbours(nl: Netlink, family: 4 | 6 | "bridge"): NeighMsg[] {
  const head = new Uint8Array(12);
  head[0] = family === "bridge" ? AF_BRIDGE : AF(family);
  return dump(nl, `list ${family === "bridge" ? "FDB entries" : `IPv${family} neighbours`}`, RTM_GETNEIGH, head, "neigh").filter((n) => n.family === family);
}

/** A permanent neighbour entry ip → mac on link `index`, replacing any for that address. */
export function writeNeighbour(nl: Netlink, index: number, ip: string, mac: string): void {
  nl.replacePermanentNeighbour(index, ip, mac);
}

const isGone = (e: unknown) => e instanceof NetlinkError && (e.errno === 2 || e.errno === 19 || e.errno === 99);

/** Deletes the neighbour entry for `ip` on link `index`; false when there was none. */
export function deleteNeighbour(nl: Netlink, index: number, ip: string): boolean {
  const a = ipBytes(ip);
  try {
    nl.request(`delete neighbour ${ip}`, new Msg(RTM_DELNEIGH, 0, ndmsg(AF(a.family), index, 0, 0)).attr(NDA_DST, a.bytes));
    return true;
  } catch (e) {
    if (isGone(e)) return false;
    throw e;
  }
}

/** A permanent FDB entry of the VXLAN link `index`: frames for `mac` go to `dst`; it
 * replaces the remote the entry had. */
export function writeFdb(nl: Netlink, index: number, mac: string, dst: string): void {
  nl.request(`FDB entry ${mac} dst ${dst}`, new Msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF)).attr(NDA_LLADDR, macBytes(mac)).attr(NDA_DST, ipBytes(dst).bytes));
}

/** Deletes the FDB entry `mac` → `dst` of link `index` (that remote only); false when there was none. */
export function deleteFdb(nl: Netlink, index: number, mac: string, dst?: string): boolean {
  const m = new Msg(RTM_DELNEIGH, 0, ndmsg(AF_BRIDGE, index, 0, NTF_SELF)).attr(NDA_LLADDR, macBytes(mac));
  if (dst) m.attr(NDA_DST, ipBytes(dst).bytes);
  try {
    nl.request(`delete FDB entry ${mac}${dst ? ` dst ${dst}` : ""}`, m);
    return true;
  } catch (e) {
    if (isGone(e)) return false;
    throw e;
  }
}

const ETHTOOL_GTXCSUM = 0x16;
const ETHTOOL_STXCSUM = 0x17;

/** Whether TX checksum offload is on for link `name`. */
export function txChecksum(nl: Netlink, name: string): boolean {
  return nl.ethtool(name, ETHTOOL_GTXCSUM) !== 0;
}

export function setTxChecksum(nl: Netlink, name: string, on: boolean): void {
  nl.ethtool(name, ETHTOOL_STXCSUM, on ? 1 : 0);
}

/** Every link of the namespace. */
export function listLinks(nl: Netlink): LinkMsg[] {
  return dump(nl, "list links", RTM_GETLINK, ifinfomsg(0), "link");
}
