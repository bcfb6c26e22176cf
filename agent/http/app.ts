// The agent's HTTP API (hono): what a person or a script asks the node agent. Routes read the
// agent through an AgentView and never change it; the one write is a CNI plugin's report of
// a command it ran, accepted only over the unix socket (root's). Every request is bounded:
// the path, the query (known parameters, each once, each short), the body (POST only, 4 KiB)
// and the rate; anything else is a 4xx with a JSON body saying what was wrong.
import { Hono, type Context } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import * as v from "valibot";
import type { Metrics } from "./metrics.ts";
import { TokenBucket } from "../sys/token-bucket.ts";

export interface ObjectRef {
  namespace: string;
  name: string;
}

/** The agent as the API reads it (agent/loop/agent.ts implements it). */
export interface AgentView {
  readonly node: string;
  ready(): { ready: boolean; reasons: string[] };
  status(): unknown;
  peers(): unknown;
  state(): unknown;
  /** the tables in force, whole or for one Service or Pod; undefined: the agent has none yet */
  tables(filter: { service?: ObjectRef; pod?: ObjectRef }): { json: unknown; text: string } | { missing: string } | undefined;
  /** `skein trace`: a bad query throws TraceQueryError; undefined: no tables yet */
  trace?(src: string, dst: string): { json: unknown; text: string } | undefined;
}

/** A query the trace cannot read (a 400 naming it). */
export class TraceQueryError extends Error {}

const CniReportSchema = v.strictObject({
  command: v.picklist(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]),
  /** "ok" or the CNI error code */
  result: v.union([v.literal("ok"), v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(999))]),
  seconds: v.pipe(v.number(), v.minValue(0), v.maxValue(3600)),
});
export type CniReport = v.InferOutput<typeof CniReportSchema>;

export interface AppOptions {
  view: AgentView;
  metrics: Metrics;
  /** how the request arrived: the unix socket (root's), loopback TCP, or another address (token required) */
  via: "unix" | "loopback" | "remote";
  /** the bearer token a remote request must carry */
  token?: string;
  /** requests per second per client, and the burst (default 20/s, 50) */
  rate?: { perSecond: number; burst: number };
  /** only /healthz and /readyz (the port peers and kubelet probe, on every address, without a token) */
  healthOnly?: boolean;
  /** the client's address (TCP), for the per-client rate */
  clientOf?: (c: Context) => string | undefined;
  now?: () => number;
}

const MAX_PATH = 256;
const MAX_QUERY = 1024;
const MAX_BODY = 4096;
/** clients tracked for the rate limit; past this the oldest are forgotten */
const MAX_CLIENTS = 1024;

/** namespace/name, each a DNS label or subdomain as Kubernetes names are */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

class BadQuery extends Error {}

function objectRef(param: string, s: string): ObjectRef {
  const m = /^([^/]+)\/([^/]+)$/.exec(s);
  if (!m || !NAMESPACE.test(m[1]!) || !NAME.test(m[2]!)) throw new BadQuery(`${param}: ${JSON.stringify(s.slice(0, 80))} is not namespace/name (lowercase letters, digits, '-' and '.')`);
  return { namespace: m[1]!, name: m[2]! };
}

/** The query's parameters, each at most once and of the allowed names. */
function query(c: Context, allowed: string[]): Record<string, string> {
  const url = new URL(c.req.url);
  const out: Record<string, string> = {};
  for (const [k, val] of url.searchParams) {
    if (!allowed.includes(k)) throw new BadQuery(`unknown query parameter ${JSON.stringify(k.slice(0, 40))}${allowed.length ? ` (allowed: ${allowed.join(", ")})` : " (this path takes none)"}`);
    if (k in out) throw new BadQuery(`query parameter ${k} is given twice`);
    out[k] = val;
  }
  return out;
}

const json = (c: Context, status: number, body: unknown) => c.json(body as object, status as 200);

export function createApp(o: AppOptions): Hono {
  const app = new Hono();
  const global = new TokenBucket((o.rate?.perSecond ?? 20) * 5, 1000, (o.rate?.burst ?? 50) * 4, o.now);
  const clients = new Map<string, TokenBucket>();
  const view = o.view;

  app.onError((e, c) => {
    if (e instanceof BadQuery || e instanceof TraceQueryError) return json(c, 400, { error: e.message });
    // hono's own refusals (a bearer token missing or wrong) carry their response
    const r = (e as { getResponse?: () => Response }).getResponse?.();
    if (r) return r;
    return json(c, 500, { error: `internal error: ${(e as Error).message}` });
  });
  app.notFound((c) => json(c, 404, { error: "not found", path: c.req.path.slice(0, 80), paths: o.healthOnly ? ["/healthz", "/readyz"] : ["/healthz", "/readyz", "/metrics", "/v1/status", "/v1/peers", "/v1/state", "/v1/tables", "/v1/trace", "/v1/cni"] }));

  app.use(async (c, next) => {
    await next();
    o.metrics.httpRequest(c.res.status);
  });
  // size and rate before anything is read
  app.use(async (c, next) => {
    const url = new URL(c.req.url);
    if (url.pathname.length > MAX_PATH) return json(c, 414, { error: `path longer than ${MAX_PATH} bytes` });
    if (url.search.length > MAX_QUERY) return json(c, 414, { error: `query longer than ${MAX_QUERY} bytes` });
    const who = o.clientOf?.(c);
    let b: TokenBucket | undefined;
    if (who !== undefined) {
      b = clients.get(who);
      if (!b) {
        if (clients.size >= MAX_CLIENTS) clients.delete(clients.keys().next().value!);
        b = new TokenBucket(o.rate?.perSecond ?? 20, 1000, o.rate?.burst ?? 50, o.now);
        clients.set(who, b);
      }
    }
    // /healthz and /readyz cost next to nothing and are what kubelet and the peers' probes
    // ask: many clients each within their own rate must not use up the overall cap that keeps
    // the expensive paths (state, tables, metrics) bounded, or they could fail this node's probes
    const probe = url.pathname === "/healthz" || url.pathname === "/readyz";
    if ((b && !b.take()) || (!probe && !global.take())) {
      c.header("Retry-After", "1");
      return json(c, 429, { error: "too many requests" });
    }
    if (c.req.method !== "GET" && c.req.method !== "HEAD" && c.req.method !== "POST") return json(c, 405, { error: `method ${c.req.method.slice(0, 16)} not allowed` });
    if ((c.req.method === "GET" || c.req.method === "HEAD") && (c.req.header("content-length") ?? "0") !== "0") return json(c, 413, { error: "a GET takes no body" });
    await next();
  });
  if (o.via === "remote") {
    if (!o.token) throw new Error("a non-loopback listener needs a bearer token");
    app.use(bearerAuth({ token: o.token, noAuthenticationHeaderMessage: { error: "a bearer token is required on this address" }, invalidAuthenticationHeaderMessage: { error: "malformed Authorization header (expected: Bearer TOKEN)" }, invalidTokenMessage: { error: "wrong bearer token" } }));
  }

  app.get("/healthz", (c) => {
    query(c, []);
    return json(c, 200, { ok: true, node: view.node });
  });
  app.get("/readyz", (c) => {
    query(c, []);
    const r = view.ready();
    o.metrics.setReady(r.ready);
    return json(c, r.ready ? 200 : 503, { node: view.node, ...r });
  });
  if (o.healthOnly) return app;
  app.get("/metrics", async (c) => {
    query(c, []);
    o.metrics.setReady(view.ready().ready);
    return c.text(await o.metrics.render(), 200, { "Content-Type": o.metrics.registry.contentType });
  });
  app.get("/v1/status", (c) => {
    query(c, []);
    return json(c, 200, view.status());
  });
  app.get("/v1/peers", (c) => {
    query(c, []);
    return json(c, 200, view.peers());
  });
  app.get("/v1/state", (c) => {
    query(c, []);
    return json(c, 200, view.state());
  });
  app.get("/v1/tables", (c) => {
    const q = query(c, ["service", "pod", "format"]);
    const format = q.format ?? "json";
    if (format !== "json" && format !== "text") throw new BadQuery(`format: ${JSON.stringify(format.slice(0, 20))} is not json or text`);
    if (q.service !== undefined && q.pod !== undefined) throw new BadQuery("give service or pod, not both");
    const t = view.tables({ ...(q.service !== undefined ? { service: objectRef("service", q.service) } : {}), ...(q.pod !== undefined ? { pod: objectRef("pod", q.pod) } : {}) });
    if (!t) return json(c, 503, { error: "no tables yet: the agent has not listed the cluster" });
    if ("missing" in t) return json(c, 404, { error: t.missing });
    return format === "text" ? c.text(t.text) : json(c, 200, t.json);
  });
  app.get("/v1/trace", (c) => {
    const q = query(c, ["src", "dst"]);
    if (!q.src || !q.dst) throw new BadQuery("give src (ADDR[:PORT]) and dst (ADDR:PORT[/PROTO])");
    if (!view.trace) return json(c, 501, { error: "this agent cannot trace" });
    const t = view.trace(q.src, q.dst);
    if (!t) return json(c, 503, { error: "no tables yet: the agent has not listed the cluster" });
    return (c.req.header("accept") ?? "").includes("text/plain") ? c.text(t.text) : json(c, 200, t.json);
  });
  app.post(
    "/v1/cni",
    bodyLimit({ maxSize: MAX_BODY, onError: (c) => json(c, 413, { error: `body larger than ${MAX_BODY} bytes` }) }),
    async (c) => {
      query(c, []);
      // only a process of root's on this host: the plugin, over the socket
      if (o.via !== "unix") return json(c, 403, { error: "CNI reports are taken over the unix socket only" });
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch (e) {
        return json(c, 400, { error: `body is not JSON: ${(e as Error).message.slice(0, 100)}` });
      }
      const r = v.safeParse(CniReportSchema, body);
      if (!r.success) return json(c, 400, { error: `not a CNI report: ${r.issues.map((i) => `${v.getDotPath(i) ?? "body"}: ${i.message}`).join("; ").slice(0, 300)}` });
      o.metrics.cni(r.output.command, String(r.output.result), r.output.seconds);
      return c.body(null, 204);
    },
  );
  return app;
}
