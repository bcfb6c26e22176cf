// A small rtnetlink client over bun:ffi: the handful of link, address, route and neighbour
// requests pod wiring needs, sent in-process. Each `ip` exec it replaces costs a CNI ADD or
// DEL milliseconds where the request itself costs a fraction of one (docs/measurements.md),
// and a CNI exec's time is what kubelet waits for.
//
// Every exchange ends: an error for any message ends the wait for it, replies are matched
// by sequence number (increasing per socket, so a late reply to an earlier exchange is never
// read as this one's), and the socket has a receive timeout, reported with the request it
// cut short. The socket itself (opening one in a namespace, errno) is nlsock.ts's.
import { closeSync, openSync } from "node:fs";
import { addressBytes } from "../../compiler/address.ts";
import {
  closeSocket,
  EAGAIN,
  EBADF,
  EINTR,
  EMSGSIZE,
  ENOBUFS,
  EPROTO,
  ETIMEDOUT,
  ethtoolValue,
  MSG_DONTWAIT,
  NETLINK_CAP_ACK,
  NETLINK_NETFILTER,
  NETLINK_ROUTE,
  NetlinkError,
  openSocket,
  receive,
  sendAll,
  setInt,
  setReceiveTimeout,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./nlsock.ts";
import { attrs, decodeNft, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, type NftGeneration } from "./nftmsg.ts";
import { AttrWriter, HOST_LE } from "./nlattr.ts";

export { NetlinkError } from "./nlsock.ts";

const NFT_MSG_GETTABLE = 1;
const NFT_MSG_GETGEN = 16;
const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_USERDATA = 6;
const NFPROTO: Record<string, number> = { inet: 1, ip: 2, ip6: 10 };

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
const NLMSG_NOOP = 1;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_NEWROUTE = 24;
export const RTM_NEWNEIGH = 28;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
export const IFF_UP = 1;

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_F_NODAD = 0x02;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NUD_PERMANENT = 0x80;

export interface RouteSpec {
  family: 4 | 6;
  dst?: string;
  prefix: number;
  gateway?: string;
  dev: number;
  scopeLink?: boolean;
}

/** One netlink request: its header, a fixed header struct, then attributes (nlattr.ts). */
export class Msg {
  readonly w = new AttrWriter(new Uint8Array(256));
  constructor(readonly type: number, readonly flags: number, head: Uint8Array) {
    this.w.zeros(16);
    this.w.raw(head);
  }
  attr(type: number, payload: Uint8Array): this {
    this.w.bytes(type, payload);
    return this;
  }
  str(type: number, s: string): this {
    this.w.str(type, s);
    return this;
  }
  u32(type: number, n: number): this {
    this.w.u32(type, n);
    return this;
  }
  /** An attribute holding what `body` writes (its own fixed header, attributes). */
  nest(type: number, body: (w: AttrWriter) => void): this {
    this.w.nest(type, () => body(this.w));
    return this;
  }
  bytes(seq: number): Uint8Array {
    const out = this.w.written();
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    dv.setUint32(0, out.length, true);
    dv.setUint16(4, this.type, true);
    dv.setUint16(6, this.flags | NLM_F_REQUEST | NLM_F_ACK, true);
    dv.setUint32(8, seq, true);
    return out;
  }
}

const align4 = (n: number) => (n + 3) & ~3;
export const macBytes = (mac: string) => Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16)));

/** An address message (ifaddrmsg, the address as local and address) for link `index`. */
export function addrMsg(type: number, flags: number, index: number, ip: string, prefix: number, nodad: boolean): Msg {
  const a = ipBytes(ip);
  const head = new Uint8Array(8);
  head[0] = AF(a.family);
  head[1] = prefix;
  head[2] = nodad ? IFA_F_NODAD : 0;
  new DataView(head.buffer).setUint32(4, index, HOST_LE);
  return new Msg(type, flags, head).attr(IFA_LOCAL, a.bytes).attr(IFA_ADDRESS, a.bytes);
}

/** A neighbour message's header (ndmsg) for link `index`. */
export function ndmsg(family: number, index: number, state: number, flags: number): Uint8Array {
  const head = new Uint8Array(12);
  const dv = new DataView(head.buffer);
  head[0] = family;
  dv.setInt32(4, index, HOST_LE);
  dv.setUint16(8, state, HOST_LE);
  head[10] = flags;
  return head;
}

/** An IP address in network byte order, and its family; read strictly (compiler/address.ts). */
export function ipBytes(ip: string): { family: 4 | 6; bytes: Uint8Array } {
  const b = addressBytes(ip);
  return { family: b.length === 4 ? 4 : 6, bytes: Uint8Array.from(b) };
}
export const AF = (f: 4 | 6) => (f === 4 ? 2 : 10);

export function ifinfomsg(index: number, flags = 0, change = 0): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setInt32(4, index, true);
  dv.setUint32(8, flags, true);
  dv.setUint32(12, change, true);
  return b;
}

export interface NetlinkOptions {
  /** how long a request waits for its answer, in ms */
  requestTimeoutMs?: number;
  /** how long an nftables batch waits for its answer once sent, in ms */
  batchTimeoutMs?: number;
}

/** An nftables batch: agent/datapath/nfnl.ts's Batch. */
export interface NftBatch {
  bytes: Uint8Array;
  /** what each message does, keyed by the sequence number the builder gave it (for errors) */
  what: Map<number, string>;
}

// Requests are answered within the send (the kernel handles them in the sender's system
// call) except dumps, which it fills as they are read; the timeouts only bound what a
// kernel that does not answer would otherwise make an endless wait.
const REQUEST_TIMEOUT_MS = 5_000;
const BATCH_TIMEOUT_MS = 10_000;
/** datagrams a drain reads at most: what an earlier exchange left is a few acks */
const DRAIN_MAX = 1024;

export class Netlink {
  private fd: number;
  /** the next sequence number: each exchange takes a range of its own */
  private seq = 1;
  private readonly buf = new Uint8Array(1 << 16);
  /** the receive timeout set on the socket (ms) */
  private timeoutMs = 0;
  private sndbuf = 0;
  private readonly requestTimeoutMs: number;
  private readonly batchTimeoutMs: number;

  private constructor(fd: number, o: NetlinkOptions) {
    this.fd = fd;
    this.requestTimeoutMs = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.batchTimeoutMs = o.batchTimeoutMs ?? BATCH_TIMEOUT_MS;
  }

  /** A netfilter (nftables) netlink socket in the caller's namespace or the one at `netnsPath`. */
  static openNetfilter(netnsPath?: string, o: NetlinkOptions = {}): Netlink {
    return Netlink.open(netnsPath, NETLINK_NETFILTER, o);
  }

  /** A socket in the namespace at `netnsPath`, or in the caller's when undefined. */
  static open(netnsPath?: string, protocol = NETLINK_ROUTE, o: NetlinkOptions = {}): Netlink {
    const fd = openSocket(protocol, netnsPath, (fd) => {
      // errors come back without the request they refuse: the ack of a 60 KB batch message
      // is then 36 bytes, not 60 KB
      const e = setInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
      if (e) throw new NetlinkError(`netlink socket${netnsPath ? ` in ${netnsPath}` : ""}: set NETLINK_CAP_ACK`, e);
    });
    return new Netlink(fd, o);
  }

  /** Closes the socket; closing again does nothing. */
  close(): void {
    if (this.fd < 0) return;
    closeSocket(this.fd);
    this.fd = -1;
  }

  private live(what: string): void {
    if (this.fd < 0) throw new NetlinkError(what, EBADF, "the netlink socket is closed");
  }

  /** Takes `n` consecutive sequence numbers; returns the first. 0 is never used: the
   * kernel's own messages carry it. */
  private take(n: number): number {
    if (this.seq + n > 0xffffffff) this.seq = 1;
    const first = this.seq;
    this.seq += n;
    return first;
  }

  private setTimeout(what: string, ms: number): void {
    if (ms === this.timeoutMs) return;
    const e = setReceiveTimeout(this.fd, ms);
    if (e) throw new NetlinkError(`${what}: set SO_RCVTIMEO`, e);
    this.timeoutMs = ms;
  }

  /**
   * Reads and drops whatever is queued: the rest of the answer to an exchange that ended on
   * its first error (the kernel queues a whole batch's answer before its send returns).
   * Anything a drain leaves is still told apart by its sequence number.
   */
  private drain(): void {
    for (let i = 0; i < DRAIN_MAX; i++) {
      const n = receive(this.fd, this.buf, MSG_DONTWAIT);
      // an overflow reported now concerns an exchange that has ended: read on
      if (n < 0 && n !== -ENOBUFS) return;
    }
  }

  /** Receives messages and hands each to `visit` until it says the exchange is over; `ms`
   * bounds the whole wait. */
  private receive(what: string, ms: number, visit: (type: number, seq: number, off: number, len: number, dv: DataView) => boolean): void {
    this.setTimeout(what, ms);
    const deadline = performance.now() + ms;
    const late = () => new NetlinkError(what, ETIMEDOUT, `no answer from the kernel within ${ms} ms`);
    for (;;) {
      const n = receive(this.fd, this.buf, 0, true);
      if (n === -EINTR) {
        // a signal: wait on, but only for what is left of the time
        const left = Math.ceil(deadline - performance.now());
        if (left <= 0) throw late();
        this.setTimeout(what, left);
        continue;
      }
      if (n === -EAGAIN) throw late();
      if (n === -ENOBUFS) throw new NetlinkError(what, ENOBUFS, "the kernel dropped replies: the socket's receive buffer overflowed");
      if (n < 0) throw new NetlinkError(what, -n);
      if (n > this.buf.length) throw new NetlinkError(what, EMSGSIZE, `a reply of ${n} bytes did not fit the ${this.buf.length}-byte buffer`);
      const dv = new DataView(this.buf.buffer, 0, n);
      for (let off = 0; off < n; ) {
        const len = n - off >= 16 ? dv.getUint32(off, true) : 0;
        if (len < 16 || len > n - off) throw new NetlinkError(what, EPROTO, `a malformed reply: a message of ${len} bytes at offset ${off} of ${n}`);
        if (visit(dv.getUint16(off + 4, true), dv.getUint32(off + 8, true), off, len, dv)) return;
        off += align4(len);
      }
      if (performance.now() > deadline) throw late();
    }
  }

  /** Sends one request and waits for its ack (or a dump's end); returns the replies before it
   * (each message whole, from its netlink header). rtnl.ts builds its requests on this. */
  request(what: string, m: Msg): Uint8Array[] {
    this.live(what);
    this.drain();
    const seq = this.take(1);
    sendAll(this.fd, m.bytes(seq), what);
    const replies: Uint8Array[] = [];
    this.receive(what, this.requestTimeoutMs, (type, msgSeq, off, len, dv) => {
      if (msgSeq !== seq || type === NLMSG_NOOP) return false;
      if (type === NLMSG_ERROR || type === NLMSG_DONE) {
        // an ack holds 0 or -errno, and so does the end of a dump that failed part-way (very
        // old kernels end a dump with the header alone)
        if (type === NLMSG_ERROR && len < 20) throw new NetlinkError(what, EPROTO, `a malformed ack of ${len} bytes`);
        const err = len >= 20 ? -dv.getInt32(off + 16, true) : 0;
        if (err !== 0) throw new NetlinkError(what, err);
        return true;
      }
      replies.push(this.buf.slice(off, off + len));
      return false;
    });
    return replies;
  }

  /**
   * Sends an nftables batch (agent/datapath/nfnl.ts) as one datagram and waits for its
   * answer. The kernel applies a batch whole or not at all. It answers with the ack the last
   * message asks for, or with errors: for the batch header alone (no CAP_NET_ADMIN, an
   * unknown subsystem, no memory to start), for each message it refused (the rest of the
   * batch is then aborted, but still answered), or for the first message when the commit
   * itself failed. The first error is the batch's answer; what the kernel queued after it
   * is drained. The messages are numbered here from this socket's sequence (renumbered in
   * place, no copy); the builder's numbers only key `what`. Root may size the socket's send
   * buffer to the batch, so a million ring slots go in one send.
   */
  sendBatch(b: NftBatch): void {
    const what = "nftables batch";
    this.live(what);
    const bytes = b.bytes;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const offs: number[] = [];
    const given: number[] = [];
    let last = -1;
    for (let off = 0; off < bytes.length; ) {
      const len = bytes.length - off >= 16 ? dv.getUint32(off, true) : 0;
      if (len < 16 || len > bytes.length - off) throw new Error(`${what}: message ${offs.length + 1} has a bad length (${len} bytes at offset ${off} of ${bytes.length})`);
      const type = dv.getUint16(off + 4, true);
      if (type !== NFNL_MSG_BATCH_BEGIN && type !== NFNL_MSG_BATCH_END) last = offs.length;
      offs.push(off);
      given.push(dv.getUint32(off + 8, true));
      off += align4(len);
    }
    const typeOf = (i: number) => dv.getUint16(offs[i]! + 4, true);
    if (!offs.length || typeOf(0) !== NFNL_MSG_BATCH_BEGIN || typeOf(offs.length - 1) !== NFNL_MSG_BATCH_END) {
      throw new Error(`${what}: not a batch (it must begin with NFNL_MSG_BATCH_BEGIN and end with NFNL_MSG_BATCH_END)`);
    }
    if (last < 0) return; // an empty batch: nothing to apply, and no ack would come
    // the ack that ends a batch is the one its last real message asks for (none is sent for
    // the batch's end)
    const flagsAt = offs[last]! + 6;
    dv.setUint16(flagsAt, dv.getUint16(flagsAt, true) | NLM_F_ACK, true);
    const base = this.take(offs.length);
    for (let i = 0; i < offs.length; i++) dv.setUint32(offs[i]! + 8, base + i, true);
    const ackSeq = base + last;
    const label = (i: number) => {
      const t = typeOf(i);
      return t === NFNL_MSG_BATCH_BEGIN ? "its start (the batch header)" : t === NFNL_MSG_BATCH_END ? "its end" : (b.what.get(given[i]!) ?? `message ${i}`);
    };

    if (bytes.length + 65536 > this.sndbuf) {
      const size = Math.min(0x3fffffff, bytes.length + 65536);
      if (setInt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, size) === 0) this.sndbuf = size;
      // without CAP_NET_ADMIN: as much as net.core.wmem_max allows; a larger batch then fails its send with EMSGSIZE
      else setInt(this.fd, SOL_SOCKET, SO_SNDBUF, size);
    }
    this.drain();
    sendAll(this.fd, bytes, `${what} of ${bytes.length} bytes`);
    let failure: NetlinkError | undefined;
    this.receive(what, this.batchTimeoutMs, (type, seq, off, len, rdv) => {
      if (type !== NLMSG_ERROR || seq < base || seq >= base + offs.length) return false;
      if (len < 20) throw new NetlinkError(what, EPROTO, `a malformed ack of ${len} bytes`);
      const err = -rdv.getInt32(off + 16, true);
      if (err !== 0) {
        failure = new NetlinkError(`nftables refused the batch at "${label(seq - base)}"`, err);
        return true;
      }
      return seq === ackSeq;
    });
    if (failure) {
      this.drain();
      throw failure;
    }
  }

  /**
   * The ruleset's generation, with the pid and name the kernel gives the calling thread:
   * what it will report in the generation message of a transaction this thread commits (the
   * pid is the thread's in the initial pid namespace, so it differs from process.pid when
   * the agent runs in a pid namespace of its own).
   */
  generation(): NftGeneration {
    const what = "read the nftables generation";
    const head = new Uint8Array(4); // nfgenmsg: AF_UNSPEC, version 0, res_id 0
    for (const r of this.request(what, new Msg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, 0, head))) {
      const d = decodeNft(r, 0, r.length);
      if ("gen" in d) return d.gen;
    }
    throw new Error(`${what}: the kernel's answer held no generation`);
  }

  /**
   * An nftables dump: every object of NFT_MSG_<type> the kernel has in `family`, narrowed by
   * `attrs` (a table's name, a set's), each reply message whole. A dump the kernel says a
   * change interrupted (NLM_F_DUMP_INTR) is asked again, up to three times in all.
   */
  nftDump(what: string, type: number, family: "inet" | "ip" | "ip6", narrow: Array<[number, string]> = []): Uint8Array[] {
    for (let attempt = 1; ; attempt++) {
      const head = new Uint8Array(4);
      head[0] = NFPROTO[family]!;
      const m = new Msg((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_DUMP, head);
      for (const [t, v] of narrow) m.str(t, v);
      const replies = this.request(what, m);
      if (!replies.some((r) => new DataView(r.buffer, r.byteOffset).getUint16(6, true) & NLM_F_DUMP_INTR)) return replies;
      if (attempt >= 3) throw new Error(`${what}: the ruleset kept changing during the dump`);
    }
  }

  /** The ruleset's current generation id (NFT_MSG_GETGEN). */
  genid(): number {
    return this.generation().genid;
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
      replies = this.request(`look up table ${family} ${name}`, new Msg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, 0, head).str(NFTA_TABLE_NAME, name));
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 2) return undefined;
      throw e;
    }
    const r = replies[0];
    if (!r) return undefined;
    let userdata = new Uint8Array(0);
    attrs(r, 16 + 4, r.length, (type, at, end) => {
      if (type === NFTA_TABLE_USERDATA) userdata = r.slice(at, end);
    });
    return userdata;
  }

  index(name: string): number {
    const replies = this.request(`look up ${name}`, new Msg(RTM_GETLINK, 0, ifinfomsg(0, 0, 0)).str(IFLA_IFNAME, name));
    const r = replies[0];
    if (!r) throw new NetlinkError(`look up ${name}`, 19);
    return new DataView(r.buffer).getInt32(16 + 4, true);
  }

  addVeth(o: { name: string; mac: string; mtu: number; peer: { name: string; mac: string; mtu: number; netnsPath: string } }): void {
    const nsfd = openSync(o.peer.netnsPath, "r");
    try {
      this.request(
        `create veth ${o.name}`,
        new Msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg(0, 0, 0))
          .str(IFLA_IFNAME, o.name)
          .attr(IFLA_ADDRESS, macBytes(o.mac))
          .u32(IFLA_MTU, o.mtu)
          .nest(IFLA_LINKINFO, (w) => {
            w.str(IFLA_INFO_KIND, "veth");
            w.nest(IFLA_INFO_DATA, () =>
              w.nest(VETH_INFO_PEER, () => {
                w.raw(ifinfomsg(0, 0, 0));
                w.str(IFLA_IFNAME, o.peer.name);
                w.bytes(IFLA_ADDRESS, macBytes(o.peer.mac));
                w.u32(IFLA_MTU, o.peer.mtu);
                w.u32(IFLA_NET_NS_FD, nsfd);
              }),
            );
          }),
      );
    } finally {
      closeSync(nsfd);
    }
  }

  /** An ethtool get or set of one value (struct ethtool_value) on the link `name`, through this
   * socket, so in its namespace; the value read (or written). */
  ethtool(name: string, cmd: number, value = 0): number {
    this.live(`ethtool ${name}`);
    return ethtoolValue(this.fd, name, cmd, value);
  }

  setUp(name: string): void {
    this.request(`set ${name} up`, new Msg(RTM_NEWLINK, 0, ifinfomsg(0, IFF_UP, IFF_UP)).str(IFLA_IFNAME, name));
  }

  /** Deletes a link by name; false when there was none. */
  deleteLink(name: string): boolean {
    try {
      this.request(`delete ${name}`, new Msg(RTM_DELLINK, 0, ifinfomsg(0, 0, 0)).str(IFLA_IFNAME, name));
      return true;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 19) return false;
      throw e;
    }
  }

  addAddress(dev: number, ip: string, prefix: number, nodad: boolean): void {
    this.request(`add address ${ip}/${prefix}`, addrMsg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, dev, ip, prefix, nodad));
  }

  /** A main-table route, replacing one to the same destination; `dst` undefined is the default route. */
  replaceRoute(o: RouteSpec): void {
    this.newRoute(o, NLM_F_CREATE | NLM_F_REPLACE);
  }

  /** A main-table route unless one to the same destination exists: false then, and that one stays. */
  addRouteIfAbsent(o: RouteSpec): boolean {
    try {
      this.newRoute(o, NLM_F_CREATE | NLM_F_EXCL);
      return true;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 17) return false;
      throw e;
    }
  }

  private newRoute(o: RouteSpec, flags: number): void {
    const head = new Uint8Array(12);
    head[0] = AF(o.family);
    head[1] = o.dst ? o.prefix : 0;
    head[4] = 254; // RT_TABLE_MAIN
    head[5] = 3; // RTPROT_BOOT, as `ip route` sets
    head[6] = o.scopeLink ? 253 : 0;
    head[7] = 1; // RTN_UNICAST
    const m = new Msg(RTM_NEWROUTE, flags, head);
    if (o.dst) m.attr(RTA_DST, ipBytes(o.dst).bytes);
    if (o.gateway) m.attr(RTA_GATEWAY, ipBytes(o.gateway).bytes);
    m.u32(RTA_OIF, o.dev);
    this.request(`route ${o.dst ?? "default"}${o.gateway ? ` via ${o.gateway}` : ""}`, m);
  }

  /** A permanent neighbour entry ip → mac on link `dev`, replacing any for that address. */
  replacePermanentNeighbour(dev: number, ip: string, mac: string): void {
    const a = ipBytes(ip);
    this.request(`neighbour ${ip} lladdr ${mac}`, new Msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ndmsg(AF(a.family), dev, NUD_PERMANENT, 0)).attr(NDA_DST, a.bytes).attr(NDA_LLADDR, macBytes(mac)));
  }
}
