// The test API server over HTTPS, as its clients meet it: discovery, bearer tokens, watch
// streams (410, bookmarks, initial events, timeouts), patches and subresources by path, and
// the unmodified clients it exists for: @kubernetes/client-node's ListWatch and kubectl.
import { afterAll, describe, expect, test } from "bun:test";
import { KubeConfig, ListWatch } from "@kubernetes/client-node";
import { create, createFileRegistry, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { TestApiServer } from "./server.ts";
import { schemaOf } from "./protobuf.ts";
import { SCHEMA } from "./k8s-proto.ts";
import { Store } from "./store.ts";
import { parsePortRange, parseServiceCidrs } from "./services.ts";
import { readWatchEvents } from "./testclient.ts";
import { KubeClient, KubeError } from "../../agent/watch/kube.ts";
import { useTempDir, waitFor } from "../../test/harness/index.ts";
import { runAsync } from "../../agent/sys/exec.ts";

const UNKNOWN = () => createFileRegistry(fromBinary(FileDescriptorSetSchema, SCHEMA)).getMessage("k8s.io.apimachinery.pkg.runtime.Unknown")!;
const servers: TestApiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});
const start = (o: Partial<Parameters<typeof TestApiServer.start>[0]> = {}) => {
  const s = TestApiServer.start({ tokens: ["good-token"], bookmarkMs: 50, ...o });
  servers.push(s);
  return s;
};
const client = (s: TestApiServer, token?: string) => {
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig(token));
  return new KubeClient(kc);
};
const svc = (name: string, port = 80) => ({ metadata: { name, labels: { app: name } }, spec: { ports: [{ name: "http", port }] } });

/** The events of a watch until the server ends it (or `n` arrive). */
async function watchLines(k: KubeClient, path: string, query: Record<string, string>, n = Infinity): Promise<Array<{ type: string; object: Record<string, any> }>> {
  const ctl = new AbortController();
  const r = await k.fetch(path, { query: { ...query, watch: "true" }, signal: ctl.signal });
  expect(r.status).toBe(200);
  const out = await readWatchEvents(r.body!, n);
  ctl.abort();
  return out.slice(0, n);
}

describe("test API server", () => {
  const s = start();
  const k = client(s);

  test("discovery documents", async () => {
    expect(await k.request("GET", "/api")).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    const core = await k.request<{ resources: Array<{ name: string; namespaced: boolean; kind: string; verbs: string[] }> }>("GET", "/api/v1");
    expect(core.resources.find((r) => r.name === "pods")).toMatchObject({ namespaced: true, kind: "Pod", verbs: expect.arrayContaining(["list", "watch", "patch"]) });
    expect(core.resources.find((r) => r.name === "pods/status")).toMatchObject({ verbs: ["get", "patch", "update"] });
    expect(core.resources.find((r) => r.name === "nodes")).toMatchObject({ namespaced: false });
    const groups = await k.request<{ groups: Array<{ name: string; preferredVersion: { groupVersion: string } }> }>("GET", "/apis");
    expect(groups.groups.map((g) => g.preferredVersion.groupVersion)).toEqual(["apiextensions.k8s.io/v1", "discovery.k8s.io/v1", "events.k8s.io/v1", "networking.k8s.io/v1"]);
    expect(await k.request("GET", "/apis/discovery.k8s.io/v1")).toMatchObject({ groupVersion: "discovery.k8s.io/v1", resources: [{ name: "endpointslices", kind: "EndpointSlice" }] });
    // as kube-apiserver: `kubectl get all` is the category "all", Pods and Services only here
    const categories = (l: { resources: Array<{ name: string; categories?: string[] }> }) => l.resources.filter((r) => r.categories?.includes("all")).map((r) => r.name);
    expect(categories(core)).toEqual(["pods", "services"]);
    for (const g of ["discovery.k8s.io", "networking.k8s.io"]) expect(categories(await k.request("GET", `/apis/${g}/v1`))).toEqual([]);
    // the release whose schemas the server decodes (kubectl warns of skew otherwise)
    expect(await k.request("GET", "/version")).toMatchObject({ major: "1", minor: "32", gitVersion: expect.stringMatching(/^v1\.32\.\d+-/) });
  });

  test("bearer tokens: none or a wrong one is 401; health needs none", async () => {
    const anon = await fetch(`${s.url}/api/v1/pods`, { tls: { ca: s.certs.ca } } as RequestInit);
    expect(anon.status).toBe(401);
    expect(await anon.json()).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
    await expect(client(s, "wrong").request("GET", "/api/v1/pods")).rejects.toMatchObject({ statusCode: 401 });
    expect((await fetch(`${s.url}/healthz`, { tls: { ca: s.certs.ca } } as RequestInit)).status).toBe(200);
    expect(await k.request("GET", "/api/v1/pods")).toMatchObject({ kind: "PodList", apiVersion: "v1", items: [] });
    // the scheme in any case, as kube-apiserver's authenticator
    const as = (authorization: string) => fetch(`${s.url}/api/v1/pods`, { headers: { authorization }, tls: { ca: s.certs.ca } } as RequestInit).then((r) => r.status);
    expect([await as("bearer good-token"), await as("BEARER good-token"), await as("Bearer  good-token"), await as("Basic good-token"), await as("bearer")]).toEqual([200, 200, 401, 401, 401]);
  });

  test("bodies: JSON or protobuf; other media types are 415; answers are JSON whatever Accept prefers", async () => {
    const r = await k.fetch("/api/v1/namespaces/default/services", { method: "POST", body: "metadata: {name: y}", contentType: "application/yaml" });
    expect(r.status).toBe(415);
    expect(await r.json()).toMatchObject({ kind: "Status", reason: "UnsupportedMediaType", message: expect.stringContaining('"application/yaml"') });
    const bad = await k.fetch("/api/v1/namespaces/default/services", { method: "POST", body: "k8s\0garbage", contentType: "application/vnd.kubernetes.protobuf" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ kind: "Status", reason: "BadRequest", message: expect.stringContaining("not valid protobuf") });
    // an update (client-go's typed clients PUT protobuf too)
    const made = await k.request<any>("POST", "/api/v1/namespaces/default/services", { body: svc("pb") });
    const desc = schemaOf({ group: "", version: "v1", kind: "Service" })!;
    const raw = toBinary(desc, fromJson(desc, { metadata: { name: "pb", namespace: "default", resourceVersion: made.metadata.resourceVersion }, spec: { ports: [{ name: "http", port: 8080 }] } }));
    const unknown = UNKNOWN();
    const env = Buffer.concat([Buffer.from("k8s\0"), toBinary(unknown, create(unknown, { typeMeta: { apiVersion: "v1", kind: "Service" }, raw } as never))]);
    const put = await fetch(`${s.url}/api/v1/namespaces/default/services/pb`, { method: "PUT", body: env, headers: { authorization: "Bearer good-token", "content-type": "application/vnd.kubernetes.protobuf" }, tls: { ca: s.certs.ca } } as RequestInit);
    expect({ status: put.status, ports: ((await put.json()) as any).spec?.ports }).toEqual({ status: 200, ports: [{ name: "http", port: 8080, protocol: "TCP", targetPort: 8080 }] });
    const l = await fetch(`${s.url}/api/v1/namespaces`, { headers: { authorization: "Bearer good-token", accept: "application/vnd.kubernetes.protobuf,application/json" }, tls: { ca: s.certs.ca } } as RequestInit);
    expect({ status: l.status, type: l.headers.get("content-type") }).toEqual({ status: 200, type: "application/json" });
  });

  test("paths: unknown resources are 404, a namespaced create needs a namespace", async () => {
    await expect(k.request("GET", "/api/v1/bogus")).rejects.toMatchObject({ statusCode: 404 });
    await expect(k.request("GET", "/apis/discovery.k8s.io/v2/endpointslices")).rejects.toMatchObject({ statusCode: 404 });
    await expect(k.request("POST", "/api/v1/services", { body: svc("x") })).rejects.toMatchObject({ statusCode: 405 });
    await expect(k.request("POST", "/api/v1/namespaces/default/services", { body: "{not json" })).rejects.toMatchObject({ statusCode: 400 });
  });

  test("create, patch (three kinds), status subresource, delete", async () => {
    await k.request("POST", "/api/v1/namespaces/default/services", { body: svc("web") });
    const p = await k.request<any>("PATCH", "/api/v1/namespaces/default/services/web", { body: { spec: { ports: [{ name: "dns", port: 53 }] } }, contentType: "application/strategic-merge-patch+json" });
    expect(p.spec.ports.map((x: { port: number }) => x.port)).toEqual([80, 53]);
    const m = await k.request<any>("PATCH", "/api/v1/namespaces/default/services/web", { body: { metadata: { labels: { tier: "front" } } }, contentType: "application/merge-patch+json" });
    expect(m.metadata.labels).toEqual({ app: "web", tier: "front" });
    const j = await k.request<any>("PATCH", "/api/v1/namespaces/default/services/web", { body: [{ op: "remove", path: "/spec/ports/1" }], contentType: "application/json-patch+json" });
    expect(j.spec.ports.length).toBe(1);
    await expect(k.request("PATCH", "/api/v1/namespaces/default/services/web", { body: {}, contentType: "application/yaml" })).rejects.toMatchObject({ statusCode: 415 });
    const ssa = await k.fetch("/api/v1/namespaces/default/services/web", { method: "PATCH", body: "metadata: {labels: {a: b}}", contentType: "application/apply-patch+yaml" });
    expect(ssa.status).toBe(415);
    expect(((await ssa.json()) as { message: string }).message).toContain("server-side apply (application/apply-patch+yaml) is not supported");
    // a patch naming a stale resourceVersion conflicts, as an update would
    await expect(k.request("PATCH", "/api/v1/namespaces/default/services/web", { body: { metadata: { resourceVersion: "2" } }, contentType: "application/merge-patch+json" })).rejects.toMatchObject({ statusCode: 409 });
    const st = await k.request<any>("PATCH", "/api/v1/namespaces/default/services/web/status", { body: { status: { loadBalancer: { ingress: [{ ip: "192.0.2.7" }] } } }, contentType: "application/merge-patch+json" });
    expect(st.status.loadBalancer.ingress).toEqual([{ ip: "192.0.2.7" }]);
    const ignored = await k.request<any>("PATCH", "/api/v1/namespaces/default/services/web", { body: { status: { loadBalancer: {} } }, contentType: "application/merge-patch+json" });
    expect(ignored.status.loadBalancer.ingress).toEqual([{ ip: "192.0.2.7" }]);
    await k.request("DELETE", "/api/v1/namespaces/default/services/web");
    await expect(k.request("GET", "/api/v1/namespaces/default/services/web")).rejects.toThrow(/services "web" not found/);
  });

  test("dryRun=All: POST, PUT, PATCH, DELETE answered but nothing stored, no event, no revision; other values 400", async () => {
    const S = "/api/v1/namespaces/default/services";
    const cur = await k.request<any>("POST", S, { body: svc("dry-kept") });
    const before = await k.request<any>("GET", S);
    const events: unknown[] = [];
    let dryIP = "";
    const ctl = new AbortController();
    // bookmarks (every 50 ms here) make the server send the answer's head before any event
    const w = await k.fetch(S, { query: { watch: "true", resourceVersion: before.metadata.resourceVersion, allowWatchBookmarks: "true" }, signal: ctl.signal });
    void w.body!.pipeThrough(new TextDecoderStream()).pipeTo(new WritableStream({ write: (t) => void events.push(t) })).catch(() => {});
    try {
      const c = await k.fetch(S, { method: "POST", query: { dryRun: "All" }, body: svc("dry-new") });
      expect(c.status).toBe(201);
      dryIP = ((await c.json()) as any).spec.clusterIP;
      expect(dryIP).toBeString();
      const p = await k.request<any>("PATCH", `${S}/dry-kept`, { query: { dryRun: "All" }, body: { metadata: { labels: { b: "c" } } }, contentType: "application/merge-patch+json" });
      expect(p.metadata.labels).toEqual({ app: "dry-kept", b: "c" });
      await k.request("PUT", `${S}/dry-kept`, { query: { dryRun: "All" }, body: { ...cur, metadata: { ...cur.metadata, labels: {} } } });
      await k.request("DELETE", `${S}/dry-kept`, { query: { dryRun: "All" } });
      await k.request("DELETE", `${S}/dry-kept`, { body: { kind: "DeleteOptions", apiVersion: "v1", dryRun: ["All"] } });
      await expect(k.request("GET", `${S}/dry-new`)).rejects.toMatchObject({ statusCode: 404 });
      expect(await k.request("GET", `${S}/dry-kept`)).toEqual(cur);
      expect((await k.request<any>("GET", S)).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
      for (const [method, path, query] of [["POST", S, "dryRun=all"], ["PATCH", `${S}/dry-kept`, "dryRun=All&dryRun=None"], ["DELETE", `${S}/dry-kept`, "dryRun="]] as const) {
        const r = await fetch(`${s.url}${path}?${query}`, { method, headers: { authorization: "Bearer good-token", "content-type": method === "PATCH" ? "application/merge-patch+json" : "application/json" }, body: method === "DELETE" ? undefined : JSON.stringify(svc("dry-bad")), tls: { ca: s.certs.ca } } as RequestInit);
        expect({ query, status: r.status, message: ((await r.json()) as { message: string }).message }).toEqual({ query, status: 400, message: expect.stringContaining('supported values: "All"') });
      }
      expect(await k.request("GET", `${S}/dry-kept`)).toEqual(cur);
      // a real write after all that is the first event the watch sees
      await k.request("DELETE", `${S}/dry-kept`);
      await waitFor("the watch sees the real delete", () => events.join("").includes('"DELETED"'), 5_000);
    } finally {
      ctl.abort();
    }
    expect(events.join("").trim().split("\n").map((l) => JSON.parse(l).type).filter((t) => t !== "BOOKMARK")).toEqual(["DELETED"]);
    // the address the dry run answered was never held
    expect((await k.request<any>("POST", S, { body: { metadata: { name: "dry-new" }, spec: { clusterIP: dryIP, ports: [{ port: 80 }] } } })).spec.clusterIP).toBe(dryIP);
    await k.request("DELETE", `${S}/dry-new`);
  });

  test("deleting a Namespace deletes what is in it, Services' node ports freed; the immortal ones are 403", async () => {
    await k.request("POST", "/api/v1/namespaces", { body: { metadata: { name: "gone" } } });
    const n = await k.request<any>("POST", "/api/v1/namespaces/gone/services", { body: { metadata: { name: "np" }, spec: { type: "NodePort", ports: [{ port: 80 }] } } });
    await k.request("POST", "/api/v1/namespaces/gone/configmaps", { body: { metadata: { name: "cm" } } });
    const d = await k.request<any>("DELETE", "/api/v1/namespaces/gone");
    expect(d).toMatchObject({ kind: "Namespace", status: { phase: "Terminating" }, metadata: { deletionTimestamp: expect.any(String) } });
    await expect(k.request("GET", "/api/v1/namespaces/gone")).rejects.toMatchObject({ statusCode: 404 });
    for (const p of ["services", "configmaps"]) expect((await k.request<any>("GET", `/api/v1/${p}`)).items.filter((x: any) => x.metadata.namespace === "gone")).toEqual([]);
    const again = await k.request<any>("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "np-heir" }, spec: { type: "NodePort", clusterIP: n.spec.clusterIP, ports: [{ port: 80, nodePort: n.spec.ports[0].nodePort }] } } });
    expect(again.spec.clusterIP).toBe(n.spec.clusterIP);
    await k.request("DELETE", "/api/v1/namespaces/default/services/np-heir");
    await expect(k.request("POST", "/api/v1/namespaces/gone/configmaps", { body: { metadata: { name: "cm" } } })).rejects.toThrow(/namespaces "gone" not found/);
    for (const name of ["default", "kube-system", "kube-public"]) await expect(k.request("DELETE", `/api/v1/namespaces/${name}`)).rejects.toMatchObject({ statusCode: 403 });
  });

  test("list pagination over HTTP", async () => {
    for (let i = 0; i < 5; i++) await k.request("POST", "/api/v1/namespaces/default/services", { body: svc(`page${i}`) });
    const names: string[] = [];
    let cont: string | undefined;
    do {
      const l = await k.request<any>("GET", "/api/v1/services", { query: { limit: 2, continue: cont, labelSelector: "app" } });
      names.push(...l.items.map((o: any) => o.metadata.name));
      cont = l.metadata.continue;
    } while (cont);
    expect(names.filter((n) => n.startsWith("page"))).toEqual(["page0", "page1", "page2", "page3", "page4"]);
  });

  test("watch: an expired resourceVersion is one ERROR event with 410, then the end", async () => {
    const old = String(s.store.rev - 1);
    s.store.compact();
    const events = await watchLines(k, "/api/v1/services", { resourceVersion: old });
    expect(events).toEqual([{ type: "ERROR", object: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired" }) }]);
  });

  test("watch: a resourceVersion beyond the current one is 504 Too large resource version, as for a list", async () => {
    const ahead = String(s.store.rev + 1000);
    const t0 = performance.now();
    for (const query of [{ resourceVersion: ahead, resourceVersionMatch: "NotOlderThan" }, { resourceVersion: ahead, watch: "true" }]) {
      const e = await k.request("GET", "/api/v1/configmaps", { query }).then(() => undefined, (e: KubeError) => e);
      expect(e).toMatchObject({ statusCode: 504 });
      expect(e!.message).toContain(`Too large resource version: ${ahead}, current: ${s.store.rev}`);
    }
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test("watch: a replay bigger than a watch may queue is one ERROR event with 410, not an empty stream", async () => {
    // an empty 200 would have the client watch again from the same resourceVersion forever
    const small = start({ watchBacklogBytes: 50_000 });
    const ks = client(small);
    const cm = small.store.type("", "configmaps")!;
    small.store.create(cm, "default", { metadata: { name: "big" }, data: { a: "" } });
    const rv = String(small.store.rev);
    for (let i = 0; i < 10; i++) small.store.update(cm, "default", "big", { metadata: { name: "big" }, data: { a: String(i).repeat(10_000) } });
    const events = await watchLines(ks, "/api/v1/configmaps", { resourceVersion: rv });
    expect(events).toEqual([{ type: "ERROR", object: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired" }) }]);
    // a replay that fits is sent whole
    const fits = await watchLines(ks, "/api/v1/configmaps", { resourceVersion: String(small.store.rev - 2) }, 2);
    expect(fits.map((e) => e.type)).toEqual(["MODIFIED", "MODIFIED"]);
  });

  test("watch: bookmarks when allowed, and initial events ended by an annotated bookmark", async () => {
    const rv = (await k.request<any>("GET", "/api/v1/services")).metadata.resourceVersion;
    const b = await watchLines(k, "/api/v1/services", { resourceVersion: rv, allowWatchBookmarks: "true" }, 1);
    expect(b[0]).toEqual({ type: "BOOKMARK", object: { kind: "Service", apiVersion: "v1", metadata: { resourceVersion: rv } } });
    const init = await watchLines(k, "/api/v1/namespaces", { sendInitialEvents: "true", resourceVersionMatch: "NotOlderThan", allowWatchBookmarks: "true" }, 5);
    expect(init.slice(0, 4).map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED default", "ADDED kube-node-lease", "ADDED kube-public", "ADDED kube-system"]);
    expect(init[4]).toMatchObject({ type: "BOOKMARK", object: { metadata: { annotations: { "k8s.io/initial-events-end": "true" } } } });
    await expect(k.request("GET", "/api/v1/services", { query: { watch: "true", sendInitialEvents: "true" } })).rejects.toMatchObject({ statusCode: 422 });
  });

  test("watch: timeoutSeconds ends the stream", async () => {
    const t0 = performance.now();
    const events = await watchLines(k, "/api/v1/nodes", { resourceVersion: String(s.store.rev), timeoutSeconds: "1" });
    expect(events).toEqual([]);
    expect(performance.now() - t0).toBeGreaterThan(900);
  });

  test("watch: the answer's headers come at once, before any event (a client may time out waiting for them)", async () => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 2000);
    try {
      // no event, no bookmark: nothing to send for the next half hour
      const r = await k.fetch("/api/v1/nodes", { query: { watch: "true", resourceVersion: String(s.store.rev) }, signal: ctl.signal });
      expect(r.status).toBe(200);
      await s.store.create(s.store.type("", "nodes")!, undefined, { metadata: { name: "late" } });
      const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("late")) text += (await reader.read()).value ?? "";
      // what came before the event is whitespace between JSON values, which decoders skip
      expect(text.trim().split("\n").map((l) => JSON.parse(l).type)).toEqual(["ADDED"]);
    } finally {
      clearTimeout(timer);
      ctl.abort();
    }
  });
});

describe("what kubectl asks for", () => {
  const KUBECTL_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
  const s = start({ services: { serviceCIDRs: parseServiceCidrs("10.100.0.0/24"), nodePorts: parsePortRange("31000-31009") } });
  const k = client(s);
  const get = (path: string, accept = KUBECTL_ACCEPT) => fetch(`${s.url}${path}`, { headers: { authorization: "Bearer good-token", accept }, tls: { ca: s.certs.ca } } as RequestInit);

  test("Services get a ClusterIP and node ports from the server's ranges; 422 for a taken one", async () => {
    const a = await k.request<any>("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "np" }, spec: { type: "NodePort", ports: [{ port: 80 }] } } });
    expect(a.spec.clusterIP).toMatch(/^10\.100\.0\./);
    expect(a.spec.ports[0].nodePort).toBeGreaterThanOrEqual(31000);
    expect(a.spec.ports[0].nodePort).toBeLessThanOrEqual(31009);
    await expect(k.request("POST", "/api/v1/namespaces/default/services", { body: { metadata: { name: "b" }, spec: { clusterIP: a.spec.clusterIP, ports: [{ port: 80 }] } } })).rejects.toMatchObject({ statusCode: 422 });
  });

  test("list, get and watch answer Table requests", async () => {
    const np = await k.request<any>("GET", "/api/v1/namespaces/default/services/np");
    let r = await get("/api/v1/namespaces/default/services");
    expect(r.headers.get("content-type")).toBe("application/json;as=Table;v=v1;g=meta.k8s.io");
    const list = (await r.json()) as any;
    const rv = list.metadata.resourceVersion;
    expect(list).toMatchObject({ kind: "Table", apiVersion: "meta.k8s.io/v1" });
    expect(rv).toMatch(/^\d+$/);
    expect(list.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    expect(list.rows[0].cells.slice(0, 5)).toEqual(["np", "NodePort", np.spec.clusterIP, "<none>", `80:${np.spec.ports[0].nodePort}/TCP`]);
    expect(list.rows[0].object).toMatchObject({ kind: "PartialObjectMetadata", metadata: { name: "np", uid: np.metadata.uid } });
    r = await get("/api/v1/namespaces/default/services/np?includeObject=Object");
    expect(((await r.json()) as any).rows[0].object.spec.clusterIP).toBe(np.spec.clusterIP);
    expect(((await (await get("/api/v1/namespaces")).json()) as any).rows.map((x: { cells: unknown[] }) => x.cells[1])).toEqual(["Active", "Active", "Active", "Active"]);
    expect((await (await get("/api/v1/namespaces/default/services", "application/json")).json()) as any).toMatchObject({ kind: "ServiceList" });
    expect((await get("/api/v1/namespaces/default/services", "application/json;as=Table;v=v9;g=meta.k8s.io")).status).toBe(406);
    // a watch: each event's object a Table of one row (from the list's version, so the patch
    // below is replayed whenever the watch starts: the response's headers wait for its first event)
    const ctl = new AbortController();
    const watching = fetch(`${s.url}/api/v1/namespaces/default/services?watch=true&resourceVersion=${rv}`, { headers: { authorization: "Bearer good-token", accept: KUBECTL_ACCEPT }, tls: { ca: s.certs.ca }, signal: ctl.signal } as RequestInit);
    await k.request("PATCH", "/api/v1/namespaces/default/services/np", { body: { spec: { ports: [{ name: "http", port: 80, nodePort: np.spec.ports[0].nodePort }, { name: "https", port: 443 }] } }, contentType: "application/merge-patch+json" });
    const w = await watching;
    const reader = w.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      buf += value ?? "";
      // a watch opens with a bare newline (its headers go with it), which decoders skip
      if (done || buf.trimStart().includes("\n")) break;
    }
    ctl.abort();
    const e = JSON.parse(buf.trimStart().split("\n")[0]!);
    expect(e.type).toBe("MODIFIED");
    expect(e.object).toMatchObject({ kind: "Table", rows: [{ cells: ["np", "NodePort", np.spec.clusterIP, "<none>", expect.stringMatching(/^80:\d+\/TCP,443:\d+\/TCP$/), expect.any(String), "<none>"] }] });
  });
});

describe("clients it exists for", () => {
  test("client-node's ListWatch follows writes, and relists after a restart that lost the history", async () => {
    const a = start();
    const k = client(a);
    await k.request("POST", "/api/v1/namespaces/default/services", { body: svc("one") });
    const lw = new ListWatch<any>("/api/v1/services", k.watcher(), () => k.request("GET", "/api/v1/services") as Promise<any>, false);
    const log: string[] = [];
    lw.on("add", (o) => log.push(`add ${o.metadata.name}`));
    lw.on("update", (o) => log.push(`update ${o.metadata.name}`));
    lw.on("delete", (o) => log.push(`delete ${o.metadata.name}`));
    // client-node's ListWatch stops on a failed connection; whoever runs it restarts it
    lw.on("error", () => setTimeout(() => void lw.start(), 50));
    await lw.start();
    await k.request("POST", "/api/v1/namespaces/default/services", { body: svc("two") });
    await waitFor("the informer sees two", () => lw.list().length === 2);
    const port = a.port;
    await a.stop();
    // while it is down: one deleted, one changed, one new; and the history is gone
    const store = new Store(a.store.allTypes(), 100, a.store.snapshot());
    const t = store.type("", "services")!;
    store.delete(t, "default", "one");
    store.update(t, "default", "two", svc("two", 8080));
    store.create(t, "default", svc("three"));
    const b = start({ port, store, certs: a.certs });
    await waitFor("the informer converges", () => lw.list().map((o) => `${o.metadata.name}:${o.spec.ports[0].port}`).sort().join() === "three:80,two:8080", 10_000);
    expect(log).toEqual(["add one", "add two", "delete one", "update two", "add three"]);
    await lw.stop();
    await b.stop();
  }, 30_000);

  /** kubectl (scripts/run installs Debian's kubernetes-client) against a new server */
  const kubectlFor = (s: TestApiServer) => {
    const kubectl = Bun.which("kubectl");
    if (!kubectl) throw new Error("kubectl is not installed (Debian kubernetes-client; scripts/run installs it)");
    const dir = useTempDir("kubectl");
    const config = Bun.write(`${dir}/config`, s.kubeconfig());
    // not spawnSync: the server answers from this same process
    const kc = async (...args: string[]) => {
      await config;
      const r = await runAsync([kubectl, "--kubeconfig", `${dir}/config`, "--cache-dir", `${dir}/cache`, ...args], { allowFail: true });
      return { code: r.exitCode, out: r.stdout, err: r.stderr };
    };
    return { kc, dir };
  };

  test("kubectl get and apply", async () => {
    const s = start();
    const { kc, dir } = kubectlFor(s);
    expect((await kc("get", "namespaces", "-o", "name")).out.split("\n").filter(Boolean)).toEqual(["namespace/default", "namespace/kube-node-lease", "namespace/kube-public", "namespace/kube-system"]);
    const manifest = (port: number) => JSON.stringify({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { ports: [{ name: "http", port, targetPort: 8080 }] } });
    await Bun.write(`${dir}/svc.json`, manifest(80));
    // this server serves no OpenAPI documents for kubectl's client-side validation
    let r = await kc("apply", "--validate=false", "-f", `${dir}/svc.json`);
    expect(r.out + r.err).toContain("service/web created");
    await Bun.write(`${dir}/svc.json`, manifest(81));
    r = await kc("apply", "--validate=false", "-f", `${dir}/svc.json`);
    expect(r.out + r.err).toContain("service/web configured");
    expect(JSON.parse((await kc("get", "service", "web", "-o", "json")).out).spec.ports).toEqual([{ name: "http", port: 81, protocol: "TCP", targetPort: 8080 }]);
    expect((await kc("get", "service", "nope")).err).toContain('services "nope" not found');
    expect((await kc("--token", "wrong", "get", "pods")).code).not.toBe(0);
    expect((await kc("delete", "service", "web")).out).toContain('service "web" deleted');
  }, 60_000);

  test("kubectl create namespace|configmap|service, run and expose: built-in kinds posted as protobuf", async () => {
    const s = start();
    const { kc } = kubectlFor(s);
    const ok = async (...args: string[]) => {
      const r = await kc(...args);
      expect({ args, code: r.code, err: r.err }).toEqual({ args, code: 0, err: "" });
      return r.out;
    };
    const get = async (...args: string[]) => JSON.parse(await ok("get", ...args, "-o", "json"));
    expect(await ok("create", "namespace", "x")).toBe("namespace/x created\n");
    expect(await get("namespace", "x")).toMatchObject({ kind: "Namespace", metadata: { name: "x" } });
    expect(await ok("create", "configmap", "c", "--from-literal=a=b", "-n", "x")).toBe("configmap/c created\n");
    expect(await get("configmap", "c", "-n", "x")).toMatchObject({ kind: "ConfigMap", metadata: { name: "c", namespace: "x" }, data: { a: "b" } });
    expect(await ok("create", "service", "clusterip", "s", "--tcp=80:8080")).toBe("service/s created\n");
    expect((await get("service", "s")).spec).toMatchObject({ type: "ClusterIP", selector: { app: "s" }, ports: [{ name: "80-8080", port: 80, protocol: "TCP", targetPort: 8080 }] });
    expect(await ok("run", "p", "--image=x", "--port=8080")).toBe("pod/p created\n");
    expect(await get("pod", "p")).toMatchObject({ metadata: { labels: { run: "p" } }, spec: { containers: [{ name: "p", image: "x", ports: [{ containerPort: 8080 }] }] } });
    expect(await ok("expose", "pod", "p", "--port=80")).toBe("service/p exposed\n");
    expect((await get("service", "p")).spec).toMatchObject({ selector: { run: "p" }, ports: [{ port: 80, protocol: "TCP" }] });
    expect((await ok("get", "cm", "-n", "x", "-o", "name")).trim()).toBe("configmap/c");
  }, 60_000);
});

test("KubeError carries the Status message", async () => {
  const s = start();
  const e: KubeError = await client(s)
    .request("GET", "/api/v1/namespaces/default/pods/missing")
    .then(() => {
      throw new Error("no error");
    })
    .catch((x: KubeError) => x);
  expect(e).toBeInstanceOf(KubeError);
  expect(e.message).toContain('pods "missing" not found');
  expect(e.reason).toBe("NotFound");
});
