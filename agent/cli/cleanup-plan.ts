// The choices of `skein cleanup` (cleanup.ts), pure: which of the things found in this network
// namespace and on disk are skein's, by what marks them as made by skein (a table's comment,
// a host veth's kind, address and peer, a route's protocol, a file's format), never by name
// alone; and how the outcome is printed. What has the name of skein's but not its marks is
// left alone and said so.
import { parseCidr, cidrsOverlap, type Cidr } from "../../compiler/address.ts";
import { notOurHostVeth, HOST_VETH_NAME } from "../cni/links.ts";
import { marksFromComment } from "../datapath/marks.ts";
import { routeName, routesWith, type CleanupItem, type KernelSnapshot } from "../overlay/cleanup.ts";
import { RTPROT_SKEIN } from "../sys/devices.ts";

/** skein's nftables tables (family inet), and what each carries that says skein made it */
export const SKEIN_TABLES: Record<string, { mark: string; ours: (t: { comment?: string; flags: number }) => boolean }> = {
  // the agent's: its comment records the mark ranges it was made with (datapath/marks.ts)
  skein: { mark: "a comment recording skein's mark ranges", ours: (t) => marksFromComment(t.comment) !== undefined },
  // the CNI plugin's masquerade (cni/masquerade.ts): a fingerprint of its content
  skein_cni: { mark: "a comment skein-masq-<fingerprint>", ours: (t) => /^skein-masq-[0-9a-f]{16}$/.test(t.comment ?? "") },
  // the agent's reference copy of its base chains, loaded and dropped at start (datapath/nft-text.ts): dormant
  skein_ref: { mark: "the dormant flag", ours: (t) => (t.flags & NFT_TABLE_F_DORMANT) !== 0 },
};
const NFT_TABLE_F_DORMANT = 1;

/** The inet tables found: skein's for removal, those with a name of skein's but not its mark left alone. */
export function planTables(tables: Array<{ name: string; flags: number; comment?: string }>): CleanupItem[] {
  const out: CleanupItem[] = [];
  for (const t of tables) {
    const known = Object.hasOwn(SKEIN_TABLES, t.name) ? SKEIN_TABLES[t.name]! : undefined;
    if (!known) continue;
    const name = `inet ${t.name}`;
    if (known.ours(t)) out.push({ kind: "table", name, action: "remove" });
    else out.push({ kind: "table", name, action: "leave", reason: `it lacks ${known.mark}${t.comment ? ` (its comment is ${JSON.stringify(t.comment.slice(0, 80))})` : ""}: not made by this version of skein` });
  }
  return out;
}

/** The host veths skein's CNI made, each with the routes that go with it; links with their name but not their marks left alone. */
export function planHostVeths(s: KernelSnapshot): CleanupItem[] {
  const out: CleanupItem[] = [];
  for (const l of s.links) {
    if (!l.name || !HOST_VETH_NAME.test(l.name)) continue;
    const why = notOurHostVeth(l);
    if (why) {
      out.push({ kind: "link", name: l.name, action: "leave", reason: `${why}: not a pod's host veth of skein's` });
      continue;
    }
    out.push({ kind: "link", name: l.name, action: "remove", ref: { index: l.index, linkName: l.name } });
    out.push(...routesWith(s, l.index, l.name));
  }
  return out;
}

const RT_TABLE_LOCAL = 255;

function cidrOf(s: string): Cidr | undefined {
  try {
    return parseCidr(s);
  } catch {
    return undefined;
  }
}

/**
 * Routes inside the pod network (`cidrs`: the node's pod CIDRs and the cluster's) that are
 * not skein's and do not go with a link removed: someone else's, left alone and reported.
 * The local table holds the node's own addresses (the kernel's entries): not looked at.
 */
export function planForeignRoutes(s: KernelSnapshot, cidrs: string[], removedLinks: Set<number>): CleanupItem[] {
  const nets = cidrs.map(cidrOf).filter((c): c is Cidr => c !== undefined);
  const out: CleanupItem[] = [];
  for (const r of s.routes) {
    if (r.protocol === RTPROT_SKEIN || r.table === RT_TABLE_LOCAL || (r.oif !== undefined && removedLinks.has(r.oif))) continue;
    const d = cidrOf(r.dst);
    if (!d || !nets.some((n) => n.prefix <= d.prefix && cidrsOverlap(n, d))) continue;
    const dev = r.oif === undefined ? "" : ` dev ${s.links.find((l) => l.index === r.oif)?.name ?? r.oif}`;
    out.push({ kind: "route", name: routeName(r), action: "leave", reason: `its protocol is ${r.protocol}, not skein's ${RTPROT_SKEIN} (${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${dev}): not skein's` });
  }
  return out;
}

/** Network namespaces of the demo and the tests (by prefix); the one cleanup runs in is never removed. */
export function planNamespaces(names: string[], prefixes: string[], own: string | undefined): CleanupItem[] {
  const ps = prefixes.filter(Boolean);
  return names
    .filter((n) => ps.some((p) => n.startsWith(p)))
    .map((n): CleanupItem => (n === own ? { kind: "netns", name: n, action: "leave", reason: "skein cleanup runs inside it" } : { kind: "netns", name: n, action: "remove" }));
}

/** What a name in the CNI plugin's IPAM directory is (agent/ipam/disk-store.ts, agent/cni/commands.ts). */
export function ipamEntry(name: string): { what: "store" | "lock" | "containers" | "other"; network?: string } {
  let m = /^([a-zA-Z0-9][a-zA-Z0-9_.-]*)\.cbor(\.tmp-[1-9][0-9]{0,9})?$/.exec(name);
  if (m) return { what: "store", network: m[1] };
  m = /^([a-zA-Z0-9][a-zA-Z0-9_.-]*)\.lock$/.exec(name);
  if (m) return { what: "lock", network: m[1] };
  if (name === "containers") return { what: "containers" };
  return { what: "other" };
}

export type Outcome = "would-remove" | "removed" | "gone" | "left-alone" | "failed";

/** One line of the report, as `--json` prints it. */
export interface Reported {
  kind: CleanupItem["kind"];
  name: string;
  action: Outcome;
  with?: string;
  reason?: string;
}

const HUMAN_KIND: Record<CleanupItem["kind"], string> = {
  netns: "network namespace",
  table: "nftables table",
  link: "link",
  route: "route",
  address: "address",
  fdb: "FDB entry",
  neighbour: "neighbour",
  file: "file",
  directory: "directory",
  demo: "demo cluster",
};

const VERB: Record<Outcome, string> = { "would-remove": "would remove", removed: "removed", gone: "already gone:", "left-alone": "left alone:", failed: "failed to remove" };

/** The human line of a reported item. */
export function humanLine(r: Reported): string {
  const what = `${HUMAN_KIND[r.kind]} ${r.name}`;
  const along = r.with ? ` (with ${r.with})` : "";
  if (r.action === "left-alone" || r.action === "failed") return `${VERB[r.action]} ${what}${r.reason ? `: ${r.reason}` : ""}`;
  return `${VERB[r.action]} ${what}${along}`;
}

/** An item as reported, without what only removing it takes. */
export function reported(item: CleanupItem, action: Outcome, reason?: string): Reported {
  const why = reason ?? (action === "left-alone" ? item.reason : undefined);
  return { kind: item.kind, name: item.name, action, ...(item.with ? { with: item.with } : {}), ...(why ? { reason: why } : {}) };
}
