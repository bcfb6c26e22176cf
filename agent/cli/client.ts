// The CLI's way to the local agent: its unix socket (named for this network namespace, so
// `ip netns exec X skein status` asks X's agent), or an HTTP URL given with --agent (with a
// bearer token for a non-loopback address).
import { agentSocketPath } from "../sys/flock.ts";
import { readFileBounded, readStreamBounded } from "../sys/bounded-read.ts";

/** The agent could not be asked (none runs here, or it did not answer). */
export class AgentUnreachable extends Error {}

export interface AgentTarget {
  /** a unix socket path or an http(s):// URL; default: this namespace's socket */
  agent?: string;
  tokenFile?: string;
  timeoutMs?: number;
}

/**
 * The most the CLI reads of an answer: far above a large cluster's /v1/state, and short of
 * what would make a hostile or broken --agent exhaust this process's memory.
 */
export const MAX_ANSWER = 64 * 1024 * 1024;

/** What the agent answered: status and body (parsed when JSON). */
export async function askAgent(path: string, t: AgentTarget, accept = "application/json"): Promise<{ status: number; text: string; json?: unknown }> {
  const where = t.agent ?? agentSocketPath();
  const url = /^https?:\/\//.test(where) ? new URL(path, where).toString() : `http://localhost${path}`;
  const headers: Record<string, string> = { Accept: accept };
  if (t.tokenFile) headers.Authorization = `Bearer ${readFileBounded(t.tokenFile, 4096, `--token-file ${t.tokenFile}`).toString("utf8").trim()}`;
  let r: Response;
  try {
    // a redirect would take the question (and its token) somewhere not asked for
    r = await fetch(url, { headers, redirect: "manual", signal: AbortSignal.timeout(t.timeoutMs ?? 10_000), ...(/^https?:\/\//.test(where) ? {} : { unix: where }) } as RequestInit);
  } catch (e) {
    const err = e as Error & { code?: string };
    const none = /ENOENT|ECONNREFUSED|FailedToOpenSocket|ConnectionRefused/.test(`${err.code ?? ""} ${err.message}`);
    throw new AgentUnreachable(none ? `no skein agent answers at ${where}: is one running in this network namespace? (run this where the agent runs, e.g. 'ip netns exec NODE skein …', or give --agent)` : `the agent at ${where} did not answer: ${err.message}`);
  }
  if (r.status >= 300 && r.status < 400) {
    await r.body?.cancel().catch(() => {});
    throw new Error(`the agent at ${where} answered ${path.split("?")[0]} with a redirect (${r.status}${r.headers.get("location") ? ` to ${JSON.stringify(r.headers.get("location")!.slice(0, 100))}` : ""}): not followed`);
  }
  const text = (await readStreamBounded(r.body, MAX_ANSWER, () => new Error(`the agent at ${where} answered with more than ${MAX_ANSWER} bytes: not read further`))).toString("utf8");
  let json: unknown;
  if ((r.headers.get("content-type") ?? "").includes("application/json")) {
    try {
      json = JSON.parse(text);
    } catch {}
  }
  return { status: r.status, text, json };
}

// C0 and C1 controls but the newline and tab: an escape sequence in an answer could rewrite
// the terminal it is printed on
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `s` with its control characters shown as \xNN, for a terminal. */
export const printable = (s: string) => s.replace(CONTROLS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);

/** A parsed JSON answer with every string (and key) made printable, for human output. */
export function printableJson(v: unknown, depth = 0): unknown {
  if (depth > 64) throw new Error("the agent's answer is nested deeper than 64 levels");
  if (typeof v === "string") return printable(v);
  if (Array.isArray(v)) return v.map((x) => printableJson(x, depth + 1));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [printable(k), printableJson(x, depth + 1)]));
  return v;
}

/** The agent's refusal as one line. */
export const refusal = (r: { status: number; text: string; json?: unknown }) => `${r.status}: ${printable(String((r.json as { error?: unknown } | undefined)?.error ?? r.text).slice(0, 200))}`;
