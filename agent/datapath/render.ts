// Renders compiled tables as one nftables transaction that replaces the table `inet skein`
// atomically (a full resync). Pure: text in, text out.
//
// Shape, chosen so that the number of sets, maps and rules that look them up stays constant
// as services grow (the kernel finds a set by walking a list, and every element insert into a
// map costs in proportion to the rules referencing it):
//   svc4/svc6   verdict maps  daddr . l4proto . dport -> goto t_<target>
//   t_<target>  one chain per target: set the mark to the target id, goto its ring chain
//   ring…_<M>   one chain per (family, ring size, affinity): DNAT through the shared map
//               be4/be6 keyed by mark . jhash(client) mod M
//   noep4/noep6 frontends whose target has no backend: rejected at once, never black-holed
//   t_<target>_m  the same for frontends that must be source-NATed (Cluster-policy NodePort,
//               external and load-balancer addresses): it also sets MASQ_BIT in the
//               connection's ct mark, which postrouting masquerades on
//   hairpin4/6  every backend as (addr . addr): a pod reaching itself through a service is
//               masqueraded, or its reply would bypass the translation
// The packet mark carries the target id for the ring lookup (the first packet only, NAT runs
// once per connection); the ct mark's top bit is the masquerade flag, and its other bits are
// left for policy.
import type { Frontend, Tables, Target } from "../../compiler/reference/compile.ts";

export const TABLE = "skein";
export const MASQ_BIT = 0x80000000;
const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

const proto = (p: string) => p.toLowerCase();
const addr = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");
const ringChain = (t: Target) => `ring${t.family}${t.affinity ? "a" : ""}_${t.ringSize}`;

function elements(items: string[]): string {
  return items.length ? ` elements = { ${items.join(", ")} };` : "";
}

export function renderFull(tables: Tables): string {
  const byId = new Map(tables.targets.map((t) => [t.id, t]));
  const live = (f: Frontend) => (byId.get(f.target)?.ringSize ?? 0) > 0;
  const key = (f: Frontend) => `${f.ip} . ${proto(f.protocol)} . ${f.port}`;
  const out: string[] = [`add table inet ${TABLE}`, `delete table inet ${TABLE}`, `table inet ${TABLE} {`];

  for (const fam of [4, 6] as const) {
    const fes = tables.frontends.filter((f) => f.family === fam);
    const type = fam === 4 ? "ipv4_addr" : "ipv6_addr";
    out.push(`  map svc${fam} { type ${type} . inet_proto . inet_service : verdict;${elements(fes.filter(live).map((f) => `${key(f)} : goto t_${f.target}${f.masquerade ? "_m" : ""}`))} }`);
    const pairs = new Set<string>();
    for (const t of tables.targets) if (t.family === fam) for (const b of t.backends) pairs.add(`${b.ip} . ${b.ip}`);
    out.push(`  set hairpin${fam} { type ${type} . ${type};${elements([...pairs].sort())} }`);
    out.push(`  set noep${fam} { type ${fam === 4 ? "ipv4_addr" : "ipv6_addr"} . inet_proto . inet_service;${elements(fes.filter((f) => !live(f)).map(key))} }`);
    const be: string[] = [];
    for (const t of tables.targets) {
      if (t.family !== fam) continue;
      for (let slot = 0; slot < t.ringSize; slot++) {
        const b = t.backends[t.ring[slot]!]!;
        be.push(`${t.id} . ${slot} : ${b.ip} . ${b.port}`);
      }
    }
    // `typeof` gives the key the width of a mark and a hash; the syntax needs some
    // transport-free expression for it.
    out.push(`  map be${fam} { typeof meta mark . numgen inc mod 2 : ${addr(fam)} daddr . th dport;${elements(be)} }`);
  }

  const rings = new Map<string, Target>();
  for (const t of tables.targets) if (t.ringSize) rings.set(ringChain(t), t);
  for (const [name, t] of [...rings.entries()].sort()) {
    const a = addr(t.family);
    const client = t.affinity ? `${a} saddr` : `${a} saddr . th sport`;
    out.push(`  chain ${name} {`);
    out.push(`    meta l4proto { tcp, udp, sctp } dnat ${a} to meta mark . jhash ${client} mod ${t.ringSize} seed 0x0 map @be${t.family}`);
    out.push(`  }`);
  }
  const masqTargets = new Set(tables.frontends.filter((f) => f.masquerade).map((f) => f.target));
  for (const t of tables.targets) {
    if (!t.ringSize) continue;
    out.push(`  chain t_${t.id} {`, `    meta mark set ${t.id} goto ${ringChain(t)} comment "${t.service} ${t.scope}"`, `  }`);
    if (masqTargets.has(t.id)) {
      out.push(`  chain t_${t.id}_m {`, `    ct mark set ct mark | ${hex(MASQ_BIT)} meta mark set ${t.id} goto ${ringChain(t)}`, `  }`);
    }
  }
  out.push(`  chain nat_postrouting {`, `    type nat hook postrouting priority srcnat; policy accept;`);
  out.push(`    ct mark & ${hex(MASQ_BIT)} == ${hex(MASQ_BIT)} masquerade`);
  out.push(`    ct status dnat ip saddr . ip daddr @hairpin4 masquerade`, `    ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`, `  }`);
  // -100 is dstnat; nft 1.0.6 accepts the name only in prerouting. Rejects come just before.
  for (const hook of ["prerouting", "output"] as const) {
    out.push(`  chain nat_${hook} {`, `    type nat hook ${hook} priority -100; policy accept;`);
    out.push(`    ip daddr . meta l4proto . th dport vmap @svc4`, `    ip6 daddr . meta l4proto . th dport vmap @svc6`, `  }`);
    out.push(`  chain reject_${hook} {`, `    type filter hook ${hook} priority -110; policy accept;`);
    for (const fam of [4, 6] as const) {
      out.push(`    ${addr(fam)} daddr . meta l4proto . th dport @noep${fam} meta l4proto tcp reject with tcp reset`);
      out.push(`    ${addr(fam)} daddr . meta l4proto . th dport @noep${fam} reject`);
    }
    out.push(`  }`);
  }
  out.push(`}`, "");
  return out.join("\n");
}
