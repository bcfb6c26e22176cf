// Adopting the table an earlier agent left: after a restart the kernel still holds `inet
// skein`, and traffic keeps using it. Rather than replace it cold (a moment with no services),
// the new agent reads what it needs to plan a bank switch from the kernel (nft -j): which
// bank of ring maps is live, the target and ring chains, the verdict-map and set elements and
// the hairpin addresses. Not the ring slots: the switch fills the other bank from scratch, and
// one nft transaction then points every target chain at it (Datapath.adopt, then sync).
// Only a table made with the same mark ranges (marks.ts), recorded in its comment: the ring
// slots the switch keeps reachable until it is done are keyed by the mark, and the
// masquerade rule that stays tests one bit of the conntrack mark.
import { runAsync } from "../sys/exec.ts";
import { emptyModel, TABLE, type Model } from "./render.ts";
import type { RingRule } from "./nfnl.ts";
import { DEFAULT_MARKS, hex32, marksFromComment, sameMarks, type Marks } from "./marks.ts";

const BASE_CHAINS = ["nat_prerouting", "reject_prerouting", "nat_output", "reject_output", "nat_postrouting"];
const SETS = ["svc4", "svc6", "noep4", "noep6", "front4", "front6", "hairpin4", "hairpin6", "svcnet4", "svcnet6"];
const RING_CHAIN = /^ring([46])(a?)_(\d)_(\d+)$/;
const RING_MAP = /^be([46])_(\d)$/;

type J = Record<string, any>;

export type Adoption =
  | { ok: true; model: Model; /** a bank whose maps exist but that nothing uses (an interrupted switch), with its ring chains */ stale?: { bank: number; chains: string[] } }
  | { ok: false; why: string };

/** The table's comment, from nft's text listing (its JSON leaves table comments out). */
export function tableComment(listing: string): string | undefined {
  for (const l of tableHead(listing)) {
    const m = /^\s*comment "(.*)"$/.exec(l);
    if (m) return m[1];
  }
  return undefined;
}

/** The table's flags (`dormant`, `owner`…), from nft's text listing: nft 1.0.6's JSON prints
 * the family where the flags belong. */
export function tableFlags(listing: string): string[] {
  return tableHead(listing).flatMap((l) => /^\s*flags (.+)$/.exec(l)?.[1]?.split(/,\s*/) ?? []);
}

/** The lines between `table … {` and the table's first blank line or member. */
function tableHead(listing: string): string[] {
  const out: string[] = [];
  for (const l of listing.split("\n").slice(1)) {
    if (!l.trim() || /^\s*(chain|set|map|flowtable|counter|quota|limit|ct|secmark|synproxy)\b/.test(l) || l.trim() === "}") break;
    out.push(l);
  }
  return out;
}

/**
 * The model of a table in the kernel, from `nft -j -t list table` (`terse`: no elements) and
 * the elements of the verdict maps and sets (`sets`: name → the `elem` arrays nft listed);
 * `comment` is the table's, `marks` the ranges the adopting agent uses.
 */
export function adoptedModel(terse: J[], sets: Map<string, unknown[]>, comment?: string, marks: Marks = DEFAULT_MARKS): Adoption {
  const chains = terse.filter((x) => x.chain).map((x) => x.chain as J);
  const maps = new Set(terse.filter((x) => x.map || x.set).map((x) => (x.map ?? x.set).name as string));
  const missing = [...BASE_CHAINS.filter((c) => !chains.some((x) => x.name === c)), ...SETS.filter((s) => !maps.has(s))];
  if (missing.length) return { ok: false, why: `table inet ${TABLE} lacks ${missing.join(", ")}: not one this version of skein made` };
  const recorded = marksFromComment(comment);
  const want = `packet ${hex32(marks.mark)}, conntrack ${hex32(marks.ctMark)}`;
  if (!recorded) return { ok: false, why: `table inet ${TABLE} records no mark ranges (made by an earlier version of skein, or not by skein); this agent uses ${want}` };
  if (!sameMarks(recorded, marks)) return { ok: false, why: `table inet ${TABLE} was made with the mark ranges packet ${hex32(recorded.mark)}, conntrack ${hex32(recorded.ctMark)}; this agent uses ${want}` };
  // the live bank: the one the target chains' ring chains belong to, else the one with maps
  const used = new Set<number>();
  for (const r of terse.filter((x) => x.rule && /^t_\d+(_m)?$/.test(x.rule.chain)).map((x) => x.rule as J)) {
    for (const e of r.expr ?? []) {
      const m = RING_CHAIN.exec(e.goto?.target ?? "");
      if (m) used.add(Number(m[3]));
    }
  }
  const banks = new Set([...maps].map((n) => RING_MAP.exec(n)).filter((m) => m).map((m) => Number(m![2])));
  if (used.size > 1) return { ok: false, why: `target chains use ring banks ${[...used].join(" and ")} at once` };
  const bank = used.size ? [...used][0]! : banks.size ? Math.min(...banks) : 0;
  const md = emptyModel(bank);
  for (const c of chains) {
    // rules as the kernel lists them are never the text skein renders: every target chain is
    // refilled by the switch, which is what it must do anyway (it changes their ring chains)
    if (/^t_\d+(_m)?$/.test(c.name)) md.chains.set(c.name, "<as found in the kernel>");
    const m = RING_CHAIN.exec(c.name);
    if (m && Number(m[3]) === bank) {
      const family = Number(m[1]) as 4 | 6;
      const rule: RingRule = { family, affinity: m[2] === "a", ringSize: Number(m[4]), map: `be${family}_${bank}`, mark: marks.mark };
      md.ringChains.set(c.name, rule);
    }
  }
  for (const name of ["svc4", "svc6", "noep4", "noep6", "front4", "front6"]) {
    const el = md.elements.get(name)!;
    for (const e of sets.get(name) ?? []) {
      const [k, v] = Array.isArray(e) ? (e as [J, J]) : [e as J, undefined];
      const key = (k.concat as unknown[]).map(String).join(" . ");
      el.set(key, v ? `goto ${v.goto?.target ?? v.jump?.target}` : "");
    }
  }
  for (const fam of [4, 6] as const) {
    // how many targets use an address is not in the kernel; the sync after an adoption
    // replaces the whole model, counts included
    for (const e of sets.get(`hairpin${fam}`) ?? []) md.hairpins[fam].set(String((e as J).concat[0]), 1);
  }
  const other = [...banks].find((b) => b !== bank);
  if (other === undefined) return { ok: true, model: md };
  const chainsOf = chains.map((c) => c.name as string).filter((n) => Number(RING_CHAIN.exec(n)?.[3] ?? -1) === other);
  return { ok: true, model: md, stale: { bank: other, chains: chainsOf } };
}

/** What `nft -j` lists of `inet skein`: the table without elements (`terse`) and the elements
 * of the verdict maps and sets adoption and drift checks read (`sets`). */
export interface Listing {
  terse: J[];
  sets: Map<string, unknown[]>;
  /** the table's comment, where skein records its mark ranges */
  comment?: string;
  /** the table's flags */
  flags?: string[];
}

/** Runs nft with these arguments and gives what it printed. */
export type NftReader = (args: string[]) => string | Promise<string>;

/** How long one nft listing may take. nft starts a listing over whenever the ruleset changes
 * under it, so while another process keeps committing it may never finish. */
const LIST_TIMEOUT_MS = 10_000;

const nftExec: NftReader = async (args) => {
  const t0 = performance.now();
  const r = await runAsync(["nft", ...args], { allowFail: true, timeoutMs: LIST_TIMEOUT_MS });
  if (r.exitCode === 0) return r.stdout;
  if (performance.now() - t0 >= LIST_TIMEOUT_MS) throw new Error(`nft ${args.join(" ")}: no answer within ${LIST_TIMEOUT_MS} ms (the ruleset kept changing?)`);
  throw new Error(`nft ${args.join(" ")}: ${(r.stderr || r.stdout || `exit ${r.exitCode}`).trim().slice(0, 300)}`);
};

/** Lists `inet <table>` (nft run by `nft`, this network namespace's by default) off the event
 * loop; undefined when there is none. `elements`: also the elements of skein's verdict maps
 * and sets. */
export async function listTable(nft: NftReader = nftExec, table = TABLE, elements = true): Promise<Listing | undefined> {
  const nftJson = async (args: string[]): Promise<J[]> => (JSON.parse(await nft(["-j", ...args])) as { nftables: J[] }).nftables;
  const tables = (await nftJson(["list", "tables", "inet"])).filter((x) => x.table?.name === table);
  if (!tables.length) return undefined;
  const terse = await nftJson(["-t", "list", "table", "inet", table]);
  const sets = new Map<string, unknown[]>();
  for (const x of elements ? terse : []) {
    const s = x.map ?? x.set;
    if (!s || !SETS.includes(s.name)) continue;
    const listed = (await nftJson(["list", x.map ? "map" : "set", "inet", table, s.name])).find((y) => y.map || y.set);
    sets.set(s.name, ((listed?.map ?? listed?.set)?.elem as unknown[]) ?? []);
  }
  const text = await nft(["-t", "list", "table", "inet", table]);
  return { terse, sets, comment: tableComment(text), flags: tableFlags(text) };
}

/** Reads `inet skein` from the kernel into a model a bank switch can replace, for an agent
 * using `marks`; undefined when there is none. */
export async function readTable(nft: NftReader = nftExec, marks: Marks = DEFAULT_MARKS): Promise<Adoption | undefined> {
  const l = await listTable(nft);
  return l && adoptedModel(l.terse, l.sets, l.comment, marks);
}

const isRingMap = (name: string) => RING_MAP.test(name);
const skeinChain = (name: string) => BASE_CHAINS.includes(name) || /^t_\d+(_m)?$/.test(name) || RING_CHAIN.test(name);
const withoutHandles = (x: J) => JSON.stringify(x, (k, v) => (k === "handle" || k === "table" ? undefined : v));

/**
 * What is in the kernel's table that a bank switch would not put right: objects skein does
 * not make (chains, sets, counters, flowtables…), table flags (a dormant table hooks
 * nothing), and base chains or their rules other than skein's as the kernel holds them in
 * `reference` (the same base chains loaded into a dormant table: render.ts renderReference).
 * Target chains, ring chains, ring slots and elements are not looked at: a bank switch writes
 * them all anew.
 */
export function structureDrift(kernel: Listing, reference: Listing): string[] {
  const out: string[] = [];
  for (const x of kernel.terse) {
    const [kind, body] = Object.entries(x)[0] as [string, J];
    if (kind === "metainfo" || kind === "rule") continue;
    if (kind === "table") continue;
    if (kind === "chain") {
      if (!skeinChain(body.name)) out.push(`chain ${body.name} is not skein's`);
    } else if (kind === "set" || kind === "map") {
      if (!SETS.includes(body.name) && !isRingMap(body.name)) out.push(`${kind} ${body.name} is not skein's`);
    } else out.push(`${kind} ${body.name ?? ""} is not skein's`.replace("  ", " "));
  }
  if (kernel.flags?.length) out.push(`table inet ${TABLE} has flags ${kernel.flags.join(", ")}`);
  for (const chain of BASE_CHAINS) {
    const of = (l: Listing) => ({
      head: withoutHandles(l.terse.find((x) => x.chain?.name === chain)?.chain ?? {}),
      rules: l.terse.filter((x) => x.rule?.chain === chain).map((x) => withoutHandles(x.rule)),
    });
    const want = of(reference);
    const got = of(kernel);
    if (got.head !== want.head) out.push(`base chain ${chain} is not declared as skein declares it`);
    else if (got.rules.join("\n") !== want.rules.join("\n")) out.push(`base chain ${chain} does not hold skein's rules (${got.rules.length} rules, skein's are ${want.rules.length})`);
  }
  return out;
}
