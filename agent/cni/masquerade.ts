// The node's masquerade for pod traffic leaving the cluster, as one nftables table that the
// plugin replaces atomically. It is per node, not per pod: ADD re-asserts it, DEL leaves it.
import type { Pool } from "../ipam/cidr.ts";
import { parseCidr } from "../ipam/cidr.ts";
import { VXLAN_DEV } from "../sys/devices.ts";

export const MASQ_TABLE = "skein_cni";

function set(name: string, type: string, cidrs: string[]): string {
  const elems = cidrs.length ? ` elements = { ${cidrs.join(", ")} };` : "";
  return `  set ${name} { type ${type}; flags interval;${elems} }`;
}

/**
 * nft script that (re)creates the table in one transaction. The table's comment carries a
 * fingerprint of its content, so that an ADD can tell with one netlink read that the table
 * is already as it should be and skip loading libnftables, the larger part of an ADD's time
 * otherwise (docs/measurements.md).
 */
export function renderMasquerade(pools: Pool[], clusterCIDRs: string[]): { script: string; fingerprint: string } {
  const body = renderBody(pools, clusterCIDRs);
  const fingerprint = `skein-masq-${new Bun.CryptoHasher("sha256").update(body.join("\n")).digest("hex").slice(0, 16)}`;
  const script = [`add table inet ${MASQ_TABLE}`, `delete table inet ${MASQ_TABLE}`, `table inet ${MASQ_TABLE} {`, `  comment "${fingerprint}"`, ...body, `}`, ""].join("\n");
  return { script, fingerprint };
}

function renderBody(pools: Pool[], clusterCIDRs: string[]): string[] {
  const cluster = clusterCIDRs.length ? clusterCIDRs.map((c) => parseCidr(c)) : pools.map((p) => parseCidr(p.cidr));
  const of = (f: 4 | 6) => ({
    pods: pools.filter((p) => p.family === f).map((p) => p.cidr),
    cluster: cluster.filter((c) => c.family === f).map((c) => c.cidr),
  });
  const v4 = of(4);
  const v6 = of(6);
  return [
    set("pods4", "ipv4_addr", v4.pods),
    set("cluster4", "ipv4_addr", v4.cluster),
    set("pods6", "ipv6_addr", v6.pods),
    set("cluster6", "ipv6_addr", v6.cluster),
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr @pods4 ip daddr != @cluster4 masquerade comment "skein: pod traffic leaving the cluster"`,
    `    ip6 saddr @pods6 ip6 daddr != @cluster6 masquerade comment "skein: pod traffic leaving the cluster"`,
    // A packet into the tunnel from an address outside the pod network (the node's own, an
    // outside client's of a NodePort) would be answered to that address across the underlay,
    // which a NAT between the nodes rewrites (the reply then matches no connection here):
    // it leaves with the tunnel device's address, in this node's pod CIDR, whose replies
    // come back through the tunnel. Rendered always, so the plugin (which knows nothing of
    // the overlay) and the agent agree on the fingerprint; without the device it matches nothing.
    `    oifname "${VXLAN_DEV}" ip saddr != @cluster4 masquerade comment "skein: traffic into the overlay from outside the pod network"`,
    `    oifname "${VXLAN_DEV}" ip6 saddr != @cluster6 masquerade comment "skein: traffic into the overlay from outside the pod network"`,
    `  }`,
  ];
}
