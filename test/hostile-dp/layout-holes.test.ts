// Hostile: test/layout.test.ts's walker (importsOf, violations, findCycle) against imports
// it does not see or rules it checks edge by edge only. Each case below typechecks and runs
// (tried in a scratch copy of the tree: the layout test passed with each file added):
// - require() of an agent module from compiler/ (Bun's scanner calls it "require-call",
//   which the walker drops), and a cycle made with it;
// - a type written as import("…") in compiler/ (a type-only dependency, which the layout
//   test itself counts as an edge when written as `import type`);
// - the agent reaching testing/ through a file the rules exempt or do not cover: a *.case.ts
//   fixture beside it, or test/harness (which imports testing/lab.ts statically);
// - compiler/ reaching agent/ through bench/.
// (Importing layout.test.ts runs its own four tests here too.)
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { findCycle, importsOf, violations } from "../layout.test.ts";

const ROOT = resolve(import.meta.dir, "../..");
const at = (from: string, src: string) => importsOf(`${ROOT}/${from}`, src);

test("require() from compiler/ into agent/ is an edge and a violation", () => {
  expect(violations(at("compiler/x.ts", `const n = require("../agent/sys/netlink.ts") as typeof import("../agent/sys/netlink.ts");`))).toHaveLength(1);
});

test("a cycle closed by a require() is a cycle among static imports", () => {
  expect(findCycle([...at("a/x.ts", `import { y } from "./y.ts";`), ...at("a/y.ts", `const { x } = require("./x.ts");`)])).toHaveLength(3);
});

test("a type written as import(\"…\") in compiler/ naming an agent module is a violation", () => {
  expect(violations(at("compiler/x.ts", `export type M = import("../agent/datapath/model.ts").Model;`))).toHaveLength(1);
});

test("agent/ production code reaching testing/ statically through a *.case.ts fixture is a violation", () => {
  expect(violations([...at("agent/loop/x.ts", `import { x } from "./y.case.ts";`), ...at("agent/loop/y.case.ts", `import { Lab } from "../../testing/lab.ts";`)])).not.toEqual([]);
});

test("agent/ production code reaching testing/ statically through test/harness is a violation", () => {
  expect(violations([...at("agent/loop/x.ts", `import { useLab } from "../../test/harness/index.ts";`), ...at("test/harness/index.ts", `import { Lab } from "../../testing/lab.ts";`)])).not.toEqual([]);
});

test("compiler/ reaching agent/ statically through bench/ is a violation", () => {
  expect(violations([...at("compiler/x.ts", `import { cluster } from "../bench/cluster.ts";`), ...at("bench/cluster.ts", `import { Netlink } from "../agent/sys/netlink.ts";`)])).not.toEqual([]);
});
