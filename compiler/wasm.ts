// Loads compiler.wasm and packs work into its memory. The file import makes `bun build
// --compile` embed the module in the executable; from a source checkout it resolves to
// build/compiler.wasm.
import wasmPath from "../build/compiler.wasm" with { type: "file" };
import type { RingFiller, Target } from "./reference/compile.ts";
import { backendKey } from "./reference/compile.ts";

export const EXPECTED_ABI = 2;

export interface CompilerExports {
  memory: WebAssembly.Memory;
  abiVersion(): number;
  reserve(bytes: number): number;
  fillRings(nTargets: number, targets: number, keyOff: number, keys: number, out: number, scratch: number): void;
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
const enc = new TextEncoder();

/**
 * A RingFiller that runs the Maglev fill in compiler.wasm: one pass packs every target's
 * backend keys into the module's memory, one call fills every ring, and each target's ring
 * is a view into the output (copied once, as a whole, out of the module's memory).
 */
export function wasmRings(c: CompilerExports): RingFiller {
  return (targets: Target[]) => {
    const live = targets.filter((t) => t.ringSize > 0);
    const keys = live.flatMap((t) => t.backends.map(backendKey));
    const keyBytes = keys.reduce((n, k) => n + k.length * 3, 0);
    const slots = live.reduce((n, t) => n + t.ringSize, 0);
    const maxN = live.reduce((n, t) => Math.max(n, t.backends.length), 0);
    const sizes = [live.length * 16, (keys.length + 1) * 4, keyBytes, slots * 4, maxN * 8].map(align8);
    const base = c.reserve(sizes.reduce((a, b) => a + b, 0));
    const at = sizes.reduce<number[]>((acc, _s, i) => [...acc, i === 0 ? base : acc[i - 1]! + sizes[i - 1]!], []);
    const [pTargets, pKeyOff, pKeys, pOut, pScratch] = at as [number, number, number, number, number];
    const buf = c.memory.buffer; // after reserve: growing detaches older views
    const tv = new Uint32Array(buf, pTargets, live.length * 4);
    const ko = new Uint32Array(buf, pKeyOff, keys.length + 1);
    const kb = new Uint8Array(buf, pKeys, keyBytes);
    let first = 0;
    let ringOff = 0;
    let byte = 0;
    for (const [i, t] of live.entries()) {
      tv.set([first, t.backends.length, t.ringSize, ringOff], i * 4);
      for (const b of t.backends) {
        ko[first++] = byte;
        byte += enc.encodeInto(backendKey(b), kb.subarray(byte)).written;
      }
      ringOff += t.ringSize;
    }
    ko[first] = byte;
    c.fillRings(live.length, pTargets, pKeyOff, pKeys, pOut, pScratch);
    const out = new Int32Array(c.memory.buffer.slice(pOut, pOut + slots * 4));
    let off = 0;
    for (const t of live) {
      t.ring = out.subarray(off, off + t.ringSize);
      off += t.ringSize;
    }
  };
}
