// A Kubernetes API server for skein's tests and `skein demo`: a test fixture, not part of
// what the agent needs in a cluster. It serves the kube-apiserver paths of the types in
// resources.ts over HTTPS (a CA made for the run), with discovery documents, lists with
// resourceVersion and pagination, watches (bookmarks, 410 Gone), selectors, create, update,
// patch, delete, status subresources and bearer tokens, so that @kubernetes/client-node and
// kubectl work against it unmodified. Storage semantics live in store.ts.
import { Hono, type Context } from "hono";
import { BUILTIN, groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { ApiError, parseRev, Store, type WatchEvent } from "./store.ts";
import { applyPatch } from "./patch.ts";
import { makeServingCerts, type ServingCerts } from "./tls.ts";
import { attachServiceAllocator, type ServiceAllocatorOptions } from "./services.ts";
import { tableOf, wantsTable, watchTableEvent, type TableOptions } from "./printers.ts";

export interface ApiServerOptions {
  /** bearer tokens that authenticate; a request with any other token gets 401 */
  tokens: string[];
  hostname?: string;
  /** 0 (default) for any free port; a restarted server takes its old one */
  port?: number;
  /** the store to serve (a restarted server's, from a snapshot); a new one otherwise */
  store?: Store;
  certs?: ServingCerts;
  /** how often a watch that allows bookmarks gets one (kube-apiserver: about a minute) */
  bookmarkMs?: number;
  /** writes of history kept before older revisions expire */
  history?: number;
  /** also serve plain HTTP on this Unix socket: how a test in another network namespace
   * than the server's reaches it (the same tokens apply) */
  unix?: string;
  /** where ClusterIPs and NodePorts come from (default 10.96.0.0/12 and 30000-32767) */
  services?: Partial<ServiceAllocatorOptions>;
}

const PUBLIC_PATHS = new Set(["/healthz", "/livez", "/readyz", "/version"]);
const VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];
const encoder = new TextEncoder();

export class TestApiServer {
  readonly store: Store;
  readonly certs: ServingCerts;
  private readonly server: ReturnType<typeof Bun.serve>;
  private readonly local: ReturnType<typeof Bun.serve> | undefined;
  private readonly streams = new Set<() => void>();
  /** what the stored Services held that the allocator could not take back (restart) */
  readonly allocationProblems: string[];

  private constructor(private readonly o: ApiServerOptions) {
    this.store = o.store ?? newStore(o.history);
    this.certs = o.certs ?? makeServingCerts();
    this.allocationProblems = attachServiceAllocator(this.store, o.services);
    const app = new Hono();
    app.use("*", async (c, next) => {
      const auth = c.req.header("authorization");
      const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
      const ok = token !== undefined ? o.tokens.includes(token) : auth === undefined && PUBLIC_PATHS.has(c.req.path);
      if (!ok) return c.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401 }, 401);
      await next();
    });
    app.all("*", (c) => this.route(c));
    app.onError((e, c) => {
      if (e instanceof ApiError) return c.json(e.status(), e.code as 400);
      return c.json(new ApiError(500, "InternalError", `Internal error occurred: ${e.message}`).status(), 500);
    });
    this.server = Bun.serve({ hostname: o.hostname ?? "127.0.0.1", port: o.port ?? 0, tls: { cert: this.certs.cert, key: this.certs.key }, fetch: app.fetch, idleTimeout: 0 });
    if (o.unix) this.local = Bun.serve({ unix: o.unix, fetch: app.fetch });
  }

  static start(o: ApiServerOptions): TestApiServer {
    return new TestApiServer(o);
  }

  get port(): number {
    return this.server.port!;
  }

  get url(): string {
    const h = this.o.hostname ?? "127.0.0.1";
    return `https://${h.includes(":") ? `[${h}]` : h}:${this.port}`;
  }

  /** A kubeconfig for this server with `token` (YAML is a superset of this JSON). */
  kubeconfig(token = this.o.tokens[0]!): string {
    return JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "skein-test", cluster: { server: this.url, "certificate-authority-data": Buffer.from(this.certs.ca).toString("base64") } }],
      users: [{ name: "skein-test", user: { token } }],
      contexts: [{ name: "skein-test", context: { cluster: "skein-test", user: "skein-test" } }],
      "current-context": "skein-test",
    });
  }

  /** Stops serving and ends every open watch (as a killed kube-apiserver drops them). */
  async stop(): Promise<void> {
    for (const end of [...this.streams]) end();
    await this.server.stop(true);
    await this.local?.stop(true);
  }

  private async route(c: Context): Promise<Response> {
    const seg = c.req.path.split("/").filter(Boolean).map(decodeURIComponent);
    const method = c.req.method;
    if (method === "GET") {
      const doc = this.discovery(seg);
      if (doc) return c.json(doc);
    }
    if (seg.length === 1 && ["healthz", "livez", "readyz"].includes(seg[0]!)) return c.text("ok");
    const r = this.resolve(seg);
    if (!r) throw new ApiError(404, "NotFound", "the server could not find the requested resource", { causes: [{ reason: "UnexpectedServerResponse", message: "404 page not found" }] });
    const { type: t, namespace, name, subresource } = r;
    const q = (k: string) => c.req.query(k) ?? null;
    const table = method === "GET" ? wantsTable(c.req.header("accept")) : undefined;
    const asTable = (objects: KubeObject[], listMeta: Record<string, unknown>) => tableResponse(tableOf(t.kind, objects, { version: table!, includeObject: q("includeObject"), listMeta }), table!);
    if (!name) {
      if (method === "GET") {
        if (q("watch") === "true" || q("watch") === "1") return this.watch(c, t, namespace, table && { version: table, includeObject: q("includeObject") });
        const l = this.store.list(t, { namespace, labelSelector: q("labelSelector"), fieldSelector: q("fieldSelector"), limit: q("limit") ? Number(q("limit")) : undefined, continue: q("continue"), resourceVersion: q("resourceVersion"), resourceVersionMatch: q("resourceVersionMatch") });
        const metadata = { resourceVersion: l.resourceVersion, ...(l.continue ? { continue: l.continue } : {}), ...(l.remainingItemCount !== undefined ? { remainingItemCount: l.remainingItemCount } : {}) };
        if (table) return asTable(l.items, metadata);
        return c.json({ kind: `${t.kind}List`, apiVersion: groupVersion(t), metadata, items: l.items });
      }
      if (method === "POST") {
        if (t.namespaced && namespace === undefined) throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        return c.json(this.store.create(t, namespace, await body(c)), 201);
      }
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
    switch (method) {
      case "GET": {
        const o = this.store.get(t, namespace, name);
        return table ? asTable([o], { resourceVersion: o.metadata.resourceVersion }) : c.json(o);
      }
      case "PUT":
        return c.json(this.store.update(t, namespace, name, await body(c), subresource));
      case "PATCH": {
        const cur = this.store.get(t, namespace, name);
        const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim();
        const patched = applyPatch(type, cur, await c.req.text()) as KubeObject;
        if (!patched || typeof patched !== "object" || !patched.metadata) throw new ApiError(422, "Invalid", `${t.kind} "${name}" is invalid: the patch removed the metadata`);
        // a patch applies to the version it was read from: its own resourceVersion, if it
        // sets one, is checked like an update's
        const rvSet = patched.metadata.resourceVersion !== cur.metadata.resourceVersion;
        const next = { ...patched, metadata: { ...patched.metadata, resourceVersion: rvSet ? patched.metadata.resourceVersion : undefined } };
        return c.json(this.store.update(t, namespace, name, next, subresource));
      }
      case "DELETE": {
        if (subresource) throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        const text = await c.req.text();
        let opts: { gracePeriodSeconds?: number; preconditions?: { uid?: string; resourceVersion?: string } } = {};
        if (text) {
          try {
            opts = JSON.parse(text);
          } catch {
            throw new ApiError(400, "BadRequest", "the body of the DELETE request is not valid DeleteOptions JSON");
          }
        }
        const grace = q("gracePeriodSeconds");
        if (grace !== null) opts.gracePeriodSeconds = Number(grace);
        return c.json(this.store.delete(t, namespace, name, opts));
      }
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  /** Path segments to a type, namespace, name and subresource, as kube-apiserver routes them. */
  private resolve(seg: string[]): { type: ResourceType; namespace?: string; name?: string; subresource?: "status" } | undefined {
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === "api" && seg.length >= 3) [group, version, rest] = ["", seg[1]!, seg.slice(2)];
    else if (seg[0] === "apis" && seg.length >= 4) [group, version, rest] = [seg[1]!, seg[2]!, seg.slice(3)];
    else return undefined;
    const type = (plural: string) => {
      const t = this.store.type(group, plural);
      return t && t.version === version ? t : undefined;
    };
    const sub = (s: string | undefined) => (s === undefined ? {} : s === "status" ? { subresource: "status" as const } : null);
    if (rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status") {
      const t = type(rest[2]!);
      const s = sub(rest[4]);
      if (!t || !t.namespaced || s === null || rest.length > 5) return undefined;
      return { type: t, namespace: rest[1], name: rest[3], ...s };
    }
    const t = type(rest[0]!);
    const s = sub(rest[2]);
    if (!t || s === null || rest.length > 3 || (t.namespaced && rest.length > 1)) return undefined;
    return { type: t, name: rest[1], ...s };
  }

  private discovery(seg: string[]): object | undefined {
    const types = this.store.allTypes();
    const gv = (g: string, v: string) => (g ? `${g}/${v}` : v);
    const groups = [...new Set(types.filter((t) => t.group).map((t) => t.group))].sort();
    const resources = (g: string, v: string) => ({
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: gv(g, v),
      resources: types
        .filter((t) => t.group === g && t.version === v)
        .flatMap((t) => [
          { name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: VERBS, ...(t.shortNames.length ? { shortNames: t.shortNames } : {}) },
          ...(t.status ? [{ name: `${t.plural}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: ["get", "patch", "update"] }] : []),
        ]),
    });
    const groupDoc = (g: string) => {
      const v = types.find((t) => t.group === g)!.version;
      return { name: g, versions: [{ groupVersion: gv(g, v), version: v }], preferredVersion: { groupVersion: gv(g, v), version: v } };
    };
    const p = seg.join("/");
    if (p === "version") return { major: "1", minor: "34", gitVersion: "v1.34.0-skein-test", platform: "linux/amd64" };
    if (p === "api") return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `${this.o.hostname ?? "127.0.0.1"}:${this.port}` }] };
    if (p === "api/v1") return resources("", "v1");
    if (p === "apis") return { kind: "APIGroupList", apiVersion: "v1", groups: groups.map(groupDoc) };
    if (seg[0] === "apis" && seg.length === 2 && groups.includes(seg[1]!)) return { kind: "APIGroup", apiVersion: "v1", ...groupDoc(seg[1]!) };
    if (seg[0] === "apis" && seg.length === 3 && types.some((t) => t.group === seg[1] && t.version === seg[2])) return resources(seg[1]!, seg[2]!);
    return undefined;
  }

  private watch(c: Context, t: ResourceType, namespace: string | undefined, table?: TableOptions): Response {
    const q = (k: string) => c.req.query(k);
    const rv = q("resourceVersion");
    const bookmarks = q("allowWatchBookmarks") === "true";
    const initial = q("sendInitialEvents") === "true";
    if (initial && (q("resourceVersionMatch") !== "NotOlderThan" || !bookmarks)) {
      throw new ApiError(422, "Invalid", "sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true");
    }
    const from = rv ? parseRev(rv) : 0;
    const timeout = q("timeoutSeconds") ? Number(q("timeoutSeconds")) * 1000 : 1800_000 * (1 + Math.random());
    const store = this.store;
    const streams = this.streams;
    let end = () => {};
    const stream = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        const send = (e: object) => ctl.enqueue(encoder.encode(JSON.stringify(e) + "\n"));
        const bookmark = (annotations?: Record<string, string>) => send({ type: "BOOKMARK", object: { kind: t.kind, apiVersion: groupVersion(t), metadata: { resourceVersion: String(store.rev), ...(annotations ? { annotations } : {}) } } });
        let stop = () => {};
        const timers: Array<ReturnType<typeof setTimeout>> = [];
        end = () => {
          stop();
          timers.forEach(clearTimeout);
          streams.delete(end);
          try {
            ctl.close();
          } catch {}
        };
        streams.add(end);
        try {
          // "0" and "" both start from the current objects, as ADDED events
          stop = store.watch(t, { namespace, labelSelector: q("labelSelector"), fieldSelector: q("fieldSelector"), from: initial ? 0 : from }, (e: WatchEvent) => send(table ? watchTableEvent(e, t.kind, table) : e));
        } catch (e) {
          // too old a resourceVersion: kube-apiserver answers 200 and one ERROR event, then ends
          if (e instanceof ApiError) {
            send({ type: "ERROR", object: e.status() });
            end();
            return;
          }
          throw e;
        }
        if (initial) bookmark({ "k8s.io/initial-events-end": "true" });
        if (bookmarks) timers.push(setInterval(() => bookmark(), this.o.bookmarkMs ?? 60_000));
        timers.push(setTimeout(end, timeout));
      },
      cancel: () => end(),
    });
    return new Response(stream, { status: 200, headers: { "content-type": "application/json", "cache-control": "no-cache, private" } });
  }
}

const tableResponse = (table: object, version: string) => new Response(JSON.stringify(table), { headers: { "content-type": `application/json;as=Table;v=${version};g=meta.k8s.io` } });

async function body(c: Context): Promise<KubeObject> {
  const text = await c.req.text();
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "BadRequest", `the body of the request could not be decoded: ${(e as Error).message}`);
  }
  if (!o || typeof o !== "object" || Array.isArray(o)) throw new ApiError(400, "BadRequest", "the body of the request is not a Kubernetes object");
  const k = o as KubeObject;
  k.metadata ??= {};
  return k;
}

/** A store with the namespaces every cluster starts with. */
export function newStore(history?: number, types: ResourceType[] = BUILTIN): Store {
  const s = new Store(types, history);
  const ns = s.type("", "namespaces")!;
  for (const name of ["default", "kube-system", "kube-public", "kube-node-lease"]) s.create(ns, undefined, { metadata: { name } });
  return s;
}
