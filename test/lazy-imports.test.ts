// The CNI path and `version` must not load the Kubernetes client, NATS, the HTTP server or
// the rule compiler: a CNI exec should cost what a Go plugin's does. This walks the static
// import graph (dynamic import() is lazy by design and not followed).
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

// compiler/address.ts is not the compiler: it is the strict address reader every part shares,
// with nothing but ipaddr.js (which the CNI path reads addresses with anyway)
const HEAVY = [/^@kubernetes\/client-node/, /^nats/, /^hono/, /^prom-client/, /^commander/, /\/compiler\/(?!address\.ts$)/];
const transpiler = new Bun.Transpiler({ loader: "ts" });

function staticGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const stack = [resolve(entry)];
  while (stack.length) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!file.endsWith(".ts")) continue;
    for (const imp of transpiler.scanImports(readFileSync(file, "utf8"))) {
      if (imp.kind !== "import-statement") continue;
      if (imp.path.startsWith(".")) {
        const target = resolve(dirname(file), imp.path);
        stack.push(existsSync(target) ? target : `${target}.ts`);
      } else seen.add(imp.path);
    }
  }
  return seen;
}

test.each([["agent/main.ts"], ["agent/cni/main.ts"], ["agent/version.ts"]])("%s statically imports nothing heavy", (entry) => {
  const graph = [...staticGraph(resolve(import.meta.dir, "..", entry))];
  const heavy = graph.filter((m) => HEAVY.some((h) => h.test(m)));
  expect(heavy).toEqual([]);
});

test("the walker does see heavy imports where they are (the CLI imports commander)", () => {
  const graph = [...staticGraph(resolve(import.meta.dir, "../agent/cli/index.ts"))];
  expect(graph).toContain("commander");
});
