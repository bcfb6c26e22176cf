// Side effects of pod wiring. Changes go through rtnetlink in-process (agent/sys/netlink.ts),
// or through `ip -batch` when SKEIN_NETLINK=off; reads, which only CHECK needs, use `ip -j`
// so CHECK compares structured state, not scraped text.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseIp, type Family } from "../ipam/cidr.ts";
import { ipIn, run } from "../sys/exec.ts";
import { Netlink, NetlinkError } from "../sys/netlink.ts";
import { renderIpBatch, type LinkOp } from "./plan.ts";

const useNetlink = () => process.env.SKEIN_NETLINK !== "off";

/** errno values after which the same request may well succeed a moment later */
const TRANSIENT_ERRNO = new Set([4 /* EINTR */, 11 /* EAGAIN */, 12 /* ENOMEM */, 16 /* EBUSY */, 23 /* ENFILE */, 24 /* EMFILE */, 105 /* ENOBUFS */, 110 /* ETIMEDOUT */]);
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
  if (e instanceof NetlinkError) return new LinkError(msg, TRANSIENT_ERRNO.has(e.errno));
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
 * The devices of this namespace's main-table routes to exactly `ip` (a /32 or /128), read
 * from /proc/net: no exec, no netlink dump. ADD replaces such a route, so one that exists
 * belongs to someone else (another pod's veth, another network over the same CIDR).
 */
export function hostRoutesTo(ip: string, family: Family): string[] {
  const bytes = [...parseIpBytes(ip, family)];
  if (family === 4) {
    // The kernel prints the address as a host-order word.
    const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    const hex = (littleEndian ? [...bytes].reverse() : bytes).map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
    const lines = readFileSync("/proc/net/route", "utf8").split("\n").slice(1);
    return lines.map((l) => l.split("\t")).filter((f) => f[1] === hex && f[7] === "FFFFFFFF").map((f) => f[0]!);
  }
  if (!existsSync("/proc/net/ipv6_route")) return [];
  const hex = bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  const lines = readFileSync("/proc/net/ipv6_route", "utf8").split("\n");
  // The file lists every table; `local` entries (an address of the node itself) conflict too.
  return lines.map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === hex && f[1] === "80" && f[9] !== undefined).map((f) => f[9]!);
}

function parseIpBytes(ip: string, family: Family): number[] {
  const v = parseIp(ip).value;
  const n = family === 4 ? 4 : 16;
  return [...Array(n)].map((_, i) => Number((v >> BigInt(8 * (n - 1 - i))) & 0xffn));
}

/** /proc/sys/net is this process's namespace's: a sysctl op can only be for the node. */
function writeSysctl(netns: string | undefined, o: Extract<LinkOp, { op: "sysctl" }>): void {
  if (netns) throw new Error(`sysctl ${o.key} can only be set in the node's namespace`);
  writeFileSync(`/proc/sys/net/${o.key}`, o.value);
}

/** Carries out ops in the namespace at `netns` (undefined: this process's). */
export function applyOps(netns: string | undefined, ops: LinkOp[]): void {
  linkOp(() => (useNetlink() ? applyNetlink(netns, ops) : applyIp(netns, ops)));
}

function applyNetlink(netns: string | undefined, ops: LinkOp[]): void {
  const nl = Netlink.open(netns);
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
        case "route":
          nl.replaceRoute({ family: o.family, dst: o.dst, prefix: o.prefix, gateway: o.gateway, dev: index(o.dev), scopeLink: o.scopeLink });
          break;
        case "neigh":
          nl.replacePermanentNeighbour(index(o.dev), o.ip, o.mac);
          break;
      }
    }
  } finally {
    nl.close();
  }
}

/** `ip -batch` runs of ops, with sysctl ops written between them. */
function applyIp(netns: string | undefined, ops: LinkOp[]): void {
  let lines: string[] = [];
  const flush = () => {
    if (lines.length) run(ipIn(netns, ["-batch", "-"]), { stdin: lines.join("\n") + "\n" });
    lines = [];
  };
  for (const o of ops) {
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
}

/** /proc/sys/net follows the calling process's network namespace (/sys does not under nsenter). */
export function hostLinkExists(name: string): boolean {
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`);
}

export function listHostLinks(): string[] {
  return readdirSync("/proc/sys/net/ipv4/conf").filter((n) => n !== "all" && n !== "default");
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
