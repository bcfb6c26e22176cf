// What `skein cleanup` removes of the overlay (overlay.ts), chosen from one reading of the
// kernel by ownership alone: routes of skein's protocol, and the device skein.vxlan when it
// is a VXLAN device, with the addresses, FDB and neighbour entries on it (they go with it).
// A skein.vxlan of another kind is someone else's: left alone, and said so. The choice is
// pure (planOverlayCleanup) so that it can be tested on made-up kernels; removeRtnl carries
// out one item.
import {
  deleteLinkIndex,
  deleteRoute,
  getLink,
  listAddresses,
  listLinks,
  listNeighbours,
  listRoutes,
  NUD_PERMANENT,
  RT_TABLE_MAIN,
  RTPROT_SKEIN,
  type AddrMsg,
  type LinkMsg,
  type NeighMsg,
  type RouteMsg,
} from "../sys/rtnl.ts";
import type { Netlink } from "../sys/netlink.ts";
import { VXLAN_DEV } from "./plan.ts";

export type CleanupKind = "netns" | "table" | "link" | "route" | "address" | "fdb" | "neighbour" | "file" | "directory" | "demo";

/** One thing `skein cleanup` found: skein's (removed), or like skein's but not (left alone). */
export interface CleanupItem {
  kind: CleanupKind;
  name: string;
  action: "remove" | "leave";
  /** "link X": removed by the kernel with that link (its routes, addresses, entries) */
  with?: string;
  /** why it is left alone */
  reason?: string;
  /** what removing it takes (not shown) */
  ref?: { index?: number; linkName?: string; dst?: string; protocol?: number; table?: number; path?: string };
}

/** What cleanup reads of a namespace's rtnetlink state, in one go. */
export interface KernelSnapshot {
  links: LinkMsg[];
  routes: RouteMsg[];
  addresses: AddrMsg[];
  /** neighbours of both families and FDB entries ("bridge") */
  neighbours: NeighMsg[];
}

export function readKernel(nl: Netlink): KernelSnapshot {
  return {
    links: listLinks(nl),
    routes: [...listRoutes(nl, 4), ...listRoutes(nl, 6)],
    addresses: listAddresses(nl),
    neighbours: [...listNeighbours(nl, 4), ...listNeighbours(nl, 6), ...listNeighbours(nl, "bridge")],
  };
}

const isLinkLocal6 = (ip: string) => /^fe[89ab][0-9a-f]:/i.test(ip);

/** A route's name in cleanup's lists: its destination, and its table when not the main one. */
export const routeName = (r: RouteMsg) => (r.table === RT_TABLE_MAIN ? r.dst : `${r.dst} table ${r.table}`);

/**
 * The routes that go with a link removed (listed so that nothing leaves unsaid): those of
 * the main table through it, but the IPv6 link-local subnet every link has.
 */
export function routesWith(s: KernelSnapshot, index: number, linkName: string): CleanupItem[] {
  return s.routes
    .filter((r) => r.oif === index && r.table === RT_TABLE_MAIN && r.protocol !== RTPROT_SKEIN && !(r.family === 6 && isLinkLocal6(r.dst)))
    .map((r) => ({ kind: "route", name: routeName(r), action: "remove", with: `link ${linkName}` }));
}

/** What the overlay has in the namespace, for removal; a foreign skein.vxlan as left alone. */
export function planOverlayCleanup(s: KernelSnapshot): CleanupItem[] {
  const out: CleanupItem[] = [];
  // the routes first: those through the device would go with it, unreported
  for (const r of s.routes) {
    if (r.protocol === RTPROT_SKEIN) out.push({ kind: "route", name: routeName(r), action: "remove", ref: { dst: r.dst, protocol: r.protocol, table: r.table } });
  }
  const vx = s.links.find((l) => l.name === VXLAN_DEV);
  if (!vx) return out;
  if (vx.type !== "vxlan") {
    out.push({ kind: "link", name: VXLAN_DEV, action: "leave", reason: `it is a ${vx.type ?? "link of no kind"}, not a VXLAN device: not skein's` });
    return out;
  }
  const along = `link ${VXLAN_DEV}`;
  out.push({ kind: "link", name: VXLAN_DEV, action: "remove", ref: { index: vx.index, linkName: VXLAN_DEV } });
  for (const a of s.addresses) {
    if (a.index === vx.index && a.address && !isLinkLocal6(a.address)) out.push({ kind: "address", name: `${a.address}/${a.prefix}`, action: "remove", with: along });
  }
  for (const n of s.neighbours) {
    if (n.index !== vx.index) continue;
    if (n.family === "bridge") {
      // the kernel's own all-zero default entries have no remote: only those with one are skein's
      if (n.ip && n.mac) out.push({ kind: "fdb", name: `${n.mac} dst ${n.ip}`, action: "remove", with: along });
    } else if (n.ip && n.state & NUD_PERMANENT) {
      // skein writes permanent entries only; the others (multicast, learnt) are the kernel's own
      out.push({ kind: "neighbour", name: `${n.ip}${n.mac ? ` lladdr ${n.mac}` : ""}`, action: "remove", with: along });
    }
  }
  out.push(...routesWith(s, vx.index, VXLAN_DEV));
  return out;
}

/**
 * Removes a route or link item of a plan; false when it was gone already. A link is deleted
 * only while its name still names the index listed: an index the kernel gave to another
 * link since is not deleted in its place.
 */
export function removeRtnl(nl: Netlink, item: CleanupItem): boolean {
  const ref = item.ref ?? {};
  if (item.kind === "route" && ref.dst !== undefined && ref.protocol !== undefined) return deleteRoute(nl, ref.dst, ref.protocol, ref.table ?? RT_TABLE_MAIN);
  if (item.kind === "link" && ref.index !== undefined && ref.linkName !== undefined) {
    const now = getLink(nl, ref.linkName);
    if (!now || now.index !== ref.index) return false;
    return deleteLinkIndex(nl, ref.index);
  }
  throw new Error(`cannot remove ${item.kind} ${item.name} over rtnetlink`);
}

