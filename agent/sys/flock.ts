// An exclusive advisory lock on a file, held by the kernel: it dies with the process, so a
// CNI plugin killed mid-ADD never leaves a stale lock behind (lock directories do).
import { closeSync, openSync } from "node:fs";
import { dlopen, FFIType } from "bun:ffi";

const LOCK_EX = 2;
const LOCK_UN = 8;

let libc: { symbols: { flock(fd: number, op: number): number } } | undefined;

function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
  return libc.symbols.flock(fd, op);
}

/** Runs `fn` while holding an exclusive lock on `path` (created if missing). */
export function withFileLock<T>(path: string, fn: () => T): T {
  const fd = openSync(path, "a", 0o600);
  try {
    if (flock(fd, LOCK_EX) !== 0) throw new Error(`cannot lock ${path}`);
    try {
      return fn();
    } finally {
      flock(fd, LOCK_UN);
    }
  } finally {
    closeSync(fd);
  }
}
