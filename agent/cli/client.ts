// The CLI's way to the local agent: its unix socket (named for this network namespace, so
// `ip netns exec X skein status` asks X's agent), or an HTTP URL given with --agent (with a
// bearer token for a non-loopback address).
import { agentSocketPath } from "../sys/flock.ts";
import { readFileBounded } from "../sys/bounded-read.ts";

/** The agent could not be asked (none runs here, or it did not answer). */
export class AgentUnreachable extends Error {}

export interface AgentTarget {
  /** a unix socket path or an http(s):// URL; default: this namespace's socket */
  agent?: string;
  tokenFile?: string;
  timeoutMs?: number;
}

/** What the agent answered: status and body (parsed when JSON). */
export async function askAgent(path: string, t: AgentTarget, accept = "application/json"): Promise<{ status: number; text: string; json?: unknown }> {
  const where = t.agent ?? agentSocketPath();
  const url = /^https?:\/\//.test(where) ? new URL(path, where).toString() : `http://localhost${path}`;
  const headers: Record<string, string> = { Accept: accept };
  if (t.tokenFile) headers.Authorization = `Bearer ${readFileBounded(t.tokenFile, 4096, `--token-file ${t.tokenFile}`).toString("utf8").trim()}`;
  let r: Response;
  try {
    r = await fetch(url, { headers, signal: AbortSignal.timeout(t.timeoutMs ?? 10_000), ...(/^https?:\/\//.test(where) ? {} : { unix: where }) } as RequestInit);
  } catch (e) {
    const err = e as Error & { code?: string };
    const none = /ENOENT|ECONNREFUSED|FailedToOpenSocket|ConnectionRefused/.test(`${err.code ?? ""} ${err.message}`);
    throw new AgentUnreachable(none ? `no skein agent answers at ${where}: is one running in this network namespace? (run this where the agent runs, e.g. 'ip netns exec NODE skein …', or give --agent)` : `the agent at ${where} did not answer: ${err.message}`);
  }
  const text = await r.text();
  let json: unknown;
  if ((r.headers.get("content-type") ?? "").includes("application/json")) {
    try {
      json = JSON.parse(text);
    } catch {}
  }
  return { status: r.status, text, json };
}

/** The agent's refusal as one line. */
export const refusal = (r: { status: number; text: string; json?: unknown }) => `${r.status}: ${(r.json as { error?: string } | undefined)?.error ?? r.text.slice(0, 200)}`;
