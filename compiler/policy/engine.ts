// The policy compile the agent runs: compiler.wasm's (compiler/policy/wasm.ts), held equal to
// the TypeScript reference (compiler/policy/reference.ts) by the property tests.
import type { CompilerExports } from "../wasm.ts";
import type { PolicyEngine } from "./incremental.ts";
import { wasmPolicyCompiler } from "./wasm.ts";

export function policyEngine(wasm: CompilerExports): PolicyEngine {
  const { compile } = wasmPolicyCompiler(wasm);
  return (state, opts, previous) => compile(state, opts, previous);
}
