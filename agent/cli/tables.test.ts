import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { MAX_STATE_FILE, readObjects } from "./tables.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-state-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("an endless --state (a device, a pipe that never ends) is cut at MAX_STATE_FILE, not read into memory for ever", () => {
  const t0 = performance.now();
  expect(() => readObjects("/dev/zero")).toThrow(`--state /dev/zero is larger than ${MAX_STATE_FILE / 1048576} MiB: refused`);
  expect(performance.now() - t0).toBeLessThan(10_000);
});

test("a --state that is not UTF-8 is refused by name, not read with replacement characters", () => {
  writeFileSync(`${dir}/latin1.json`, Buffer.from('[{"apiVersion":"v1","kind":"Service","metadata":{"name":"\xff\xfe","namespace":"default"}}]', "latin1"));
  expect(() => readObjects(`${dir}/latin1.json`)).toThrow(`${dir}/latin1.json is not UTF-8`);
  writeFileSync(`${dir}/ok.json`, '[{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"}}]');
  expect(readObjects(`${dir}/ok.json`)).toHaveLength(1);
});
