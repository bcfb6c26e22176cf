import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { OutputWatcher } from "../../testing/lab.ts";
import { holdNetnsAgentLock, LockTimeoutError, withFileLock, withNetnsLockFile } from "./flock.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-flock-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("remove: the lock file is gone afterwards, also when fn throws; a later lock starts afresh", () => {
  const path = `${dir}/c.lock`;
  expect(withFileLock(path, () => existsSync(path), { remove: true })).toBe(true);
  expect(existsSync(path)).toBe(false);
  expect(() =>
    withFileLock(
      path,
      () => {
        throw new Error("inner");
      },
      { remove: true },
    ),
  ).toThrow("inner");
  expect(existsSync(path)).toBe(false);
  expect(withFileLock(path, () => 7)).toBe(7);
  expect(existsSync(path)).toBe(true);
});

// A child process holding the lock: says "held", then waits for a line on stdin before it
// lets go; with "remove" it unlinks the file first, as a finishing DEL does.
const holder = (path: string, remove: boolean) => `
  import { readSync, existsSync } from "node:fs";
  import { withFileLock } from ${JSON.stringify(`${import.meta.dir}/flock.ts`)};
  withFileLock(${JSON.stringify(path)}, () => {
    process.stdout.write("held " + existsSync(${JSON.stringify(path)}) + "\\n");
    readSync(0, Buffer.alloc(1));
  }, { remove: ${remove} });
`;

test("a waiter whose lock file was removed by the holder starts over on a fresh one, never holding a nameless lock", async () => {
  const path = `${dir}/w.lock`;
  const spawn = (remove: boolean) => {
    const p = Bun.spawn([process.execPath, "-e", holder(path, remove)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    return { p, out: new OutputWatcher(p.stdout) };
  };
  const first = spawn(true);
  expect(await first.out.until("held", 10_000)).toBe("found");
  const ino = statSync(path).ino;
  const second = spawn(false);
  // The second blocks in flock while the first holds the file (the kernel lists it as a
  // waiter in /proc/locks); then the first removes the file and lets go.
  const waiting = () => readFileSync("/proc/locks", "utf8").split("\n").some((l) => l.includes("-> FLOCK") && l.includes(`:${ino} `));
  for (const deadline = Date.now() + 10_000; !waiting(); await Bun.sleep(10)) {
    if (Date.now() > deadline) throw new Error("the second holder never waited for the lock");
  }
  first.p.stdin.write("x");
  await first.p.stdin.end();
  expect(await first.p.exited).toBe(0);
  expect(await second.out.until("held", 10_000)).toBe("found");
  expect(second.out.text.trim()).toBe("held true");
  second.p.stdin.write("x");
  await second.p.stdin.end();
  expect(await second.p.exited).toBe(0);
});

test("the namespace lock: held by another process, the wait ends with LockTimeoutError; free again, it is taken", async () => {
  const lockDir = `${dir}/ns-locks`;
  const child = Bun.spawn(
    [process.execPath, "-e", `
      import { readSync } from "node:fs";
      import { withNetnsLockFile } from ${JSON.stringify(`${import.meta.dir}/flock.ts`)};
      withNetnsLockFile(${JSON.stringify(lockDir)}, () => { process.stdout.write("held\\n"); readSync(0, Buffer.alloc(1)); }, 5000);
    `],
    { stdin: "pipe", stdout: "pipe", stderr: "inherit" },
  );
  const out = new OutputWatcher(child.stdout);
  expect(await out.until("held", 10_000)).toBe("found");
  const t0 = performance.now();
  expect(() => withNetnsLockFile(lockDir, () => 1, 300)).toThrow(LockTimeoutError);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(300);
  expect(performance.now() - t0).toBeLessThan(2000);
  child.stdin.write("x");
  await child.stdin.end();
  expect(await child.exited).toBe(0);
  expect(withNetnsLockFile(lockDir, () => 2, 300)).toBe(2);
  const files = [...new Bun.Glob("cni-*.lock").scanSync(lockDir)];
  expect(files).toHaveLength(1);
  expect(statSync(`${lockDir}/${files[0]}`).mode & 0o777).toBe(0o600);
});

test("the namespace lock refuses a directory others can write (where anyone could plant the lock file)", () => {
  const open = `${dir}/open-locks`;
  mkdirSync(open);
  chmodSync(open, 0o777);
  expect(() => withNetnsLockFile(open, () => 1, 100)).toThrow(/lock directory .* must be a directory owned by uid \d+ that no one else can write/);
});

describe("holdNetnsAgentLock", () => {
  test("one holder per namespace: a second is refused naming the first's pid; the file is root's alone and goes with the holder", () => {
    const dir = mkdtempSync(`${tmpdir()}/skein-agentlock-`);
    try {
      const held = holdNetnsAgentLock(`${dir}/run`);
      expect(() => holdNetnsAgentLock(`${dir}/run`)).toThrow(`another skein agent (pid ${process.pid}) already runs in this network namespace`);
      expect(statSync(held.path).mode & 0o777).toBe(0o600);
      // another user cannot even open it, so cannot take the lock and keep the agent out
      const other = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "flock", "-n", held.path, "true"]);
      expect(other.exitCode).not.toBe(0);
      held.release();
      expect(existsSync(held.path)).toBe(false);
      // a file an earlier version left readable by all is made root's alone
      writeFileSync(held.path, "1\n", { mode: 0o644 });
      chmodSync(held.path, 0o644);
      const again = holdNetnsAgentLock(`${dir}/run`);
      expect(statSync(again.path).mode & 0o777).toBe(0o600);
      again.release();
      // a symlink in its place is not followed (what it points at would be truncated)
      writeFileSync(`${dir}/victim`, "precious\n");
      symlinkSync(`${dir}/victim`, again.path);
      expect(() => holdNetnsAgentLock(`${dir}/run`)).toThrow();
      expect(readFileSync(`${dir}/victim`, "utf8")).toBe("precious\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
