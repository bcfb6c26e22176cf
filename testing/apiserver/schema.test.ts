// Structural schemas, pruning, defaulting and validation of custom objects, as kube's.
import { describe, expect, test } from "bun:test";
import { applySchema, backtrackingRisk, MAX_CHECKS, structuralErrors, validateValue, type Schema } from "./schema.ts";
import { describe as text } from "./validate.ts";

const errors = (v: unknown, s: Schema) => validateValue(v, s, "").map((e) => `${e.field}: ${text(e)}`);
const root = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: "object", properties, ...extra });

describe("structuralErrors", () => {
  const fields = (s: unknown) => structuralErrors(s, "s").map((e) => `${e.field}: ${text(e)}`);

  test("a structural schema passes", () => {
    expect(fields(root({ spec: { type: "object", properties: { a: { type: "string" }, m: { type: "object", additionalProperties: { type: "integer" } }, l: { type: "array", items: { type: "string" } }, ios: { "x-kubernetes-int-or-string": true }, any: { "x-kubernetes-preserve-unknown-fields": true } } } }))).toEqual([]);
  });

  test("what kube refuses", () => {
    expect(fields(undefined)).toEqual(["s: Required value: schemas are required"]);
    expect(fields({ type: "array", items: { type: "string" } })).toEqual(['s.type: Invalid value: "array": must be object at the root']);
    expect(fields(root({ a: { properties: {} } }))).toEqual(["s.properties[a].type: Required value: must not be empty for specified object fields"]);
    expect(fields(root({ a: { type: "array" } }))).toEqual(["s.properties[a].items: Required value: must be specified"]);
    expect(fields(root({ a: { type: "object", properties: { b: { type: "string" } }, additionalProperties: { type: "string" } } }))).toEqual(["s.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"]);
    expect(fields(root({ a: { type: "object", additionalProperties: false } }))).toEqual(["s.properties[a].additionalProperties: Forbidden: additionalProperties cannot be set to false"]);
    expect(fields(root({ a: { $ref: "#/x" } }))).toContain("s.properties[a].$ref: Forbidden: $ref is not supported");
    expect(fields(root({ a: { type: "string", "x-kubernetes-validations": [{ rule: "self.size() > 0" }] } }))).toEqual(["s.properties[a].x-kubernetes-validations: Forbidden: CEL validation rules are not supported by this test API server"]);
    expect(fields(root({ a: { type: "strin" } }))).toEqual(['s.properties[a].type: Unsupported value: "strin": supported values: "array", "boolean", "integer", "number", "object", "string"']);
    expect(fields(root({ a: { type: "string", pattern: "(" } }))).toEqual(['s.properties[a].pattern: Invalid value: "(": must be a valid regular expression']);
    expect(fields(root({ a: { type: "string", typo: 1 } }))).toEqual(["s.properties[a].typo: Forbidden: unknown field in a JSON schema"]);
    expect(fields(root({ metadata: { type: "object", properties: { labels: { type: "object" } } } }))).toEqual(["s.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"]);
    expect(fields(root({ a: { type: "integer", default: "x" } }))).toEqual(['s.properties[a].default: Invalid value: "x": Invalid value: "string": <root> in body must be of type integer: "string"']);
  });
});

describe("applySchema: pruning and defaults", () => {
  const s = root({
    spec: {
      type: "object",
      properties: {
        a: { type: "string", default: "d" },
        keep: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
        m: { type: "object", additionalProperties: { type: "object", properties: { x: { type: "integer" } } } },
        l: { type: "array", items: { type: "object", properties: { y: { type: "integer", default: 1 } } } },
        e: { type: "object", "x-kubernetes-embedded-resource": true, properties: { spec: { type: "object" } } },
      },
    },
  });

  test("unknown fields go; apiVersion, kind and metadata stay; preserved subtrees stay whole", () => {
    const o = { apiVersion: "x/v1", kind: "X", metadata: { name: "n", labels: { a: "b" } }, top: 1, spec: { junk: 1, keep: { any: { deep: [1] } }, m: { k: { x: 1, z: 2 } }, l: [{ y: 5, q: 1 }, {}], e: { apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: {}, other: 1 } } };
    expect(applySchema(o, s)).toEqual({ apiVersion: "x/v1", kind: "X", metadata: { name: "n", labels: { a: "b" } }, spec: { a: "d", keep: { any: { deep: [1] } }, m: { k: { x: 1 } }, l: [{ y: 5 }, { y: 1 }], e: { apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: {} } } });
    // the input is left as it was
    expect(o.top).toBe(1);
  });

  test("defaults apply only where the parent exists", () => {
    expect(applySchema({ metadata: {} }, s)).toEqual({ metadata: {} });
  });
});

describe("validateValue: kube's field errors", () => {
  test("types, null and nullable, int-or-string, numbers as integers", () => {
    const s = root({ i: { type: "integer" }, n: { type: "number" }, b: { type: "boolean" }, os: { "x-kubernetes-int-or-string": true }, nl: { type: "string", nullable: true }, nn: { type: "string" } });
    expect(errors({ i: 1, n: 2, b: true, os: "x", nl: null }, s)).toEqual([]);
    expect(errors({ os: 3 }, s)).toEqual([]);
    expect(errors({ i: 1.5, n: "1", b: "true", os: true, nn: null }, s)).toEqual([
      'i: Invalid value: "number": i in body must be of type integer: "number"',
      'n: Invalid value: "string": n in body must be of type number: "string"',
      'b: Invalid value: "string": b in body must be of type boolean: "string"',
      'os: Invalid value: "boolean": os in body must be of type integer,string: "boolean"',
      'nn: Invalid value: "null": nn in body must be of type string: "null"',
    ]);
  });

  test("required, enum, lengths, counts, bounds, pattern, sets, maps", () => {
    const s = root(
      {
        e: { type: "string", enum: ["a", "b"] },
        s: { type: "string", minLength: 2, maxLength: 3, pattern: "^x" },
        l: { type: "array", minItems: 1, maxItems: 2, items: { type: "string" }, "x-kubernetes-list-type": "set" },
        n: { type: "integer", minimum: 1, maximum: 5, multipleOf: 2 },
        m: { type: "object", maxProperties: 1, additionalProperties: { type: "integer" } },
      },
      { required: ["r"] },
    );
    expect(errors({ r: 1, e: "a", s: "xy", l: ["a"], n: 4, m: { a: 1 } }, s)).toEqual([]);
    expect(errors({ e: "c", s: "yyyy", l: ["a", "a", "b"], n: 7, m: { a: 1, b: "x" } }, s)).toEqual([
      "r: Required value",
      'e: Unsupported value: "c": supported values: "a", "b"',
      "s: Too long: may not be more than 3 bytes",
      "s: Invalid value: \"yyyy\": s in body should match '^x'",
      "l: Too many: 3: must have at most 2 items",
      'l[1]: Duplicate value: "a"',
      "n: Invalid value: 7: n in body should be less than or equal to 5",
      "n: Invalid value: 7: n in body should be a multiple of 2",
      "m: Too many: 2: must have at most 1 item",
      'm[b]: Invalid value: "string": m[b] in body must be of type integer: "string"',
    ]);
    expect(errors({ r: 1, s: "x", l: [] }, s)).toEqual(['s: Invalid value: "x": s in body should be at least 2 chars long', "l: Invalid value: 0: l in body should have at least 1 items"]);
  });

  test("allOf, anyOf, oneOf, not", () => {
    const s = root({ v: { type: "integer", anyOf: [{ minimum: 10 }, { maximum: 0 }], not: { enum: [20] } }, w: { type: "integer", oneOf: [{ minimum: 0 }, { maximum: 5 }] } });
    expect(errors({ v: 11, w: 7 }, s)).toEqual([]);
    expect(errors({ v: 5, w: 3 }, s)).toEqual(['v: Invalid value: "integer": must validate at least one schema (anyOf)', 'w: Invalid value: "integer": must validate one and only one schema (oneOf)']);
    expect(errors({ v: 20 }, s)).toEqual(['v: Invalid value: "integer": must not validate the schema (not)']);
  });
});

describe("bounds: what a hostile CRD could make a write cost", () => {
  test("patterns that backtrack exponentially (or are not RE2) are refused; the usual ones pass", () => {
    for (const p of ["^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "^(\\d+|\\*)$", "^v[0-9]+(alpha|beta)?[0-9]*$", "^[+*(]{2}$"]) expect({ p, why: backtrackingRisk(p) }).toEqual({ p, why: undefined });
    for (const p of ["^(a+)+$", "(a|aa)*b", "((ab)*c)+", "(x{2,})+", "(?=a)b", "(a)\\1"]) expect(backtrackingRisk(p)).toBeString();
    // refused when the CRD is written, so no object ever meets it
    expect(structuralErrors(root({ a: { type: "string", pattern: "^(a+)+$" } }), "s")[0]!.field).toBe("s.properties[a].pattern");
    // what it prevents: this takes seconds with a string of 30 characters
    const t0 = performance.now();
    expect(/^(a+)+$/.test("a".repeat(22) + "b")).toBe(false);
    expect(performance.now() - t0).toBeGreaterThan(5);
  });

  test("nested anyOf/oneOf multiply the work: past MAX_CHECKS the value is refused, not validated for ever", () => {
    let s: Schema = { type: "integer" };
    for (let i = 0; i < 30; i++) s = { anyOf: [{ ...s, minimum: 1000 }, s] };
    const t0 = performance.now();
    const errs = validateValue(1, { type: "object", properties: { v: s } } as Schema, "").concat(validateValue({ v: 1 }, { type: "object", properties: { v: s } } as Schema, ""));
    expect(errs.map((e) => e.detail)).toContain(`the schema is too complex to validate this value within ${MAX_CHECKS} checks`);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
