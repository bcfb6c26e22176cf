// Any failure, turned into the CNI spec's error object: a code a runtime can act on and a
// one-line message. Stacks go to stderr (runtimes log it), never into `details`.
import { NftError } from "../datapath/nft.ts";
import { StoreCorruptError, StoreFullError } from "../ipam/disk-store.ts";
import { NotAFileError, TooLargeError } from "../sys/bounded-read.ts";
import { ExecError } from "../sys/exec.ts";
import { LinkError, oneLine, toLinkError } from "./links.ts";
import { CniError, ErrorCode } from "./spec.ts";

export const INTERNAL_ERROR = 102;

export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return new CniError(e.code, oneLine(e.message), e.details);
  if (e instanceof LinkError) return new CniError(e.transient ? ErrorCode.TryAgainLater : ErrorCode.IoFailure, e.message);
  if (e instanceof StoreCorruptError || e instanceof StoreFullError || e instanceof TooLargeError || e instanceof NotAFileError) return new CniError(ErrorCode.IoFailure, oneLine(e.message));
  if (e instanceof ExecError || e instanceof NftError) return new CniError(ErrorCode.IoFailure, oneLine(e.message));
  const code = (e as { code?: unknown })?.code;
  // A file system call (the IPAM directory, a lock, /proc) that failed: the errno names it.
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
    const l = toLinkError(e);
    return new CniError(l.transient ? ErrorCode.TryAgainLater : ErrorCode.IoFailure, l.message);
  }
  return new CniError(INTERNAL_ERROR, `internal error: ${oneLine((e as Error)?.message ?? String(e))}`);
}

/**
 * The error of an ADD that failed and whose cleanup failed too: the original's code, and
 * both messages, the original first, so the runtime sees why ADD failed and what it left.
 */
export function withCleanupFailures(original: unknown, cleanup: unknown[]): CniError {
  const first = toCniError(original);
  if (cleanup.length === 0) return first;
  const rest = cleanup.map((c) => toCniError(c).message).join("; ");
  return new CniError(first.code, `${first.message}; cleaning up after the failed ADD also failed: ${rest}`, first.details);
}
