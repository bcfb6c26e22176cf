// The binary as a person meets it.
import { expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { SKEIN, useLab, useTempDir } from "./harness/index.ts";
import { listNetns } from "../agent/sys/netns.ts";

const skein = (args: string[], env: Record<string, string> = {}) => {
  const p = Bun.spawnSync([SKEIN, ...args], { env: { PATH: process.env.PATH, ...env } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

test("version prints the version and the CNI versions", () => {
  const r = skein(["version"]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^skein \d+\.\d+\.\d+ \(CNI 0\.4\.0, 1\.0\.0, 1\.1\.0;/);
  expect(JSON.parse(skein(["version", "--json"]).out).cniVersions).toEqual(["0.4.0", "1.0.0", "1.1.0"]);
});

test("the compiler is embedded: a lone copy of the binary loads it", () => {
  const dir = useTempDir("cli");
  copyFileSync(SKEIN, `${dir}/skein`);
  const p = Bun.spawnSync([`${dir}/skein`, "version", "--verbose"], { cwd: dir });
  expect(p.exitCode).toBe(0);
  expect(p.stdout.toString()).toContain("compiler.wasm ABI 1");
});

test("help lists every subcommand, and each has --help", () => {
  const r = skein(["help"]);
  expect(r.code).toBe(0);
  for (const c of ["agent", "tables", "status", "trace", "cleanup", "demo", "version", "help"]) {
    expect(r.out).toContain(c);
    if (c !== "help") expect(skein([c, "--help"]).code).toBe(0);
  }
});

test.each([[["bogus"]], [["version", "--bogus"]], [["probe", "connect", "tcp", "127.0.0.1", "99999"]], [[]]])("usage errors exit 2: %p", (args) => {
  const r = skein(args);
  expect(r.code).toBe(2);
  expect(r.err + r.out).not.toBe("");
});

test.each([["agent"], ["tables"], ["status"]])("%s says plainly it is not available yet (exit 69)", (c) => {
  const r = skein([c]);
  expect(r.code).toBe(69);
  expect(r.err).toContain(`skein ${c}: not available yet`);
});

test("an unknown CNI_COMMAND is a CNI error, not the CLI", () => {
  const r = skein([], { CNI_COMMAND: "NOPE" });
  expect(r.code).toBe(1);
  expect(JSON.parse(r.out)).toMatchObject({ code: 4 });
});

test("cleanup removes namespaces by prefix, and only those", () => {
  const lab = useLab("clean");
  lab.host("x");
  lab.host("y");
  const other = useLab("keep");
  other.host("z");
  const dry = skein(["cleanup", "--prefix", lab.prefix, "--dry-run"]);
  expect(dry.out).toContain(`would remove network namespace ${lab.name("x")}`);
  expect(listNetns()).toContain(lab.name("x"));
  const r = skein(["cleanup", "--prefix", lab.prefix]);
  expect(r.code).toBe(0);
  expect(listNetns().filter((n) => n.startsWith(lab.prefix))).toEqual([]);
  expect(listNetns()).toContain(other.name("z"));
});
