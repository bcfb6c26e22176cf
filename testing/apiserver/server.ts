// A Kubernetes API server for skein's tests and `skein demo`: a test fixture, not part of
// what the agent needs in a cluster. It serves the kube-apiserver paths of the types in
// resources.ts over HTTPS (a CA made for the run), with discovery documents, lists with
// resourceVersion and pagination, watches (bookmarks, 410 Gone), selectors, create, update,
// patch, delete, status subresources and bearer tokens, so that @kubernetes/client-node and
// kubectl work against it unmodified. Storage semantics live in store.ts.
import { Hono, type Context } from "hono";
import { BUILTIN, groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { ApiError, parseRev, PROPAGATION_POLICIES, Store, type WatchEvent } from "./store.ts";
import { applyPatch } from "./patch.ts";
import { makeServingCerts, type ServingCerts } from "./tls.ts";
import { decodeProtobuf, PROTOBUF } from "./protobuf.ts";
import { SOURCE_TAG } from "./k8s-proto.ts";
import { checkDepth, readBytes, readJson, readText } from "./body.ts";
import { pathSegmentProblems } from "./validate.ts";
import { attachServiceAllocator, type ServiceAllocatorOptions } from "./services.ts";
import { tableOf, wantsTable, watchTableEvent, type TableOptions } from "./printers.ts";
import { sortVersions, storeCatalog, type Catalog, type Served } from "./catalog.ts";
import { attachEvents, DEFAULT_EVENT_TTL_S } from "./event-ttl.ts";
import { attachCrds } from "./crd.ts";
import { renameFields, SelectorError } from "./selectors.ts";
import { checkTypeMeta } from "./validate.ts";

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
  /** bytes a watch may have queued for a client that does not read before its stream is
   * ended (kube-apiserver closes slow watchers too; the client lists again) */
  watchBacklogBytes?: number;
  /** bytes all watches together may have queued: past it the watches furthest behind are
   * ended, so many slow watchers cannot take the memory that one may have */
  watchBacklogTotalBytes?: number;
  /** why the server is not ready (answered by /readyz with 500), or undefined */
  notReady?: () => string | undefined;
  /** where ClusterIPs and NodePorts come from (default 10.96.0.0/12 and 30000-32767) */
  services?: Partial<ServiceAllocatorOptions>;
  /** seconds an Event is kept after its last write (kube-apiserver's --event-ttl, 1 h); 0: for ever */
  eventTtlSeconds?: number;
}

export const DEFAULT_WATCH_BACKLOG_BYTES = 32 * 1024 * 1024;
export const DEFAULT_WATCH_BACKLOG_TOTAL_BYTES = 64 * 1024 * 1024;
/** the most path segments an API path has (/apis/g/v/namespaces/ns/plural/name/status) */
const MAX_SEGMENTS = 8;
const PARAMS = Array.from({ length: MAX_SEGMENTS }, (_, i) => `s${i}`);

const PUBLIC_PATHS = new Set(["/healthz", "/livez", "/readyz", "/version"]);
const VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];
const encoder = new TextEncoder();

export class TestApiServer {
  readonly store: Store;
  /** what is served, by group, version and plural, and where each keeps its objects */
  readonly catalog: Catalog;
  /** what it serves now (setCerts replaces them) */
  certs: ServingCerts;
  private server: ReturnType<typeof Bun.serve>;
  private readonly local: ReturnType<typeof Bun.serve> | undefined;
  private readonly streams = new Set<() => void>();
  /** listeners replaced by setCerts, still finishing their connections */
  private readonly retired: Array<ReturnType<typeof Bun.serve>> = [];
  private readonly app: Hono<{ Bindings: { seg?: string[] } }>;
  private readonly backlogs = new Set<Backlog>();
  /** the most bytes any watch had queued, since the start */
  maxWatchBacklog = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  /** what the stored Services held that the allocator could not take back (restart) */
  readonly allocationProblems: string[];

  private constructor(private readonly o: ApiServerOptions) {
    this.store = o.store ?? newStore(o.history);
    this.certs = o.certs ?? makeServingCerts();
    this.allocationProblems = attachServiceAllocator(this.store, o.services);
    const ttl = o.eventTtlSeconds ?? DEFAULT_EVENT_TTL_S;
    const sweep = attachEvents(this.store, ttl);
    // expired Events are swept at a tenth of their lifetime (at most a minute) past it
    if (ttl) this.sweeper = setInterval(sweep, Math.min(60_000, Math.max(100, ttl * 100)));
    this.catalog = storeCatalog(this.store);
    attachCrds(this.store, this.catalog);
    const app = (this.app = new Hono<{ Bindings: { seg?: string[] } }>());
    app.use("*", async (c, next) => {
      const auth = c.req.header("authorization");
      // as kube-apiserver's bearer token authenticator: the scheme in any case, one space
      const parts = auth?.split(" ", 2);
      const token = parts?.length === 2 && parts[0]!.toLowerCase() === "bearer" && parts[1] ? parts[1] : undefined;
      const ok = token !== undefined ? o.tokens.includes(token) : auth === undefined && c.env?.seg?.length === 1 && PUBLIC_PATHS.has(`/${c.env.seg[0]}`);
      if (!ok) return c.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401 }, 401);
      await next();
    });
    app.all("*", (c) => this.route(c));
    app.onError((e, c) => {
      if (e instanceof ApiError) return c.json(e.status(), e.code as 400);
      return c.json(new ApiError(500, "InternalError", `Internal error occurred: ${e.message}`).status(), 500);
    });
    if (o.port) {
      // a listener that also set reusePort (a stale server) would share the port silently:
      // a plain bind first fails when anything holds it
      try {
        Bun.listen({ hostname: o.hostname ?? "127.0.0.1", port: o.port, socket: { data() {} } }).stop(true);
      } catch (e) {
        throw new Error(`cannot listen on ${o.hostname ?? "127.0.0.1"}:${o.port}: in use? (${(e as Error).message})`);
      }
    }
    this.server = this.listen(o.port ?? 0, this.certs);
    if (o.unix) this.local = Bun.serve({ unix: o.unix, routes: this.routes(), fetch: (req) => app.fetch(req, {}) });
  }

  /**
   * Bun hands a handler the URL after the URL parser resolved dot segments (`/x/%2e%2e` is
   * `/`), so `.../services/%2e%2e` would act on the namespace; its routes match the raw
   * request-target and give its segments percent-decoded. So the API sees only those, a
   * path of up to MAX_SEGMENTS; any other goes to `fetch` without them and gets 404.
   */
  private routes(): Record<string, (req: Request & { params: Record<string, string> }) => Response | Promise<Response>> {
    const r: Record<string, (req: Request & { params: Record<string, string> }) => Response | Promise<Response>> = {};
    for (let n = 1; n <= MAX_SEGMENTS; n++) r["/" + PARAMS.slice(0, n).map((p) => `:${p}`).join("/")] = (req) => this.app.fetch(req, { seg: PARAMS.slice(0, n).map((p) => req.params[p]!) });
    return r;
  }

  private listen(port: number, certs: ServingCerts): ReturnType<typeof Bun.serve> {
    // reusePort: setCerts opens the next listener on the same port before closing this one
    return Bun.serve({ hostname: this.o.hostname ?? "127.0.0.1", port, reusePort: true, tls: { cert: certs.cert, key: certs.key }, routes: this.routes(), fetch: (req) => this.app.fetch(req, {}), idleTimeout: 0 });
  }

  /**
   * Serves new certificates from now on (Bun cannot swap a listener's): a listener with them
   * takes the port, the old one stops accepting and finishes what it serves.
   */
  setCerts(certs: ServingCerts): void {
    const old = this.server;
    this.server = this.listen(old.port!, certs);
    this.certs = certs;
    this.retired.push(old);
    void old.stop(false);
  }

  /** bytes queued now for clients of open watches */
  watchBacklog(): number {
    let n = 0;
    for (const b of this.backlogs) n += b.bytes;
    return n;
  }

  /** Ends the watches with the most queued until all together hold no more than the limit. */
  private shedBacklogs(): void {
    const limit = this.o.watchBacklogTotalBytes ?? DEFAULT_WATCH_BACKLOG_TOTAL_BYTES;
    while (this.watchBacklog() > limit) {
      let worst: Backlog | undefined;
      for (const b of this.backlogs) if (!worst || b.bytes > worst.bytes) worst = b;
      worst!.drop();
    }
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
    clearInterval(this.sweeper);
    for (const end of [...this.streams]) end();
    await this.server.stop(true);
    for (const s of this.retired.splice(0)) await s.stop(true);
    await this.local?.stop(true);
  }

  private async route(c: Context): Promise<Response> {
    const seg = c.env?.seg;
    if (!seg) throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    const method = c.req.method;
    if (method === "GET") {
      const doc = this.discovery(seg);
      if (doc) return c.json(doc);
    }
    if (seg.length === 1 && seg[0] === "readyz") {
      const why = this.o.notReady?.();
      if (why) return c.text(`[-]${why}\nreadyz check failed`, 500);
    }
    if (seg.length === 1 && ["healthz", "livez", "readyz"].includes(seg[0]!)) return c.text("ok");
    // the Binding kind of kube's BindingREST, decoded and checked as its own type
    const binding = { ...this.store.type("", "pods")!, plural: "bindings", singular: "binding", kind: "Binding", status: false, shortNames: [], fields: {} };
    // the older form of a pod's binding: POST /api/v1/namespaces/{ns}/bindings, the pod named in the body
    if (seg.length === 5 && seg[0] === "api" && seg[1] === "v1" && seg[2] === "namespaces" && seg[4] === "bindings") {
      if (method !== "POST") throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
      const b = await body(c, binding);
      checkTypeMeta(binding, b);
      this.store.bind(seg[3]!, String(b.metadata.name ?? ""), b, { dryRun: dryRunOf(c.req.queries("dryRun") ?? []) });
      return c.json(bound, 201);
    }
    const r = this.resolve(seg);
    if (!r) throw new ApiError(404, "NotFound", "the server could not find the requested resource", { causes: [{ reason: "UnexpectedServerResponse", message: "404 page not found" }] });
    const { served, namespace, name, subresource } = r;
    const t = served.stored;
    const out = (o: KubeObject) => (served.fromStored ? served.fromStored(o) : o);
    // a view's body is checked against the version it was sent to, then kept in the stored form
    const toStored = (o: KubeObject) => {
      if (!served.toStored) return o;
      checkTypeMeta(served.type, o);
      // the namespace comes from the path before validation, as kube's
      const metadata = served.type.namespaced && namespace !== undefined ? { ...o.metadata, namespace: o.metadata.namespace || namespace } : o.metadata;
      return served.toStored({ ...o, apiVersion: groupVersion(served.type), kind: served.type.kind, metadata });
    };
    const fieldSelector = (): string | null => {
      const f = q("fieldSelector");
      if (f === null || !served.fields) return f;
      try {
        return renameFields(f, served.fields);
      } catch (e) {
        if (e instanceof SelectorError) throw new ApiError(400, "BadRequest", e.message);
        throw e;
      }
    };
    for (const [what, v] of [["Namespace", namespace], ["Name", name]] as const) {
      const bad = v === undefined ? [] : pathSegmentProblems(v);
      if (bad.length) throw new ApiError(400, "BadRequest", `${what} parameter invalid: ${JSON.stringify(v)}: ${bad.join(";")}`);
    }
    const q = (k: string) => c.req.query(k) ?? null;
    const dryRun = (fromBody: unknown[] = []) => dryRunOf([...(c.req.queries("dryRun") ?? []), ...fromBody]);
    const table = method === "GET" ? wantsTable(c.req.header("accept")) : undefined;
    const asTable = (objects: KubeObject[], listMeta: Record<string, unknown>) => tableResponse(tableOf(t.kind, objects.map(out), { version: table!, includeObject: q("includeObject"), listMeta, printer: served.printer }), table!);
    if (!name) {
      if (method === "GET") {
        if (q("watch") === "true" || q("watch") === "1") return this.watch(c, served, namespace, fieldSelector(), table && { version: table, includeObject: q("includeObject"), printer: served.printer });
        const l = this.store.list(t, { namespace, labelSelector: q("labelSelector"), fieldSelector: fieldSelector(), limit: q("limit") ? Number(q("limit")) : undefined, continue: q("continue"), resourceVersion: q("resourceVersion"), resourceVersionMatch: q("resourceVersionMatch") });
        const metadata = { resourceVersion: l.resourceVersion, ...(l.continue ? { continue: l.continue } : {}), ...(l.remainingItemCount !== undefined ? { remainingItemCount: l.remainingItemCount } : {}) };
        if (table) return asTable(l.items, metadata);
        return c.json({ kind: `${served.type.kind}List`, apiVersion: groupVersion(served.type), metadata, items: l.items.map(out) });
      }
      if (method === "POST") {
        if (t.namespaced && namespace === undefined) throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        const dry = dryRun();
        return c.json(out(this.store.create(t, namespace, toStored(await body(c, served.type)), { dryRun: dry })), 201);
      }
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
    if (subresource === "binding") {
      if (method !== "POST") throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
      const b = await body(c, binding);
      checkTypeMeta(binding, b);
      this.store.bind(namespace!, name, b, { dryRun: dryRun() });
      return c.json(bound, 201);
    }
    switch (method) {
      case "GET": {
        const o = this.store.get(t, namespace, name);
        return table ? asTable([o], { resourceVersion: o.metadata.resourceVersion }) : c.json(out(o));
      }
      case "PUT": {
        const dry = dryRun();
        return c.json(out(this.store.update(t, namespace, name, toStored(await body(c, served.type)), subresource, { dryRun: dry })));
      }
      case "PATCH": {
        const dry = dryRun();
        const cur = out(this.store.get(t, namespace, name));
        const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim();
        const text = await readText(c.req.raw);
        checkDepth(text);
        const patched = applyPatch(type, cur, text) as KubeObject;
        if (!patched || typeof patched !== "object" || !patched.metadata) throw new ApiError(422, "Invalid", `${t.kind} "${name}" is invalid: the patch removed the metadata`);
        // a patch applies to the version it was read from: its own resourceVersion, if it
        // sets one, is checked like an update's
        const rvSet = patched.metadata.resourceVersion !== cur.metadata.resourceVersion;
        const next = { ...patched, metadata: { ...patched.metadata, resourceVersion: rvSet ? patched.metadata.resourceVersion : undefined } };
        return c.json(out(this.store.update(t, namespace, name, toStored(next), subresource, { dryRun: dry })));
      }
      case "DELETE": {
        if (subresource) throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        const parsed = await readJson(c.req.raw);
        if (parsed !== undefined && (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))) throw new ApiError(400, "BadRequest", "the body of the DELETE request is not DeleteOptions");
        const { dryRun: inBody, ...opts } = (parsed ?? {}) as { gracePeriodSeconds?: number; preconditions?: { uid?: string; resourceVersion?: string }; propagationPolicy?: string; dryRun?: unknown };
        const grace = q("gracePeriodSeconds");
        if (grace !== null) opts.gracePeriodSeconds = Number(grace);
        const policy = q("propagationPolicy") ?? opts.propagationPolicy;
        if (policy !== undefined && !PROPAGATION_POLICIES.includes(policy)) throw new ApiError(400, "BadRequest", `propagationPolicy: Unsupported value: ${JSON.stringify(policy)}: supported values: ${PROPAGATION_POLICIES.map((p) => `"${p}"`).join(", ")}`);
        if (policy !== undefined) opts.propagationPolicy = policy;
        // kubectl delete --dry-run=server sends it in the DeleteOptions body
        const dry = dryRun(inBody === undefined ? [] : Array.isArray(inBody) ? inBody : [inBody]);
        return c.json(out(this.store.delete(t, namespace, name, { ...opts, dryRun: dry })));
      }
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  /** Path segments to a type, namespace, name and subresource, as kube-apiserver routes them. */
  private resolve(seg: string[]): { served: Served; namespace?: string; name?: string; subresource?: "status" | "binding" } | undefined {
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === "api" && seg.length >= 3) [group, version, rest] = ["", seg[1]!, seg.slice(2)];
    else if (seg[0] === "apis" && seg.length >= 4) [group, version, rest] = [seg[1]!, seg[2]!, seg.slice(3)];
    else return undefined;
    const type = (plural: string) => this.catalog.get(group, version, plural);
    const sub = (s: string | undefined) => (s === undefined ? {} : s === "status" ? { subresource: "status" as const } : null);
    if (rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status") {
      const t = type(rest[2]!);
      // pods/binding: a core Pod's only subresource besides status that this server has
      if (t && rest.length === 5 && rest[4] === "binding" && t.stored.kind === "Pod" && !t.stored.group) return { served: t, namespace: rest[1], name: rest[3], subresource: "binding" };
      const s = sub(rest[4]);
      if (!t || !t.type.namespaced || s === null || (s.subresource && !t.type.status) || rest.length > 5) return undefined;
      return { served: t, namespace: rest[1], name: rest[3], ...s };
    }
    const t = type(rest[0]!);
    const s = sub(rest[2]);
    if (!t || s === null || (s.subresource && !t.type.status) || rest.length > 3 || (t.type.namespaced && rest.length > 1)) return undefined;
    return { served: t, name: rest[1], ...s };
  }

  private discovery(seg: string[]): object | undefined {
    const types = this.catalog.all().map((s) => s.type);
    const gv = (g: string, v: string) => (g ? `${g}/${v}` : v);
    const groups = [...new Set(types.filter((t) => t.group).map((t) => t.group))].sort();
    const resources = (g: string, v: string) => ({
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: gv(g, v),
      resources: types
        .filter((t) => t.group === g && t.version === v)
        .flatMap((t) => [
          { name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: VERBS, ...(t.shortNames.length ? { shortNames: t.shortNames } : {}), ...(t.categories?.length ? { categories: t.categories } : {}) },
          ...(isPods(t) ? [{ name: "pods/binding", singularName: "", namespaced: true, kind: "Binding", verbs: ["create"] }] : []),
          ...(t.status ? [{ name: `${t.plural}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: ["get", "patch", "update"] }] : []),
        ]),
    });
    const groupDoc = (g: string) => {
      const versions = sortVersions([...new Set(types.filter((t) => t.group === g).map((t) => t.version))]).map((v) => ({ groupVersion: gv(g, v), version: v }));
      return { name: g, versions, preferredVersion: versions[0] };
    };
    const p = seg.join("/");
    if (p === "api/v1") {
      // kube-apiserver lists the older binding resource too, create only
      const core = resources("", "v1");
      return { ...core, resources: [{ name: "bindings", singularName: "binding", namespaced: true, kind: "Binding", verbs: ["create"] }, ...core.resources] };
    }
    // the release whose schemas k8s-proto.ts decodes, so kubectl of that release sees no skew
    if (p === "version") return { major: "1", minor: SOURCE_TAG.split(".")[1]!, gitVersion: `${SOURCE_TAG.replace(/^v0\./, "v1.")}-skein-test`, platform: "linux/amd64" };
    if (p === "api") return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `${this.o.hostname ?? "127.0.0.1"}:${this.port}` }] };
    if (p === "apis") return { kind: "APIGroupList", apiVersion: "v1", groups: groups.map(groupDoc) };
    if (seg[0] === "apis" && seg.length === 2 && groups.includes(seg[1]!)) return { kind: "APIGroup", apiVersion: "v1", ...groupDoc(seg[1]!) };
    if (seg[0] === "apis" && seg.length === 3 && types.some((t) => t.group === seg[1] && t.version === seg[2])) return resources(seg[1]!, seg[2]!);
    return undefined;
  }

  private watch(c: Context, served: Served, namespace: string | undefined, fieldSelector: string | null, table?: TableOptions): Response {
    const t = served.stored;
    const out = (e: WatchEvent): WatchEvent => (served.fromStored ? { type: e.type, object: served.fromStored(e.object) } : e);
    const q = (k: string) => c.req.query(k);
    const rv = q("resourceVersion");
    const bookmarks = q("allowWatchBookmarks") === "true";
    const initial = q("sendInitialEvents") === "true";
    if (initial && (q("resourceVersionMatch") !== "NotOlderThan" || !bookmarks)) {
      throw new ApiError(422, "Invalid", "sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true");
    }
    const from = rv ? parseRev(rv) : 0;
    // kube-apiserver waits ~3 s for its cache to reach the revision, then answers this; this
    // store is always current, so a revision beyond it will not come
    if (from > this.store.rev) throw new ApiError(504, "Timeout", `Too large resource version: ${from}, current: ${this.store.rev}`, { causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }], retryAfterSeconds: 1 });
    const timeout = q("timeoutSeconds") ? Number(q("timeoutSeconds")) * 1000 : 1800_000 * (1 + Math.random());
    const store = this.store;
    const streams = this.streams;
    const limit = this.o.watchBacklogBytes ?? DEFAULT_WATCH_BACKLOG_BYTES;
    // events wait here until the client reads (Bun pulls only while the socket takes data):
    // past `limit` bytes the queue is dropped and the stream ends, as kube-apiserver ends a
    // watcher that does not keep up; the client lists again
    const backlog: Backlog = { chunks: [], bytes: 0, drop: () => {} };
    let end = () => {};
    let pull = () => {};
    const stream = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        let ended = false;
        let reading = false;
        // while the events before the live ones (the replay or the current objects) are queued
        let starting = true;
        const flush = () => {
          const next = backlog.chunks.shift();
          if (next) {
            backlog.bytes -= next.byteLength;
            reading = false;
            ctl.enqueue(next);
          } else if (ended) {
            try {
              ctl.close();
            } catch {}
          }
        };
        pull = () => {
          reading = true;
          flush();
        };
        backlog.drop = () => {
          backlog.chunks.length = 0;
          backlog.bytes = 0;
          // a replay too big to queue: an empty stream would have the client watch again
          // from the same resourceVersion forever; 410 makes it list again instead
          if (starting) {
            const gone = new ApiError(410, "Expired", `too old resource version: ${from}: the events since then are more than the server may queue for a watch; list again`);
            const b = encoder.encode(JSON.stringify({ type: "ERROR", object: gone.status() }) + "\n");
            backlog.chunks.push(b);
            backlog.bytes = b.byteLength;
          }
          end();
        };
        const send = (e: object) => {
          if (ended) return;
          const b = encodeEvent(e);
          backlog.chunks.push(b);
          backlog.bytes += b.byteLength;
          if (backlog.bytes > this.maxWatchBacklog) this.maxWatchBacklog = backlog.bytes;
          if (backlog.bytes > limit) backlog.drop();
          else {
            // a client that reads takes its event now, so only those behind are shed
            if (reading) flush();
            this.shedBacklogs();
          }
        };
        const bookmark = (annotations?: Record<string, string>) => send({ type: "BOOKMARK", object: { kind: served.type.kind, apiVersion: groupVersion(served.type), metadata: { resourceVersion: String(store.rev), ...(annotations ? { annotations } : {}) } } });
        let stop = () => {};
        const timers: Array<ReturnType<typeof setTimeout>> = [];
        end = () => {
          ended = true;
          stop();
          timers.forEach(clearTimeout);
          streams.delete(end);
          this.backlogs.delete(backlog);
          if (reading || !backlog.chunks.length) flush();
        };
        streams.add(end);
        this.backlogs.add(backlog);
        try {
          // "0" and "" both start from the current objects, as ADDED events
          stop = store.watch(t, { namespace, labelSelector: q("labelSelector"), fieldSelector, from: initial ? 0 : from }, (e: WatchEvent) => send(table ? watchTableEvent(out(e), t.kind, table) : out(e)), () => end());
          starting = false;
          if (ended) return stop();
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
        // Bun sends the response headers with the first chunk, so a watch with nothing to say
        // yet would leave its client without an answer (kube-apiserver flushes them at once):
        // a newline, which every watch decoder (client-go's, client-node's) skips as
        // whitespace between JSON values
        if (!backlog.chunks.length && !ended) {
          backlog.chunks.push(encoder.encode("\n"));
          backlog.bytes += 1;
          if (reading) flush();
        }
      },
      pull: () => pull(),
      cancel: () => {
        backlog.chunks.length = 0;
        end();
      },
    }, { highWaterMark: 0 });
    return new Response(stream, { status: 200, headers: { "content-type": "application/json", "cache-control": "no-cache, private" } });
  }
}

/** the encoding of each stored object's events, made once for all the watches that send it
 * (a stored object is never changed once committed: the store's history depends on that) */
const encoded = new WeakMap<object, Map<string, Uint8Array>>();

/** A watch event as one line of JSON. */
function encodeEvent(e: object): Uint8Array {
  const { type, object } = e as { type?: unknown; object?: unknown };
  const shared = Object.keys(e).length === 2 && typeof type === "string" && typeof object === "object" && object !== null;
  let byType = shared ? encoded.get(object) : undefined;
  const hit = byType?.get(type as string);
  if (hit) return hit;
  const b = encoder.encode(JSON.stringify(e) + "\n");
  if (shared) {
    if (!byType) encoded.set(object, (byType = new Map()));
    byType.set(type as string, b);
  }
  return b;
}

/** What a watch has queued for its client, and how to end it for being behind. */
interface Backlog {
  chunks: Uint8Array[];
  bytes: number;
  drop: () => void;
}

/** The dryRun values of a request (query and DeleteOptions body): true for All, 400 for any other. */
function dryRunOf(values: unknown[]): boolean {
  for (const v of values) if (v !== "All") throw new ApiError(400, "BadRequest", `dryRun: Unsupported value: ${JSON.stringify(v)}: supported values: "All"`);
  return values.length > 0;
}

/** what kube-apiserver answers a binding with (the create handler fills in the code) */
const bound = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", code: 201 };
const isPods = (t: ResourceType) => t.kind === "Pod" && !t.group;

const tableResponse = (table: object, version: string) => new Response(JSON.stringify(table), { headers: { "content-type": `application/json;as=Table;v=${version};g=meta.k8s.io` } });

async function body(c: Context, t: ResourceType): Promise<KubeObject> {
  // kubectl and client-go send built-in kinds as protobuf
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === PROTOBUF) return decodeProtobuf(await readBytes(c.req.raw), t);
  if (type !== "" && type !== "application/json") throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format ${JSON.stringify(type)}: accepted media types are application/json and ${PROTOBUF}`);
  const o = await readJson(c.req.raw);
  if (!o || typeof o !== "object" || Array.isArray(o)) throw new ApiError(400, "BadRequest", "the body of the request is not a Kubernetes object");
  const k = o as KubeObject;
  k.metadata ??= {};
  if (typeof k.metadata !== "object" || Array.isArray(k.metadata)) throw new ApiError(400, "BadRequest", "the body of the request is not a Kubernetes object: metadata is not an object");
  return k;
}

/** A store with the namespaces every cluster starts with. */
export function newStore(history?: number, types: ResourceType[] = BUILTIN, historyBytes?: number): Store {
  const s = new Store(types, history, undefined, historyBytes);
  const ns = s.type("", "namespaces")!;
  for (const name of ["default", "kube-system", "kube-public", "kube-node-lease"]) s.create(ns, undefined, { metadata: { name } });
  return s;
}
