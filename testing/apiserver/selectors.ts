// Label and field selectors as kube-apiserver parses them (k8s.io/apimachinery labels and
// fields packages): `a=b,c!=d,e in (x,y),f notin (z),g,!h` for labels; `f=v`, `f==v`,
// `f!=v` joined by commas for fields. A bad selector is a 400 naming it, as there.

export class SelectorError extends Error {}

type Req = { key: string; op: "=" | "!=" | "in" | "notin" | "exists" | "!exists"; values: string[] };
export type Selector = (labels: Record<string, string>) => boolean;

// a label key: optional DNS prefix and a name of up to 63 characters
const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** Splits on commas that are not inside parentheses. */
function terms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== "");
}

function requirement(t: string): Req {
  let m: RegExpMatchArray | null;
  const bad = (why: string) => new SelectorError(`unable to parse requirement: ${JSON.stringify(t)}: ${why}`);
  const key = (k: string) => {
    if (!KEY.test(k)) throw bad(`invalid label key ${JSON.stringify(k)}`);
    return k;
  };
  const value = (v: string) => {
    if (!VALUE.test(v)) throw bad(`invalid label value ${JSON.stringify(v)}`);
    return v;
  };
  if ((m = t.match(/^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/))) {
    return { key: key(m[1]!), op: m[2] as "in" | "notin", values: m[3]!.split(",").map((v) => value(v.trim())) };
  }
  if ((m = t.match(/^!\s*(\S+)$/))) return { key: key(m[1]!), op: "!exists", values: [] };
  if ((m = t.match(/^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/))) return { key: key(m[1]!), op: m[2] === "!=" ? "!=" : "=", values: [value(m[3]!)] };
  if ((m = t.match(/^([^=!\s()]+)$/))) return { key: key(m[1]!), op: "exists", values: [] };
  throw bad("expected key, key=value, key!=value, key in (...), key notin (...) or !key");
}

export function parseLabelSelector(s: string | null | undefined): Selector {
  const reqs = terms(s ?? "").map(requirement);
  return (labels) =>
    reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      const v = labels[r.key];
      switch (r.op) {
        case "=":
        case "in":
          return has && r.values.includes(v!);
        case "!=":
        case "notin":
          return !has || !r.values.includes(v!);
        case "exists":
          return has;
        case "!exists":
          return !has;
      }
    });
}

/** Field selectors over the fields a resource type supports (`fields` gives them for an object). */
export function parseFieldSelector(s: string | null | undefined, supported: string[]): (fields: Record<string, string>) => boolean {
  const reqs = terms(s ?? "").map((t) => {
    const m = t.match(/^([^=!]+?)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(t)}: expected field=value or field!=value`);
    if (!supported.includes(m[1]!)) throw new SelectorError(`field label not supported: ${m[1]}`);
    return { field: m[1]!, neg: m[2] === "!=", value: m[3]! };
  });
  return (fields) => reqs.every((r) => (fields[r.field] === r.value) !== r.neg);
}

/** A field selector with its field names mapped through `names` (a view's names to its stored
 * type's, as kube's field label conversion); a name not in it is not supported. */
export function renameFields(s: string, names: Record<string, string>): string {
  return terms(s)
    .map((t) => {
      const m = t.match(/^([^=!]+?)\s*(==|=|!=)\s*(.*)$/);
      if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(t)}: expected field=value or field!=value`);
      const to = Object.hasOwn(names, m[1]!) ? names[m[1]!] : undefined;
      if (to === undefined) throw new SelectorError(`field label not supported: ${m[1]}`);
      return `${to}${m[2] === "!=" ? "!=" : "="}${m[3]}`;
    })
    .join(",");
}
