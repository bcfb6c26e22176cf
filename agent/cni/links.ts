// Side effects of pod wiring. Changes go through rtnetlink in-process (agent/sys/netlink.ts),
// or through `ip -batch` when SKEIN_NETLINK=off; reads, which only CHECK needs, use `ip -j`
// so CHECK compares structured state, not scraped text.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseIp, type Family } from "../ipam/cidr.ts";
import { ExecError, ipIn, run } from "../sys/exec.ts";
import { Netlink, NetlinkError } from "../sys/netlink.ts";
import { HOST_LE } from "../sys/nlattr.ts";
import { errnoName } from "../sys/nlsock.ts";
import { HOST_MAC, renderIpBatch, type LinkOp } from "./plan.ts";

const useNetlink = () => process.env.SKEIN_NETLINK !== "off";

/** errno values after which the same request may well succeed a moment later */
const TRANSIENT_CODE = new Set(["EINTR", "EAGAIN", "ENOMEM", "EBUSY", "ENFILE", "EMFILE", "ENOBUFS", "ETIMEDOUT"]);

/**
 * A failed change or read of the kernel's network state, in one line. `transient` says
 * whether trying again later may help (the CNI spec's code 11) rather than not (code 5).
 */
export class LinkError extends Error {
  constructor(
    msg: string,
    readonly transient: boolean,
  ) {
    super(msg);
    this.name = "LinkError";
  }
}

/** Classifies what netlink, a sysctl write or `ip` threw; a LinkError passes through. */
export function toLinkError(e: unknown): LinkError {
  if (e instanceof LinkError) return e;
  const msg = oneLine((e as Error)?.message ?? String(e));
  if (e instanceof NetlinkError) return new LinkError(msg, TRANSIENT_CODE.has(errnoName(e.errno)));
  const code = (e as { code?: unknown })?.code;
  return new LinkError(msg, typeof code === "string" && TRANSIENT_CODE.has(code));
}

export const oneLine = (s: string) => s.trim().replace(/\s*\n\s*/g, "; ");

function linkOp<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toLinkError(e);
  }
}

/** Whether the namespace at `netns` has a link named `name`. */
export function netnsLinkExists(netns: string, name: string): boolean {
  if (!useNetlink()) return run(ipIn(netns, ["link", "show", "dev", name]), { allowFail: true }).exitCode === 0;
  return linkOp(() => {
    const nl = Netlink.open(netns);
    try {
      nl.index(name);
      return true;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === 19) return false;
      throw e;
    } finally {
      nl.close();
    }
  });
}

/**
 * What already holds `ip` on this node, one phrase each, read from /proc/net (no exec, no
 * netlink dump): a host route to exactly it (another pod's veth, another network over the
 * same CIDR: ADD replaces such a route), an address of the node itself (a local route), or
 * a subnet connected to one of its interfaces (a route without gateway: the node's router
 * or a neighbour may have it). Wiring a pod to any of them would take it over.
 */
export function hostRoutesTo(ip: string, family: Family): string[] {
  return family === 4 ? holders4(parseIp(ip).value) : holders6(parseIp(ip).value);
}

/** An IPv4 address or mask of /proc/net/route: the kernel prints it as a host-order word. */
function hostWord(hex: string): number {
  const n = parseInt(hex, 16) >>> 0;
  return HOST_LE ? (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0 : n;
}

const RTF_GATEWAY = 0x2;
const RTF_REJECT = 0x200;
const inPrefix = (v: bigint, net: bigint, prefix: number, bits: number) => prefix === 0 || v >> BigInt(bits - prefix) === net >> BigInt(bits - prefix);
const prefixOfMask = (mask: number) => (mask === 0 ? 0 : 32 - Math.log2((~mask >>> 0) + 1));

function holders4(v: bigint): string[] {
  const found: string[] = [];
  for (const l of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
    const f = l.split("\t");
    if (f.length < 8 || f[0] === "*") continue; // "*": a blackhole route, no interface
    const dst = hostWord(f[1]!);
    const mask = hostWord(f[7]!);
    const flags = parseInt(f[3]!, 16);
    const prefix = prefixOfMask(mask);
    if (!inPrefix(v, BigInt(dst), prefix, 32)) continue;
    if (prefix === 32) found.push(`routed to ${f[0]} on this node`);
    // a default route without gateway (a point-to-point uplink) says nothing about the pod CIDR
    else if (prefix > 0 && !(flags & (RTF_GATEWAY | RTF_REJECT))) found.push(`inside ${addr4(dst)}/${prefix}, a subnet connected to ${f[0]} on this node`);
  }
  // The local table (addresses of the node) is not in /proc/net/route; fib_trie lists it:
  // a leaf "|-- A" followed by its routes, "/P host LOCAL" for a local one.
  let leaf: bigint | undefined;
  for (const l of readFileSync("/proc/net/fib_trie", "utf8").split("\n")) {
    const m = /^\s*\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(l);
    if (m) {
      leaf = parseIp(m[1]!).value;
      continue;
    }
    if (/^\s*[+A-Z]/.test(l)) leaf = undefined;
    const local = /^\s*\/(\d+) host LOCAL/.exec(l);
    if (local && leaf !== undefined && inPrefix(v, leaf, Number(local[1]), 32)) {
      found.push("an address of this node");
      break;
    }
  }
  return found;
}

const addr4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");

function holders6(v: bigint): string[] {
  if (!existsSync("/proc/net/ipv6_route")) return [];
  const found: string[] = [];
  // The file lists every table, `local` entries (an address of the node itself) included.
  for (const l of readFileSync("/proc/net/ipv6_route", "utf8").split("\n")) {
    const f = l.trim().split(/\s+/);
    if (f.length < 10) continue;
    const prefix = parseInt(f[1]!, 16);
    if (!inPrefix(v, BigInt(`0x${f[0]}`), prefix, 128)) continue;
    const flags = parseInt(f[8]!, 16);
    if (prefix === 128) found.push(`routed to ${f[9]} on this node`);
    else if (prefix > 0 && !(flags & (RTF_GATEWAY | RTF_REJECT)) && /^0+$/.test(f[4]!) && f[9] !== "lo") {
      found.push(`inside ${ipaddrText6(BigInt(`0x${f[0]}`))}/${prefix}, a subnet connected to ${f[9]} on this node`);
    }
  }
  return found;
}

/**
 * Whether the host link `name` is the one wired for `addrs` (a network's allocations of one
 * attachment): a host route to one of them goes through it, or it carries no host route at
 * all (an ADD that stopped before routing). Another network's attachment of the same
 * container id and interface has a link of the same name, routed to its own addresses: its
 * DEL or GC must not take that one.
 */
export function hostLinkServes(name: string, addrs: string[]): boolean {
  const via: bigint[] = [];
  for (const l of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
    const f = l.split("\t");
    if (f[0] === name && f[7] === "FFFFFFFF") via.push(BigInt(hostWord(f[1]!)));
  }
  if (existsSync("/proc/net/ipv6_route")) {
    for (const l of readFileSync("/proc/net/ipv6_route", "utf8").split("\n")) {
      const f = l.trim().split(/\s+/);
      if (f[9] === name && f[1] === "80") via.push(BigInt(`0x${f[0]}`));
    }
  }
  if (via.length === 0) return true;
  const wanted = new Set(addrs.map((a) => parseIp(a).value));
  return via.some((v) => wanted.has(v));
}

const ipaddrText6 = (n: bigint) => [...Array(8)].map((_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(":");

/** /proc/sys/net is this process's namespace's: a sysctl op can only be for the node. */
function writeSysctl(netns: string | undefined, o: Extract<LinkOp, { op: "sysctl" }>): void {
  if (netns) throw new Error(`sysctl ${o.key} can only be set in the node's namespace`);
  writeFileSync(`/proc/sys/net/${o.key}`, o.value);
}

/** Carries out ops in the namespace at `netns` (undefined: this process's). */
/** Applies `ops`; returns the families whose `keep` routes stayed another interface's (none made). */
export function applyOps(netns: string | undefined, ops: LinkOp[]): Set<Family> {
  return linkOp(() => (useNetlink() ? applyNetlink(netns, ops) : applyIp(netns, ops)));
}

function applyNetlink(netns: string | undefined, ops: LinkOp[]): Set<Family> {
  const nl = Netlink.open(netns);
  const yielded = new Set<Family>();
  const indexes = new Map<string, number>();
  const index = (dev: string) => {
    let i = indexes.get(dev);
    if (i === undefined) indexes.set(dev, (i = nl.index(dev)));
    return i;
  };
  try {
    for (const o of ops) {
      switch (o.op) {
        case "veth":
          nl.addVeth({ name: o.name, mac: o.mac, mtu: o.mtu, peer: o.peer });
          break;
        case "sysctl":
          writeSysctl(netns, o);
          break;
        case "up":
          nl.setUp(o.dev);
          break;
        case "addr":
          nl.addAddress(index(o.dev), o.ip, o.prefix, o.nodad);
          break;
        case "route": {
          const r = { family: o.family, dst: o.dst, prefix: o.prefix, gateway: o.gateway, dev: index(o.dev), scopeLink: o.scopeLink };
          if (!o.keep) nl.replaceRoute(r);
          // once one route of the family stays another interface's, so do the rest (the
          // default route's gateway is reachable only through that interface then)
          else if (!yielded.has(o.family) && !nl.addRouteIfAbsent(r)) yielded.add(o.family);
          break;
        }
        case "neigh":
          nl.replacePermanentNeighbour(index(o.dev), o.ip, o.mac);
          break;
      }
    }
    return yielded;
  } finally {
    nl.close();
  }
}

/** `ip -batch` runs of ops, with sysctl ops written between them. */
function applyIp(netns: string | undefined, ops: LinkOp[]): Set<Family> {
  let lines: string[] = [];
  const flush = () => {
    if (lines.length) run(ipIn(netns, ["-batch", "-"]), { stdin: lines.join("\n") + "\n" });
    lines = [];
  };
  // Routes that stay when one exists: their own batch, run on past failures (-force), where
  // "File exists" is the expected outcome and any other failure is an error.
  const kept = ops.filter((o) => o.op === "route" && o.keep);
  for (const o of ops) {
    if (kept.includes(o)) continue;
    const line = renderIpBatch(o);
    if (line !== undefined) {
      lines.push(line);
      continue;
    }
    if (o.op === "sysctl") {
      flush();
      writeSysctl(netns, o);
    }
  }
  flush();
  const yielded = new Set<Family>();
  if (kept.length) {
    const argv = ipIn(netns, ["-force", "-batch", "-"]);
    const r = run(argv, { stdin: kept.map((o) => renderIpBatch(o)).join("\n") + "\n", allowFail: true });
    if (r.exitCode === 0) return yielded;
    // ip prints what went wrong, then "Command failed -:N" for batch line N
    const failed = new Map<number, string>();
    let text: string[] = [];
    for (const l of r.stderr.split("\n").map((x) => x.trim())) {
      const m = /^Command failed -:(\d+)$/.exec(l);
      if (m) {
        failed.set(Number(m[1]), text.join(" "));
        text = [];
      } else if (l) text.push(l);
    }
    if (failed.size === 0) throw new ExecError(argv, r);
    kept.forEach((o, i) => {
      const why = failed.get(i + 1);
      if (why === undefined || o.op !== "route" || yielded.has(o.family)) return;
      if (/File exists/.test(why)) yielded.add(o.family);
      else throw new ExecError(argv, r);
    });
  }
  return yielded;
}

/** /proc/sys/net follows the calling process's network namespace (/sys does not under nsenter). */
export function hostLinkExists(name: string): boolean {
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`);
}

export function listHostLinks(): string[] {
  return readdirSync("/proc/sys/net/ipv4/conf").filter((n) => n !== "all" && n !== "default");
}

/** the form of hostVethName's names */
export const HOST_VETH_NAME = /^sk[0-9a-f]{13}$/;

/**
 * Why a link of the node's namespace whose name has the form of a host veth's is not one that
 * ADD made; undefined when it is. ADD makes a veth, gives its host side HOST_MAC and puts the
 * other end in the pod's namespace (the kernel then reports that end's namespace id): a link
 * short of any of these is someone else's, whatever its name.
 */
export function notOurHostVeth(l: { name?: string; type?: string; mac?: string; netnsid?: number }): string | undefined {
  if (!l.name || !HOST_VETH_NAME.test(l.name)) return "its name is not of the form of skein's host veths";
  if (l.type !== "veth") return `it is a ${l.type ?? "link of no kind"}, not a veth`;
  if (l.mac !== HOST_MAC) return `its address is ${l.mac ?? "none"}, not ${HOST_MAC}`;
  if (l.netnsid === undefined || l.netnsid < 0) return "its peer is in this namespace, not in a pod's";
  return undefined;
}

/** Deletes a link of this namespace; false when there was none. */
export function deleteHostLink(name: string): boolean {
  return linkOp(() => deleteLinkHere(name));
}

function deleteLinkHere(name: string): boolean {
  if (useNetlink()) {
    const nl = Netlink.open();
    try {
      return nl.deleteLink(name);
    } finally {
      nl.close();
    }
  }
  const r = run(["ip", "link", "del", "dev", name], { allowFail: true });
  if (r.exitCode !== 0 && hostLinkExists(name)) throw new Error(`cannot delete ${name}: ${r.stderr.trim()}`);
  return r.exitCode === 0;
}

/** Turns on forwarding in this namespace, writing only what is not already set. */
export function ensureForwarding(families: Array<4 | 6>): void {
  const knobs = families.map((f) => (f === 4 ? "/proc/sys/net/ipv4/ip_forward" : "/proc/sys/net/ipv6/conf/all/forwarding"));
  for (const k of knobs) if (readFileSync(k, "utf8").trim() !== "1") writeFileSync(k, "1");
}

export interface LinkState {
  name: string;
  up: boolean;
  mac: string;
  mtu: number;
  addrs: string[];
}

export interface RouteState {
  dst: string;
  gateway?: string;
  dev?: string;
}

export interface NeighState {
  dst: string;
  mac?: string;
  permanent: boolean;
}

interface IpAddrJson {
  ifname: string;
  flags: string[];
  address: string;
  mtu: number;
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
}

export function readLink(netns: string | undefined, name: string): LinkState | undefined {
  const r = run(ipIn(netns, ["-j", "addr", "show", "dev", name]), { allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const j = (JSON.parse(r.stdout) as IpAddrJson[])[0];
  if (!j) return undefined;
  return {
    name: j.ifname,
    up: j.flags.includes("UP"),
    mac: j.address,
    mtu: j.mtu,
    addrs: (j.addr_info ?? []).filter((a) => a.scope !== "link").map((a) => `${a.local}/${a.prefixlen}`),
  };
}

export function readRoutes(netns: string | undefined, family: 4 | 6): RouteState[] {
  const r = run(ipIn(netns, ["-j", `-${family}`, "route", "show"]));
  return (JSON.parse(r.stdout || "[]") as Array<{ dst: string; gateway?: string; dev?: string }>).map((x) => ({ dst: x.dst, gateway: x.gateway, dev: x.dev }));
}

export function readNeighbours(netns: string | undefined, dev: string): NeighState[] {
  const r = run(ipIn(netns, ["-j", "neigh", "show", "dev", dev]));
  return (JSON.parse(r.stdout || "[]") as Array<{ dst: string; lladdr?: string; state?: string[] }>).map((n) => ({
    dst: n.dst,
    mac: n.lladdr,
    permanent: (n.state ?? []).includes("PERMANENT"),
  }));
}

/**
 * Whether an nftables table of this namespace carries `fingerprint` in its comment: one
 * netlink read. Rules changed by hand inside the table without touching its comment go
 * unnoticed here; the table is skein's alone.
 */
export function nftTableHas(family: "inet" | "ip" | "ip6", table: string, fingerprint: string): boolean {
  try {
    const nl = Netlink.openNetfilter();
    try {
      const ud = nl.tableUserdata(family, table);
      return ud !== undefined && new TextDecoder().decode(ud).includes(fingerprint);
    } finally {
      nl.close();
    }
  } catch {
    return false; // cannot tell: the caller rewrites the table
  }
}
