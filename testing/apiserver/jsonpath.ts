// client-go's JSONPath (k8s.io/client-go/util/jsonpath), the part a CRD's
// additionalPrinterColumns use: the expression inside `{…}` of a column's jsonPath, with
// fields (`.a`, `['a.b']`, `.a\.b`), `*`, recursive descent (`..a`), array indexes and slices
// (`[0]`, `[-1]`, `[1:3]`, `[::2]`) and filters (`[?(@.type=="Ready")]`, `[?(@.a)]`, with
// == != < > <= >= against a string, number, boolean or another path). Parsed strictly: what
// client-go refuses, or what this does not implement (unions, functions), is a ParseError
// naming the position, so a CRD using it is refused, never served with a column that cannot
// work. Evaluated as client-go does with AllowMissingKeys: a missing field gives no result; a
// type error (indexing a map, comparing a string with a number) throws EvalError.

export class ParseError extends Error {}
export class EvalError extends Error {}

type Literal = { lit: string | number | boolean };
type Operand = Step[] | Literal;
export type Step =
  | { kind: "field"; name: string }
  | { kind: "wild" }
  | { kind: "recursive" }
  | { kind: "slice"; start?: number; end?: number; step?: number; index: boolean }
  | { kind: "filter"; left: Step[]; op: "exists" | "==" | "!=" | "<" | ">" | "<=" | ">="; right?: Operand };

/** longest expression accepted (a column's jsonPath is short; this bounds parsing work) */
export const MAX_JSONPATH = 1024;

const TERMINATORS = new Set([" ", "\t", "\n", "\r", ".", ",", "[", "]", "$", "@", "{", "}", "(", ")", "=", "!", "<", ">"]);

class Parser {
  i = 0;
  constructor(readonly s: string) {}
  fail(why: string): never {
    throw new ParseError(`${why} at position ${this.i} of ${JSON.stringify(this.s)}`);
  }
  peek(n = 0) {
    return this.s[this.i + n];
  }
  eat(t: string): boolean {
    if (this.s.startsWith(t, this.i)) {
      this.i += t.length;
      return true;
    }
    return false;
  }
  skipSpace() {
    while (this.peek() === " ") this.i++;
  }

  /** steps until `stop` returns true (or the end) */
  path(stop: () => boolean): Step[] {
    const steps: Step[] = [];
    while (this.i < this.s.length && !stop()) {
      if (this.eat("..")) {
        steps.push({ kind: "recursive" });
        if (this.peek() === "[") continue;
        steps.push(this.field());
      } else if (this.eat(".")) {
        if (this.i >= this.s.length || stop()) {
          // a lone "." is the current object (client-go's `{.}`)
          if (steps.length) this.fail("a field name is missing");
          break;
        }
        if (this.peek() === "[") continue;
        steps.push(this.field());
      } else if (this.peek() === "[") steps.push(this.bracket());
      else this.fail(`unexpected ${JSON.stringify(this.peek())}`);
    }
    return steps;
  }

  field(): Step {
    if (this.eat("*")) return { kind: "wild" };
    let name = "";
    while (this.i < this.s.length) {
      const c = this.peek()!;
      if (c === "\\") {
        const next = this.peek(1);
        if (next === undefined) this.fail("a field ends in '\\'");
        name += next;
        this.i += 2;
        continue;
      }
      if (TERMINATORS.has(c)) break;
      name += c;
      this.i++;
    }
    if (!name) this.fail("a field name is missing");
    return { kind: "field", name };
  }

  bracket(): Step {
    this.eat("[");
    this.skipSpace();
    let step: Step;
    if (this.eat("?")) step = this.filter();
    else if (this.eat("*")) step = { kind: "wild" };
    else if (this.peek() === "'" || this.peek() === '"') step = { kind: "field", name: this.quoted() };
    else step = this.slice();
    this.skipSpace();
    if (!this.eat("]")) this.fail("expected ']' (unions and functions are not supported)");
    return step;
  }

  quoted(): string {
    const q = this.peek()!;
    this.i++;
    let out = "";
    while (this.i < this.s.length && this.peek() !== q) {
      if (this.peek() === "\\" && this.i + 1 < this.s.length) this.i++;
      out += this.peek();
      this.i++;
    }
    if (!this.eat(q)) this.fail("an unterminated quoted string");
    return out;
  }

  int(): number | undefined {
    const m = /^-?\d+/.exec(this.s.slice(this.i));
    if (!m) return undefined;
    this.i += m[0].length;
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) this.fail("an index too large");
    return n;
  }

  slice(): Step {
    const parts: Array<number | undefined> = [];
    for (;;) {
      this.skipSpace();
      parts.push(this.int());
      this.skipSpace();
      if (!this.eat(":")) break;
      if (parts.length === 3) this.fail("a slice has at most three parts");
    }
    if (parts.length === 1 && parts[0] === undefined) this.fail("expected an index, a slice, '*', a quoted name or a filter");
    if (parts[2] === 0) this.fail("a slice step may not be 0");
    return { kind: "slice", start: parts[0], end: parts[1], step: parts[2], index: parts.length === 1 };
  }

  filter(): Step {
    if (!this.eat("(")) this.fail("expected '(' after '?'");
    this.skipSpace();
    const left = this.operand();
    this.skipSpace();
    let step: Step;
    const op = ["==", "!=", "<=", ">=", "<", ">"].find((o) => this.eat(o)) as "==" | undefined;
    if (!op) step = { kind: "filter", left: this.relative(left), op: "exists" };
    else {
      this.skipSpace();
      const right = this.operand();
      step = { kind: "filter", left: this.relative(left), op, right };
    }
    this.skipSpace();
    if (!this.eat(")")) this.fail("expected ')' to end the filter");
    return step;
  }

  relative(o: Operand): Step[] {
    if (!Array.isArray(o)) this.fail("a filter's left side must be a path from '@'");
    return o;
  }

  operand(): Operand {
    const c = this.peek();
    if (c === "@") {
      this.i++;
      return this.path(() => [" ", ")", "=", "!", "<", ">"].includes(this.peek()!));
    }
    if (c === "'" || c === '"') return { lit: this.quoted() };
    if (this.eat("true")) return { lit: true };
    if (this.eat("false")) return { lit: false };
    const m = /^-?\d+(\.\d+)?([eE][-+]?\d+)?/.exec(this.s.slice(this.i));
    if (m) {
      this.i += m[0].length;
      return { lit: Number(m[0]) };
    }
    this.fail("expected '@…', a quoted string, a number, true or false");
  }
}

/**
 * Parses a column's jsonPath (without the braces client-go adds): it must start with "." or
 * "[" (kube's validateSimpleJSONPath wants "."), a path from the object.
 */
export function parseJsonPath(expr: string): Step[] {
  if (expr.length > MAX_JSONPATH) throw new ParseError(`longer than ${MAX_JSONPATH} characters`);
  const p = new Parser(expr);
  if (p.peek() === "$") p.i++;
  return p.path(() => false);
}

type J = unknown;
const isObj = (v: J): v is Record<string, J> => typeof v === "object" && v !== null && !Array.isArray(v);

/** client-go's template comparisons: numbers with numbers, strings with strings, booleans for (in)equality. */
function compare(op: string, a: J, b: J): boolean {
  const kind = (v: J) => (typeof v === "number" ? "number" : typeof v === "string" ? "string" : typeof v === "boolean" ? "boolean" : v === null ? "null" : "object");
  if (kind(a) !== kind(b) || kind(a) === "object") throw new EvalError(`incompatible types for comparison: ${kind(a)} and ${kind(b)}`);
  if (kind(a) === "boolean" || kind(a) === "null") {
    if (op === "==") return a === b;
    if (op === "!=") return a !== b;
    throw new EvalError(`invalid type for comparison: ${kind(a)}`);
  }
  const x = a as number | string;
  const y = b as number | string;
  switch (op) {
    case "==":
      return x === y;
    case "!=":
      return x !== y;
    case "<":
      return x < y;
    case ">":
      return x > y;
    case "<=":
      return x <= y;
    default:
      return x >= y;
  }
}

function descendants(v: J, out: J[]): void {
  // iterative: the object may be deep
  const todo: J[] = [v];
  while (todo.length) {
    const x = todo.pop();
    out.push(x);
    const kids = Array.isArray(x) ? x : isObj(x) ? Object.keys(x).sort().map((k) => x[k]) : [];
    for (let i = kids.length - 1; i >= 0; i--) todo.push(kids[i]);
  }
}

function step(s: Step, input: J[]): J[] {
  const out: J[] = [];
  switch (s.kind) {
    case "field":
      for (const v of input) if (isObj(v) && Object.hasOwn(v, s.name)) out.push(v[s.name]);
      return out;
    case "wild":
      for (const v of input) {
        if (Array.isArray(v)) out.push(...v);
        else if (isObj(v)) for (const k of Object.keys(v).sort()) out.push(v[k]);
      }
      return out;
    case "recursive":
      for (const v of input) descendants(v, out);
      return out;
    case "slice":
      for (const v of input) {
        if (!Array.isArray(v)) throw new EvalError(`${isObj(v) ? "a map" : typeof v} is not an array or slice`);
        const n = v.length;
        const norm = (i: number) => (i < 0 ? i + n : i);
        if (s.index) {
          const i = norm(s.start!);
          if (i >= 0 && i < n) out.push(v[i]);
          continue;
        }
        const stepBy = s.step ?? 1;
        const from = Math.max(0, Math.min(n, norm(s.start ?? (stepBy > 0 ? 0 : n - 1))));
        const to = Math.max(-1, Math.min(n, norm(s.end ?? (stepBy > 0 ? n : -n - 1))));
        if (stepBy > 0) for (let i = from; i < to; i += stepBy) out.push(v[i]);
        else for (let i = Math.min(from, n - 1); i > to; i += stepBy) out.push(v[i]);
      }
      return out;
    case "filter":
      for (const v of input) {
        const items = Array.isArray(v) ? v : isObj(v) ? Object.keys(v).sort().map((k) => v[k]) : undefined;
        if (!items) throw new EvalError(`${typeof v} is not an array or slice and cannot be filtered`);
        for (const item of items) {
          const lefts = evaluate(s.left, item);
          if (!lefts.length) continue;
          if (lefts.length > 1) throw new EvalError("can only compare one element at a time");
          if (s.op === "exists") {
            out.push(item);
            continue;
          }
          const rights = Array.isArray(s.right) ? evaluate(s.right, item) : [s.right!.lit];
          if (!rights.length) continue;
          if (rights.length > 1) throw new EvalError("can only compare one element at a time");
          if (compare(s.op, lefts[0], rights[0])) out.push(item);
        }
      }
      return out;
  }
}

/** Every value `path` reaches in `root`; EvalError on a type error. */
export function evaluate(path: Step[], root: J): J[] {
  let cur: J[] = [root];
  for (const s of path) cur = step(s, cur);
  return cur;
}

/** The value a printer column shows: the first result, or undefined when there is none or
 * evaluating failed (kube's table convertor then prints an empty cell). */
export function firstResult(path: Step[], root: J): J | undefined {
  try {
    return evaluate(path, root)[0];
  } catch (e) {
    if (e instanceof EvalError) return undefined;
    throw e;
  }
}

/** A float as Go's fmt %v writes it (%g with the shortest digits: exponent form below 1e-4
 * or from 1e6). */
function goFloat(n: number): string {
  if (!Number.isFinite(n)) return n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN";
  if (n === 0) return Object.is(n, -0) ? "-0" : "0";
  const [mant, e] = n.toExponential().split("e") as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 6) return `${mant}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return String(n);
}

/** A JSON value as client-go's JSONPath prints it into a string column (Go's fmt of the
 * decoded value: maps as map[k:v], lists as [a b]). */
export function goText(v: J): string {
  if (typeof v === "string") return v;
  if (typeof v === "number") return Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? String(v) : goFloat(v);
  if (typeof v === "boolean") return String(v);
  if (v === null || v === undefined) return "<nil>";
  if (Array.isArray(v)) return `[${v.map(goText).join(" ")}]`;
  const o = v as Record<string, J>;
  return `map[${Object.keys(o)
    .sort()
    .map((k) => `${k}:${goText(o[k])}`)
    .join(" ")}]`;
}
