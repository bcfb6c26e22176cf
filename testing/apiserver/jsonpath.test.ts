// client-go's JSONPath as printer columns use it: what each form reaches, what is refused.
import { describe, expect, test } from "bun:test";
import { evaluate, firstResult, goText, parseJsonPath, ParseError } from "./jsonpath.ts";

const obj = {
  metadata: { name: "n1", labels: { "app.kubernetes.io/name": "skein" }, creationTimestamp: "2026-11-29T10:00:00Z" },
  status: {
    ready: false,
    tableGeneration: 17,
    conditions: [
      { type: "Progressing", status: "True", n: 1 },
      { type: "Ready", status: "False", n: 2 },
    ],
    list: [10, 20, 30, 40],
  },
};
const at = (p: string) => evaluate(parseJsonPath(p), obj);

describe("parseJsonPath and evaluate", () => {
  test("dotted fields, quoted and escaped names, a missing field gives nothing", () => {
    expect(at(".status.tableGeneration")).toEqual([17]);
    expect(at(".status.ready")).toEqual([false]);
    expect(at(".metadata.labels['app.kubernetes.io/name']")).toEqual(["skein"]);
    expect(at(".metadata.labels.app\\.kubernetes\\.io/name")).toEqual(["skein"]);
    expect(at(".status.nothing.here")).toEqual([]);
    expect(at(".")).toEqual([obj]);
    // a field of a list is no field (client-go does not flatten)
    expect(at(".status.conditions.type")).toEqual([]);
  });

  test("indexes, negative indexes, slices, wildcards, recursive descent", () => {
    expect(at(".status.list[0]")).toEqual([10]);
    expect(at(".status.list[-1]")).toEqual([40]);
    expect(at(".status.list[9]")).toEqual([]);
    expect(at(".status.list[1:3]")).toEqual([20, 30]);
    expect(at(".status.list[::2]")).toEqual([10, 30]);
    expect(at(".status.conditions[*].type")).toEqual(["Progressing", "Ready"]);
    expect(at(".status.conditions[1].status")).toEqual(["False"]);
    expect(at("..type")).toEqual(["Progressing", "Ready"]);
  });

  test("filters: equality on strings, comparisons on numbers, existence, another path", () => {
    expect(at('.status.conditions[?(@.type=="Ready")].status')).toEqual(["False"]);
    expect(at(".status.conditions[?(@.type == 'Progressing')].status")).toEqual(["True"]);
    expect(at('.status.conditions[?(@.type!="Ready")].type')).toEqual(["Progressing"]);
    expect(at(".status.conditions[?(@.n>1)].type")).toEqual(["Ready"]);
    expect(at(".status.conditions[?(@.n<=1)].type")).toEqual(["Progressing"]);
    expect(at(".status.conditions[?(@.missing)].type")).toEqual([]);
    expect(at(".status.conditions[?(@.n)].type")).toEqual(["Progressing", "Ready"]);
    expect(at('.status.conditions[?(@.type=="Nope")].status')).toEqual([]);
  });

  test("type errors throw; firstResult makes them an empty cell", () => {
    expect(() => at(".status.conditions[?(@.n==\"1\")].type")).toThrow("incompatible types");
    expect(() => at(".metadata[0]")).toThrow("not an array");
    expect(firstResult(parseJsonPath(".metadata[0]"), obj)).toBeUndefined();
    expect(firstResult(parseJsonPath(".status.conditions[*].type"), obj)).toBe("Progressing");
  });

  test("refused: what client-go refuses and what is not implemented, naming the position", () => {
    for (const bad of [".a[", ".a[]", ".a[1,2]", ".a[?(@.b==)]", ".a[?@.b]", ".a['b]", ".a[::0]", ".a.", "a b", ".a[?(1==@.b)]", ".a\\"]) {
      expect(() => parseJsonPath(bad)).toThrow(ParseError);
    }
    expect(() => parseJsonPath(".a[1,2]")).toThrow("at position 4");
    expect(() => parseJsonPath("." + "a".repeat(2000))).toThrow("longer than");
  });
});

describe("goText: what a string column shows for other values (Go's fmt)", () => {
  test("numbers, booleans, maps, lists", () => {
    expect(goText(17)).toBe("17");
    expect(goText(1.5)).toBe("1.5");
    expect(goText(1234567.5)).toBe("1.2345675e+06");
    expect(goText(0.00001)).toBe("1e-05");
    expect(goText(true)).toBe("true");
    expect(goText({ b: 1, a: "x" })).toBe("map[a:x b:1]");
    expect(goText(["a", 2])).toBe("[a 2]");
  });
});
