// Ring operations between two models: what changes for a change, and a fill in parts.
import { describe, expect, test } from "bun:test";
import { objects, tablesOf } from "./fixtures.case.ts";
import { emptyModel, model } from "./model.ts";
import { renderDelta } from "./nft-text.ts";
import { ringDiff, splitFill } from "./ring-ops.ts";

describe("ringDiff", () => {
  const before = tablesOf(objects(50));
  test("one endpoint of one service: only that target's ring slots and the hairpin pair, no nft text", () => {
    const after = tablesOf(objects(50, { endpoints: (i) => (i === 7 ? ["10.244.0.7", "10.246.0.7"] : [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]) }), before);
    expect(renderDelta(model(before), model(after))).toBe("");
    const rings = ringDiff(model(before), model(after));
    expect(rings.hairpinAdd).toEqual({ 4: ["10.246.0.7"], 6: [] });
    expect(rings.hairpinDel).toEqual({ 4: ["10.245.0.7"], 6: [] });
    const target = after.targets.find((t) => t.service === "default/s7:80/TCP")!.id;
    expect(rings.addChains).toEqual([]);
    expect(rings.delChains).toEqual([]);
    for (const m of [rings.add, rings.del]) {
      expect([...m.keys()]).toEqual(["be4_0"]);
      expect(m.get("be4_0")!.every((op) => op.mark === target << 16)).toBe(true); // the default range: the upper 16 bits
    }
  });
});

test("a fill split into batches: every slot once, none over the limit, chains and hairpins first", () => {
  const md = model(tablesOf(objects(5)));
  const fill = ringDiff(emptyModel(0), md);
  const parts = splitFill(fill, 40);
  const slots = (o: typeof fill) => [...o.add.values()].flat().flatMap((op) => Array.from({ length: op.to - op.from }, (_, i) => `${op.mark}/${op.from + i}`));
  expect(parts.length).toBe(Math.ceil(slots(fill).length / 40));
  for (const p of parts) expect(slots(p).length).toBeLessThanOrEqual(40);
  expect(parts.flatMap(slots)).toEqual(slots(fill));
  expect(parts[0]!.addChains).toEqual(fill.addChains);
  expect(parts[0]!.hairpinAdd).toEqual(fill.hairpinAdd);
  for (const p of parts.slice(1)) expect([p.addChains.length, p.hairpinAdd[4].length]).toEqual([0, 0]);
  expect(() => splitFill(ringDiff(md, emptyModel(0)), 40)).toThrow(/removes no/);
});

