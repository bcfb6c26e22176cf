import { expect, test } from "bun:test";
import { EXPECTED_ABI, loadCompiler } from "./wasm.ts";

test("compiler.wasm loads and speaks the ABI this host expects", async () => {
  const c = await loadCompiler();
  expect(c.abiVersion()).toBe(EXPECTED_ABI);
  expect(c.memory).toBeInstanceOf(WebAssembly.Memory);
});

test("a missing compiler.wasm is reported with its path", async () => {
  await expect(loadCompiler("/nonexistent/compiler.wasm")).rejects.toThrow(/compiler\.wasm/);
});
