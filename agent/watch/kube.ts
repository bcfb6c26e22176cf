// How the agent talks to the Kubernetes API under Bun. @kubernetes/client-node 2.x sends its
// requests through undici with a TLS "dispatcher" carrying the cluster's CA and client
// certificate; Bun replaces the undici module with its own fetch, which ignores dispatchers,
// so every request to a cluster with its own CA fails certificate checks. This module takes
// what the KubeConfig says (CA, client certificate, token, skip-verify, server name) and
// sends the requests with Bun's fetch and its `tls` options instead: for the ListWatch
// informers (a Watch of the same contract as client-node's) and for plain requests.
import { existsSync } from "node:fs";
import { KubeConfig, type Watch } from "@kubernetes/client-node";

export interface KubeTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  serverName?: string;
}

/** An HTTP error from the API server, with its code and the Status message if it sent one. */
export class KubeError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }
  /** client-node's ListWatch reads `code` too (a 410 resets its resourceVersion) */
  get code(): number {
    return this.statusCode;
  }
}

/**
 * The kubeconfig at `path`; without one, $KUBECONFIG, the in-cluster service account, or
 * ~/.kube/config. Never client-node's last resort (an unauthenticated http://localhost:8080):
 * an agent that finds no cluster says so and stops.
 */
export function loadKubeConfig(path?: string, env = process.env): KubeConfig {
  const kc = new KubeConfig();
  const home = `${env.HOME ?? "/root"}/.kube/config`;
  if (path) kc.loadFromFile(path);
  else if (env.KUBECONFIG) kc.loadFromFile(env.KUBECONFIG.split(":")[0]!);
  else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) kc.loadFromCluster();
  else if (existsSync(home)) kc.loadFromFile(home);
  else throw new Error("no Kubernetes API to watch: give --kubeconfig, set KUBECONFIG, or run in a cluster (KUBERNETES_SERVICE_HOST)");
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`kubeconfig ${path ?? env.KUBECONFIG ?? home}: no current context with a cluster server`);
  return kc;
}

/** Told of every request: its method, path, whether it is a watch, the status code (or
 * "error" when no answer came) and the seconds until the response headers. */
export type RequestObserver = (method: string, path: string, watch: boolean, code: number | "error", seconds: number) => void;

export class KubeClient {
  readonly server: string;
  private readonly requestTimeoutMs: number;
  /** the agent's metrics (set once, before the first request) */
  observe: RequestObserver | undefined;

  constructor(
    readonly kc: KubeConfig,
    o: { requestTimeoutMs?: number } = {},
  ) {
    this.server = kc.getCurrentCluster()!.server.replace(/\/$/, "");
    this.requestTimeoutMs = o.requestTimeoutMs ?? 30_000;
  }

  /** Headers and TLS options for one request (tokens may rotate: asked for each time). */
  async auth(): Promise<{ headers: Record<string, string>; tls: KubeTls }> {
    const o: { headers?: Record<string, string>; ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string; auth?: string } = {};
    await this.kc.applyToHTTPSOptions(o);
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.auth) headers.Authorization = `Basic ${Buffer.from(o.auth).toString("base64")}`;
    const tls: KubeTls = {};
    if (o.ca) tls.ca = o.ca.toString();
    if (o.cert) tls.cert = o.cert.toString();
    if (o.key) tls.key = o.key.toString();
    if (o.rejectUnauthorized !== undefined) tls.rejectUnauthorized = o.rejectUnauthorized;
    if (o.servername) tls.serverName = o.servername;
    return { headers, tls };
  }

  async fetch(path: string, init: { method?: string; query?: Record<string, string | number | boolean | undefined>; body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<Response> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined && v !== "") url.searchParams.set(k, String(v));
    const { headers, tls } = await this.auth();
    headers.Accept = "application/json";
    if (init.body !== undefined) headers["Content-Type"] = init.contentType ?? "application/json";
    const method = init.method ?? "GET";
    const t0 = performance.now();
    const watch = init.query?.watch === true || init.query?.watch === "true";
    try {
      const r = await fetch(url, {
        method,
        headers,
        body: init.body === undefined ? undefined : typeof init.body === "string" ? init.body : JSON.stringify(init.body),
        signal: init.signal ?? AbortSignal.timeout(this.requestTimeoutMs),
        tls,
      } as RequestInit);
      this.observe?.(method, path, watch, r.status, (performance.now() - t0) / 1000);
      return r;
    } catch (e) {
      this.observe?.(method, path, watch, "error", (performance.now() - t0) / 1000);
      throw e;
    }
  }

  /** A request whose answer is JSON; a non-2xx answer throws KubeError with the Status message. */
  async request<T = unknown>(method: string, path: string, o: { query?: Record<string, string | number | boolean | undefined>; body?: unknown; contentType?: string } = {}): Promise<T> {
    const r = await this.fetch(path, { ...o, method });
    const text = await r.text();
    if (!r.ok) {
      let msg = text.trim() || r.statusText;
      let reason: string | undefined;
      try {
        const s = JSON.parse(text) as { message?: string; reason?: string };
        if (s.message) msg = s.message;
        reason = s.reason;
      } catch {}
      throw new KubeError(r.status, `${method} ${path}: ${r.status} ${msg}`, reason);
    }
    return JSON.parse(text) as T;
  }

  /** A Watch with client-node's contract (ListWatch takes it), over Bun's fetch. `keep`
   * turns each object an event carries into what is handed on (and cached by ListWatch). */
  watcher(keep?: (o: Record<string, unknown>) => unknown): Watch {
    return new BunWatch(this, keep) as unknown as Watch;
  }
}

/**
 * A whole list, page by page, as one consistent snapshot: each page's items go to `onPage`
 * (which may trim them), and a continue token that expired (410) starts the list again.
 * Returns the items and the list's resourceVersion, what a ListWatch's list function gives.
 */
export async function listAll<T>(
  client: KubeClient,
  path: string,
  o: { labelSelector?: string; fieldSelector?: string; pageSize: number },
  onPage: (items: Array<Record<string, unknown>>) => T[] = (items) => items as T[],
): Promise<{ metadata: { resourceVersion: string }; items: T[] }> {
  for (;;) {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = "";
    try {
      do {
        const page = await client.request<{ metadata?: { resourceVersion?: string; continue?: string }; items: Array<Record<string, unknown>> }>("GET", path, {
          query: { limit: o.pageSize, continue: cont, labelSelector: o.labelSelector, fieldSelector: o.fieldSelector },
        });
        for (const it of onPage(page.items)) items.push(it);
        cont = page.metadata?.continue || undefined;
        rv = page.metadata?.resourceVersion ?? rv;
      } while (cont);
    } catch (e) {
      if (e instanceof KubeError && e.statusCode === 410) continue;
      throw e;
    }
    return { metadata: { resourceVersion: rv }, items };
  }
}

/**
 * client-node's Watch, over Bun's fetch: events go to `callback` line by line; `done` is
 * called once, with the error if the request failed (a non-200 answer carries its status
 * code, as ListWatch expects for 410) or with null when the server ended the stream. No data
 * for `requestTimeoutMs` ends the watch with a TimeoutError, which ListWatch reconnects from.
 */
class BunWatch {
  constructor(
    private readonly client: KubeClient,
    private readonly keep?: (o: Record<string, unknown>) => unknown,
    readonly requestTimeoutMs = 30_000,
  ) {}

  async watch(path: string, query: Record<string, string>, callback: (type: string, obj: unknown, raw: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const controller = new AbortController();
    let finished = false;
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (err: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      controller.abort();
      done(timedOut ? new DOMException("The operation was aborted due to timeout", "TimeoutError") : err);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        finish(new Error("watch timed out"));
      }, this.requestTimeoutMs);
    };
    (async () => {
      arm();
      const r = await this.client.fetch(path, { query: { ...query, watch: true }, signal: controller.signal });
      if (r.status !== 200) {
        const text = await r.text().catch(() => "");
        throw new KubeError(r.status, `watch ${path}: ${r.status} ${text.trim() || r.statusText}`);
      }
      arm();
      const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        arm();
        buf += value;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          let e: { type: string; object: unknown };
          try {
            e = JSON.parse(line);
          } catch {
            continue; // as client-node: a line that is not JSON is skipped
          }
          const isObject = e.type === "ADDED" || e.type === "MODIFIED" || e.type === "DELETED";
          callback(e.type, isObject && this.keep ? this.keep(e.object as Record<string, unknown>) : e.object, e);
        }
      }
    })().then(
      () => finish(null),
      (err) => finish(controller.signal.aborted && !timedOut ? null : err),
    );
    return controller;
  }
}
