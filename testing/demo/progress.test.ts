import { expect, test } from "bun:test";
import { Progress } from "./progress.ts";

test("progress: plain numbered lines off a terminal; a redrawn spinner line on one", () => {
  let plain = "";
  const p = new Progress(2, (s) => (plain += s), false);
  p.step("one");
  p.info("detail");
  p.step("two");
  p.done();
  expect(plain).toBe("[1/2] one\n    detail\n[2/2] two\n");
  let tty = "";
  const t = new Progress(1, (s) => (tty += s), true);
  t.step("build");
  t.done();
  expect(tty).toMatch(/^\| \[1\/1\] build \(0\.\d s\)\r\x1b\[Kok \[1\/1\] build \(0\.\d s\)\n$/);
});
