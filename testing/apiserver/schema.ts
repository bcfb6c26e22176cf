// A CRD's openAPIV3Schema as kube-apiserver uses it: checked to be structural when the CRD
// is written (every node typed, arrays with items, no $ref, no additionalProperties beside
// properties, metadata at the root only name and generateName, …), and applied to every
// custom object written: defaults filled in, unknown fields pruned (unless
// x-kubernetes-preserve-unknown-fields), then the value validated (types, required,
// nullable, enum, lengths, item and property counts, bounds, patterns, list-type set,
// allOf/anyOf/oneOf/not), with kube's field errors. x-kubernetes-validations (CEL rules) and
// formats are not evaluated: a CRD with CEL rules is refused, formats are accepted unchecked.
import { describe, type FieldError } from "./errors.ts";

export type Schema = Record<string, unknown>;
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

const TYPES = ["array", "boolean", "integer", "number", "object", "string"];
const KEYWORDS = new Set([
  "$schema", "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
  "uniqueItems", "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties", "additionalProperties", "externalDocs", "example",
  "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
]);
/** what kube's structural schemas forbid, with its words */
const FORBIDDEN: Record<string, string> = {
  $ref: "$ref is not supported",
  id: "id is not supported",
  definitions: "definitions is not supported",
  dependencies: "dependencies is not supported",
  additionalItems: "additionalItems is not supported",
  patternProperties: "patternProperties is not supported",
  "x-kubernetes-validations": "CEL validation rules are not supported by this test API server",
};

const forbidden = (field: string, detail: string): FieldError => ({ field, value: "", detail, type: "FieldValueForbidden" });
const required = (field: string, detail = ""): FieldError => ({ field, value: "", detail, type: "FieldValueRequired" });
const bad = (field: string, value: unknown, detail: string): FieldError => ({ field, value, detail });

/** The problems that keep `s` (a version's openAPIV3Schema, at `path`) from being a structural
 * schema kube-apiserver would serve. */
export function structuralErrors(s: unknown, path: string): FieldError[] {
  const errs: FieldError[] = [];
  if (!isObj(s)) return [required(path, "schemas are required")];
  node(s, path, errs, "root");
  if (s.type !== "object") errs.push(bad(`${path}.type`, s.type ?? "", "must be object at the root"));
  const meta = isObj(s.properties) ? s.properties.metadata : undefined;
  if (meta !== undefined) {
    const f = `${path}.properties[metadata]`;
    const ok = isObj(meta) && Object.keys(meta).every((k) => k === "type" || k === "properties" || k === "description") && (!isObj(meta.properties) || Object.entries(meta.properties).every(([k, v]) => (k === "name" || k === "generateName") && isObj(v) && v.type === "string"));
    if (!ok) errs.push(forbidden(f, "must not specify anything other than name and generateName, but metadata is implicitly specified"));
  }
  return errs;
}

function node(s: Obj, path: string, errs: FieldError[], where: "root" | "field" | "junctor"): void {
  for (const k of Object.keys(s)) {
    if (FORBIDDEN[k]) errs.push(forbidden(`${path}.${k}`, FORBIDDEN[k]));
    else if (!KEYWORDS.has(k)) errs.push(forbidden(`${path}.${k}`, "unknown field in a JSON schema"));
  }
  const intOrString = s["x-kubernetes-int-or-string"] === true;
  const preserve = s["x-kubernetes-preserve-unknown-fields"] === true;
  for (const k of ["nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string", "uniqueItems", "exclusiveMaximum", "exclusiveMinimum"]) {
    if (s[k] !== undefined && typeof s[k] !== "boolean") errs.push(bad(`${path}.${k}`, s[k], "must be a boolean"));
  }
  if (s.type !== undefined) {
    if (typeof s.type !== "string" || !TYPES.includes(s.type)) errs.push({ field: `${path}.type`, value: s.type, detail: TYPES.map((t) => `"${t}"`).join(", "), type: "FieldValueNotSupported" });
    else if (intOrString) errs.push(forbidden(`${path}.type`, "must be empty if x-kubernetes-int-or-string is true"));
  } else if (where !== "junctor" && !intOrString && !preserve) errs.push(required(`${path}.type`, "must not be empty for specified object fields"));
  if (s.uniqueItems === true) errs.push(forbidden(`${path}.uniqueItems`, "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"));
  if (s["x-kubernetes-embedded-resource"] === true && s.type !== "object") errs.push(bad(`${path}.type`, s.type ?? "", "must be object if x-kubernetes-embedded-resource is true"));
  for (const k of ["maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"]) {
    if (s[k] !== undefined && !(Number.isSafeInteger(s[k]) && (s[k] as number) >= 0)) errs.push(bad(`${path}.${k}`, s[k], "must be a non-negative integer"));
  }
  for (const k of ["maximum", "minimum", "multipleOf"]) if (s[k] !== undefined && typeof s[k] !== "number") errs.push(bad(`${path}.${k}`, s[k], "must be a number"));
  if (typeof s.multipleOf === "number" && s.multipleOf <= 0) errs.push(bad(`${path}.multipleOf`, s.multipleOf, "must be greater than zero"));
  if (s.pattern !== undefined) {
    if (typeof s.pattern !== "string") errs.push(bad(`${path}.pattern`, s.pattern, "must be a string"));
    else if (!regexOf(s.pattern)) errs.push(bad(`${path}.pattern`, s.pattern, "must be a valid regular expression"));
    else {
      const why = backtrackingRisk(s.pattern);
      if (why) errs.push(bad(`${path}.pattern`, s.pattern, why));
    }
  }
  if (s.required !== undefined && !(Array.isArray(s.required) && s.required.every((r) => typeof r === "string"))) errs.push(bad(`${path}.required`, "", "must be a list of field names"));
  if (s.enum !== undefined && !Array.isArray(s.enum)) errs.push(bad(`${path}.enum`, "", "must be a list"));
  const lt = s["x-kubernetes-list-type"];
  if (lt !== undefined) {
    if (!["atomic", "set", "map"].includes(lt as string)) errs.push({ field: `${path}.x-kubernetes-list-type`, value: lt, detail: '"atomic", "map", "set"', type: "FieldValueNotSupported" });
    else if (s.type !== "array") errs.push(bad(`${path}.x-kubernetes-list-type`, lt, "must only be used if type is array"));
  }
  if (s.properties !== undefined) {
    if (!isObj(s.properties)) errs.push(bad(`${path}.properties`, "", "must be a map of schemas"));
    else {
      if (s.type !== undefined && s.type !== "object") errs.push(forbidden(`${path}.properties`, "must not be specified unless type is object"));
      for (const [k, v] of Object.entries(s.properties)) {
        if (!isObj(v)) errs.push(bad(`${path}.properties[${k}]`, "", "must be a schema object"));
        else node(v, `${path}.properties[${k}]`, errs, where === "junctor" ? "junctor" : "field");
      }
    }
  }
  const ap = s.additionalProperties;
  if (ap !== undefined) {
    if (ap === false) errs.push(forbidden(`${path}.additionalProperties`, "additionalProperties cannot be set to false"));
    else if (ap !== true && !isObj(ap)) errs.push(bad(`${path}.additionalProperties`, "", "must be a schema object or true"));
    if (s.properties !== undefined) errs.push(forbidden(`${path}.additionalProperties`, "additionalProperties and properties are mutual exclusive"));
    if (isObj(ap)) node(ap, `${path}.additionalProperties`, errs, where === "junctor" ? "junctor" : "field");
  }
  if (s.items !== undefined) {
    if (Array.isArray(s.items)) errs.push(forbidden(`${path}.items`, "items must be a schema object and not an array"));
    else if (!isObj(s.items)) errs.push(bad(`${path}.items`, "", "must be a schema object"));
    else node(s.items, `${path}.items`, errs, where === "junctor" ? "junctor" : "field");
  } else if (s.type === "array" && where !== "junctor") errs.push(required(`${path}.items`, "must be specified"));
  for (const k of ["allOf", "anyOf", "oneOf"]) {
    if (s[k] === undefined) continue;
    if (!Array.isArray(s[k]) || !(s[k] as unknown[]).every(isObj)) errs.push(bad(`${path}.${k}`, "", "must be a list of schemas"));
    else (s[k] as Obj[]).forEach((x, i) => node(x, `${path}.${k}[${i}]`, errs, "junctor"));
  }
  if (s.not !== undefined) {
    if (!isObj(s.not)) errs.push(bad(`${path}.not`, "", "must be a schema object"));
    else node(s.not, `${path}.not`, errs, "junctor");
  }
  if (s.default !== undefined && where !== "junctor" && !errs.length) {
    const d = applySchema(s.default, s, false);
    for (const e of validateValue(d, s, "")) errs.push(bad(`${path}.default`, s.default, `${e.field === "<root>" ? "" : `${e.field}: `}${describe(e)}`));
  }
}

/**
 * Why this server will not run `p` on hostile strings, or undefined. kube runs patterns with
 * RE2, in linear time; an ECMAScript engine backtracks, so a quantified group holding a
 * quantifier (`(a+)+`) can take exponential time on a 3 MiB string. Those are refused, and so
 * are lookarounds and backreferences, which RE2 (so kube) does not accept either.
 */
export function backtrackingRisk(p: string): string | undefined {
  if (/\(\?<?[=!]/.test(p) || /\\[1-9]|\\k</.test(p)) return "must be RE2 syntax: lookarounds and backreferences are not";
  // a group, then a quantifier, where the group's body holds a quantifier or an alternation
  // of its own (`(a|a)+` backtracks as `(a+)+` does)
  const stack: boolean[] = [];
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === "\\") {
      i++;
      continue;
    }
    if (c === "[") {
      // a class: skip to its end (a quantifier inside is a literal)
      for (i++; i < p.length && p[i] !== "]"; i++) if (p[i] === "\\") i++;
      continue;
    }
    if (c === "(") stack.push(false);
    else if (c === ")") {
      const inner = stack.pop() ?? false;
      const next = p[i + 1];
      const quantified = next === "*" || next === "+" || next === "{" || next === "?";
      if (inner && quantified && next !== "?") return "a quantified group holding a quantifier or an alternation is refused here (this server's regular expressions backtrack, RE2's do not)";
      if (stack.length && (inner || quantified)) stack[stack.length - 1] = true;
    } else if ((c === "*" || c === "+" || c === "{" || c === "|") && stack.length) stack[stack.length - 1] = true;
  }
  return undefined;
}

const regexCache = new Map<string, RegExp | null>();
/** an ECMAScript reading of the pattern (kube's is Go's RE2: the two agree on the common subset) */
function regexOf(p: string): RegExp | null {
  let r = regexCache.get(p);
  if (r === undefined) {
    try {
      r = new RegExp(p, "u");
    } catch {
      r = null;
    }
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(p, r);
  }
  return r;
}

/**
 * `v` with the schema applied as kube-apiserver applies it before validating: defaults of
 * absent fields filled in, and fields the schema does not specify pruned (apiVersion, kind
 * and metadata of the object itself and of embedded resources are kept). Returns a new value.
 */
export function applySchema(v: unknown, s: Schema, root = true): unknown {
  if (Array.isArray(v)) return isObj(s.items) ? v.map((x) => applySchema(x, s.items as Schema, false)) : [...v];
  if (!isObj(v)) return v;
  const out: Obj = {};
  const props = isObj(s.properties) ? (s.properties as Record<string, Schema>) : undefined;
  const ap = s.additionalProperties;
  const keepAll = s["x-kubernetes-preserve-unknown-fields"] === true || ap === true;
  const embedded = root || s["x-kubernetes-embedded-resource"] === true;
  for (const [k, x] of Object.entries(v)) {
    // an object's own apiVersion, kind and metadata are the server's to check, never pruned
    if (embedded && (k === "apiVersion" || k === "kind" || k === "metadata")) out[k] = x;
    else if (props && Object.hasOwn(props, k) && isObj(props[k])) out[k] = applySchema(x, props[k]!, false);
    else if (isObj(ap)) out[k] = applySchema(x, ap, false);
    else if (keepAll) out[k] = x;
  }
  if (props) for (const [k, p] of Object.entries(props)) if (!(k in out) && isObj(p) && p.default !== undefined) out[k] = applySchema(structuredClone(p.default), p, false);
  return out;
}

const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "number" ? (Number.isInteger(v) ? "integer" : "number") : typeof v);
const sameJSON = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const join = (path: string, k: string) => (path ? `${path}.${k}` : k);

/** kube's validation of a custom object's value against its schema: the field errors, paths
 * from the object's root ("spec.replicas", "status.reasons[3]", "spec.map[key]"). */
export function validateValue(v: unknown, s: Schema, path: string, budget = { left: MAX_CHECKS }): FieldError[] {
  const errs: FieldError[] = [];
  try {
    check(v, s, path, errs, budget);
  } catch (e) {
    if (e !== TOO_COMPLEX) throw e;
    return [bad(path || "<root>", "", `the schema is too complex to validate this value within ${MAX_CHECKS} checks`)];
  }
  return errs;
}

/** schema nodes one object's validation may visit: anyOf/oneOf/not validate a value once per
 * branch, so nested junctors multiply the work; a hostile CRD must not make a write cost more */
export const MAX_CHECKS = 1_000_000;
const TOO_COMPLEX = new Error("too complex");

function check(v: unknown, s: Schema, path: string, errs: FieldError[], budget: { left: number }): void {
  if (--budget.left < 0) throw TOO_COMPLEX;
  const at = path || "<root>";
  const typeErr = (want: string): void => void errs.push({ field: at, value: typeName(v), detail: `${at} in body must be of type ${want}: "${typeName(v)}"`, type: "FieldValueTypeInvalid" });
  if (v === null) {
    if (s.nullable !== true && (s.type !== undefined || s["x-kubernetes-int-or-string"] === true)) typeErr(s["x-kubernetes-int-or-string"] === true ? "integer,string" : String(s.type));
    return;
  }
  if (s["x-kubernetes-int-or-string"] === true) {
    if (!(typeof v === "string" || (typeof v === "number" && Number.isInteger(v)))) return typeErr("integer,string");
  } else if (s.type !== undefined) {
    const t = typeName(v);
    const ok = s.type === "number" ? t === "number" || t === "integer" : s.type === t || (s.type === "object" && t === "object");
    if (!ok) return typeErr(String(s.type));
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => sameJSON(e, v))) {
    errs.push({ field: at, value: v, detail: s.enum.map((e) => JSON.stringify(e)).join(", "), type: "FieldValueNotSupported" });
  }
  if (typeof v === "string") {
    const n = [...v].length;
    if (typeof s.maxLength === "number" && n > s.maxLength) errs.push({ field: at, value: "", detail: `may not be more than ${s.maxLength} ${s.maxLength === 1 ? "byte" : "bytes"}`, type: "FieldValueTooLong" });
    if (typeof s.minLength === "number" && n < s.minLength) errs.push(bad(at, v, `${at} in body should be at least ${s.minLength} chars long`));
    if (typeof s.pattern === "string" && regexOf(s.pattern) && !regexOf(s.pattern)!.test(v)) errs.push(bad(at, v, `${at} in body should match '${s.pattern}'`));
  }
  if (typeof v === "number") {
    if (typeof s.maximum === "number" && (s.exclusiveMaximum === true ? v >= s.maximum : v > s.maximum)) errs.push(bad(at, v, `${at} in body should be less than ${s.exclusiveMaximum === true ? "" : "or equal to "}${s.maximum}`));
    if (typeof s.minimum === "number" && (s.exclusiveMinimum === true ? v <= s.minimum : v < s.minimum)) errs.push(bad(at, v, `${at} in body should be greater than ${s.exclusiveMinimum === true ? "" : "or equal to "}${s.minimum}`));
    if (typeof s.multipleOf === "number" && s.multipleOf > 0 && !Number.isInteger(v / s.multipleOf)) errs.push(bad(at, v, `${at} in body should be a multiple of ${s.multipleOf}`));
  }
  if (Array.isArray(v)) {
    if (typeof s.maxItems === "number" && v.length > s.maxItems) errs.push({ field: at, value: v.length, detail: `must have at most ${s.maxItems} ${s.maxItems === 1 ? "item" : "items"}`, type: "FieldValueTooMany" });
    if (typeof s.minItems === "number" && v.length < s.minItems) errs.push(bad(at, v.length, `${at} in body should have at least ${s.minItems} items`));
    if (isObj(s.items)) v.forEach((x, i) => check(x, s.items as Schema, `${path}[${i}]`, errs, budget));
    if (s["x-kubernetes-list-type"] === "set") {
      const seen = new Set<string>();
      v.forEach((x, i) => {
        const k = JSON.stringify(x);
        if (seen.has(k)) errs.push({ field: `${path}[${i}]`, value: x, detail: "", type: "FieldValueDuplicate" });
        seen.add(k);
      });
    }
  }
  if (isObj(v)) {
    const n = Object.keys(v).length;
    if (typeof s.maxProperties === "number" && n > s.maxProperties) errs.push({ field: at, value: n, detail: `must have at most ${s.maxProperties} ${s.maxProperties === 1 ? "item" : "items"}`, type: "FieldValueTooMany" });
    if (typeof s.minProperties === "number" && n < s.minProperties) errs.push(bad(at, n, `${at} in body should have at least ${s.minProperties} properties`));
    if (Array.isArray(s.required)) for (const r of s.required) if (typeof r === "string" && !Object.hasOwn(v, r)) errs.push(required(join(path, r)));
    const props = isObj(s.properties) ? (s.properties as Record<string, Schema>) : {};
    for (const [k, x] of Object.entries(v)) {
      if (Object.hasOwn(props, k) && isObj(props[k])) check(x, props[k]!, join(path, k), errs, budget);
      else if (isObj(s.additionalProperties)) check(x, s.additionalProperties, `${path}[${k}]`, errs, budget);
    }
  }
  const passes = (x: Schema) => {
    const e: FieldError[] = [];
    check(v, x, path, e, budget);
    return e.length === 0;
  };
  if (Array.isArray(s.allOf)) for (const x of s.allOf) if (isObj(x)) check(v, x, path, errs, budget);
  if (Array.isArray(s.anyOf) && s.anyOf.length && !s.anyOf.some((x) => isObj(x) && passes(x))) errs.push(bad(at, typeName(v), "must validate at least one schema (anyOf)"));
  if (Array.isArray(s.oneOf) && s.oneOf.length && s.oneOf.filter((x) => isObj(x) && passes(x)).length !== 1) errs.push(bad(at, typeName(v), "must validate one and only one schema (oneOf)"));
  if (isObj(s.not) && passes(s.not)) errs.push(bad(at, typeName(v), "must not validate the schema (not)"));
}
