// The policy compile the agent runs.
import type { CompilerExports } from "../wasm.ts";
import type { PolicyEngine } from "./incremental.ts";
import { compilePolicy } from "./reference.ts";

export function policyEngine(_wasm: CompilerExports): PolicyEngine {
  return compilePolicy;
}
