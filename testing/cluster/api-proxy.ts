// The demo's API server lives in the control-plane host's network namespace, where the agents
// reach it; a user on the machine runs kubectl in the machine's own namespace, which has no
// route there (and must not get one: the demo leaves the machine's network alone). This
// proxy listens on the machine's loopback with the API server's own certificate (it names
// 127.0.0.1) and hands every request, watches included, to the API server's Unix socket,
// which a file path reaches from any network namespace. The API server still checks the
// token: the proxy adds no authority of its own.
import { readFileSync } from "node:fs";

/** request headers that belong to one hop, not to the request */
const HOP = ["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer", "host"];
/** as many path segments as the API server serves (testing/apiserver/server.ts) */
const MAX_SEGMENTS = 8;
const PARAMS = Array.from({ length: MAX_SEGMENTS }, (_, i) => `s${i}`);
/** watches open at once: past it a 429, so that open watches cannot use up the connections
 * the proxy has to the API server and keep other requests out */
export const DEFAULT_MAX_WATCHES = 200;
/** requests of any kind in flight at once (below the 2048 the demo lets Bun's fetch hold) */
export const DEFAULT_MAX_IN_FLIGHT = 1000;

export interface ApiProxy {
  port: number;
  url: string;
  /** requests in flight now, and how many of them are watches */
  inFlight(): { all: number; watches: number };
  stop(): Promise<void>;
}

const status = (code: number, reason: string, message: string) => Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason, code, message }, { status: code });

export function startApiProxy(o: { unix: string; certsFile: string; host?: string; port?: number; maxBodyBytes?: number; maxWatches?: number; maxInFlight?: number }): ApiProxy {
  const certs = JSON.parse(readFileSync(o.certsFile, "utf8")) as { cert: string; key: string };
  const host = o.host ?? "127.0.0.1";
  const max = o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const maxWatches = o.maxWatches ?? DEFAULT_MAX_WATCHES;
  let inFlight = 0;
  let watches = 0;
  const tooMany = (what: string) =>
    new Response(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "TooManyRequests", code: 429, message: `the demo's kubectl proxy holds ${what} at once; close some` }), { status: 429, headers: { "content-type": "application/json", "retry-after": "1" } });

  const forward = async (req: Request, segments: string[]): Promise<Response> => {
    // Bun gives a handler the URL with dot segments already resolved (`/x/%2e%2e/y` is `/y`),
    // so the path is rebuilt from the raw request-target's segments, and a segment that is a
    // dot segment or holds a slash once decoded is refused, as the API server refuses it
    for (const s of segments) {
      if (s === "." || s === ".." || s.includes("/")) return status(400, "BadRequest", `the path segment ${JSON.stringify(s)} is not allowed in a request path`);
    }
    const query = new URL(req.url).searchParams;
    const watch = query.get("watch") === "true" || query.get("watch") === "1" || segments[2] === "watch" || segments[4] === "watch";
    if (watch && watches >= maxWatches) return tooMany(`${maxWatches} watches`);
    if (inFlight >= max) return tooMany(`${max} requests`);
    inFlight++;
    if (watch) watches++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        inFlight--;
        if (watch) watches--;
      }
    };
    const headers = new Headers(req.headers);
    for (const h of HOP) headers.delete(h);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const path = `/${segments.map(encodeURIComponent).join("/")}${new URL(req.url).search}`;
    try {
      const r = await fetch(`http://localhost${path}`, {
        unix: o.unix,
        method: req.method,
        headers,
        body: hasBody ? await req.arrayBuffer() : undefined,
        redirect: "manual",
        decompress: false,
        signal: req.signal,
      } as RequestInit);
      const out = new Headers(r.headers);
      for (const h of HOP) out.delete(h);
      if (!r.body) {
        release();
        return new Response(null, { status: r.status, headers: out });
      }
      // in flight until the answer has been passed on or the client went away
      req.signal.addEventListener("abort", release, { once: true });
      const body = r.body.pipeThrough(new TransformStream({ flush: release }));
      return new Response(body, { status: r.status, headers: out });
    } catch (e) {
      release();
      return status(503, "ServiceUnavailable", `the demo's API server does not answer on ${o.unix}: ${(e as Error).message}`);
    }
  };

  const routes: Record<string, (req: Request & { params: Record<string, string> }) => Promise<Response>> = {};
  for (let n = 1; n <= MAX_SEGMENTS; n++) routes["/" + PARAMS.slice(0, n).map((p) => `:${p}`).join("/")] = (req) => forward(req, PARAMS.slice(0, n).map((p) => req.params[p]!));
  const server = Bun.serve({
    hostname: host,
    port: o.port ?? 0,
    tls: { cert: certs.cert, key: certs.key },
    // watches stay open as long as the client keeps them
    idleTimeout: 0,
    // the API server's own limit is 3 MiB; a larger body is refused here already
    maxRequestBodySize: o.maxBodyBytes ?? 4 * 1024 * 1024,
    routes,
    // "/", and paths longer than the API server serves
    fetch: (req) => (new URL(req.url).pathname === "/" ? forward(req, []) : status(404, "NotFound", "the server could not find the requested resource")),
  });
  return {
    port: server.port!,
    url: `https://${host}:${server.port}`,
    inFlight: () => ({ all: inFlight, watches }),
    stop: () => server.stop(true),
  };
}

/** The API server's kubeconfig (CA, token) pointed at the proxy instead. */
export function proxiedKubeconfig(kubeconfig: string, url: string): string {
  const kc = JSON.parse(kubeconfig) as { clusters: Array<{ cluster: { server: string } }> };
  for (const c of kc.clusters) c.cluster.server = url;
  return JSON.stringify(kc, null, 2);
}
