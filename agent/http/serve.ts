// The agent's listeners: the API on a unix socket (root's) and on loopback TCP by default, a
// non-loopback address only with a bearer token, and the health port (GET /healthz and
// /readyz only, on every address) that peers probe across the pod network and kubelet probes
// as the DaemonSet's liveness and readiness checks.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Context } from "hono";
import { createApp, type AgentView } from "./app.ts";
import { listenHealth } from "./health-listener.ts";
import type { Metrics } from "./metrics.ts";
import { addressFamily } from "../../compiler/address.ts";

/** Bodies larger than this are refused by the server before the app reads them. */
const MAX_REQUEST_BODY = 64 * 1024;

export interface HttpOptions {
  view: AgentView;
  metrics: Metrics;
  /** host:port for the API over TCP, or undefined for none */
  listen?: { host: string; port: number };
  /** the unix socket's path, or undefined for none */
  socket?: string;
  token?: string;
  /** the health port on every address (0 or undefined: none) */
  healthPort?: number;
}

const badRequest = () => new Response(JSON.stringify({ error: "bad request" }), { status: 400, headers: { "Content-Type": "application/json" } });

/**
 * Bun hands over the request target as it came when it cannot make an absolute URL of it (no
 * Host in HTTP/1.0, CONNECT's authority form, a broken Host): such a request is the client's
 * error, where the app's URL parsing would make it a 500.
 */
const absoluteOnly = (handle: (req: Request) => Response | Promise<Response>) => (req: Request) => (URL.canParse(req.url) ? handle(req) : badRequest());

export const isLoopback = (host: string) => host === "localhost" || /^127\./.test(host) || host === "::1";

/** `host:port` or `[v6]:port`, read strictly; "none" → undefined. */
export function parseListen(s: string): { host: string; port: number } | undefined {
  if (s === "none") return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):(0|[1-9][0-9]{0,4})$/.exec(s);
  if (!m) throw new Error(`${JSON.stringify(s.slice(0, 60))} is not ADDRESS:PORT ([IPv6]:PORT for IPv6) or none`);
  const host = m[1] ?? m[2]!;
  if (host !== "localhost") addressFamily(host);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is above 65535`);
  return { host, port };
}

export interface Listening {
  /** where it listens, for the log */
  addresses: string[];
  /** listeners that could not start (the others serve) */
  errors: string[];
  stop(): void;
}

/** A stale socket of an agent that died is removed; anything else at the path is refused. */
function prepareSocket(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket: not replaced`);
  // the agent's lock (held by the caller) says no other agent of this namespace serves it
  unlinkSync(path);
}

/**
 * Starts every listener asked for. One that cannot start (its port taken) is reported in
 * `errors` and the others serve: the agent's job is the network, which must not stop
 * because a port of its API is taken.
 */
export function startHttp(o: HttpOptions): Listening {
  const stops: Array<() => void> = [];
  const addresses: string[] = [];
  const errors: string[] = [];
  // the TCP listeners' client address, for the per-client rate
  const clientOf = (c: Context) => (c.env as { ip?: string } | undefined)?.ip;
  const listed = (host: string, port: number) => `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const tcp = (host: string, port: number) => {
    const remote = !isLoopback(host);
    if (remote && !o.token) throw new Error(`the API on ${host}:${port} is not loopback: it needs a bearer token (--http-token-file)`);
    const app = createApp({ view: o.view, metrics: o.metrics, via: remote ? "remote" : "loopback", token: o.token, clientOf });
    const s = Bun.serve({
      hostname: host,
      port,
      maxRequestBodySize: MAX_REQUEST_BODY,
      fetch: (req, server) => absoluteOnly((r) => app.fetch(r, { ip: server.requestIP(r)?.address }))(req),
      error: badRequest,
    });
    stops.push(() => s.stop(true));
    addresses.push(listed(host, s.port!));
  };
  const attempt = (what: string, start: () => void) => {
    try {
      start();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  if (o.socket) {
    const path = o.socket;
    attempt(`unix socket ${path}`, () => {
      prepareSocket(path);
      const app = createApp({ view: o.view, metrics: o.metrics, via: "unix" });
      const s = Bun.serve({ unix: path, maxRequestBodySize: MAX_REQUEST_BODY, fetch: absoluteOnly((req) => app.fetch(req, {})), error: badRequest });
      stops.push(() => s.stop(true));
      chmodSync(path, 0o600);
      addresses.push(path);
    });
  }
  if (o.listen) {
    const l = o.listen;
    attempt(`${l.host}:${l.port}`, () => tcp(l.host, l.port));
  }
  if (o.healthPort) {
    const port = o.healthPort;
    const app = createApp({ view: o.view, metrics: o.metrics, via: "loopback", healthOnly: true, clientOf });
    const health = (host: string) => {
      const l = listenHealth({ host, port, app });
      stops.push(l.stop);
      addresses.push(`${listed(host, l.port)} (health)`);
    };
    // every address of both families; IPv4 alone where IPv6 is off
    attempt(`health port ${port}`, () => {
      try {
        health("::");
      } catch {
        health("0.0.0.0");
      }
    });
  }
  return {
    addresses,
    errors,
    stop() {
      for (const stop of stops) stop();
      if (o.socket) {
        try {
          if (lstatSync(o.socket).isSocket()) unlinkSync(o.socket);
        } catch {}
      }
    },
  };
}
