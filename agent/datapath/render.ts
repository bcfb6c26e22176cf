// Renders compiled tables into nftables: a model of the table `inet skein` (its chains and
// the elements of its sets and maps), a full transaction that replaces the table atomically,
// and a delta transaction between two models that touches only what changed. Pure.
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
import type { Tables, Target } from "../../compiler/reference/compile.ts";
import { ringSize } from "../../compiler/reference/maglev.ts";

export const TABLE = "skein";
export const MASQ_BIT = 0x80000000;
const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

const proto = (p: string) => p.toLowerCase();
const addr = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");
const ringChain = (t: Pick<Target, "family" | "affinity" | "ringSize">) => `ring${t.family}${t.affinity ? "a" : ""}_${t.ringSize}`;

function ringRule(t: Pick<Target, "family" | "affinity" | "ringSize">): string {
  const a = addr(t.family);
  const client = t.affinity ? `${a} saddr` : `${a} saddr . th sport`;
  return `meta l4proto { tcp, udp, sctp } dnat ${a} to meta mark . jhash ${client} mod ${t.ringSize} seed 0x0 map @be${t.family}`;
}

/**
 * Ring chains made with every full load: those for 1 to PRESET_BACKENDS backends. nft 1.0.6
 * cannot add a rule that looks up `be4` once the map exists in the kernel (it re-reads the
 * map's `typeof … th dport` as conflicting with the rule's protocols), so a delta can never
 * create a ring chain; with these made up front, only a service growing past this many
 * backends (or a new ring factor) costs a full resync.
 */
export const PRESET_BACKENDS = 64;

/** Set and map declarations: fixed, whatever the services. */
const SETS: Record<string, string> = {};
for (const fam of [4, 6] as const) {
  const type = fam === 4 ? "ipv4_addr" : "ipv6_addr";
  SETS[`svc${fam}`] = `map svc${fam} { type ${type} . inet_proto . inet_service : verdict; }`;
  SETS[`noep${fam}`] = `set noep${fam} { type ${type} . inet_proto . inet_service; }`;
  SETS[`hairpin${fam}`] = `set hairpin${fam} { type ${type} . ${type}; }`;
  // `typeof` gives the key the width of a mark and a hash; the syntax needs some
  // transport-free expression for it.
  SETS[`be${fam}`] = `map be${fam} { typeof meta mark . numgen inc mod 2 : ${addr(fam)} daddr . th dport; }`;
}

/** Base chains: fixed too. -100 is dstnat (nft 1.0.6 takes the name only in prerouting). */
function baseChains(): Map<string, string[]> {
  const c = new Map<string, string[]>();
  for (const hook of ["prerouting", "output"] as const) {
    c.set(`nat_${hook}`, [`type nat hook ${hook} priority -100; policy accept;`, `ip daddr . meta l4proto . th dport vmap @svc4`, `ip6 daddr . meta l4proto . th dport vmap @svc6`]);
    const rej = [`type filter hook ${hook} priority -110; policy accept;`];
    for (const fam of [4, 6] as const) {
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} meta l4proto tcp reject with tcp reset`);
      rej.push(`${addr(fam)} daddr . meta l4proto . th dport @noep${fam} reject`);
    }
    c.set(`reject_${hook}`, rej);
  }
  c.set(`nat_postrouting`, [
    `type nat hook postrouting priority srcnat; policy accept;`,
    `ct mark & ${hex(MASQ_BIT)} == ${hex(MASQ_BIT)} masquerade`,
    `ct status dnat ip saddr . ip daddr @hairpin4 masquerade`,
    `ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`,
  ]);
  return c;
}

export interface RingModel {
  family: 4 | 6;
  /** "addr . port" per backend */
  backends: string[];
  /** slot -> index into backends */
  ring: Int32Array;
}

export interface Model {
  /** regular chains (ring and target chains) with their rules */
  chains: Map<string, string[]>;
  /** set/map name -> element key -> value ("" for a set); the rings are kept apart */
  elements: Map<string, Map<string, string>>;
  /** target id -> its ring: the elements `id . slot : backend` of be4/be6, kept as arrays
   * (millions of slots at 10k services would not fit a Map of strings in time) */
  rings: Map<number, RingModel>;
}

export function model(tables: Tables, ringFactor: number): Model {
  const elements = new Map<string, Map<string, string>>(Object.keys(SETS).filter((n) => !n.startsWith("be")).map((n) => [n, new Map()]));
  const rings = new Map<number, RingModel>();
  const el = (set: string, k: string, v = "") => elements.get(set)!.set(k, v);
  const chains = new Map<string, string[]>();
  for (let n = 1; n <= PRESET_BACKENDS; n++) {
    for (const family of [4, 6] as const) {
      for (const affinity of [false, true]) {
        const r = { family, affinity, ringSize: ringSize(n, ringFactor) };
        chains.set(ringChain(r), [ringRule(r)]);
      }
    }
  }
  const byId = new Map(tables.targets.map((t) => [t.id, t]));
  for (const f of tables.frontends) {
    const k = `${f.ip} . ${proto(f.protocol)} . ${f.port}`;
    if ((byId.get(f.target)?.ringSize ?? 0) > 0) el(`svc${f.family}`, k, `goto t_${f.target}${f.masquerade ? "_m" : ""}`);
    else el(`noep${f.family}`, k);
  }
  const masq = new Set(tables.frontends.filter((f) => f.masquerade).map((f) => f.target));
  for (const t of tables.targets) {
    for (const b of t.backends) el(`hairpin${t.family}`, `${b.ip} . ${b.ip}`);
    if (!t.ringSize) continue;
    rings.set(t.id, { family: t.family, backends: t.backends.map((b) => `${b.ip} . ${b.port}`), ring: t.ring });
    chains.set(ringChain(t), [ringRule(t)]);
    chains.set(`t_${t.id}`, [`meta mark set ${t.id} goto ${ringChain(t)} comment "${t.service} ${t.scope}"`]);
    if (masq.has(t.id)) chains.set(`t_${t.id}_m`, [`ct mark set ct mark | ${hex(MASQ_BIT)} meta mark set ${t.id} goto ${ringChain(t)}`]);
  }
  return { chains, elements, rings };
}

function ringElements(id: number, r: RingModel, slots?: number[]): string[] {
  const out: string[] = [];
  if (slots) for (const s of slots) out.push(`${id} . ${s} : ${r.backends[r.ring[s]!]}`);
  else for (let s = 0; s < r.ring.length; s++) out.push(`${id} . ${s} : ${r.backends[r.ring[s]!]}`);
  return out;
}

const sameRing = (a: RingModel, b: RingModel) =>
  a.family === b.family && a.ring.length === b.ring.length && a.backends.length === b.backends.length && a.backends.every((x, i) => x === b.backends[i]) && a.ring.every((x, i) => x === b.ring[i]);

const elem = (k: string, v: string) => (v ? `${k} : ${v}` : k);
/** Elements per command line: nft parses one huge line slower than several. */
const CHUNK = 2000;

function elementLines(verb: "add" | "delete", set: string, items: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(`${verb} element inet ${TABLE} ${set} { ${items.slice(i, i + CHUNK).join(", ")} }`);
  return out;
}

const chainBlock = (name: string, rules: string[]) => [`add chain inet ${TABLE} ${name}`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`)];

/** One transaction that replaces the table whole. */
export function renderFull(md: Model): string {
  const out = [`add table inet ${TABLE}`, `delete table inet ${TABLE}`, `add table inet ${TABLE}`];
  for (const decl of Object.values(SETS)) out.push(`add ${decl.replace(/^(map|set) (\S+)/, `$1 inet ${TABLE} $2`)}`);
  for (const [name, rules] of md.chains) out.push(...chainBlock(name, rules));
  for (const [name, [head, ...rules]] of baseChains()) {
    out.push(`add chain inet ${TABLE} ${name} { ${head} }`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`));
  }
  for (const [set, items] of md.elements) out.push(...elementLines("add", set, [...items].map(([k, v]) => elem(k, v))));
  for (const fam of [4, 6] as const) {
    const items: string[] = [];
    for (const [id, r] of md.rings) if (r.family === fam) items.push(...ringElements(id, r));
    out.push(...elementLines("add", `be${fam}`, items));
  }
  return out.join("\n") + "\n";
}

/**
 * One transaction from `prev` to `next`: element deletes and adds, new chains, rewritten
 * chains and removed chains, ordered so that nothing is referenced before it exists or after
 * it is gone. Empty when nothing changed; undefined when only a full load can get there
 * (a new ring chain: see PRESET_BACKENDS).
 */
export function renderDelta(prev: Model, next: Model): string | undefined {
  for (const name of next.chains.keys()) if (name.startsWith("ring") && !prev.chains.has(name)) return undefined;
  const out: string[] = [];
  // 1. chains that are new, or whose rules changed (flush and refill: one chain, not a table)
  for (const [name, rules] of next.chains) {
    const before = prev.chains.get(name);
    if (!before) out.push(...chainBlock(name, rules));
    else if (before.join("\n") !== rules.join("\n")) out.push(`flush chain inet ${TABLE} ${name}`, ...rules.map((r) => `add rule inet ${TABLE} ${name} ${r}`));
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
  for (const fam of [4, 6] as const) {
    const del: string[] = [];
    const add: string[] = [];
    for (const [id, before] of prev.rings) {
      if (before.family !== fam) continue;
      const now = next.rings.get(id);
      if (!now || now.family !== fam) for (let s = 0; s < before.ring.length; s++) del.push(`${id} . ${s}`);
    }
    for (const [id, now] of next.rings) {
      if (now.family !== fam) continue;
      const before = prev.rings.get(id);
      if (!before || before.family !== fam) {
        add.push(...ringElements(id, now));
        continue;
      }
      if (sameRing(before, now)) continue;
      const changed: number[] = [];
      for (let s = 0; s < now.ring.length; s++) {
        if (s >= before.ring.length || before.backends[before.ring[s]!] !== now.backends[now.ring[s]!]) changed.push(s);
      }
      for (let s = now.ring.length; s < before.ring.length; s++) del.push(`${id} . ${s}`);
      for (const s of changed) if (s < before.ring.length) del.push(`${id} . ${s}`);
      add.push(...ringElements(id, now, changed));
    }
    out.push(...elementLines("delete", `be${fam}`, del), ...elementLines("add", `be${fam}`, add));
  }
  // 3. chains no longer wanted: target chains first, then the ring chains they jumped to
  const gone = [...prev.chains.keys()].filter((n) => !next.chains.has(n)).sort((a, b) => Number(a.startsWith("ring")) - Number(b.startsWith("ring")));
  for (const name of gone) out.push(`flush chain inet ${TABLE} ${name}`, `delete chain inet ${TABLE} ${name}`);
  return out.length ? out.join("\n") + "\n" : "";
}
