// Runs a bench script as its tests do: in its own process group, as a shell gives a job (so a
// Ctrl-C sent to the group reaches the bench and its helpers), its output collected.
import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

export function spawnBench(script: string, args: string[]): { p: ChildProcess; exited: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const p = spawn(process.execPath, [`${ROOT}/bench/${script}`, ...args], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout!.on("data", (d) => (stdout += d));
  p.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => p.on("close", (code) => r({ code, stdout, stderr })));
  return { p, exited };
}
