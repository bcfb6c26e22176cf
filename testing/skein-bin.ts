// Where the skein executable is: this process when it is the compiled binary, else the
// build output of the checkout (running from source with `bun agent/main.ts`).
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";

export function skeinBinary(): string {
  if (!/^bun(-debug)?$/.test(basename(process.execPath))) return process.execPath;
  const built = resolve(import.meta.dir, "../dist/skein");
  if (!existsSync(built)) throw new Error(`no skein binary at ${built}: run 'bun run build' first`);
  return built;
}
