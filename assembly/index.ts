// The rule compiler. For now it only states the ABI version of the flat tables it will
// exchange with the TypeScript host (compiler/), so that the host can refuse a
// compiler.wasm built for another layout instead of misreading its memory.
export const ABI_VERSION: i32 = 1;

export function abiVersion(): i32 {
  return ABI_VERSION;
}
