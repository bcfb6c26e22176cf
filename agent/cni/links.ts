// Side effects of pod wiring: `ip` in the node's namespace and, through nsenter, in the pod's.
// Reads use `ip -j` so CHECK compares structured state, not scraped text.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { ipIn, run } from "../sys/exec.ts";

/** /proc/sys/net follows the calling process's network namespace (/sys does not under nsenter). */
export function hostLinkExists(name: string): boolean {
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`);
}

export function listHostLinks(): string[] {
  return readdirSync("/proc/sys/net/ipv4/conf").filter((n) => n !== "all" && n !== "default");
}

export function ipBatch(netns: string | undefined, lines: string[]): void {
  if (lines.length) run(ipIn(netns, ["-batch", "-"]), { stdin: lines.join("\n") + "\n" });
}

export function deleteHostLink(name: string): boolean {
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
