// `skein cleanup`: removes the namespaces the demo and the tests create (by name prefix), and
// with --datapath what skein programmed in the current namespace.
import { openNft } from "../datapath/nft.ts";
import { MASQ_TABLE } from "../cni/masquerade.ts";
import { deleteHostLink, listHostLinks } from "../cni/links.ts";
import { deleteNetns, listNetns } from "../sys/netns.ts";
import { Overlay } from "../overlay/overlay.ts";

export function cleanup(o: { prefixes: string[]; datapath: boolean; dryRun: boolean; log: (s: string) => void }): void {
  const prefixes = o.prefixes.filter(Boolean);
  const victims = listNetns().filter((n) => prefixes.some((p) => n.startsWith(p)));
  for (const n of victims) {
    o.log(`${o.dryRun ? "would remove" : "removing"} network namespace ${n}\n`);
    if (!o.dryRun) deleteNetns(n);
  }
  if (!victims.length) o.log(`no network namespaces with prefix ${prefixes.join(", ")}\n`);
  if (!o.datapath) return;
  const nft = openNft();
  for (const table of [`inet ${MASQ_TABLE}`, "inet skein"]) {
    try {
      nft.run(`list table ${table}`);
    } catch {
      continue;
    }
    o.log(`${o.dryRun ? "would remove" : "removing"} nftables table ${table}\n`);
    if (!o.dryRun) nft.run(`delete table ${table}`);
  }
  for (const link of listHostLinks().filter((l) => /^sk[0-9a-f]{13}$/.test(l))) {
    o.log(`${o.dryRun ? "would remove" : "removing"} pod link ${link}\n`);
    if (!o.dryRun) deleteHostLink(link);
  }
  // the pod network between the nodes: routes of skein's protocol and the VXLAN device (which
  // takes its neighbour and FDB entries along)
  // (what it leaves alone, such as a device of that name that is not skein's, it says why)
  const overlay = Overlay.open({ log: { info() {}, warn: (_o, msg) => o.log(`left alone: ${msg}\n`) }, watch: false });
  try {
    for (const what of o.dryRun ? overlay.describeCleanup() : overlay.cleanup()) o.log(`${o.dryRun ? "would remove" : "removed"} ${what}\n`);
  } finally {
    overlay.close();
  }
}
