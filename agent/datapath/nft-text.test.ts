// The table as nft text (no root). That nft loads the one-file form into the table the
// agent's path loads is test/nft-text.e2e.test.ts's.
import { describe, expect, test } from "bun:test";
import { objects, tablesOf } from "./fixtures.case.ts";
import type { Marks } from "./marks.ts";
import { model } from "./model.ts";
import { renderDelta, renderFull } from "./nft-text.ts";

describe("renderFull", () => {
  test("sets, maps and rules that look them up stay constant as services grow", () => {
    const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
    const small = renderFull(tablesOf(objects(3)));
    const large = renderFull(tablesOf(objects(300)));
    for (const re of [/^add (map|set) /gm, /@be4_0/g, /vmap @svc4/g]) expect(count(large, re)).toBe(count(small, re));
    expect(count(large, /^add chain inet skein t_\d+$/gm)).toBe(300);
    expect(count(large, /^add chain inet skein ring4_/gm)).toBe(1); // one ring size, one ring chain
  });

  test("replaces the table atomically", () => {
    expect(renderFull(tablesOf(objects(1))).split("\n").slice(0, 3)).toEqual(["add table inet skein", "delete table inet skein", 'add table inet skein { comment "skein marks: packet 0xffff0000 conntrack 0xffff0000"; }']);
  });
});

describe("mark ranges", () => {
  // the id in bits 8-23 of the packet mark, the masquerade flag in bit 30 of the ct mark
  const marks: Marks = { mark: 0x00ffff00, ctMark: 0x7fc00000 };
  const t = tablesOf(objects(12));
  const text = renderFull(t, 0, marks);

  test("target chains change only skein's bits of the packet mark; rings are keyed by them", () => {
    for (const x of t.targets) {
      const v = `0x${(x.id << 8).toString(16).padStart(8, "0")}`;
      expect(text).toContain(`add rule inet skein t_${x.id} meta mark set meta mark & 0xff0000ff | ${v} goto ring4_0_53 comment`);
      expect(text).toMatch(new RegExp(`add element inet skein be4_0 \\{ (.*, )?${v} \\. 0 : `));
    }
    // NodePorts (every fifth service) masquerade: one bit of the ct mark, the others kept
    const nodePort = t.frontends.find((f) => f.masquerade)!.target;
    expect(text).toContain(`add rule inet skein t_${nodePort}_m ct mark set ct mark | 0x40000000 meta mark set meta mark & 0xff0000ff | 0x0000${(nodePort << 8).toString(16).padStart(4, "0")} goto ring4_0_53`);
    expect(text).toContain("add rule inet skein nat_postrouting ct mark & 0x40000000 == 0x40000000 masquerade");
    expect(text).toContain("dnat ip to meta mark & 0x00ffff00 . jhash ip saddr . th sport mod 53 seed 0x0 map @be4_0");
    expect(text).toContain('add table inet skein { comment "skein marks: packet 0x00ffff00 conntrack 0x7fc00000"; }');
    // nothing sets the whole mark any more, nor looks the whole mark up
    expect(text).not.toMatch(/meta mark set \d|meta mark set 0x|to meta mark \./);
    expect(renderFull(t)).toContain("meta mark set meta mark & 0x0000ffff | 0x00010000 goto");
  });
});

describe("renderDelta", () => {
  const before = tablesOf(objects(50));
  test("no change, no transaction", () => {
    expect(renderDelta(model(before), model(tablesOf(objects(50), before)))).toBe("");
  });
});
