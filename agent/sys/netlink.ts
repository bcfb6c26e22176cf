// A small rtnetlink client over bun:ffi: the handful of link, address, route and neighbour
// requests pod wiring needs, sent in-process. Each `ip` exec it replaces costs a CNI ADD or
// DEL several milliseconds (measured: 6-8 ms per exec in-process, against well under 1 ms
// for the request), and a CNI exec's time is what kubelet waits for.
//
// A socket serves the namespace it was opened in. To reach a pod's namespace the opening
// thread enters it for the one socket() call and returns at once, synchronously, as the
// reference plugins do with a locked OS thread; nothing else runs on that thread meanwhile.
import { closeSync, openSync } from "node:fs";
import { dlopen, FFIType, ptr } from "bun:ffi";
import ipaddr from "ipaddr.js";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETTABLE = 1;
const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_USERDATA = 6;
const NFPROTO: Record<string, number> = { inet: 1, ip: 2, ip6: 10 };
const CLONE_NEWNET = 0x40000000;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const RTM_NEWNEIGH = 28;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFF_UP = 1;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NUD_PERMANENT = 0x80;

const ERRNO: Record<number, string> = { 1: "EPERM", 2: "ENOENT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL", 23: "ENFILE", 34: "ERANGE", 95: "EOPNOTSUPP", 101: "ENETUNREACH" };
const SOL_SOCKET = 1;
const SO_SNDBUFFORCE = 32;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;

let libc: ReturnType<typeof openLibc> | undefined;
function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  }).symbols;
}

export class NetlinkError extends Error {
  constructor(readonly what: string, readonly errno: number) {
    super(`${what}: ${ERRNO[errno] ?? `errno ${errno}`}`);
    this.name = "NetlinkError";
  }
}

/** Builds one netlink message: a fixed header struct followed by attributes. */
class Msg {
  private readonly parts: Uint8Array[] = [];
  constructor(readonly type: number, readonly flags: number, head: Uint8Array) {
    this.parts.push(head);
  }
  attr(type: number, payload: Uint8Array): this {
    this.parts.push(rtattr(type, payload));
    return this;
  }
  bytes(seq: number): Uint8Array {
    const body = concat(this.parts);
    const out = new Uint8Array(16 + body.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, out.length, true);
    dv.setUint16(4, this.type, true);
    dv.setUint16(6, this.flags | NLM_F_REQUEST | NLM_F_ACK, true);
    dv.setUint32(8, seq, true);
    out.set(body, 16);
    return out;
  }
}

const align4 = (n: number) => (n + 3) & ~3;

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function rtattr(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(align4(4 + payload.length));
  const dv = new DataView(out.buffer);
  dv.setUint16(0, 4 + payload.length, true);
  dv.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

const cstr = (s: string) => new TextEncoder().encode(`${s}\0`);
const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};
export const macBytes = (mac: string) => Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16)));

/** An IP address in network byte order, and its family. */
export function ipBytes(ip: string): { family: 4 | 6; bytes: Uint8Array } {
  const a = ipaddr.parse(ip);
  return { family: a.kind() === "ipv4" ? 4 : 6, bytes: Uint8Array.from(a.toByteArray()) };
}
const AF = (f: 4 | 6) => (f === 4 ? 2 : 10);

function ifinfomsg(index: number, flags: number, change: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setInt32(4, index, true);
  dv.setUint32(8, flags, true);
  dv.setUint32(12, change, true);
  return b;
}

export class Netlink {
  private seq = 1;
  private readonly buf = new Uint8Array(65536);
  private constructor(private readonly fd: number) {}

  /** A netfilter (nftables) netlink socket in the caller's namespace or the one at `netnsPath`. */
  static openNetfilter(netnsPath?: string): Netlink {
    return Netlink.open(netnsPath, NETLINK_NETFILTER);
  }

  /** A socket in the namespace at `netnsPath`, or in the caller's when undefined. */
  static open(netnsPath?: string, protocol = NETLINK_ROUTE): Netlink {
    libc ??= openLibc();
    if (!netnsPath) return new Netlink(Netlink.socket(protocol));
    const target = openSync(netnsPath, "r");
    const home = openSync("/proc/thread-self/ns/net", "r");
    try {
      if (libc.setns(target, CLONE_NEWNET) !== 0) throw new Error(`cannot enter network namespace ${netnsPath}`);
      try {
        return new Netlink(Netlink.socket(protocol));
      } finally {
        if (libc.setns(home, CLONE_NEWNET) !== 0) {
          // Staying in the pod's namespace would misdirect everything after this: stop here.
          process.stderr.write(`skein: cannot return from network namespace ${netnsPath}; aborting\n`);
          process.exit(70);
        }
      }
    } finally {
      closeSync(target);
      closeSync(home);
    }
  }

  private static socket(protocol = NETLINK_ROUTE): number {
    const fd = libc!.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new Error("cannot open a netlink socket");
    return fd;
  }

  close(): void {
    libc!.close(this.fd);
  }

  /** Sends one request and waits for its ack; returns the replies before the ack. */
  private request(what: string, m: Msg): Uint8Array[] {
    const seq = this.seq++;
    const bytes = m.bytes(seq);
    if (Number(libc!.send(this.fd, ptr(bytes), bytes.length, 0)) !== bytes.length) throw new Error(`${what}: netlink send failed`);
    const replies: Uint8Array[] = [];
    this.receive(what, (type, msgSeq, off, len, dv) => {
      if (msgSeq !== seq) return false;
      if (type === NLMSG_ERROR) {
        const err = -dv.getInt32(off + 16, true);
        if (err !== 0) throw new NetlinkError(what, err);
        return true;
      }
      replies.push(this.buf.slice(off, off + len));
      return false;
    });
    return replies;
  }

  /** Reads messages and hands each to `visit` until it says the exchange is over. */
  private receive(what: string, visit: (type: number, seq: number, off: number, len: number, dv: DataView) => boolean): void {
    for (;;) {
      const n = Number(libc!.recv(this.fd, ptr(this.buf), this.buf.length, 0));
      if (n <= 0) throw new Error(`${what}: netlink recv failed`);
      const dv = new DataView(this.buf.buffer, 0, n);
      for (let off = 0; off + 16 <= n; ) {
        const len = dv.getUint32(off, true);
        if (visit(dv.getUint16(off + 4, true), dv.getUint32(off + 8, true), off, len, dv)) return;
        if (len < 16) break;
        off += align4(len);
      }
    }
  }

  /**
   * Sends an nftables batch (agent/datapath/nfnl.ts) as one message and waits for the ack of
   * its last message. The kernel applies a batch whole or not at all; a refused one is
   * reported with what its first failing message did. Root may size the socket's send buffer
   * to the batch, so a million ring slots go in one send.
   */
  sendBatch(b: { bytes: Uint8Array; what: Map<number, string>; lastSeq: number }): void {
    const size = new Int32Array([Math.min(0x7fffffff, b.bytes.length + 65536)]);
    libc!.setsockopt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, ptr(size), 4);
    const one = new Int32Array([1]);
    libc!.setsockopt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, ptr(one), 4); // errors without the echoed request
    const sent = Number(libc!.send(this.fd, ptr(b.bytes), b.bytes.length, 0));
    if (sent !== b.bytes.length) throw new Error(`nftables batch of ${b.bytes.length} bytes: netlink send failed (${sent})`);
    let failure: NetlinkError | undefined;
    this.receive("nftables batch", (type, seq, off, _len, dv) => {
      if (type !== NLMSG_ERROR) return false;
      const err = -dv.getInt32(off + 16, true);
      if (err !== 0) failure ??= new NetlinkError(`nftables refused the batch at "${b.what.get(seq) ?? `message ${seq}`}"`, err);
      return seq === b.lastSeq;
    });
    if (failure) throw failure;
  }

  /**
   * The user data (where nft keeps a table's comment) of an nftables table, or undefined when
   * the table does not exist. One request: far cheaper than loading libnftables to ask.
   */
  tableUserdata(family: "inet" | "ip" | "ip6", name: string): Uint8Array | undefined {
    const head = new Uint8Array(4);
    head[0] = NFPROTO[family]!;
    let replies: Uint8Array[];
    try {
      replies = this.request(`look up table ${family} ${name}`, new Msg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, 0, head).attr(NFTA_TABLE_NAME, cstr(name)));
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 2) return undefined;
      throw e;
    }
    const r = replies[0];
    if (!r) return undefined;
    const dv = new DataView(r.buffer);
    for (let off = 16 + 4; off + 4 <= r.length; ) {
      const len = dv.getUint16(off, true);
      if (len < 4) break;
      if ((dv.getUint16(off + 2, true) & 0x3fff) === NFTA_TABLE_USERDATA) return r.slice(off + 4, off + len);
      off += align4(len);
    }
    return new Uint8Array(0);
  }

  index(name: string): number {
    const replies = this.request(`look up ${name}`, new Msg(RTM_GETLINK, 0, ifinfomsg(0, 0, 0)).attr(IFLA_IFNAME, cstr(name)));
    const r = replies[0];
    if (!r) throw new NetlinkError(`look up ${name}`, 19);
    return new DataView(r.buffer).getInt32(16 + 4, true);
  }

  addVeth(o: { name: string; mac: string; mtu: number; peer: { name: string; mac: string; mtu: number; netnsPath: string } }): void {
    const nsfd = openSync(o.peer.netnsPath, "r");
    try {
      const peer = concat([
        ifinfomsg(0, 0, 0),
        rtattr(IFLA_IFNAME, cstr(o.peer.name)),
        rtattr(IFLA_ADDRESS, macBytes(o.peer.mac)),
        rtattr(IFLA_MTU, u32(o.peer.mtu)),
        rtattr(IFLA_NET_NS_FD, u32(nsfd)),
      ]);
      const linkinfo = concat([rtattr(IFLA_INFO_KIND, cstr("veth")), rtattr(IFLA_INFO_DATA, rtattr(VETH_INFO_PEER, peer))]);
      this.request(
        `create veth ${o.name}`,
        new Msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg(0, 0, 0))
          .attr(IFLA_IFNAME, cstr(o.name))
          .attr(IFLA_ADDRESS, macBytes(o.mac))
          .attr(IFLA_MTU, u32(o.mtu))
          .attr(IFLA_LINKINFO, linkinfo),
      );
    } finally {
      closeSync(nsfd);
    }
  }

  setUp(name: string): void {
    this.request(`set ${name} up`, new Msg(RTM_NEWLINK, 0, ifinfomsg(0, IFF_UP, IFF_UP)).attr(IFLA_IFNAME, cstr(name)));
  }

  /** Deletes a link by name; false when there was none. */
  deleteLink(name: string): boolean {
    try {
      this.request(`delete ${name}`, new Msg(RTM_DELLINK, 0, ifinfomsg(0, 0, 0)).attr(IFLA_IFNAME, cstr(name)));
      return true;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 19) return false;
      throw e;
    }
  }

  addAddress(dev: number, ip: string, prefix: number, nodad: boolean): void {
    const a = ipBytes(ip);
    const head = new Uint8Array(8);
    head[0] = AF(a.family);
    head[1] = prefix;
    head[2] = nodad ? IFA_F_NODAD : 0;
    new DataView(head.buffer).setUint32(4, dev, true);
    this.request(`add address ${ip}/${prefix}`, new Msg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, head).attr(IFA_LOCAL, a.bytes).attr(IFA_ADDRESS, a.bytes));
  }

  /** A main-table route; `dst` undefined is the default route. */
  replaceRoute(o: { family: 4 | 6; dst?: string; prefix: number; gateway?: string; dev: number; scopeLink?: boolean }): void {
    const head = new Uint8Array(12);
    head[0] = AF(o.family);
    head[1] = o.dst ? o.prefix : 0;
    head[4] = 254; // RT_TABLE_MAIN
    head[5] = 3; // RTPROT_BOOT, as `ip route` sets
    head[6] = o.scopeLink ? 253 : 0;
    head[7] = 1; // RTN_UNICAST
    const m = new Msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, head);
    if (o.dst) m.attr(RTA_DST, ipBytes(o.dst).bytes);
    if (o.gateway) m.attr(RTA_GATEWAY, ipBytes(o.gateway).bytes);
    m.attr(RTA_OIF, u32(o.dev));
    this.request(`route ${o.dst ?? "default"}${o.gateway ? ` via ${o.gateway}` : ""}`, m);
  }

  replacePermanentNeighbour(dev: number, ip: string, mac: string): void {
    const a = ipBytes(ip);
    const head = new Uint8Array(12);
    const dv = new DataView(head.buffer);
    head[0] = AF(a.family);
    dv.setInt32(4, dev, true);
    dv.setUint16(8, NUD_PERMANENT, true);
    this.request(`neighbour ${ip}`, new Msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, head).attr(NDA_DST, a.bytes).attr(NDA_LLADDR, macBytes(mac)));
  }
}
