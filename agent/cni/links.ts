// Side effects of pod wiring. Changes go through rtnetlink in-process (agent/sys/netlink.ts),
// or through `ip -batch` when SKEIN_NETLINK=off; reads, which only CHECK needs, use `ip -j`
// so CHECK compares structured state, not scraped text.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { ipIn, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import { renderIpBatch, type LinkOp } from "./plan.ts";

const useNetlink = () => process.env.SKEIN_NETLINK !== "off";

/** /proc/sys/net is this process's namespace's: a sysctl op can only be for the node. */
function writeSysctl(netns: string | undefined, o: Extract<LinkOp, { op: "sysctl" }>): void {
  if (netns) throw new Error(`sysctl ${o.key} can only be set in the node's namespace`);
  writeFileSync(`/proc/sys/net/${o.key}`, o.value);
}

/** Carries out ops in the namespace at `netns` (undefined: this process's). */
export function applyOps(netns: string | undefined, ops: LinkOp[]): void {
  if (useNetlink()) applyNetlink(netns, ops);
  else applyIp(netns, ops);
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
