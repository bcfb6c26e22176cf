// The table `inet skein` as nft text: its skeleton (sets, maps, base chains), the whole table
// as one transaction (`skein tables --nft`), the delta between two models (model.ts) for
// everything but the rings, and ring operations (ring-ops.ts) written out for people. The
// agent sends ring operations as netlink batches (nfnl.ts); the text of them is the form nft
// itself gives the same rules. Pure.
import { addressText, KEY_BYTES, keyPort, type AddressTest } from "../../compiler/keys.ts";
import { checkMarks, DEFAULT_MARKS, hex32 as hex, marksComment, masqBit, type Marks } from "./marks.ts";
import { emptyModel, model, ringCapacity, ringMap, ringSlots, TABLE, type Capacity, type Model, type RingRule } from "./model.ts";
import { ringDiff, type RingOps, type SlotOp } from "./ring-ops.ts";
import type { Tables } from "../../compiler/tables.ts";
import type { PolicyTables } from "../../compiler/policy/types.ts";
import { policyChains, policyDeclarations, policyParts } from "./policy-text.ts";

const addr = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");

/** The ring rule as nft text: nft makes of it exactly what nfnl.ts encodes (guard and its
 * anonymous set included), so the one-file form loads the rule the agent loads. */
function ringRuleText(r: RingRule): string {
  const a = addr(r.family);
  const client = r.affinity ? `${a} saddr` : `${a} saddr . th sport`;
  return `meta l4proto { tcp, udp, sctp } dnat ${a} to meta mark & ${hex(r.mark)} . jhash ${client} mod ${r.ringSize} seed 0x0 map @${r.map}`;
}

/** Set and map declarations: fixed, whatever the services (the ring maps per bank). */
function sets(bank: number, cap: Capacity): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fam of [4, 6] as const) {
    const type = fam === 4 ? "ipv4_addr" : "ipv6_addr";
    out[`svc${fam}`] = `map svc${fam} { type ${type} . inet_proto . inet_service : verdict; }`;
    out[`noep${fam}`] = `set noep${fam} { type ${type} . inet_proto . inet_service; }`;
    out[`hairpin${fam}`] = `set hairpin${fam} { type ${type} . ${type}; }`;
    // the Service CIDRs: an address there that no frontend serves is refused (serviceCidrScript).
    // front4/6 hold every frontend's key: the reject rule cannot look up svc4/6 itself, as a
    // filter chain bound to that map would have to accept its verdicts' dnat chains
    out[`svcnet${fam}`] = `set svcnet${fam} { type ${type}; flags interval; }`;
    out[`front${fam}`] = `set front${fam} { type ${type} . inet_proto . inet_service; }`;
  }
  for (const fam of [4, 6] as const) out[ringMap(fam, bank)] = ringMapDecl(fam, bank, cap[fam]);
  return { ...out, ...policyDeclarations() };
}

// `typeof` gives the key the width of a mark and a hash; the syntax needs some transport-free
// expression for it.
const ringMapDecl = (fam: 4 | 6, bank: number, size: number) => `map ${ringMap(fam, bank)} { typeof meta mark . numgen inc mod 2 : ${addr(fam)} daddr . th dport; size ${size}; }`;
export const addRingMap = (fam: 4 | 6, bank: number, size: number) => `add ${ringMapDecl(fam, bank, size).replace(/^map /, `map inet ${TABLE} `)}`;

/** Base chains, and the fixed regular chains of policy (an empty head): fixed too. -100 is
 * dstnat (nft 1.0.6 takes the name only in prerouting). */
function baseChains(marks: Marks): Map<string, string[]> {
  const c = new Map<string, string[]>();
  for (const hook of ["prerouting", "output"] as const) {
    c.set(`nat_${hook}`, [`type nat hook ${hook} priority -100; policy accept;`, `ip daddr . meta l4proto . th dport vmap @svc4`, `ip6 daddr . meta l4proto . th dport vmap @svc6`]);
    const rej = [`type filter hook ${hook} priority -110; policy accept;`];
    for (const fam of [4, 6] as const) {
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} meta l4proto tcp reject with tcp reset`);
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} reject`);
      // traffic to an address of the service CIDR on no frontend: refused at once, as
      // kube-proxy's nftables mode does, rather than sent out untranslated (which would also
      // leave a conntrack entry that keeps a retried SYN untranslated once the Service exists)
      rej.push(`${addr(fam)} daddr @svcnet${fam} ${addr(fam)} daddr . meta l4proto . th dport != @front${fam} meta l4proto tcp reject with tcp reset`);
      rej.push(`${addr(fam)} daddr @svcnet${fam} ${addr(fam)} daddr . meta l4proto . th dport != @front${fam} reject`);
    }
    c.set(`reject_${hook}`, rej);
  }
  c.set(`nat_postrouting`, [
    `type nat hook postrouting priority srcnat; policy accept;`,
    `ct mark & ${hex(masqBit(marks))} == ${hex(masqBit(marks))} masquerade`,
    `ct status dnat ip saddr . ip daddr @hairpin4 masquerade`,
    `ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`,
  ]);
  for (const [name, chain] of policyChains(marks)) c.set(name, chain);
  return c;
}

/** The base chains with the number of rules each holds: what a drift check expects. */
export const baseRuleCounts = (marks: Marks): Map<string, number> => new Map([...baseChains(marks)].map(([name, [, ...rules]]) => [name, rules.length]));

const elem = (k: string, v: string) => (v ? `${k} : ${v}` : k);
/** Elements per command line: nft parses one huge line slower than several. */
const CHUNK = 2000;

function elementLines(verb: "add" | "delete", set: string, items: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(`${verb} element inet ${TABLE} ${set} { ${items.slice(i, i + CHUNK).join(", ")} }`);
  return out;
}

const chainBlock = (name: string, rules: string[]) => [`add chain inet ${TABLE} ${name}`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`)];

/**
 * The table without targets: sets, ring maps of `bank`, base chains, and with `policy` its
 * identity chains and elements (one transaction: the policy is in force from the table's
 * first moment). Replaces whatever table was there; what the targets need follows as ring
 * batches and a delta from emptyModel.
 */
export function renderSkeleton(bank: number, cap: Capacity, marks: Marks = DEFAULT_MARKS, policy?: PolicyTables): string {
  // the comment records the mark ranges the rings are keyed with: a table made with others
  // is not adopted (adopt.ts)
  checkMarks(marks);
  const out = [`add table inet ${TABLE}`, `delete table inet ${TABLE}`, `add table inet ${TABLE} { comment "${marksComment(marks)}"; }`];
  const pol = policy ? policyParts(policy, marks) : { chains: [], elements: [] };
  // identity chains before the interval maps that go to them are declared (policyParts)
  out.push(...pol.chains);
  for (const decl of Object.values(sets(bank, cap))) out.push(`add ${decl.replace(/^(map|set) (\S+)/, `$1 inet ${TABLE} $2`)}`);
  for (const [name, [head, ...rules]] of baseChains(marks)) {
    out.push(head ? `add chain inet ${TABLE} ${name} { ${head} }` : `add chain inet ${TABLE} ${name}`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`));
  }
  out.push(...pol.elements);
  return out.join("\n") + "\n";
}

/** A dormant table (it hooks nothing) holding skein's sets and base chains as renderSkeleton
 * makes them: the kernel's listing of it is what the base chains of `inet skein` must list
 * as (adopt.ts structureDrift), whatever nft's JSON makes of the text. `drop` removes it. */
export const REF_TABLE = "skein_ref";
export function renderReference(marks: Marks = DEFAULT_MARKS): { load: string; drop: string } {
  const skeleton = renderSkeleton(0, { 4: 4096, 6: 4096 }, marks).split("\n").slice(3);
  const load = [`add table inet ${REF_TABLE}`, `delete table inet ${REF_TABLE}`, `add table inet ${REF_TABLE} { flags dormant; }`, ...skeleton.map((l) => l.replace(` inet ${TABLE} `, ` inet ${REF_TABLE} `))].join("\n");
  return { load, drop: `delete table inet ${REF_TABLE}\n` };
}

/** The Service CIDRs of the node (flag --service-cidr) into svcnet4/6, in one transaction. */
export function serviceCidrScript(cidrs: string[]): string {
  const out = [`flush set inet ${TABLE} svcnet4`, `flush set inet ${TABLE} svcnet6`];
  for (const fam of [4, 6] as const) {
    const mine = cidrs.filter((c) => c.includes(":") === (fam === 6));
    if (mine.length) out.push(`add element inet ${TABLE} svcnet${fam} { ${mine.join(", ")} }`);
  }
  return out.join("\n") + "\n";
}

/**
 * The whole table as one nft transaction, rings and policy included: what `skein tables --nft` prints
 * and what `nft -f` can load by itself. The agent loads the same content faster, as the
 * skeleton, a ring batch and a delta.
 */
export function renderFull(tables: Tables, bank = 0, marks: Marks = DEFAULT_MARKS, node: { hairpin?: AddressTest; serviceCIDRs?: string[] } = {}, policy?: PolicyTables): string {
  const md = model(tables, bank, node.hairpin, marks);
  const skeleton = renderSkeleton(md.bank, ringCapacity(ringSlots(tables)), marks, policy) + (node.serviceCIDRs?.length ? serviceCidrScript(node.serviceCIDRs) : "");
  const rings = renderRingOps(ringDiff(emptyModel(md.bank), md));
  return skeleton + rings + renderDelta(emptyModel(md.bank), md);
}

/**
 * The nft text from `prev` to `next` for everything but the rings: target chains that are
 * new or changed, element deletes and adds, and removed target chains. Ring chains and ring
 * slots a new target needs must be in place before it (ringDiff); empty when nothing changed.
 */
export function renderDelta(prev: Model, next: Model): string {
  const out: string[] = [];
  // 1. chains that are new, or whose rules changed (flush and refill: one chain, not a table)
  for (const [name, rule] of next.chains) {
    const before = prev.chains.get(name);
    if (before === undefined) out.push(...chainBlock(name, [rule]));
    else if (before !== rule) out.push(`flush chain inet ${TABLE} ${name}`, `add rule inet ${TABLE} ${name} ${rule}`);
  }
  // 2. elements: removed or changed ones out, new or changed ones in
  for (const [set, items] of next.elements) {
    const before = prev.elements.get(set) ?? new Map<string, string>();
    const del: string[] = [];
    const add: string[] = [];
    for (const [k, v] of before) {
      const now = items.get(k);
      if (now === undefined || now !== v) del.push(elem(k, v));
    }
    for (const [k, v] of items) if (before.get(k) !== v) add.push(elem(k, v));
    out.push(...elementLines("delete", set, del), ...elementLines("add", set, add));
  }
  // 3. target chains no longer wanted (the verdict map elements that jumped to them are gone)
  for (const name of prev.chains.keys()) if (!next.chains.has(name)) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return out.length ? out.join("\n") + "\n" : "";
}

/** Ring operations as nft text (for `skein tables --nft` and for people). */
export function renderRingOps(o: RingOps): string {
  const out: string[] = [];
  for (const [name, rule] of o.addChains) out.push(...chainBlock(name, [ringRuleText(rule)]));
  const slots = (ops: SlotOp[], value: (op: SlotOp, s: number) => string) => {
    const items: string[] = [];
    for (const op of ops) for (let s = op.from; s < op.to; s++) items.push(`${hex(op.mark)} . ${s}${value(op, s)}`);
    return items;
  };
  for (const [set, ops] of o.del) out.push(...elementLines("delete", set, slots(ops, () => "")));
  for (const [set, ops] of o.add) {
    out.push(...elementLines("add", set, slots(ops, (op, s) => {
      const at = op.r!.ring[s]! * KEY_BYTES;
      return ` : ${addressText(op.r!.keys, at, op.r!.family)} . ${keyPort(op.r!.keys, at)}`;
    })));
  }
  for (const fam of [4, 6] as const) {
    out.push(...elementLines("delete", `hairpin${fam}`, o.hairpinDel[fam].map((ip) => `${ip} . ${ip}`)));
    out.push(...elementLines("add", `hairpin${fam}`, o.hairpinAdd[fam].map((ip) => `${ip} . ${ip}`)));
  }
  for (const name of o.delChains) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return out.length ? out.join("\n") + "\n" : "";
}
