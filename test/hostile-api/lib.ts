// A `skein apiserver` process on loopback for the hostile tests: started from the built binary,
// spoken to over HTTPS with the bearer token, stopped by its own pid.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { SKEIN, waitFor } from "../harness/index.ts";

export const TOKEN = "skha-token";

export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

export function skhaDir(tag: string): string {
  return mkdtempSync(`${tmpdir()}/skha-${tag}-`);
}

export function removeDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
}

/** Feeds a child's output, as text, to `sink` until it ends. */
export function drain(s: ReadableStream<Uint8Array>, sink: (text: string) => void): void {
  const reader = s.getReader();
  const dec = new TextDecoder();
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      sink(dec.decode(value, { stream: true }));
    }
  })();
}

export interface Api {
  port: number;
  dir: string;
  proc: ReturnType<typeof Bun.spawn>;
  out: () => string;
  req: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; text: string; json: () => any }>;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
}

export async function startApi(dir: string, extra: string[] = [], port = freePort()): Promise<Api> {
  const proc = Bun.spawn([SKEIN, "apiserver", "--dir", dir, "--listen", `127.0.0.1:${port}`, "--token", TOKEN, ...extra], { stdout: "pipe", stderr: "pipe" });
  let out = "";
  drain(proc.stdout, (t) => (out += t));
  drain(proc.stderr, (t) => (out += t));
  await waitFor("skein apiserver serving", () => out.includes("serving") || proc.exitCode !== null, 15_000);
  if (!out.includes("serving")) throw new Error(`apiserver did not start: ${out}`);
  const req: Api["req"] = async (method, path, body, headers = {}) => {
    const h: Record<string, string> = { authorization: `Bearer ${TOKEN}`, ...headers };
    let b: string | Uint8Array | undefined;
    if (body !== undefined) {
      b = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
      h["content-type"] ??= "application/json";
    }
    const r = await fetch(`https://127.0.0.1:${port}${path}`, { method, headers: h, body: b, tls: { rejectUnauthorized: false } } as RequestInit);
    const text = await r.text();
    return { status: r.status, text, json: () => JSON.parse(text) };
  };
  return {
    port,
    dir,
    proc,
    out: () => out,
    req,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal);
      await proc.exited;
    },
  };
}
