// Applies nftables scripts: in-process through libnftables (bun:ffi) when the library is
// there, else by exec of `nft -f -`. Both take the whole script as one transaction, so a
// rejected script changes nothing, and both report nft's own message with the offending line.
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { run } from "../sys/exec.ts";

export interface Nft {
  readonly backend: "libnftables" | "exec";
  /** Runs a script as one transaction and returns what nft printed. Throws NftError. */
  run(script: string): string;
}

export class NftError extends Error {
  /** 1-based line of the script nft complained about, when it said */
  readonly line?: number;
  constructor(readonly nftMessage: string, readonly script: string) {
    const m = /(?:\/dev\/stdin|<cmdline>):(\d+):/.exec(nftMessage);
    const line = m ? Number(m[1]) : undefined;
    const text = line ? script.split("\n")[line - 1] : undefined;
    super(`nftables rejected the transaction${line ? ` at line ${line} (${text?.trim()})` : ""}: ${nftMessage.trim()}`);
    this.name = "NftError";
    this.line = line;
  }
}

const LIB_CANDIDATES = ["libnftables.so.1", "/usr/lib/x86_64-linux-gnu/libnftables.so.1", "/usr/lib/aarch64-linux-gnu/libnftables.so.1"];

function openLib() {
  let lastErr: unknown;
  for (const path of LIB_CANDIDATES) {
    try {
      return dlopen(path, {
        nft_ctx_new: { args: [FFIType.u32], returns: FFIType.ptr },
        nft_ctx_free: { args: [FFIType.ptr], returns: FFIType.void },
        nft_ctx_buffer_output: { args: [FFIType.ptr], returns: FFIType.i32 },
        nft_ctx_buffer_error: { args: [FFIType.ptr], returns: FFIType.i32 },
        nft_ctx_get_output_buffer: { args: [FFIType.ptr], returns: FFIType.cstring },
        nft_ctx_get_error_buffer: { args: [FFIType.ptr], returns: FFIType.cstring },
        nft_run_cmd_from_buffer: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
      });
    } catch (e) {
      lastErr = e;
    }
  }
  throw lastErr;
}

/** Scripts larger than this run in a context of their own, freed afterwards, and the C heap
 * is trimmed: what libnftables allocated to parse and cache a cold load (tens of megabytes
 * at 10,000 services, docs/measurements.md) would otherwise stay with the agent for good,
 * freed but not returned. */
const OWN_CONTEXT_BYTES = 256 * 1024;

let libc: { symbols: { malloc_trim: (pad: number) => number } } | null | undefined;
function mallocTrim(): void {
  if (libc === undefined) {
    try {
      libc = dlopen("libc.so.6", { malloc_trim: { args: [FFIType.u64], returns: FFIType.i32 } }) as never;
    } catch {
      libc = null; // not glibc: nothing to trim this way
    }
  }
  libc?.symbols.malloc_trim(0);
}

class LibNft implements Nft {
  readonly backend = "libnftables" as const;
  private readonly ctx: Pointer;
  constructor(private readonly lib: ReturnType<typeof openLib>) {
    this.ctx = this.newContext();
  }
  private newContext(): Pointer {
    const ctx = this.lib.symbols.nft_ctx_new(0) as Pointer | null;
    if (!ctx) throw new Error("nft_ctx_new failed");
    this.lib.symbols.nft_ctx_buffer_output(ctx);
    this.lib.symbols.nft_ctx_buffer_error(ctx);
    return ctx;
  }
  run(script: string): string {
    if (script.length <= OWN_CONTEXT_BYTES) return this.runIn(this.ctx, script);
    const ctx = this.newContext();
    try {
      return this.runIn(ctx, script);
    } finally {
      this.lib.symbols.nft_ctx_free(ctx);
      mallocTrim();
    }
  }
  private runIn(ctx: Pointer, script: string): string {
    const rc = this.lib.symbols.nft_run_cmd_from_buffer(ctx, Buffer.from(`${script}\0`));
    // Reading a buffer also resets it for the next command.
    const out = String(this.lib.symbols.nft_ctx_get_output_buffer(ctx) ?? "");
    const err = String(this.lib.symbols.nft_ctx_get_error_buffer(ctx) ?? "");
    if (rc !== 0) {
      // libnftables 1.0.x reports a buffer's errors without their line number; nft's check
      // mode reads the same script from stdin and names it. Only paid on failure.
      const located = new ExecNft().check(script);
      throw new NftError(located ?? (err || `libnftables returned ${rc}`), script);
    }
    return out;
  }
}

class ExecNft implements Nft {
  readonly backend = "exec" as const;
  run(script: string): string {
    const r = run(["nft", "-f", "-"], { stdin: script, allowFail: true });
    if (r.exitCode !== 0) throw new NftError(r.stderr || r.stdout || `nft exited ${r.exitCode}`, script);
    return r.stdout;
  }
  /** nft's complaint about a script without applying it, or undefined if it has none. */
  check(script: string): string | undefined {
    try {
      const r = run(["nft", "--check", "-f", "-"], { stdin: script, allowFail: true });
      return r.exitCode !== 0 ? r.stderr || undefined : undefined;
    } catch {
      return undefined;
    }
  }
}

/** SKEIN_NFT=exec forces the fallback (for comparison, or a host whose libnftables misbehaves). */
export function openNft(prefer: string | undefined = process.env.SKEIN_NFT): Nft {
  if (prefer !== "exec") {
    try {
      return new LibNft(openLib());
    } catch {
      // no usable libnftables: fall back to the nft binary
    }
  }
  return new ExecNft();
}
