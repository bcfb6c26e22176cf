import { expect, test } from "bun:test";
import { OutputWatcher } from "./lab.ts";

test("OutputWatcher empties the pipe all the time: a child printing far more than a pipe holds is never blocked, and nothing is lost", async () => {
  // 2 MiB in synchronous writes, then a marker: with nobody reading, the child would stop in
  // its first write past the pipe's 64 KiB
  const script = `const fs = require("node:fs"); const line = "x".repeat(1023) + "\\n"; for (let i = 0; i < 2048; i++) fs.writeSync(1, line); fs.writeSync(1, "END\\n");`;
  const p = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "ignore" });
  const out = new OutputWatcher(p.stdout);
  const exited = await Promise.race([p.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
  expect(exited).toBe(true);
  expect(await out.until("END", 5000)).toBe("found");
  expect(out.text.length).toBe(2048 * 1024 + 4);
  expect(await out.until("never printed", 1000)).toBe("ended");
});

test("until: several waiting at once are all woken; a deadline is kept", async () => {
  const p = Bun.spawn([process.execPath, "-e", `setTimeout(() => console.log("one"), 200); setTimeout(() => console.log("two"), 400); setTimeout(() => {}, 3000)`], { stdout: "pipe" });
  const out = new OutputWatcher(p.stdout);
  const [a, b] = await Promise.all([out.until("one", 5000), out.until("two", 5000)]);
  expect([a, b]).toEqual(["found", "found"]);
  const t = performance.now();
  expect(await out.until("three", 300)).toBe("timeout");
  expect(performance.now() - t).toBeLessThan(2000);
  p.kill();
});
