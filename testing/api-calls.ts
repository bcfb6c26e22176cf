// What the agent asks of the Kubernetes API, read from its source: every `request("METHOD",
// path)` call and every ListWatch, with the path resolved from the constants and getters of
// its file, turned into the (API group, resource, verb) triples RBAC speaks of. The RBAC test
// holds the ClusterRole in deploy/ equal to them, so a new API call cannot ship without its
// permission, and a permission the code no longer needs cannot linger.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

export interface ApiCall {
  file: string;
  line: number;
  method: string;
  /** the path with what could not be resolved as `{…}` */
  path: string;
  /** "watch" for a ListWatch */
  verb: string;
  group: string;
  /** resource, or resource/subresource */
  resource: string;
}

/** Every .ts file under `dir` that is production code (no tests, no test cases). */
export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (e.endsWith(".ts") && !e.endsWith(".test.ts") && !e.endsWith(".case.ts") && !e.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

/** `const NAME = "…"` and `const NAME = \`…\`` of a file, with earlier constants substituted. */
function constants(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const x of text.matchAll(/\bconst ([A-Z_][A-Z0-9_]*) = (?:"([^"]*)"|`([^`]*)`);/g)) m.set(x[1]!, x[2] ?? substitute(x[3]!, m, new Map()));
  return m;
}

/** Getters `get name(): string { return \`…\`; }` of a file, by name. */
function getters(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const x of text.matchAll(/\bget (\w+)\(\)(?:: string)? \{\s*return `([^`]*)`;\s*\}/g)) m.set(x[1]!, x[2]!);
  return m;
}

function substitute(template: string, consts: Map<string, string>, gets: Map<string, string>): string {
  return template.replace(/\$\{([^}]*(?:\([^)]*\))?[^}]*)\}/g, (_, expr: string) => {
    const e = expr.trim();
    if (consts.has(e)) return consts.get(e)!;
    const g = /^this\.(\w+)$/.exec(e);
    if (g && gets.has(g[1]!)) return substitute(gets.get(g[1]!)!, consts, gets);
    return "{x}";
  });
}

/** An expression naming a path: a string, a template, a constant or a getter. */
function resolve(expr: string, consts: Map<string, string>, gets: Map<string, string>): string | undefined {
  const e = expr.trim();
  if (/^"[^"]*"$/.test(e)) return e.slice(1, -1);
  if (/^`[^`]*`$/.test(e)) return substitute(e.slice(1, -1), consts, gets);
  if (consts.has(e)) return consts.get(e);
  const g = /^this\.(\w+)$/.exec(e);
  if (g && gets.has(g[1]!)) return substitute(gets.get(g[1]!)!, consts, gets);
  return undefined;
}

/** The group and resource (with subresource) a path names, and whether it names one object. */
export function parsePath(path: string): { group: string; resource: string; item: boolean } {
  const segs = path.split("?")[0]!.split("/").filter(Boolean);
  let rest: string[];
  let group: string;
  if (segs[0] === "api") {
    group = "";
    rest = segs.slice(2);
  } else if (segs[0] === "apis") {
    group = segs[1]!;
    rest = segs.slice(3);
  } else throw new Error(`${path} is not a Kubernetes API path`);
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const [resource, name, sub] = rest;
  if (!resource) throw new Error(`${path} names no resource`);
  return { group, resource: sub ? `${resource}/${sub}` : resource, item: name !== undefined };
}

/** the paged list every informer's list goes through (agent/watch/kube.ts): a list of the path
 * its callers give */
const LIST_ALL = { file: "agent/watch/kube.ts", pathParam: "path" };

const VERBS: Record<string, (item: boolean) => string> = { GET: (i) => (i ? "get" : "list"), POST: () => "create", PUT: () => "update", PATCH: () => "patch", DELETE: (i) => (i ? "delete" : "deletecollection") };

/**
 * The API calls of the files under `root`/`dir`. A call whose path cannot be resolved throws,
 * naming it: the scan must see every call, or the comparison means nothing. The watcher's
 * resources (`{ kind: "…", path: "…" }` in the function its calls read `r.path` from) are
 * listed and watched.
 */
export function apiCalls(root: string, dir = "agent"): ApiCall[] {
  const out: ApiCall[] = [];
  for (const f of sourceFiles(join(root, dir))) {
    const text = readFileSync(f, "utf8");
    const file = relative(root, f);
    const consts = constants(text);
    const gets = getters(text);
    const lineOf = (at: number) => text.slice(0, at).split("\n").length;
    // resources listed by `r.path`: every `path: "…"` of the file's resource table
    const table = [...text.matchAll(/\{ kind: "\w+", path: "([^"]+)"/g)].map((x) => x[1]!);
    const paths = (expr: string, at: number): string[] => {
      if (expr.trim() === "r.path") {
        if (!table.length) throw new Error(`${file}:${lineOf(at)}: r.path, but no resource table in the file`);
        return table;
      }
      const p = resolve(expr, consts, gets);
      if (p === undefined) throw new Error(`${file}:${lineOf(at)}: cannot resolve the path ${expr.trim()}`);
      return [p];
    };
    // a type argument may nest (`request<{ items: Array<X> }>`), never hold a parenthesis
    for (const x of text.matchAll(/\.request(?:<[^()]*?>)?\(\s*"(GET|POST|PUT|PATCH|DELETE)",\s*((?:`[^`]*`|"[^"]*"|[\w.]+))/g)) {
      // listAll's own request: its path is its caller's, counted at each listAll call below
      if (file === LIST_ALL.file && x[2] === LIST_ALL.pathParam) continue;
      for (const path of paths(x[2]!, x.index!)) {
        const p = parsePath(path);
        out.push({ file, line: lineOf(x.index!), method: x[1]!, path, verb: VERBS[x[1]!]!(p.item), group: p.group, resource: p.resource });
      }
    }
    for (const x of text.matchAll(/\blistAll(?:<[^()]*?>)?\(\s*[\w.]+,\s*((?:`[^`]*`|"[^"]*"|[\w.]+))/g)) {
      for (const path of paths(x[1]!, x.index!)) {
        const p = parsePath(path);
        out.push({ file, line: lineOf(x.index!), method: "GET", path, verb: "list", group: p.group, resource: p.resource });
      }
    }
    for (const x of text.matchAll(/new ListWatch(?:<[^(]*>)?\(\s*((?:`[^`]*`|"[^"]*"|[\w.]+))/g)) {
      for (const path of paths(x[1]!, x.index!)) {
        const p = parsePath(path);
        out.push({ file, line: lineOf(x.index!), method: "GET", path, verb: "watch", group: p.group, resource: p.resource });
      }
    }
  }
  return out;
}

/** (group, resource, verb) as one string, for comparing sets. */
export const grant = (g: { group: string; resource: string; verb: string }) => `${g.group || "core"} ${g.resource} ${g.verb}`;

/** Every grant of a ClusterRole's rules (no wildcards allowed: least privilege). */
export function grantsOf(role: { rules?: Array<{ apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[]; nonResourceURLs?: string[] }> }): string[] {
  const out: string[] = [];
  for (const [i, r] of (role.rules ?? []).entries()) {
    for (const list of [r.apiGroups, r.resources, r.verbs]) if (list?.includes("*")) throw new Error(`rule ${i}: a wildcard is not least privilege`);
    if (r.nonResourceURLs?.length) throw new Error(`rule ${i}: nonResourceURLs are not used by the agent`);
    for (const group of r.apiGroups ?? []) for (const resource of r.resources ?? []) for (const verb of r.verbs ?? []) out.push(grant({ group, resource, verb }));
  }
  return [...new Set(out)].sort();
}
