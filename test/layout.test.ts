// Data flows one way through the tree (docs/architecture.md, Layout): no cycle among static
// imports, the compiler never reaches into the agent or the test fixtures, agent/sys uses
// nothing of the compiler but its address module, and the agent's production code reaches
// the fixtures (testing/) only through the lazy import() that embeds them for `skein demo`
// and `skein apiserver`. Pure: reads the sources, builds nothing.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const DIRS = ["agent", "compiler", "testing", "bench", "scripts", "test"];
const transpiler = new Bun.Transpiler({ loader: "ts" });

export interface Edge {
  from: string;
  to: string;
  lazy: boolean;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = `${dir}/${name}`;
    if (name === "node_modules") continue;
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

// Bun's scanner drops what TypeScript erases: `import type`, `export type … from` and imports
// whose every name is a `type`. A type-only import still makes its file depend on the other
// (render.ts ↔ nfnl.ts was one), so those are read from the text.
const TYPE_ONLY = /^[ \t]*(?:import|export)\s+type\s[^;]*?\bfrom\s*["']([^"']+)["']|^[ \t]*import\s*\{([^}]*)\}\s*from\s*["']([^"']+)["']/gm;

function typeOnlyImports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(TYPE_ONLY)) {
    if (m[1]) out.push(m[1]);
    else if (m[2]!.split(",").map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith("type "))) out.push(m[3]!);
  }
  return out;
}

/** The relative imports of `source` (in file `file`), static and lazy, as paths from the root. */
export function importsOf(file: string, source: string): Edge[] {
  const from = relative(ROOT, file);
  const found: Array<[string, boolean]> = [];
  for (const imp of transpiler.scanImports(source)) {
    if (imp.kind === "dynamic-import") found.push([imp.path, true]);
    else if (imp.kind === "import-statement") found.push([imp.path, false]);
  }
  for (const path of typeOnlyImports(source)) found.push([path, false]);
  const out: Edge[] = [];
  for (const [path, lazy] of found) {
    if (!path.startsWith(".")) continue;
    let target = resolve(dirname(file), path);
    if (!existsSync(target) && existsSync(`${target}.ts`)) target = `${target}.ts`;
    out.push({ from, to: relative(ROOT, target), lazy });
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

const isTest = (f: string) => /\.(test|case)\.ts$/.test(f);
const top = (f: string) => f.split("/")[0]!;

/** Edges that break the layout's rules, each with the rule it breaks. */
export function violations(edges: Edge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const [a, b] = [top(e.from), top(e.to)];
    if (a === "compiler" && (b === "agent" || b === "testing")) out.push(`${e.from} -> ${e.to}: compiler/ imports nothing from ${b}/`);
    // the bottom of the agent: of the compiler, only the address module every layer shares
    if (e.from.startsWith("agent/sys/") && !isTest(e.from) && b === "compiler" && e.to !== "compiler/address.ts") out.push(`${e.from} -> ${e.to}: agent/sys uses only compiler/address.ts of the compiler`);
    // unit tests beside their subject may use the fixtures; the agent itself only lazily,
    // from its CLI
    if (a === "agent" && b === "testing" && !isTest(e.from) && !(e.lazy && e.from.startsWith("agent/cli/"))) {
      out.push(`${e.from} -> ${e.to}: the agent reaches testing/ only through a lazy import() in agent/cli`);
    }
  }
  return out;
}

const edges = edgesOf(DIRS.flatMap((d) => tsFiles(`${ROOT}/${d}`)));

test("no cycle among static imports", () => {
  expect(findCycle(edges.filter((e) => !e.lazy))).toBeUndefined();
});

test("compiler/ imports nothing from agent/ or testing/; agent/sys only compiler/address.ts; agent/ reaches testing/ only lazily from its CLI", () => {
  expect(violations(edges)).toEqual([]);
});

test("the walker sees what it checks: every file, static and lazy imports, resolved", () => {
  const froms = new Set(edges.map((e) => e.from));
  for (const f of ["agent/main.ts", "compiler/state.ts", "testing/lab.ts", "test/harness/index.ts"]) expect(froms).toContain(f);
  expect(edges.filter((e) => e.from === "agent/cli/index.ts" && e.lazy && e.to.startsWith("testing/")).length).toBeGreaterThan(0);
  expect(edges.every((e) => existsSync(`${ROOT}/${e.to}`))).toBe(true);
});

test("the checks fail where they should", () => {
  const at = (from: string, src: string) => importsOf(`${ROOT}/${from}`, src);
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
});
