// The netlink socket under netlink.ts (requests, nftables batches) and nfevents.ts (nftables
// change notifications), over bun:ffi: opening one in a network namespace, socket options,
// and receiving with the call's errno, so that a timeout, an interrupted call, a receive
// buffer overflow and a truncated message are each told apart instead of read as "failed".
//
// A socket serves the namespace it was opened in. To reach another namespace the opening
// thread enters it for the one socket() call and returns at once, synchronously, as the
// reference plugins do with a locked OS thread; nothing else runs on that thread meanwhile.
import { closeSync, openSync } from "node:fs";
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { HOST_LE } from "./nlattr.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const CLONE_NEWNET = 0x40000000;

export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;

export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20; // the 64-bit struct timeval on every 64-bit Linux
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_DROP_MEMBERSHIP = 2;
export const NETLINK_CAP_ACK = 10;

export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;

export const EINTR = 4;
export const EAGAIN = 11;
export const ENOBUFS = 105;
export const ETIMEDOUT = 110;
export const EMSGSIZE = 90;
export const EPROTO = 71;
export const EBADF = 9;

const ERRNO: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  34: "ERANGE",
  71: "EPROTO",
  85: "ERESTART",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
};
export const errnoName = (e: number) => ERRNO[e] ?? `errno ${e}`;

export class NetlinkError extends Error {
  constructor(
    readonly what: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${what}: ${detail ?? errnoName(errno)}`);
    this.name = "NetlinkError";
  }
}

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

let lib: ReturnType<typeof openLibc> | undefined;
/** errno of the calling (main) thread: its address is fixed for the thread's life */
let errnoAt: Pointer | undefined;

function libc(): ReturnType<typeof openLibc> {
  if (!lib) {
    lib = openLibc();
    errnoAt = lib.__errno_location() as Pointer;
  }
  return lib;
}

/** errno, read right after the call that failed (nothing between them touches it). */
const errno = () => read.i32(errnoAt!, 0);

/** Sets an integer socket option; the errno on failure. */
export function setInt(fd: number, level: number, opt: number, value: number): number {
  const v = new Int32Array([value]);
  return libc().setsockopt(fd, level, opt, ptr(v), 4) === 0 ? 0 : errno();
}

/** Binds the socket to a port the kernel picks; the errno on failure. */
export function bindAuto(fd: number): number {
  const sa = new Uint8Array(12); // sockaddr_nl: AF_NETLINK, pad, port 0 (the kernel picks), groups 0
  new DataView(sa.buffer).setUint16(0, AF_NETLINK, true);
  return libc().bind(fd, ptr(sa), sa.length) === 0 ? 0 : errno();
}

/** The socket's receive timeout: a blocking recv returns EAGAIN after it. */
export function setReceiveTimeout(fd: number, ms: number): number {
  const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
  return libc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, ptr(tv), 16) === 0 ? 0 : errno();
}

/**
 * A netlink socket of `protocol` in the caller's namespace or the one at `netnsPath`;
 * `setup` configures it, and the socket is closed again if setup (or anything else here)
 * throws, so no error path leaves a descriptor behind.
 */
export function openSocket(protocol: number, netnsPath: string | undefined, setup: (fd: number) => void): number {
  const c = libc();
  const fd = netnsPath ? socketIn(netnsPath, protocol) : newSocket(protocol);
  try {
    setup(fd);
  } catch (e) {
    c.close(fd);
    throw e;
  }
  return fd;
}

/**
 * A bound netlink socket of `protocol` that has joined the multicast `groups`, with a receive
 * buffer of `bufferBytes` (root may exceed net.core.rmem_max; others get what it allows), for
 * a listener that reads it without blocking (nfevents.ts, rtevents.ts).
 */
export function openListener(protocol: number, netnsPath: string | undefined, groups: number[], bufferBytes: number): number {
  const where = netnsPath ? ` in ${netnsPath}` : "";
  return openSocket(protocol, netnsPath, (fd) => {
    // bound, or it hears nothing: a notification excludes the port that asked for an echo,
    // which is 0 when none did, and 0 is an unbound socket's port (measured)
    const b = bindAuto(fd);
    if (b) throw new NetlinkError(`bind a netlink socket${where}`, b);
    if (setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bufferBytes)) setInt(fd, SOL_SOCKET, SO_RCVBUF, bufferBytes);
    for (const g of groups) {
      const e = setInt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g);
      if (e) throw new NetlinkError(`listen to netlink group ${g} (protocol ${protocol})${where}`, e);
    }
  });
}

function newSocket(protocol: number): number {
  const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new NetlinkError(`open a netlink socket (protocol ${protocol})`, errno());
  return fd;
}

function socketIn(netnsPath: string, protocol: number): number {
  const c = libc();
  const target = openSync(netnsPath, "r");
  try {
    const home = openSync("/proc/thread-self/ns/net", "r");
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new NetlinkError(`enter network namespace ${netnsPath}`, errno());
      let fd = -1;
      try {
        fd = newSocket(protocol);
      } finally {
        if (c.setns(home, CLONE_NEWNET) !== 0) {
          // Staying in the other namespace would misdirect everything after this: stop here.
          if (fd >= 0) c.close(fd);
          process.stderr.write(`skein: cannot return from network namespace ${netnsPath}; aborting\n`);
          process.exit(70);
        }
      }
      return fd;
    } finally {
      closeSync(home);
    }
  } finally {
    closeSync(target);
  }
}

const SIOCETHTOOL = 0x8946;
const IFNAMSIZ = 16;

/**
 * SIOCETHTOOL with a struct ethtool_value on `fd` (any socket: the kernel hands device ioctls
 * a socket family does not know to the device of that name in the socket's namespace); the
 * value the kernel leaves in it.
 */
export function ethtoolValue(fd: number, ifname: string, cmd: number, value: number): number {
  const name = new TextEncoder().encode(ifname);
  if (name.length >= IFNAMSIZ) throw new NetlinkError(`ethtool ${ifname}`, 22, "interface name too long");
  const ev = new Uint32Array([cmd, value]);
  const ifr = new Uint8Array(40); // struct ifreq: the name, then a union whose ifr_data points at `ev`
  ifr.set(name);
  new DataView(ifr.buffer).setBigUint64(IFNAMSIZ, BigInt(ptr(ev)), HOST_LE);
  if (libc().ioctl(fd, SIOCETHTOOL, ptr(ifr)) !== 0) throw new NetlinkError(`ethtool command ${cmd} on ${ifname}`, errno());
  return ev[1]!;
}

export function closeSocket(fd: number): void {
  libc().close(fd);
}

/** Sends one datagram whole; retried when interrupted. */
export function sendAll(fd: number, bytes: Uint8Array, what: string): void {
  const c = libc();
  for (;;) {
    const n = Number(c.send(fd, ptr(bytes), bytes.length, 0));
    if (n === bytes.length) return;
    const e = n < 0 ? errno() : 0;
    if (e === EINTR) continue;
    throw new NetlinkError(what, e, n < 0 ? `netlink send of ${bytes.length} bytes failed: ${errnoName(e)}` : `netlink send took ${n} of ${bytes.length} bytes`);
  }
}

/**
 * Receives one datagram into `buf`: its whole length (more than buf.length when it did not
 * fit: the rest is lost), or -errno (EAGAIN: nothing within the timeout, or nothing queued
 * with MSG_DONTWAIT; ENOBUFS: the kernel dropped messages for this socket). Interrupted
 * calls are retried, unless `interrupted` is set: -EINTR is then returned, for a caller that
 * bounds its whole wait (a retried call waits the socket's full timeout again).
 */
export function receive(fd: number, buf: Uint8Array, flags = 0, interrupted = false): number {
  const c = libc();
  for (;;) {
    const n = Number(c.recv(fd, ptr(buf), buf.length, flags | MSG_TRUNC));
    if (n >= 0) return n;
    const e = errno();
    if (e !== EINTR || interrupted) return -(e === 0 ? EAGAIN : e);
  }
}
