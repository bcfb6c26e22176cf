// Loads compiler.wasm and packs work into its memory. The file import makes `bun build
// --compile` embed the module in the executable; from a source checkout it resolves to
// build/compiler.wasm.
import wasmPath from "../build/compiler.wasm" with { type: "file" };
import type { RingFiller, Target } from "./reference/compile.ts";
import { KEY_BYTES } from "./keys.ts";

export const EXPECTED_ABI = 3;

export interface CompilerExports {
  memory: WebAssembly.Memory;
  abiVersion(): number;
  reserve(bytes: number): number;
  fillRings(nTargets: number, targets: number, keys: number, out: number, scratch: number): void;
}

export async function loadCompiler(path: string = wasmPath): Promise<CompilerExports> {
  const bytes = await Bun.file(path).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(bytes, {
    env: {
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`compiler.wasm aborted at ${line}:${col}`);
      },
    },
  });
  const exports = instance.exports as unknown as CompilerExports;
  const abi = exports.abiVersion();
  if (abi !== EXPECTED_ABI) {
    throw new Error(`compiler.wasm at ${path} has ABI ${abi}, this build expects ${EXPECTED_ABI}`);
  }
  return exports;
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * A RingFiller that runs the Maglev fill in compiler.wasm: the targets' packed keys are
 * copied into the module's memory block by block, one call fills every ring, and each
 * target's ring is a view into the output (copied out of the module's memory once, whole).
 */
export function wasmRings(c: CompilerExports): RingFiller {
  return (targets: Target[]) => {
    const live = targets.filter((t) => t.ringSize > 0);
    const nKeys = live.reduce((n, t) => n + t.backends.length, 0);
    const slots = live.reduce((n, t) => n + t.ringSize, 0);
    const maxN = live.reduce((n, t) => Math.max(n, t.backends.length), 0);
    const sizes = [live.length * 16, nKeys * KEY_BYTES, slots * 4, maxN * 8].map(align8);
    const pTargets = c.reserve(sizes.reduce((a, b) => a + b, 0));
    const pKeys = pTargets + sizes[0]!;
    const pOut = pKeys + sizes[1]!;
    const pScratch = pOut + sizes[2]!;
    const buf = c.memory.buffer; // after reserve: growing detaches older views
    const tv = new Uint32Array(buf, pTargets, live.length * 4);
    const kb = new Uint8Array(buf, pKeys, nKeys * KEY_BYTES);
    let first = 0;
    let ringOff = 0;
    for (const [i, t] of live.entries()) {
      tv[i * 4] = first;
      tv[i * 4 + 1] = t.backends.length;
      tv[i * 4 + 2] = t.ringSize;
      tv[i * 4 + 3] = ringOff;
      kb.set(t.keys, first * KEY_BYTES);
      first += t.backends.length;
      ringOff += t.ringSize;
    }
    c.fillRings(live.length, pTargets, pKeys, pOut, pScratch);
    const out = new Int32Array(c.memory.buffer.slice(pOut, pOut + slots * 4));
    let off = 0;
    for (const t of live) {
      t.ring = out.subarray(off, off + t.ringSize);
      off += t.ringSize;
    }
  };
}
