// Loads compiler.wasm. The file import makes `bun build --compile` embed the module in the
// executable; from a source checkout it resolves to build/compiler.wasm.
import wasmPath from "../build/compiler.wasm" with { type: "file" };

export const EXPECTED_ABI = 1;

export interface CompilerExports {
  memory: WebAssembly.Memory;
  abiVersion(): number;
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
