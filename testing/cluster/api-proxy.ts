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

export interface ApiProxy {
  port: number;
  url: string;
  stop(): Promise<void>;
}

export function startApiProxy(o: { unix: string; certsFile: string; host?: string; port?: number; maxBodyBytes?: number }): ApiProxy {
  const certs = JSON.parse(readFileSync(o.certsFile, "utf8")) as { cert: string; key: string };
  const host = o.host ?? "127.0.0.1";
  const server = Bun.serve({
    hostname: host,
    port: o.port ?? 0,
    tls: { cert: certs.cert, key: certs.key },
    // watches stay open as long as the client keeps them
    idleTimeout: 0,
    // the API server's own limit is 3 MiB; a larger body is refused here already
    maxRequestBodySize: o.maxBodyBytes ?? 4 * 1024 * 1024,
    async fetch(req) {
      const u = new URL(req.url);
      const headers = new Headers(req.headers);
      for (const h of HOP) headers.delete(h);
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      try {
        const r = await fetch(`http://localhost${u.pathname}${u.search}`, {
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
        return new Response(r.body, { status: r.status, headers: out });
      } catch (e) {
        return Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "ServiceUnavailable", code: 503, message: `the demo's API server does not answer on ${o.unix}: ${(e as Error).message}` }, { status: 503 });
      }
    },
  });
  return {
    port: server.port!,
    url: `https://${host}:${server.port}`,
    stop: () => server.stop(true),
  };
}

/** The API server's kubeconfig (CA, token) pointed at the proxy instead. */
export function proxiedKubeconfig(kubeconfig: string, url: string): string {
  const kc = JSON.parse(kubeconfig) as { clusters: Array<{ cluster: { server: string } }> };
  for (const c of kc.clusters) c.cluster.server = url;
  return JSON.stringify(kc, null, 2);
}
