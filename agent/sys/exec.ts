// Runs host tools (ip, nsenter, nft). Every failure carries the command line and what the
// tool printed, because "exit status 2" alone never tells an operator what went wrong.

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class ExecError extends Error {
  constructor(
    readonly argv: string[],
    readonly result: ExecResult,
  ) {
    const detail = (result.stderr || result.stdout).trim();
    super(`${argv.join(" ")} exited ${result.exitCode}${detail ? `: ${detail}` : ""}`);
    this.name = "ExecError";
  }
}

export function run(argv: string[], opts: { stdin?: string; allowFail?: boolean } = {}): ExecResult {
  const proc = Bun.spawnSync(argv, {
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const result: ExecResult = {
    stdout: proc.stdout.toString(),
    stderr: proc.stderr.toString(),
    exitCode: proc.exitCode ?? -1,
  };
  if (result.exitCode !== 0 && !opts.allowFail) throw new ExecError(argv, result);
  return result;
}

export async function runAsync(
  argv: string[],
  opts: { stdin?: string; allowFail?: boolean; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<ExecResult> {
  const proc = Bun.spawn(argv, {
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    env: opts.env,
    timeout: opts.timeoutMs,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const result = { stdout, stderr, exitCode };
  if (exitCode !== 0 && !opts.allowFail) throw new ExecError(argv, result);
  return result;
}

/**
 * `ip` with its arguments, run in the network namespace at `path`: through ip's own `-n` when
 * the namespace is a named one (one exec instead of two: a CNI ADD pays for every exec),
 * else through nsenter (e.g. /proc/PID/ns/net).
 */
export function ipIn(path: string | undefined, args: string[]): string[] {
  const named = path ? /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(path) : null;
  if (named) return ["ip", "-n", named[1]!, ...args];
  return inNetns(path, ["ip", ...args]);
}

/** argv prefix that runs a command inside the network namespace at `path`. */
export function inNetns(path: string | undefined, argv: string[]): string[] {
  return path ? ["nsenter", `--net=${path}`, ...argv] : argv;
}
