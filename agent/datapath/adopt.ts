// Adopting the table an earlier agent left: after a restart the kernel still holds `inet
// skein`, and traffic keeps using it. Rather than replace it cold (a moment with no services),
// the new agent reads what it needs to plan a bank switch from the kernel (netlink dumps): which
// bank of ring maps is live, the target and ring chains, the verdict-map and set elements and
// the hairpin addresses. Not the ring slots: the switch fills the other bank from scratch, and
// one nft transaction then points every target chain at it (Datapath.adopt, then sync).
// Only a table made with the same mark ranges (marks.ts), recorded in its comment: the ring
// slots the switch keeps reachable until it is done are keyed by the mark, and the
// masquerade rule that stays tests one bit of the conntrack mark.
import { decodeChain, decodeElems, decodeNamed, decodeRule, decodeSet, decodeTable, elemJson, NFT_MSG, TABLE_FLAGS, tableOf, udataComment, type DumpedElem } from "../sys/nftdump.ts";
import { NFT_SET_ANONYMOUS, NFT_SET_MAP } from "../sys/nftmsg.ts";
import { emptyModel, TABLE, type Model, type RingRule } from "./model.ts";
import { DEFAULT_MARKS, hex32, marksFromComment, sameMarks, type Marks } from "./marks.ts";
import { IDENTITY_CHAIN, policyChains, POLICY_SETS, SERVICE_SOURCE_CHAIN } from "./policy-text.ts";

// the policy chains that are not base chains are as fixed: compared like them
const BASE_CHAINS = ["nat_prerouting", "reject_prerouting", "nat_output", "reject_output", "nat_postrouting", ...policyChains(DEFAULT_MARKS).keys()];
const SETS = ["svc4", "svc6", "noep4", "noep6", "front4", "front6", "hairpin4", "hairpin6", "svcnet4", "svcnet6", ...POLICY_SETS];
const RING_CHAIN = /^ring([46])(a?)_(\d)_(\d+)$/;
const RING_MAP = /^be([46])_(\d)$/;

type J = Record<string, any>;


export type Adoption =
  | { ok: true; model: Model; /** a bank whose maps exist but that nothing uses (an interrupted switch), with its ring chains */ stale?: { bank: number; chains: string[] } }
  | { ok: false; why: string };

/**
 * The model of a table in the kernel, from its listing in nft's JSON shape (`terse`: no elements) and
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

/** `inet skein` as listed, in the shape of nft's JSON: the table without elements (`terse`) and the elements
 * of the verdict maps and sets adoption and drift checks read (`sets`). */
export interface Listing {
  terse: J[];
  sets: Map<string, unknown[]>;
  /** the table's comment, where skein records its mark ranges */
  comment?: string;
  /** the table's flags */
  flags?: string[];
  /** the declared sizes of the ring maps (be4_0…): how many slots they take before a bank switch */
  ringMapSizes?: Map<string, number>;
}

/** The nftables dumps a listing is made of (agent/sys/netlink.ts). */
export interface NftDumper {
  nftDump(what: string, type: number, family: "inet", narrow?: Array<[number, string]>): Uint8Array[];
}

/** The elements of one set or map of `inet <table>`, through a netlink dump of that set alone. */
export function setElements(nl: NftDumper, set: string, table = TABLE): DumpedElem[] {
  return nl.nftDump(`list the elements of ${set} of inet ${table}`, NFT_MSG.GETSETELEM, "inet", [[1, table], [2, set]]).flatMap(decodeElems);
}

/** The sets whose elements adoption and drift checks read, and how their keys are made. */
const ELEMENT_SETS: Record<string, ["frontend" | "hairpin", 4 | 6]> = {
  svc4: ["frontend", 4], svc6: ["frontend", 6], noep4: ["frontend", 4], noep6: ["frontend", 6],
  front4: ["frontend", 4], front6: ["frontend", 6], hairpin4: ["hairpin", 4], hairpin6: ["hairpin", 6],
};

/**
 * Lists `inet <table>` through nftables netlink dumps, in the shape nft's JSON would give
 * (what adoptedModel and the drift checks read); undefined when there is none. Not through
 * nft: nft 1.0.6 fetches every element of the table, the million ring slots at 10,000
 * services included, before it lists anything (agent/sys/nftdump.ts); the dumps ask for the chains, rules, sets, objects and flowtables, and the elements
 * of the few sets read (`elements`), never the ring maps'. Rules are given as the chains they
 * go to and their expressions' bytes, which is what base chains are compared by.
 */
export function listTable(nl: NftDumper, table = TABLE, elements = true): Listing | undefined {
  const dump = (what: string, type: number, narrow: Array<[number, string]> = [[1, table]]) => nl.nftDump(`${what} of inet ${table}`, type, "inet", narrow);
  // every object's attribute 1 names its table; a kernel that ignores the narrowing is
  // filtered here
  const mine = (m: Uint8Array) => tableOf(m) === table;
  const t = dump("list the tables", NFT_MSG.GETTABLE, []).map(decodeTable).find((x) => x.name === table);
  if (!t) return undefined;
  const terse: J[] = [{ table: { family: "inet", name: table } }];
  for (const c of dump("list the chains", NFT_MSG.GETCHAIN).filter(mine).map(decodeChain)) terse.push({ chain: { family: "inet", ...c } });
  for (const r of dump("list the rules", NFT_MSG.GETRULE).filter(mine).map(decodeRule)) terse.push({ rule: { family: "inet", chain: r.chain, expr: r.targets.map((target) => ({ goto: { target } })), bytes: r.exprs } });
  const sets = new Map<string, unknown[]>();
  const ringMapSizes = new Map<string, number>();
  for (const x of dump("list the sets", NFT_MSG.GETSET).filter(mine).map(decodeSet)) {
    // an anonymous set belongs to the rule that looks it up (the ring rules' protocol guard):
    // listed with that rule, as nft lists it, not as a set of the table
    if (x.flags & NFT_SET_ANONYMOUS) continue;
    terse.push(x.flags & NFT_SET_MAP ? { map: { family: "inet", name: x.name } } : { set: { family: "inet", name: x.name } });
    if (isRingMap(x.name)) ringMapSizes.set(x.name, x.size);
    const how = ELEMENT_SETS[x.name];
    if (!elements || !how) continue;
    const elems = setElements(nl, x.name, table);
    sets.set(x.name, elems.map((e) => elemJson(how[0], how[1], e)).filter((e) => e !== undefined));
  }
  for (const o of dump("list the objects", NFT_MSG.GETOBJ).filter(mine).map(decodeNamed)) terse.push({ object: { family: "inet", name: o.name } });
  for (const f of dump("list the flowtables", NFT_MSG.GETFLOWTABLE).filter(mine).map(decodeNamed)) terse.push({ flowtable: { family: "inet", name: f.name } });
  return { terse, sets, comment: udataComment(t.userdata), flags: Object.entries(TABLE_FLAGS).filter(([bit]) => t.flags & Number(bit)).map(([, n]) => n), ringMapSizes };
}

/** Reads `inet skein` from the kernel into a model a bank switch can replace, for an agent
 * using `marks`; undefined when there is none. */
export function readTable(nl: NftDumper, marks: Marks = DEFAULT_MARKS): Adoption | undefined {
  const l = listTable(nl);
  return l && adoptedModel(l.terse, l.sets, l.comment, marks);
}

const isRingMap = (name: string) => RING_MAP.test(name);
const skeinChain = (name: string) => BASE_CHAINS.includes(name) || /^t_\d+(_m)?$/.test(name) || RING_CHAIN.test(name) || IDENTITY_CHAIN.test(name);
const withoutHandles = (x: J) => JSON.stringify(x, (k, v) => (k === "handle" || k === "table" ? undefined : v));

/**
 * What is in the kernel's table that a bank switch would not put right: objects skein does
 * not make (chains, sets, counters, flowtables…), table flags (a dormant table hooks
 * nothing), and base chains or their rules other than skein's as the kernel holds them in
 * `reference` (the same base chains loaded into a dormant table: nft-text.ts renderReference).
 * Target chains, ring chains, ring slots, identity chains and elements are not looked at: a
 * bank switch writes them all anew (and the policy's, policy-text.ts renderPolicyReplace).
 */
export function structureDrift(kernel: Listing, reference: Listing): string[] {
  const out: string[] = [];
  for (const x of kernel.terse) {
    const [kind, body] = Object.entries(x)[0] as [string, J];
    if (kind === "metainfo" || kind === "rule" || kind === "table") continue;
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
    // its rules follow the tables (this node's Service source addresses), rewritten with them
    else if (chain !== SERVICE_SOURCE_CHAIN && got.rules.join("\n") !== want.rules.join("\n")) out.push(`base chain ${chain} does not hold skein's rules (${got.rules.length} rules, skein's are ${want.rules.length})`);
  }
  return out;
}
