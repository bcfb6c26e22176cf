// Loaded by `bun test` before any test file (bunfig.toml): compiler/wasm.ts embeds
// build/compiler.wasm, so a checkout without a build (or with AssemblyScript sources newer
// than the build) gets it compiled here, and the unit tests run without `bun run build`.
// The e2e tests exec dist/skein and still need the full build.
import { existsSync, readdirSync, statSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const wasm = `${root}/build/compiler.wasm`;
const sources = readdirSync(`${root}/assembly`).filter((f) => f.endsWith(".ts")).map((f) => `${root}/assembly/${f}`);
const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
if (!existsSync(wasm) || statSync(wasm).mtimeMs < newest) {
  const p = Bun.spawnSync([process.execPath, "run", "build:wasm"], { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`building build/compiler.wasm for the tests failed (exit ${p.exitCode})`);
}
