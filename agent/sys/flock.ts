// An exclusive advisory lock on a file, held by the kernel: it dies with the process, so a
// CNI plugin killed mid-ADD never leaves a stale lock behind (lock directories do).
import { closeSync, constants, fchmodSync, fstatSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dlopen, FFIType } from "bun:ffi";
import { ownNetnsId } from "./netns.ts";

const LOCK_EX = 2;
const LOCK_UN = 8;
/** bound on re-opens when the lock file is removed under us (each one means a holder finished) */
const MAX_REOPENS = 1000;

let libc: { symbols: { flock(fd: number, op: number): number } } | undefined;

function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
  return libc.symbols.flock(fd, op);
}

/** Whether `path` still names the file open at `fd` (it may have been removed meanwhile). */
function stillNamed(path: string, fd: number): boolean {
  const held = fstatSync(fd, { bigint: true });
  try {
    const named = statSync(path, { bigint: true });
    return named.ino === held.ino && named.dev === held.dev;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` while holding an exclusive lock on `path` (created if missing). With `remove`,
 * the lock file is unlinked before it is released, so per-object lock files do not pile up:
 * a waiter that then gets the lock on the unlinked file sees it no longer has that name and
 * starts over on a fresh file, so two holders never overlap.
 */
export function withFileLock<T>(path: string, fn: () => T, opts: { remove?: boolean } = {}): T {
  for (let attempt = 0; attempt < MAX_REOPENS; attempt++) {
    // Non-blocking: a FIFO in the lock file's place fails the open (ENXIO) instead of
    // waiting for a reader that never comes.
    const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK, 0o600);
    try {
      if (flock(fd, LOCK_EX) !== 0) throw new Error(`cannot lock ${path}`);
      try {
        if (!stillNamed(path, fd)) continue;
        try {
          return fn();
        } finally {
          if (opts.remove) unlinkSync(path);
        }
      } finally {
        flock(fd, LOCK_UN);
      }
    } finally {
      closeSync(fd);
    }
  }
  throw new Error(`cannot lock ${path}: it was removed ${MAX_REOPENS} times while waiting`);
}

const LOCK_NB = 4;

/** The lock was not had within the time allowed: its holder is busy or stuck. */
export class LockTimeoutError extends Error {
  constructor(readonly path: string, readonly ms: number) {
    super(`could not take the lock ${path} within ${ms / 1000} s: another process holds it`);
    this.name = "LockTimeoutError";
  }
}

/**
 * Runs `fn` while holding the lock shared by every process working on this thread's network
 * namespace, whatever data directory or configuration each one uses. The file is named for
 * the namespace's identity (its nsfs device and inode) under `dir`, a directory of this
 * user's (root's) that no one else may write, and has mode 0600: a lock on the namespace's
 * own nsfs file could be taken, and held for ever, by any process in the namespace. The wait
 * is bounded too: LockTimeoutError after `timeoutMs`.
 */
export function withNetnsLockFile<T>(dir: string, fn: () => T, timeoutMs: number): T {
  const ns = ownNetnsId();
  const path = `${dir}/cni-${ns.dev}-${ns.ino}.lock`;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const uid = process.getuid?.() ?? 0;
  const d = lstatSync(dir);
  if (!d.isDirectory() || d.uid !== uid || (d.mode & 0o022) !== 0) {
    throw new Error(`lock directory ${dir} must be a directory owned by uid ${uid} that no one else can write (it is ${d.isDirectory() ? `owned by uid ${d.uid}, mode ${(d.mode & 0o777).toString(8)}` : "not a directory"})`);
  }
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  try {
    const f = fstatSync(fd);
    if (!f.isFile() || f.uid !== uid) throw new Error(`lock file ${path} is not a regular file owned by uid ${uid}`);
    const deadline = performance.now() + timeoutMs;
    // flock cannot be given a timeout: tried without blocking, with short pauses between.
    for (let pause = 1; flock(fd, LOCK_EX | LOCK_NB) !== 0; pause = Math.min(pause * 2, 16)) {
      if (performance.now() >= deadline) throw new LockTimeoutError(path, timeoutMs);
      Bun.sleepSync(pause);
    }
    try {
      return fn();
    } finally {
      flock(fd, LOCK_UN);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes, for as long as the process lives, the lock that one skein agent holds per network
 * namespace: two agents in one namespace would each take the other's transactions for
 * someone else's and reload the table against each other without end. The lock file is
 * named for the namespace's identity (its nsfs device and inode) under `dir`, holds the
 * holder's pid for the message a second agent gets, and is released by the kernel when
 * the holder dies. Throws, naming the holder, when another process has it.
 */
/** The agent API's unix socket for this thread's network namespace, named like the agent's
 * lock: a CLI in the same namespace finds the agent that serves it. */
export function agentSocketPath(dir = "/run/skein"): string {
  const ns = ownNetnsId();
  return `${dir}/agent-${ns.dev}-${ns.ino}.sock`;
}

export function holdNetnsAgentLock(dir: string): { path: string; release(): void } {
  const ns = ownNetnsId();
  const path = `${dir}/agent-${ns.dev}-${ns.ino}.lock`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // readable by root alone: a flock needs only a descriptor, so a file anyone could open
  // would let anyone keep the agent from starting
  // not through a symlink: whatever it pointed at would be truncated for the pid
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new Error(`${path} is not a regular file: remove it`);
  }
  if (st.uid !== process.getuid?.()) {
    closeSync(fd);
    throw new Error(`${path} belongs to user ${st.uid}, not to this agent's: remove it`);
  }
  if (st.mode & 0o077) fchmodSync(fd, 0o600); // one left readable by an earlier version
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    let holder = "";
    try {
      holder = readFileSync(path, "utf8").trim().slice(0, 20);
    } catch {
      // the message goes without the pid
    }
    closeSync(fd);
    throw new Error(`another skein agent${/^\d+$/.test(holder) ? ` (pid ${holder})` : ""} already runs in this network namespace (it holds ${path})`);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`);
  let held = true;
  return {
    path,
    release: () => {
      if (!held) return;
      held = false;
      // removed while still held, so no lock file outlives a namespace's last agent (one
      // killed leaves it: the next agent there takes it over)
      try {
        unlinkSync(path);
      } catch {
        // gone already
      }
      flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
}
