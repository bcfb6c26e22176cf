// Adopting the table an earlier agent left, in a private namespace: read back, one bank
// switch, then what a fresh load gives; a table made otherwise is not adopted.
import { describe, expect, test } from "bun:test";
import { inNetns, run } from "../sys/exec.ts";
import { adoptedModel, listTable, readTable } from "./adopt.ts";
import { datapathIn, listing, objects, tablesOf, useNetns } from "./fixtures.case.ts";
import type { Marks } from "./marks.ts";
import { model } from "./model.ts";

const netns = useNetns(`skt-adopt${Math.random().toString(36).slice(2, 6)}`);

describe("in a kernel", () => {
  test("a new agent adopts the table an earlier one left: one bank switch, then what a fresh load gives", async () => {
    const path = netns("e");
    const a = tablesOf(objects(30));
    const b = tablesOf(objects(32, { skip: (i) => i === 4, endpoints: (i) => (i === 7 ? [] : [`10.244.${i >> 8}.${i & 255}`, `10.246.${i >> 8}.${i & 255}`]) }));
    const nftIn = (args: string[]) => run(inNetns(path, ["nft", ...args])).stdout;
    const earlier = datapathIn(path);
    const later = datapathIn(path);
    try {
      expect(readTable(earlier.nl)).toBeUndefined();
      earlier.dp.sync(a);
      // an interrupted switch left the other bank's maps and a ring chain behind
      nftIn(["add map inet skein be4_1 { typeof meta mark . numgen inc mod 2 : ip daddr . th dport; size 4096; }"]);
      nftIn(["add map inet skein be6_1 { typeof meta mark . numgen inc mod 2 : ip6 daddr . th dport; size 4096; }"]);
      nftIn(["add chain inet skein ring4_1_7"]);
      const found = readTable(earlier.nl)!;
      if (!found.ok) throw new Error(found.why);
      expect(found.model.bank).toBe(0);
      expect(found.stale).toEqual({ bank: 1, chains: ["ring4_1_7"] });
      // the elements read back are the ones skein wrote, key for key
      expect(found.model.elements).toEqual(model(a).elements);
      // (by address: the kernel does not say how many targets use one)
      for (const fam of [4, 6] as const) expect([...found.model.hairpins[fam].keys()].sort()).toEqual([...model(a).hairpins[fam].keys()].sort());
      later.dp.adopt(found.model, found.stale);
      // b ids differ from a's (another compile): every target chain is replaced in the switch
      expect(later.dp.sync(b).kind).toBe("rebuild");
      const adopted = listing(path);
      const fresh = datapathIn(path);
      try {
        fresh.dp.sync(b, { full: true });
        expect(adopted).toEqual(listing(path));
      } finally {
        fresh.close();
      }
      // a table of the name that skein did not make (or an older layout) is not adopted
      nftIn(["delete table inet skein"]);
      nftIn(["add table inet skein"]);
      expect(readTable(earlier.nl)).toMatchObject({ ok: false, why: expect.stringContaining("lacks nat_prerouting") });
    } finally {
      earlier.close();
      later.close();
    }
  });

  test("a table made with other mark ranges, or by an earlier version (none recorded), is not adopted", async () => {
    const path = netns("g");
    const nftIn = (args: string[]) => run(inNetns(path, ["nft", ...args])).stdout;
    const marks: Marks = { mark: 0x00ffff00, ctMark: 0x7fc00000 };
    const live = datapathIn(path, marks);
    try {
      live.dp.sync(tablesOf(objects(5)));
      expect(readTable(live.nl, marks)).toMatchObject({ ok: true });
      expect(readTable(live.nl)).toEqual({ ok: false, why: "table inet skein was made with the mark ranges packet 0x00ffff00, conntrack 0x7fc00000; this agent uses packet 0xffff0000, conntrack 0xffff0000" });
      expect(readTable(live.nl, { ...marks, ctMark: 0xffff0000 })).toMatchObject({ ok: false, why: expect.stringContaining("this agent uses packet 0x00ffff00, conntrack 0xffff0000") });
      // the comment as the kernel lists it; a table without one (what earlier versions made)
      expect(listTable(live.nl)!.comment).toBe("skein marks: packet 0x00ffff00 conntrack 0x7fc00000");
      const terse = (JSON.parse(nftIn(["-j", "-t", "list", "table", "inet", "skein"])) as { nftables: Array<Record<string, any>> }).nftables;
      expect(adoptedModel(terse, new Map(), undefined, marks)).toMatchObject({ ok: false, why: expect.stringContaining("records no mark ranges (made by an earlier version of skein") });
      expect(adoptedModel(terse, new Map(), "skein marks: packet 0x00ffff00 conntrack 0x7fc00000", marks)).toMatchObject({ ok: true });
    } finally {
      live.close();
    }
  });
});
