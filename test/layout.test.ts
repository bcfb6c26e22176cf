// Data flows one way through the tree (docs/architecture.md, Layout): no cycle among static
// imports, nothing the compiler reaches is of the agent, the test fixtures or the benches,
// agent/sys reaches nothing of the compiler but its address module, and the agent's
// production code reaches the fixtures (testing/, test/) only through the lazy import() that
// embeds them for `skein demo` and `skein apiserver`. The rules hold on what a file reaches,
// not only on what it imports: an edge-by-edge check lets a fixture or a bench carry the
// dependency one step further. Pure: reads the sources, builds nothing.
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(import.meta.dir, "..");
const DIRS = ["agent", "compiler", "testing", "bench", "scripts", "test"];
// every module Bun runs, TypeScript or JavaScript
const SOURCE = /\.[cm]?[jt]sx?$/;
const transpilers = { ts: new Bun.Transpiler({ loader: "ts" }), tsx: new Bun.Transpiler({ loader: "tsx" }) };

export interface Edge {
  from: string;
  to: string;
  lazy: boolean;
}

export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = `${dir}/${name}`;
    if (name === "node_modules") continue;
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (SOURCE.test(name)) out.push(p);
  }
  return out;
}

/**
 * `source` with its comments and the insides of its string, template and regular-expression
 * literals blanked (same length, newlines kept), so a text search finds only code: the
 * layout test's own fixtures are imports written inside strings.
 */
export function codeOnly(source: string): string {
  const out = source.split("");
  const blank = (a: number, b: number) => {
    for (let k = a; k < b && k < out.length; k++) if (out[k] !== "\n") out[k] = " ";
  };
  const open: number[] = []; // brace depth at each `${` still open
  let depth = 0;
  let prev = ""; // the last code character, to tell a regular expression from a division
  let i = 0;
  const templateText = () => {
    const s = i;
    while (i < source.length && source[i] !== "`" && !(source[i] === "$" && source[i + 1] === "{")) i += source[i] === "\\" ? 2 : 1;
    blank(s, i);
    if (source[i] === "`") i++;
    else {
      open.push(depth++);
      i += 2;
    }
    prev = "`";
  };
  while (i < source.length) {
    const c = source[i]!;
    const n = source[i + 1];
    if (c === "/" && (n === "/" || n === "*")) {
      const e = n === "/" ? source.indexOf("\n", i) : source.indexOf("*/", i + 2) + 2;
      const end = e < (n === "/" ? 0 : 2) ? source.length : e;
      blank(i, end);
      i = end;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      blank(i + 1, j);
      i = j + 1;
      prev = c;
    } else if (c === "`") {
      i++;
      templateText();
    } else if (c === "}" && open.length > 0 && open[open.length - 1] === depth - 1) {
      open.pop();
      depth--;
      i++;
      templateText();
    } else if (c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev) || /\b(?:return|typeof|case|in|of|void|yield|await|delete|throw)\s*$/.test(source.slice(Math.max(0, i - 12), i)))) {
      let j = i + 1;
      for (let cls = false; j < source.length && source[j] !== "\n" && (cls || source[j] !== "/"); j++) {
        if (source[j] === "\\") j++;
        else if (source[j] === "[") cls = true;
        else if (source[j] === "]") cls = false;
      }
      blank(i + 1, j);
      i = j + 1;
      prev = "/";
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      if (!/\s/.test(c)) prev = c;
      i++;
    }
  }
  return out.join("");
}

// What TypeScript erases and Bun's scanner therefore never sees still makes a file depend on
// another (render.ts ↔ nfnl.ts was one): `import type`, `export type … from`, imports whose
// every name is a `type`, and types written as import("…") (`typeof import("…")`,
// `import("…").Model`). They are read from the code with literals blanked; the path is read
// back from the source at the same place.
const TYPE_ONLY = /^[ \t]*(?:import|export)\s+type\s[^;]*?\bfrom\s*(["'])|^[ \t]*import\s*\{([^}]*)\}\s*from\s*(["'])/gm;
const IMPORT_CALL = /(?<![\w$.])import\s*\(\s*(["'])/g;

function literalAt(source: string, quote: number): string {
  return source.slice(quote + 1, source.indexOf(source[quote]!, quote + 1));
}

function typeImports(source: string, code: string, dynamic: string[]): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(TYPE_ONLY)) {
    const quote = m.index + m[0].length - 1;
    if (m[1] || m[2]!.split(",").map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith("type "))) out.push(literalAt(source, quote));
  }
  // an import("…") the scanner did not report as a dynamic import is a type
  const calls = new Map<string, number>();
  for (const m of code.matchAll(IMPORT_CALL)) {
    const path = literalAt(source, m.index + m[0].length - 1);
    calls.set(path, (calls.get(path) ?? 0) + 1);
  }
  for (const path of dynamic) calls.set(path, (calls.get(path) ?? 0) - 1);
  for (const [path, n] of calls) if (n > 0) out.push(path);
  return out;
}

/** The file `spec` names from `file` (relative, absolute or file: URL), or undefined for a package. */
function resolveImport(file: string, spec: string): string | undefined {
  if (spec.startsWith("file:")) spec = fileURLToPath(spec);
  if (!spec.startsWith(".") && !isAbsolute(spec)) return undefined;
  const base = resolve(dirname(file), spec);
  const candidates = [base, ...[".ts", ".mts", ".tsx", ".js", ".mjs"].map((e) => base + e), base.replace(/\.([cm]?)js$/, ".$1ts"), `${base}/index.ts`, `${base}/index.js`];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? base;
}

/** The imports of `source` (in file `file`) that name files, static (require() and types too) and lazy, as paths from the root. */
export function importsOf(file: string, source: string): Edge[] {
  const from = relative(ROOT, file);
  const found: Array<[string, boolean]> = [];
  const dynamic: string[] = [];
  for (const imp of transpilers[/x$/.test(file) ? "tsx" : "ts"].scanImports(source)) {
    if (imp.kind === "dynamic-import") {
      found.push([imp.path, true]);
      dynamic.push(imp.path);
    } else if (imp.kind === "import-statement" || imp.kind === "require-call") found.push([imp.path, false]);
  }
  for (const path of typeImports(source, codeOnly(source), dynamic)) found.push([path, false]);
  const out: Edge[] = [];
  for (const [path, lazy] of found) {
    const target = resolveImport(file, path);
    if (target !== undefined) out.push({ from, to: relative(ROOT, target), lazy });
  }
  return out;
}

export function edgesOf(files: string[]): Edge[] {
  return files.flatMap((f) => importsOf(f, readFileSync(f, "utf8").replace(/^#!.*/, "")));
}

/** A cycle among the edges, as the files on it (the first back to the start); none: undefined. */
export function findCycle(edges: Edge[]): string[] | undefined {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === "done") return undefined;
    if (state.get(n) === "open") return [...path.slice(path.indexOf(n)), n];
    state.set(n, "open");
    path.push(n);
    for (const m of next.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    path.pop();
    state.set(n, "done");
    return undefined;
  };
  for (const n of [...next.keys()].sort()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

const isTest = (f: string) => /\.(test|case)\.[cm]?[jt]sx?$/.test(f);
const top = (f: string) => f.split("/")[0]!;

/** The shortest way from `start` over the edges `follow` takes to a file `bad` names, as the files on it; none: undefined. */
function reaches(next: Map<string, Edge[]>, start: string, follow: (e: Edge) => boolean, bad: (f: string) => boolean): string[] | undefined {
  const parent = new Map<string, string>([[start, start]]);
  const queue = [start];
  for (let q = 0; q < queue.length; q++) {
    for (const e of next.get(queue[q]!) ?? []) {
      if (!follow(e) || parent.has(e.to)) continue;
      parent.set(e.to, e.from);
      if (bad(e.to)) {
        const path = [e.to];
        while (path[0] !== start) path.unshift(parent.get(path[0]!)!);
        return path;
      }
      queue.push(e.to);
    }
  }
  return undefined;
}

const RULES: Array<{ applies: (f: string) => boolean; follow: (e: Edge) => boolean; bad: (f: string) => boolean; rule: string }> = [
  {
    applies: (f) => top(f) === "compiler",
    follow: () => true,
    bad: (f) => ["agent", "testing", "test", "bench"].includes(top(f)),
    rule: "compiler/ reaches nothing of agent/, testing/, test/ or bench/",
  },
  {
    // the bottom of the agent: of the compiler, only the address module every layer shares
    applies: (f) => f.startsWith("agent/sys/") && !isTest(f),
    follow: (e) => !e.lazy,
    bad: (f) => top(f) === "compiler" && f !== "compiler/address.ts",
    rule: "agent/sys reaches only compiler/address.ts of the compiler",
  },
  {
    // unit tests beside their subject may use the fixtures; the agent itself only lazily,
    // from its CLI
    applies: (f) => top(f) === "agent" && !isTest(f),
    follow: (e) => !(e.lazy && e.from.startsWith("agent/cli/") && !isTest(e.from)),
    bad: (f) => top(f) === "testing" || top(f) === "test",
    rule: "the agent reaches testing/ and test/ only through a lazy import() in agent/cli",
  },
  // the pod network's parts sit beside the datapath, below the loop: what joins them is
  // agent/loop/network.ts, so neither knows the other, the loop or the service datapath
  ...(["gossip", "overlay"] as const).map((part) => {
    const other = part === "gossip" ? "overlay" : "gossip";
    return {
      applies: (f: string) => f.startsWith(`agent/${part}/`) && !isTest(f),
      follow: () => true,
      bad: (f: string) => [`agent/${other}/`, "agent/loop/", "agent/cli/", "agent/datapath/", "agent/watch/"].some((d) => f.startsWith(d)),
      rule: `agent/${part} reaches nothing of agent/${other}, agent/loop, agent/cli, agent/datapath or agent/watch`,
    };
  }),
  {
    // the trace is read by the live agent (agent/loop, agent/http) and by the offline CLI: it
    // knows neither, so both can import it
    applies: (f: string) => f.startsWith("agent/trace/") && !isTest(f),
    follow: () => true,
    bad: (f: string) => ["agent/loop/", "agent/cli/", "agent/http/"].some((d) => f.startsWith(d)),
    rule: "agent/trace reaches nothing of agent/loop, agent/cli or agent/http",
  },
];

/** Files whose imports, followed, break the layout's rules: each with the way there and the rule. */
export function violations(edges: Edge[]): string[] {
  const next = new Map<string, Edge[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e]);
  const out: string[] = [];
  for (const from of [...next.keys()].sort()) {
    for (const { applies, follow, bad, rule } of RULES) {
      const path = applies(from) ? reaches(next, from, follow, bad) : undefined;
      if (path) out.push(`${path.join(" -> ")}: ${rule}`);
    }
  }
  return out;
}

const edges = edgesOf(DIRS.flatMap((d) => sourceFiles(`${ROOT}/${d}`)));

test("no cycle among static imports", () => {
  expect(findCycle(edges.filter((e) => !e.lazy))).toBeUndefined();
});

test("compiler/ reaches nothing of agent/, testing/, test/ or bench/; agent/sys only compiler/address.ts; agent/ reaches testing/ only lazily from its CLI; agent/gossip and agent/overlay know neither each other nor what is above them; agent/trace knows neither the loop nor the CLI", () => {
  expect(violations(edges)).toEqual([]);
});

test("the walker sees what it checks: every file, static and lazy imports, resolved", () => {
  const froms = new Set(edges.map((e) => e.from));
  for (const f of ["agent/main.ts", "compiler/state.ts", "testing/lab.ts", "test/harness/index.ts"]) expect(froms).toContain(f);
  expect(edges.filter((e) => e.from === "agent/cli/index.ts" && e.lazy && e.to.startsWith("testing/")).length).toBeGreaterThan(0);
  expect(edges.every((e) => existsSync(`${ROOT}/${e.to}`))).toBe(true);
});

const at = (from: string, src: string) => importsOf(`${ROOT}/${from}`, src);

test("the checks fail where they should", () => {
  // a cycle of two, and one through a third file
  expect(findCycle([...at("agent/datapath/a.ts", `import { x } from "./b.ts";`), ...at("agent/datapath/b.ts", `import type { y } from "./a.ts";`)])).toEqual(["agent/datapath/a.ts", "agent/datapath/b.ts", "agent/datapath/a.ts"]);
  expect(findCycle([...at("a/x.ts", `import "./y.ts";`), ...at("a/y.ts", `export * from "./z.ts";`), ...at("a/z.ts", `import { x } from "./x.ts";`)])).toHaveLength(4);
  expect(findCycle(at("a/x.ts", `const y = await import("./y.ts");`))).toBeUndefined();
  // every type-only form is an edge
  for (const src of [`import type { y } from "./x.ts";`, `import {\n  type y,\n  type z,\n} from "./x.ts";`, `export type { y } from "./x.ts";`]) expect(findCycle([...at("a/x.ts", `import { x } from "./y.ts";`), ...at("a/y.ts", src)])).toHaveLength(3);
  expect(violations(at("compiler/x.ts", `import { Netlink } from "../agent/sys/netlink.ts";`))).toHaveLength(1);
  expect(violations(at("compiler/x.ts", `import type { Lab } from "../testing/lab.ts";`))).toHaveLength(1);
  expect(violations(at("agent/loop/x.ts", `const { Lab } = await import("../../testing/lab.ts");`))).toHaveLength(1);
  expect(violations(at("agent/cli/x.ts", `import { Lab } from "../../testing/lab.ts";`))).toHaveLength(1);
  expect(violations(at("agent/cli/x.ts", `const { Lab } = await import("../../testing/lab.ts");`))).toEqual([]);
  expect(violations(at("agent/sys/x.ts", `import type { Tables } from "../../compiler/tables.ts";`))).toHaveLength(1);
  expect(violations(at("agent/sys/x.ts", `import { addressBytes } from "../../compiler/address.ts";`))).toEqual([]);
  expect(violations(at("agent/trace/x.ts", `import type { Agent } from "../loop/agent.ts";`))).toHaveLength(1);
  expect(violations(at("agent/trace/x.ts", `import { readObjects } from "../cli/tables.ts";`))).toHaveLength(1);
  expect(violations(at("agent/trace/x.ts", `import type { PeerPath } from "../overlay/plan.ts";`))).toEqual([]);
});

test("require() and types written as import(\"…\") are static edges; imports in comments and strings are not", () => {
  expect(violations(at("compiler/x.ts", `const n = require("../agent/sys/netlink.ts") as typeof import("../agent/sys/netlink.ts");`))).toHaveLength(1);
  expect(findCycle([...at("a/x.ts", `import { y } from "./y.ts";`), ...at("a/y.ts", `const { x } = require("./x.ts");`)])).toHaveLength(3);
  expect(violations(at("compiler/x.ts", `export type M = import("../agent/datapath/model.ts").Model;`))).toHaveLength(1);
  expect(at("a/x.ts", `let m: typeof import("./y.ts") = await import("./y.ts");`).map((e) => e.lazy).sort()).toEqual([false, true]);
  expect(at("a/x.ts", `// import("./y.ts")\n/* import type { y } from "./y.ts"; */\nconst s = "import(\\"./y.ts\\")", t = \`\${1}import("./y.ts")\`, r = /import\\("\\.\\/y"\\)/;`)).toEqual([]);
});

test("the rules hold on what a file reaches, not only on what it imports", () => {
  // the agent reaching testing/ through a fixture the rules exempt, or through test/harness
  expect(violations([...at("agent/loop/x.ts", `import { x } from "./y.case.ts";`), ...at("agent/loop/y.case.ts", `import { Lab } from "../../testing/lab.ts";`)])).not.toEqual([]);
  expect(violations([...at("agent/loop/x.ts", `import { useLab } from "../../test/harness/index.ts";`), ...at("test/harness/index.ts", `import { Lab } from "../../testing/lab.ts";`)])).not.toEqual([]);
  // the compiler reaching the agent through a bench
  expect(violations([...at("compiler/x.ts", `import { cluster } from "../bench/cluster.ts";`), ...at("bench/cluster.ts", `import { Netlink } from "../agent/sys/netlink.ts";`)])).toEqual([
    "compiler/x.ts -> bench/cluster.ts: compiler/ reaches nothing of agent/, testing/, test/ or bench/",
  ]);
  // agent/sys reaching the compiler through another part of the agent
  expect(violations([...at("agent/sys/x.ts", `import { plan } from "../datapath/plan.ts";`), ...at("agent/datapath/plan.ts", `import type { Tables } from "../../compiler/tables.ts";`)])).toEqual([
    "agent/sys/x.ts -> agent/datapath/plan.ts -> compiler/tables.ts: agent/sys reaches only compiler/address.ts of the compiler",
  ]);
  // the lazy import() in agent/cli is the one way in, however the agent gets to agent/cli
  expect(violations([...at("agent/loop/x.ts", `import { main } from "../cli/index.ts";`), ...at("agent/cli/index.ts", `const { Lab } = await import("../../testing/lab.ts");`)])).toEqual([]);
});

test("the walker reads every module Bun runs and resolves absolute paths", () => {
  const dir = mkdtempSync(`${tmpdir()}/skein-layout-`);
  try {
    for (const name of ["a.mts", "b.js", "c.mjs", "d.ts", "e.d.ts", "f.json", "g.txt"]) writeFileSync(`${dir}/${name}`, "");
    expect(sourceFiles(dir).map((f) => f.slice(dir.length + 1)).sort()).toEqual(["a.mts", "b.js", "c.mjs", "d.ts", "e.d.ts"]);
  } finally {
    rmSync(dir, { recursive: true });
  }
  expect(violations(at("compiler/x.ts", `import { Netlink } from "${ROOT}/agent/sys/netlink.ts";`))).toHaveLength(1);
  expect(violations(at("compiler/x.ts", `import { Netlink } from "file://${ROOT}/agent/sys/netlink.ts";`))).toHaveLength(1);
  expect(at("compiler/x.ts", `import { Netlink } from "${ROOT}/agent/sys/netlink";`)).toEqual([{ from: "compiler/x.ts", to: "agent/sys/netlink.ts", lazy: false }]);
});

test("cbor-x is imported through its subpaths only: its main entry puts the native string extractor into the decoder the whole process shares, and megabyte strings then decode as a truncated buffer", () => {
  const main = DIRS.flatMap((d) => sourceFiles(`${ROOT}/${d}`)).flatMap((f) =>
    transpilers[/x$/.test(f) ? "tsx" : "ts"]
      .scanImports(readFileSync(f, "utf8").replace(/^#!.*/, ""))
      .filter((i) => i.path === "cbor-x" && i.kind !== "require-call") // require() takes the CommonJS build, a decoder of its own
      .map(() => relative(ROOT, f)),
  );
  expect(main).toEqual([]);
});
