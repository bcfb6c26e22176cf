// The write-ahead journal: lines appended whole, a torn last line dropped, other damage refused.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { useTempDir } from "../../test/harness/index.ts";
import { Journal, readJournal } from "./journal.ts";

const tmp = useTempDir("apiserver-journal");
const cm = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" } });

test("appended entries read back in order; reset empties it", () => {
  const f = `${tmp}/a.jsonl`;
  const j = new Journal(f);
  j.append({ rev: 7, group: "", plural: "configmaps", object: cm("a") });
  j.append({ rev: 8, group: "", plural: "configmaps", namespace: "default", name: "a" });
  expect(j.bytes).toBe(readFileSync(f).byteLength);
  expect(readJournal(f, () => {}).map((e) => [e.rev, e.object?.metadata.name ?? `-${e.name}`])).toEqual([
    [7, "a"],
    [8, "-a"],
  ]);
  j.reset();
  expect(readFileSync(f, "utf8")).toBe("");
  expect(readJournal(`${tmp}/missing.jsonl`, () => {})).toEqual([]);
  j.close();
});

test("a last line cut short is dropped with a log line; a complete line that does not read is refused, naming file and line", () => {
  const f = `${tmp}/b.jsonl`;
  const line = JSON.stringify({ rev: 3, group: "", plural: "configmaps", object: cm("b") });
  writeFileSync(f, `${line}\n{"rev":4,"gro`);
  const log: string[] = [];
  expect(readJournal(f, (s) => log.push(s)).map((e) => e.rev)).toEqual([3]);
  expect(log.join("")).toContain(`${f}: dropped its last line, cut short`);
  for (const bad of [`{"rev":4,"gro\n${line}\n`, `{"rev":"4","group":"","plural":"configmaps","name":"x"}\n`, `{"rev":4,"group":"","plural":"configmaps"}\n`]) {
    writeFileSync(f, bad);
    expect(() => readJournal(f, () => {})).toThrow(`${f}: line 1:`);
  }
});
