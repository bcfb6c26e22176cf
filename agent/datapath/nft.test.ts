// The same checks against both ways of reaching nftables, each in a private namespace.
import { afterAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { inNetns, run } from "../sys/exec.ts";

const fixture = resolve(import.meta.dir, "../../test/fixtures/nft-run.ts");
const created: string[] = [];
afterAll(() => created.forEach(deleteNetns));

function inFreshNetns(backend: string, scripts: string[]) {
  const ns = `skt-nft${Math.random().toString(36).slice(2, 6)}`;
  created.push(ns);
  const path = addNetns(ns);
  const r = run(inNetns(path, [process.execPath, fixture, backend]), { stdin: scripts.join("\n---\n") });
  return JSON.parse(r.stdout) as { backend: string; results: Array<{ ok: boolean; out?: string; error?: string; line?: number }> };
}

for (const backend of ["libnftables", "exec"]) {
  describe(`nft through ${backend}`, () => {
    test("applies a transaction and reads it back", () => {
      const r = inFreshNetns(backend, ["add table inet t\nadd chain inet t c\n", "list table inet t"]);
      expect(r.backend).toBe(backend);
      expect(r.results[0]!.ok).toBe(true);
      expect(r.results[1]!.out).toContain("chain c");
    });

    test("a rejected transaction changes nothing and names the offending line", () => {
      const r = inFreshNetns(backend, ["add table inet t\nadd chain inet t c\n", "add chain inet t d\nadd rule inet t c ip saddr 1.2.3.4 bogus\n", "list table inet t"]);
      const bad = r.results[1]!;
      expect(bad.ok).toBe(false);
      expect(bad.line).toBe(2);
      expect(bad.error).toContain("at line 2 (add rule inet t c ip saddr 1.2.3.4 bogus)");
      expect(r.results[2]!.out).not.toContain("chain d");
    });
  });
}
