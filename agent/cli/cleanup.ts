// `skein cleanup`: removes what skein made in the current network namespace and on this
// host's disk (the nftables tables, the overlay's routes and VXLAN device with its FDB and
// neighbour entries, the CNI's host veths with their pod routes, the node file, the CNI's IPAM
// state, the lock and socket files of this namespace's agent and CNI calls), and the network
// namespaces the demo and the tests create (by name prefix). What is skein's is told by what
// marks it as such (cleanup-plan.ts), never by name alone; what looks like skein's but is not
// is left alone and reported. It refuses while an agent runs in this namespace (its lock is
// held), unless forced: the agent would put back what was removed, or lose it under its feet.
import { existsSync, lstatSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from "node:fs";
import { basename, dirname } from "node:path";
import { decode } from "cbor-x/decode";
import { openNft } from "../datapath/nft.ts";
import { DEFAULT_NODE_FILE } from "../cni/config.ts";
import { readNodeFile } from "../ipam/node-file.ts";
import { STATE_LIMIT } from "../ipam/disk-store.ts";
import { readFileBounded } from "../sys/bounded-read.ts";
import { agentSocketPath, holdNetnsAgentLock, lockHolder, netnsAgentLockPath, netnsCniLockPath, unlinkIfFree } from "../sys/flock.ts";
import { Netlink } from "../sys/netlink.ts";
import { deleteNetns, listNetns, netnsPath, ownNetnsId } from "../sys/netns.ts";
import { decodeTable, NFT_MSG, udataComment } from "../sys/nftdump.ts";
import { planOverlayCleanup, readKernel, removeRtnl, type CleanupItem } from "../overlay/cleanup.ts";
import { humanLine, ipamEntry, planForeignRoutes, planHostVeths, planNamespaces, planTables, reported, type Outcome, type Reported } from "./cleanup-plan.ts";

export interface CleanupOptions {
  /** what was done before (the demo cluster ended), reported first */
  before?: Reported[];
  /** network namespace name prefixes to remove (the demo's and the tests') */
  prefixes: string[];
  namespaces: boolean;
  /** what skein made in this network namespace and on disk */
  datapath: boolean;
  dryRun: boolean;
  /** go on while an agent runs here (its lock and socket stay) */
  force: boolean;
  json: boolean;
  nodeFile: string;
  dataDirs: string[];
  runDir: string;
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Whether an agent runs here, and whether this run holds the agent lock (`locked`: one that was there before). */
interface AgentState {
  agentRuns: boolean;
  holderPid?: number;
  locked: boolean;
  ownLock: boolean;
}

const errText = (e: unknown) => ((e as Error)?.message ?? String(e)).split("\n")[0]!;

/** The name under /var/run/netns of the namespace this process runs in, when it has one. */
function ownNetnsName(): string | undefined {
  const me = ownNetnsId();
  return listNetns().find((n) => {
    try {
      const s = statSync(netnsPath(n), { bigint: true });
      return s.dev === me.dev && s.ino === me.ino;
    } catch {
      return false;
    }
  });
}

/** Runs `skein cleanup`; returns the exit code. */
export function cleanup(o: CleanupOptions): number {
  const agentLock = netnsAgentLockPath(o.runDir);
  let holder: ReturnType<typeof lockHolder>;
  try {
    holder = o.datapath ? lockHolder(agentLock) : { state: "absent" };
  } catch (e) {
    o.err(`skein cleanup: cannot tell whether an agent runs in this network namespace: ${errText(e)}\n`);
    return 1;
  }
  const agentRuns = holder.state === "held";
  if (agentRuns && !o.force) {
    const pid = holder.state === "held" && holder.pid !== undefined ? ` (pid ${holder.pid})` : "";
    o.err(`skein cleanup: a skein agent${pid} runs in this network namespace (it holds ${agentLock}): stop it first, or give --force to remove its datapath under it\n`);
    return 1;
  }
  // held for the whole run, so that no agent starts in the middle of it; released (and so
  // removed) last
  let lock: ReturnType<typeof holdNetnsAgentLock> | undefined;
  if (o.datapath && !o.dryRun && !agentRuns && existsSync(o.runDir)) {
    try {
      lock = holdNetnsAgentLock(o.runDir);
    } catch (e) {
      if (!o.force) {
        o.err(`skein cleanup: ${errText(e)}\n`);
        return 1;
      }
    }
  }
  const results: Reported[] = [...(o.before ?? [])];
  try {
    if (o.namespaces) namespacesStep(o, results);
    // a lock file this run made only to hold is not reported as found
    const locked = lock !== undefined && holder.state !== "absent";
    if (o.datapath) datapathStep(o, results, { agentRuns, holderPid: holder.state === "held" ? holder.pid : undefined, locked, ownLock: lock !== undefined });
  } finally {
    lock?.release();
  }
  if (o.json) o.out(JSON.stringify(results, null, 2) + "\n");
  else {
    for (const r of results) o.out(humanLine(r) + "\n");
    if (o.datapath && !results.some((r) => r.kind !== "netns")) o.out("nothing of skein's in this network namespace or its state files\n");
  }
  return results.some((r) => r.action === "failed") ? 1 : 0;
}

function namespacesStep(o: CleanupOptions, results: Reported[]): void {
  const items = planNamespaces(listNetns(), o.prefixes, ownNetnsName());
  for (const item of items) {
    if (item.action === "leave") results.push(reported(item, "left-alone"));
    else if (o.dryRun) results.push(reported(item, "would-remove"));
    else results.push(attempt(item, () => (deleteNetns(item.name), true)));
  }
  if (!items.length && !o.json) o.out(`no network namespaces with prefix ${o.prefixes.filter(Boolean).join(", ")}\n`);
}

function attempt(item: CleanupItem, remove: () => boolean): Reported {
  try {
    return reported(item, remove() ? "removed" : "gone");
  } catch (e) {
    return reported(item, "failed", errText(e));
  }
}

function datapathStep(o: CleanupOptions, results: Reported[], agent: AgentState): void {
  // the node file says which CIDRs are the pod network (for reporting others' routes there):
  // read before it goes
  let cidrs: string[] = [];
  try {
    const nf = readNodeFile(o.nodeFile);
    cidrs = nf ? [...nf.podCIDRs, ...(nf.clusterCIDRs ?? [])] : [];
  } catch {
    // reported with the files
  }

  // nftables
  const nfl = Netlink.openNetfilter();
  let tables: CleanupItem[];
  try {
    const found = nfl.nftDump("list the tables", NFT_MSG.GETTABLE, "inet").map(decodeTable);
    tables = planTables(found.map((t) => ({ name: t.name, flags: t.flags, comment: udataComment(t.userdata) })));
  } finally {
    nfl.close();
  }

  // rtnetlink: one reading for every choice
  const rt = Netlink.open();
  try {
    const snap = readKernel(rt);
    const overlay = planOverlayCleanup(snap);
    const veths = planHostVeths(snap);
    const removedLinks = new Set([...overlay, ...veths].filter((i) => i.kind === "link" && i.action === "remove").map((i) => i.ref!.index!));
    const foreign = planForeignRoutes(snap, cidrs, removedLinks);
    const files = planFiles(o, agent);
    const all = [...tables, ...overlay, ...veths, ...foreign, ...files];
    if (o.dryRun) {
      for (const item of all) results.push(reported(item, item.action === "remove" ? "would-remove" : "left-alone"));
      return;
    }
    let nft: ReturnType<typeof openNft> | undefined;
    /** outcome of each link removed, for what goes with it */
    const linkOutcome = new Map<string, Outcome>();
    for (const item of all) {
      if (item.action === "leave") {
        results.push(reported(item, "left-alone"));
        continue;
      }
      if (item.with) {
        const parent = linkOutcome.get(item.with);
        results.push(reported(item, parent === "failed" ? "failed" : parent === "gone" ? "gone" : "removed", parent === "failed" ? `${item.with} was not removed` : undefined));
        continue;
      }
      let r: Reported;
      switch (item.kind) {
        case "table":
          r = attempt(item, () => {
            nft ??= openNft();
            if (!tableExists(item.name)) return false;
            nft.run(`delete table ${item.name}\n`);
            return true;
          });
          break;
        case "route":
        case "link":
          r = attempt(item, () => removeRtnl(rt, item));
          if (item.kind === "link") linkOutcome.set(`link ${item.name}`, r.action);
          break;
        case "file":
          r = attempt(item, () => removeFile(item.ref!.path!, agent.ownLock && item.ref!.path === netnsAgentLockPath(o.runDir)));
          break;
        case "directory":
          r = attempt(item, () => {
            rmdirSync(item.ref!.path!);
            return true;
          });
          break;
        default:
          r = reported(item, "failed", `cannot remove a ${item.kind} here`);
      }
      results.push(r);
    }
  } finally {
    rt.close();
  }
}

function tableExists(name: string): boolean {
  const [, table] = name.split(" ");
  const nl = Netlink.openNetfilter();
  try {
    return nl.tableUserdata("inet", table!) !== undefined;
  } finally {
    nl.close();
  }
}

/** Removes a file cleanup chose; a lock file only while free (the agent's own, held by this
 * run, goes when the run releases it). */
function removeFile(path: string, heldByUs: boolean): boolean {
  if (heldByUs) return existsSync(path);
  if (!existsSync(path)) return false;
  if (/\.lock$/.test(path)) {
    if (!unlinkIfFree(path)) throw new Error("its lock was taken meanwhile: left in place");
    return true;
  }
  unlinkSync(path);
  return true;
}

// ---- files ----

const fileItem = (path: string): CleanupItem => ({ kind: "file", name: path, action: "remove", ref: { path } });
const leaveFile = (path: string, reason: string, kind: "file" | "directory" = "file"): CleanupItem => ({ kind, name: path, action: "leave", reason });

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The node file (and what an interrupted write of it left), when it reads as one the agent wrote. */
function nodeFileItems(path: string): CleanupItem[] {
  const dir = dirname(path);
  const base = basename(path);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const tmp = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.tmp-[1-9][0-9]{0,9}$`);
  const out: CleanupItem[] = [];
  for (const n of names.filter((n) => n === base || tmp.test(n)).sort()) {
    const p = `${dir}/${n}`;
    const st = lstatOrUndefined(p);
    if (!st) continue;
    if (!st.isFile()) {
      out.push(leaveFile(p, "not a regular file: not a node file of skein's"));
      continue;
    }
    try {
      readNodeFile(p);
      out.push(fileItem(p));
    } catch (e) {
      out.push(leaveFile(p, `not a node file the agent wrote (${errText(e)})`));
    }
  }
  return out;
}

/** Whether the file at `path` is IPAM state the CNI plugin wrote: CBOR with its format mark. */
function ipamStateProblem(path: string): string | undefined {
  let raw: unknown;
  try {
    raw = decode(readFileBounded(path, STATE_LIMIT, `IPAM state ${path}`));
  } catch (e) {
    return `it does not read as skein's IPAM state (${errText(e)})`;
  }
  const format = (raw as { format?: unknown } | null)?.format;
  return format === "skein-ipam" ? undefined : `its format is ${JSON.stringify(format)?.slice(0, 40) ?? "missing"}, not skein-ipam`;
}

/** A regular file that no one holds the lock of, empty (what withFileLock makes) or, with
 * `pid`, holding a pid (the agent's). */
function lockFileItem(path: string, heldBy: string, pid = false): CleanupItem {
  const st = lstatOrUndefined(path);
  if (!st?.isFile()) return leaveFile(path, "not a regular file: not a lock file of skein's");
  if (st.size !== 0) {
    let text = "";
    try {
      text = pid && st.size <= 12 ? readFileSync(path, "utf8") : "";
    } catch {
      // judged by what was read
    }
    if (!/^[1-9][0-9]{0,9}\n$/.test(text)) return leaveFile(path, `${pid ? "neither empty nor a pid" : "not empty"}: not a lock file of skein's`);
  }
  try {
    const h = lockHolder(path);
    if (h.state === "held") return leaveFile(path, `its lock is held by ${heldBy}${h.pid !== undefined ? ` (pid ${h.pid})` : ""}`);
  } catch (e) {
    return leaveFile(path, errText(e));
  }
  return fileItem(path);
}

/** The IPAM directory's state, lock and per-container lock files, then the directory when nothing else is left in it. */
function ipamItems(dir: string): CleanupItem[] {
  const st = lstatOrUndefined(dir);
  if (!st) return [];
  if (!st.isDirectory()) return [leaveFile(dir, "not a directory: not the CNI plugin's IPAM directory", "directory")];
  const out: CleanupItem[] = [];
  let kept = 0;
  for (const n of readdirSync(dir).sort()) {
    const p = `${dir}/${n}`;
    const e = ipamEntry(n);
    let item: CleanupItem;
    if (e.what === "store") {
      const fst = lstatOrUndefined(p);
      const why = fst?.isFile() ? ipamStateProblem(p) : "not a regular file";
      item = why ? leaveFile(p, `${why}: not IPAM state of skein's`) : fileItem(p);
    } else if (e.what === "lock") item = lockFileItem(p, "a CNI call now");
    else if (e.what === "containers" && lstatOrUndefined(p)?.isDirectory()) {
      const inner = readdirSync(p)
        .sort()
        .map((c) => (/\.lock$/.test(c) ? lockFileItem(`${p}/${c}`, "a CNI call for that container now") : leaveFile(`${p}/${c}`, "not a per-container lock file of skein's CNI")));
      out.push(...inner);
      item = inner.every((i) => i.action === "remove") ? { kind: "directory", name: p, action: "remove", ref: { path: p } } : leaveFile(p, "it holds what is not skein's, or is in use", "directory");
    } else item = leaveFile(p, "not a file the CNI plugin writes");
    if (item.action === "leave") kept++;
    out.push(item);
  }
  if (kept === 0) out.push({ kind: "directory", name: dir, action: "remove", ref: { path: dir } });
  return out;
}

/** The files of this namespace's agent and CNI calls in the run directory; the agent's only when no agent holds them. */
function runItems(runDir: string, agent: AgentState): CleanupItem[] {
  if (!lstatOrUndefined(runDir)?.isDirectory()) return [];
  const out: CleanupItem[] = [];
  const lock = netnsAgentLockPath(runDir);
  const sock = agentSocketPath(runDir);
  const byAgent = `the running agent${agent.holderPid !== undefined ? ` (pid ${agent.holderPid})` : ""}`;
  if (agent.locked) out.push(fileItem(lock));
  else if (agent.ownLock) {
    // made by this run to hold: it goes with the release
  } else if (lstatOrUndefined(lock)) out.push(agent.agentRuns ? leaveFile(lock, `held by ${byAgent}`) : lockFileItem(lock, "an agent", true));
  const s = lstatOrUndefined(sock);
  if (s) out.push(agent.agentRuns ? leaveFile(sock, `served by ${byAgent}`) : s.isSocket() ? fileItem(sock) : leaveFile(sock, "not a socket: not the agent's"));
  const cni = netnsCniLockPath(runDir);
  if (lstatOrUndefined(cni)) out.push(lockFileItem(cni, "a CNI call now"));
  return out;
}

function planFiles(o: CleanupOptions, agent: AgentState): CleanupItem[] {
  const out = [...nodeFileItems(o.nodeFile), ...[...new Set(o.dataDirs)].flatMap(ipamItems), ...runItems(o.runDir, agent)];
  // skein's own directory (the default node file's and IPAM directory's parent) when nothing else is left in it
  if (o.nodeFile === DEFAULT_NODE_FILE) {
    const dir = dirname(DEFAULT_NODE_FILE);
    const gone = new Set(out.filter((i) => i.action === "remove").map((i) => i.name));
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      // not there
    }
    if (names.length && names.every((n) => gone.has(`${dir}/${n}`))) out.push({ kind: "directory", name: dir, action: "remove", ref: { path: dir } });
  }
  return out;
}
