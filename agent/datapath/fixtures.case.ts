// What the datapath's tests share: Services with slices to compile, and for the kernel tests
// a datapath in a namespace of the test's own and the table's listing.
import { afterAll } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import type { Tables } from "../../compiler/tables.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { inNetns, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import { decodeChain, decodeSet, NFT_MSG } from "../sys/nftdump.ts";
import { Datapath } from "./datapath.ts";
import type { Nft } from "./nft.ts";
import type { Marks } from "./marks.ts";

export type Tweak = { endpoints?: (i: number) => string[]; skip?: (i: number) => boolean; affinity?: (i: number) => boolean; external?: (i: number) => string[] };

/** `n` Services (every fifth a NodePort) with an IPv4 slice each: two backends by default. */
export function objects(n: number, tw: Tweak = {}): unknown[] {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    if (tw.skip?.(i)) continue;
    objs.push({
      kind: "Service",
      metadata: { name: `s${i}`, namespace: "default" },
      spec: { type: i % 5 === 0 ? "NodePort" : "ClusterIP", clusterIP: `10.96.${i >> 8}.${i & 255}`, externalIPs: tw.external?.(i) ?? [], sessionAffinity: tw.affinity?.(i) ? "ClientIP" : "None", ports: [{ port: 80, nodePort: 30000 + i }] },
    });
    const eps = tw.endpoints?.(i) ?? [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`];
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: eps.map((a) => ({ addresses: [a] })),
    });
  }
  return objs;
}

export const opts = { nodeName: "", nodeIPs: ["198.18.0.1"], ringFactor: 25 };
export const tablesOf = (objs: unknown[], previous?: Tables) => compile(clusterStateFrom(objs).state, { ...opts, previous });

/** Namespaces named `<prefix><tag>`, each removed after the test file. */
export function useNetns(prefix: string): (tag: string) => string {
  const made: string[] = [];
  afterAll(() => made.forEach((n) => deleteNetns(n)));
  return (tag) => {
    made.push(`${prefix}${tag}`);
    return addNetns(`${prefix}${tag}`);
  };
}

/** A datapath into the namespace at `path`: nft through an exec in it, ring batches over a
 * netlink socket opened in it. */
export function datapathIn(path: string, marks?: Marks) {
  const nft: Nft = { backend: "exec", run: (script) => run(inNetns(path, ["nft", "-f", "-"]), { stdin: script }).stdout };
  const nl = Netlink.openNetfilter(path);
  return { dp: new Datapath(nft, { send: (b) => nl.sendBatch(b) }, [], undefined, marks), nl, close: () => nl.close() };
}

/** `inet skein` as nft lists it in JSON, as a sorted list of objects without handles, banks
 * renamed to one: the kernel lists chains in creation order and hash-set elements in its own. */
export function listing(path: string): string[] {
  const j = JSON.parse(run(inNetns(path, ["nft", "-j", "list", "table", "inet", "skein"])).stdout) as { nftables: Array<Record<string, Record<string, unknown>>> };
  const norm = j.nftables.map((o) => {
    const [kind, body] = Object.entries(o)[0]!;
    const { handle: _h, ...rest } = body as Record<string, unknown>;
    if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
    return JSON.stringify({ [kind]: rest }).replace(/(be[46]|ring[46]a?)_1/g, "$1_0");
  });
  return norm.sort();
}

/** How many ring chains `inet skein` holds, and how many anonymous sets: each ring rule's
 * protocol guard has one, which must come and go with its rule. */
export function ringChainsAndGuards(nl: Netlink): { chains: number; guards: number } {
  const dump = (what: string, type: number) => nl.nftDump(`list the ${what}`, type, "inet", [[1, "skein"]]);
  return {
    chains: dump("chains", NFT_MSG.GETCHAIN).map(decodeChain).filter((c) => /^ring[46]a?_\d_\d+$/.test(c.name)).length,
    guards: dump("sets", NFT_MSG.GETSET).map(decodeSet).filter((x) => x.flags & 0x1).length,
  };
}
