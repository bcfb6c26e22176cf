// Telling what someone else did to the kernel state skein owns. Pure: the kernel's change
// notifications (agent/sys/nfevents.ts) and its listings (adopt.ts) come in as data.
//
// Two sources, for two needs:
// - the notifications name every object another process changed, within the poll interval:
//   `describeForeign` turns the transactions that touched `inet skein` or `inet skein_cni`
//   into lines for the log, and says which of the two needs restoring;
// - the listing is what a notification can miss (the listener's buffer overflowed, or a
//   transaction landed while the agent was not listening, around its own writes):
//   `tableDrift` compares the table the kernel holds with the model in force.
import type { NftTransaction } from "../sys/nfevents.ts";
import { adoptedModel, type Listing } from "./adopt.ts";
import { TABLE, type Model } from "./model.ts";
import { baseRuleCounts } from "./nft-text.ts";
import { MASQ_TABLE } from "../cni/masquerade.ts";
import { DEFAULT_MARKS, type Marks } from "./marks.ts";

export interface Foreign {
  /** what happened to `inet skein`, one line per kind of change */
  skein: string[];
  /** what happened to the CNI's masquerade table */
  cni: string[];
}

const NOUN: Record<string, string> = { table: "the table", chain: "chain", rule: "a rule of chain", set: "set", setelem: "elements of", flowtable: "flowtable", obj: "object", other: "something in" };

/**
 * What other processes did to skein's tables in `transactions`. Transactions committed by
 * `self` (this process) are skipped: they are the agent's own. Repeated changes of one kind
 * to one object are counted, not listed (deleting a map's elements is one line).
 */
export function describeForeign(transactions: NftTransaction[], self: number): Foreign {
  const out: Foreign = { skein: [], cni: [] };
  for (const t of transactions) {
    if (t.pid === self) continue;
    const per = { skein: new Map<string, number>(), cni: new Map<string, number>() };
    for (const c of t.changes) {
      if (c.family !== "inet") continue;
      const which = c.table === TABLE ? per.skein : c.table === MASQ_TABLE ? per.cni : undefined;
      if (!which) continue;
      const what = c.kind === "table" ? NOUN.table! : `${NOUN[c.kind] ?? NOUN.other} ${c.name ?? "?"}`;
      const line = `${c.op === "new" ? "added" : "deleted"} ${what}`;
      which.set(line, (which.get(line) ?? 0) + 1);
    }
    const by = `by ${t.proc || "a process"} (pid ${t.pid})`;
    for (const k of ["skein", "cni"] as const) {
      // a table deleted (or made anew) took everything in it along: that is the one line
      const whole = [...per[k].keys()].filter((l) => l.endsWith(NOUN.table!));
      const lines = whole.length ? whole.map((l) => [l, 1] as const) : [...per[k]];
      for (const [line, n] of lines) out[k].push(`${line}${n > 1 ? ` (${n} times)` : ""} ${by}`);
    }
  }
  return out;
}

/**
 * Where the table the kernel lists differs from the model in force: empty when they agree.
 * Compared: that the table is there, has skein's base chains and sets and records `marks` as
 * the ranges it was made with, the rule count of
 * every chain (the base chains', and one in each target and ring chain), the target and ring
 * chains by name, the elements of the verdict maps and sets, the hairpin addresses, and
 * which ring bank is live. Not compared: the million ring slots (listing them would cost
 * seconds at 10,000 services; a change to them is seen through the notifications) and rule
 * text (a rule replaced by another is seen the same way).
 */
export function tableDrift(expected: Model, kernel: Listing | undefined, marks: Marks = DEFAULT_MARKS): string[] {
  if (!kernel) return [`table inet ${TABLE} is missing`];
  const found = adoptedModel(kernel.terse, kernel.sets, kernel.comment, marks);
  if (!found.ok) return [found.why];
  const got = found.model;
  const out: string[] = [];
  if (got.bank !== expected.bank) out.push(`ring bank ${got.bank} is live, not ${expected.bank}`);
  const rules = new Map<string, number>();
  for (const x of kernel.terse) if (x.rule) rules.set(x.rule.chain, (rules.get(x.rule.chain) ?? 0) + 1);
  for (const [chain, n] of baseRuleCounts(marks)) {
    const have = rules.get(chain) ?? 0;
    if (have !== n) out.push(`chain ${chain} has ${have} rules, not ${n}`);
  }
  const keys = (what: string, want: Iterable<string>, have: Iterable<string>, each?: (k: string) => void) => {
    const h = new Set(have);
    const missing: string[] = [];
    for (const k of want) {
      if (!h.delete(k)) missing.push(k);
      else each?.(k);
    }
    if (missing.length) out.push(`${what}: ${missing.length} missing (${sample(missing)})`);
    if (h.size) out.push(`${what}: ${h.size} not skein's (${sample([...h])})`);
  };
  const oneRule = (c: string) => {
    const n = rules.get(c) ?? 0;
    if (n !== 1) out.push(`chain ${c} has ${n} rules, not 1`);
  };
  keys("target chains", expected.chains.keys(), got.chains.keys(), oneRule);
  keys("ring chains", expected.ringChains.keys(), got.ringChains.keys(), oneRule);
  for (const [set, want] of expected.elements) {
    const have = got.elements.get(set) ?? new Map<string, string>();
    keys(`elements of ${set}`, want.keys(), have.keys(), (k) => {
      if (have.get(k) !== want.get(k)) out.push(`element ${k} of ${set} is "${have.get(k)}", not "${want.get(k)}"`);
    });
  }
  for (const fam of [4, 6] as const) keys(`elements of hairpin${fam}`, expected.hairpins[fam].keys(), got.hairpins[fam].keys());
  return out;
}

const sample = (xs: string[]) => xs.slice(0, 3).join(", ") + (xs.length > 3 ? ", …" : "");
