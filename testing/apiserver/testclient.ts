// For the test API server's own tests: a server on a free port and a client that says what it
// accepts (a Table, as kubectl asks) and throws kube's Status as an HttpError.
import { TestApiServer, type ApiServerOptions } from "./server.ts";

export class HttpError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly body: Record<string, any>,
  ) {
    super(message);
  }
}

export const TABLE = { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" };

export function startServer(o: Partial<ApiServerOptions> = {}) {
  const s = TestApiServer.start({ tokens: ["t"], ...o });
  const request = async <T = any>(method: string, path: string, body?: unknown, query?: Record<string, string>, headers: Record<string, string> = {}): Promise<T> => {
    const url = new URL(s.url + path);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    const contentType = method === "PATCH" ? "application/merge-patch+json" : "application/json";
    const r = await fetch(url, { method, headers: { authorization: "Bearer t", "content-type": contentType, ...headers }, body: body === undefined ? undefined : JSON.stringify(body), tls: { ca: s.certs.ca } } as RequestInit);
    const text = await r.text();
    if (!r.ok) {
      const status = JSON.parse(text) as { message: string };
      throw new HttpError(r.status, status.message, status);
    }
    return JSON.parse(text) as T;
  };
  /** the code and message of the Status a request fails with (it must fail) */
  const failure = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      if (e instanceof HttpError) return { code: e.code, message: e.message };
      throw e;
    }
    throw new Error("the request succeeded");
  };
  return { s, request, failure };
}

export interface WatchEvent {
  type: string;
  object: Record<string, any>;
}

/** The events of a watch's body, line by line, until `n` arrive or the server ends it. */
export async function readWatchEvents(body: ReadableStream, n = Infinity): Promise<WatchEvent[]> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const out: WatchEvent[] = [];
  let buf = "";
  while (out.length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const l of lines) if (l.trim()) out.push(JSON.parse(l));
  }
  await reader.cancel().catch(() => {});
  return out;
}
