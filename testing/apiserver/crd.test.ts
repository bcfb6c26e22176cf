// CustomResourceDefinitions through the API, as kube-apiserver serves them: the CRD's status,
// its resource in discovery, the verbs with the store's semantics, the status subresource,
// scopes and versions, printer columns, pruning and validation by the schema, refused CRDs,
// deletion, and a restarted store.
import { afterAll, describe, expect, test } from "bun:test";
import { TestApiServer } from "./server.ts";
import { Store } from "./store.ts";
import { readWatchEvents, startServer, TABLE } from "./testclient.ts";

const servers: TestApiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});
function start(store?: Store) {
  const c = startServer(store ? { store } : {});
  servers.push(c.s);
  return c;
}

const CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/** A CRD of widgets.example.com; `versions` and `spec` override the defaults. */
function widgetCrd(o: { scope?: string; versions?: unknown[]; names?: Record<string, unknown>; group?: string; name?: string } = {}) {
  const group = o.group ?? "example.com";
  const plural = (o.names?.plural as string) ?? "widgets";
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: o.name ?? `${plural}.${group}` },
    spec: {
      group,
      scope: o.scope ?? "Namespaced",
      names: { plural: "widgets", kind: "Widget", shortNames: ["wd"], categories: ["all"], ...o.names },
      versions: o.versions ?? [
        {
          name: "v1",
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: "Size", type: "integer", jsonPath: ".spec.size" },
            { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: "Ratio", type: "number", jsonPath: ".spec.ratio", priority: 1 },
            { name: "On", type: "boolean", jsonPath: ".spec.on" },
            { name: "Since", type: "date", jsonPath: ".status.since" },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              properties: {
                spec: {
                  type: "object",
                  required: ["size"],
                  properties: {
                    size: { type: "integer", minimum: 0, maximum: 10 },
                    ratio: { type: "number" },
                    on: { type: "boolean", default: false },
                    tags: { type: "array", maxItems: 2, items: { type: "string", maxLength: 5 } },
                    free: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
                  },
                },
                status: {
                  type: "object",
                  properties: {
                    since: { type: "string" },
                    conditions: { type: "array", items: { type: "object", properties: { type: { type: "string" }, status: { type: "string" } } } },
                  },
                },
              },
            },
          },
        },
      ],
    },
  };
}

const widget = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name }, spec, ...extra });

describe("a CRD", () => {
  const { request, failure } = start();
  const W = "/apis/example.com/v1/namespaces/default/widgets";

  test("is accepted and established, with its names and stored version in its status", async () => {
    const crd = await request("POST", CRDS, widgetCrd());
    expect(crd.spec.names).toMatchObject({ singular: "widget", listKind: "WidgetList" });
    expect(crd.spec.conversion).toEqual({ strategy: "None" });
    expect(crd.status.acceptedNames).toEqual({ plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList", shortNames: ["wd"], categories: ["all"] });
    expect(crd.status.conditions.map((c: { type: string; status: string }) => `${c.type}=${c.status}`)).toEqual(["NamesAccepted=True", "Established=True"]);
    expect(crd.status.storedVersions).toEqual(["v1"]);
  });

  test("makes its resource discoverable: /apis, the group, the version with the status subresource", async () => {
    const groups = await request("GET", "/apis");
    expect(groups.groups.find((g: { name: string }) => g.name === "example.com")).toEqual({ name: "example.com", versions: [{ groupVersion: "example.com/v1", version: "v1" }], preferredVersion: { groupVersion: "example.com/v1", version: "v1" } });
    expect(await request("GET", "/apis/example.com")).toMatchObject({ kind: "APIGroup", name: "example.com" });
    const list = await request("GET", "/apis/example.com/v1");
    expect(list.resources).toEqual([
      { name: "widgets", singularName: "widget", namespaced: true, kind: "Widget", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["wd"], categories: ["all"] },
      { name: "widgets/status", singularName: "", namespaced: true, kind: "Widget", verbs: ["get", "patch", "update"] },
    ]);
  });

  test("serves create, get, list, patch, update and watch; unknown fields are pruned, defaults filled in", async () => {
    const w = await request("POST", W, widget("a", { size: 3, junk: "x", free: { any: { thing: 1 } } }, { extra: 1 }));
    expect(w.spec).toEqual({ size: 3, on: false, free: { any: { thing: 1 } } });
    expect(w.extra).toBeUndefined();
    expect(w.metadata).toMatchObject({ namespace: "default", generation: 1 });
    const rv = Number(w.metadata.resourceVersion);
    const watched = fetchWatch(W, String(rv));
    const patched = await request("PATCH", `${W}/a`, { spec: { size: 4 } });
    expect(patched.metadata.generation).toBe(2);
    const cur = await request("GET", `${W}/a`);
    const put = await request("PUT", `${W}/a`, { ...cur, spec: { ...cur.spec, tags: ["x"] } });
    expect(put.spec.tags).toEqual(["x"]);
    expect((await failure(request("PUT", `${W}/a`, cur))).code).toBe(409);
    const l = await request("GET", W);
    expect({ kind: l.kind, apiVersion: l.apiVersion, names: l.items.map((i: { metadata: { name: string } }) => i.metadata.name) }).toEqual({ kind: "WidgetList", apiVersion: "example.com/v1", names: ["a"] });
    expect((await request("GET", "/apis/example.com/v1/widgets")).items).toHaveLength(1);
    expect((await request("GET", W, undefined, { fieldSelector: "metadata.name=b" })).items).toHaveLength(0);
    const events = await (await watched)(2);
    expect(events.map((e) => `${e.type} ${e.object.spec.size} ${e.object.apiVersion}`)).toEqual(["MODIFIED 4 example.com/v1", "MODIFIED 4 example.com/v1"]);
  });

  test("the status subresource: main writes leave status alone, status writes leave spec alone", async () => {
    const cur = await request("GET", `${W}/a`);
    const st = await request("PUT", `${W}/a/status`, { ...cur, spec: { size: 9 }, status: { since: "2026-11-29T10:00:00Z", conditions: [{ type: "Ready", status: "True" }] } });
    expect([st.spec.size, st.status.since, st.metadata.generation]).toEqual([4, "2026-11-29T10:00:00Z", cur.metadata.generation]);
    const main = await request("PATCH", `${W}/a`, { status: { since: "never" }, spec: { size: 5 } });
    expect([main.spec.size, main.status.since]).toEqual([5, "2026-11-29T10:00:00Z"]);
    expect((await request("GET", `${W}/a/status`)).status.conditions).toEqual([{ type: "Ready", status: "True" }]);
  });

  test("the schema refuses what kube-apiserver refuses, naming each field", async () => {
    let f = await failure(request("POST", W, widget("bad", { size: "big", tags: ["a", "b", "c"] })));
    expect(f).toEqual({ code: 422, message: 'Widget.example.com "bad" is invalid: [spec.size: Invalid value: "string": spec.size in body must be of type integer: "string", spec.tags: Too many: 3: must have at most 2 items]' });
    f = await failure(request("POST", W, widget("bad", { ratio: 1.5, tags: ["toolong"] })));
    expect(f.message).toBe('Widget.example.com "bad" is invalid: [spec.size: Required value, spec.tags[0]: Too long: may not be more than 5 bytes]');
    f = await failure(request("POST", W, widget("bad", { size: 11 })));
    expect(f.message).toContain("spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10");
    // through the status subresource too
    f = await failure(request("PATCH", `${W}/a/status`, { status: { since: 5 } }));
    expect(f.message).toContain('status.since: Invalid value: "integer": status.since in body must be of type string: "integer"');
  });

  test("printer columns: each type, priority for -o wide, a filter path, missing values empty", async () => {
    await request("POST", W, widget("b", { size: 1, ratio: 0.25, on: true }));
    const t = await request("GET", W, undefined, undefined, TABLE);
    expect(t.columnDefinitions.map((c: { name: string; type: string; priority: number }) => `${c.name}:${c.type}:${c.priority}`)).toEqual(["Name:string:0", "Size:integer:0", "Ready:string:0", "Ratio:number:1", "On:boolean:0", "Since:date:0"]);
    const byName = Object.fromEntries(t.rows.map((r: { cells: unknown[] }) => [r.cells[0], r.cells]));
    expect(byName.a.slice(0, 5)).toEqual(["a", 5, "True", null, false]);
    expect(byName.a[5]).toMatch(/^\d+[dhmsy]/);
    expect(byName.b).toEqual(["b", 1, null, 0.25, true, null]);
    // a watch as kubectl get -w asks it: one-row Tables with the same columns
    const one = await request("GET", `${W}/b`, undefined, undefined, TABLE);
    expect(one.rows[0].cells).toEqual(byName.b);
    // a CRD without columns prints the age
    const crd = widgetCrd({ names: { plural: "plains", kind: "Plain", shortNames: [], categories: [] } });
    Object.assign(crd.spec.versions[0] as object, { additionalPrinterColumns: undefined, subresources: undefined });
    await request("POST", CRDS, crd);
    await request("POST", "/apis/example.com/v1/namespaces/default/plains", { metadata: { name: "p" }, spec: { size: 1 } });
    const plain = await request("GET", "/apis/example.com/v1/namespaces/default/plains", undefined, undefined, TABLE);
    expect(plain.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(["Name", "Age"]);
  });

  test("a /status path of a resource without the subresource is 404", async () => {
    expect((await failure(request("GET", "/apis/example.com/v1/namespaces/default/plains/p/status"))).code).toBe(404);
  });

  test("deleting the CRD deletes its objects (watchers see them go), then the resource is not served", async () => {
    const rv = (await request("GET", W)).metadata.resourceVersion;
    const watched = fetchWatch(W, rv);
    await request("DELETE", `${CRDS}/widgets.example.com`);
    // the watch ends with the resource (read past its two events: the stream must end)
    const events = await (await watched)(3);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`).sort()).toEqual(["DELETED a", "DELETED b"]);
    expect((await failure(request("GET", W))).code).toBe(404);
    expect((await request("GET", "/apis/example.com/v1")).resources.map((r: { name: string }) => r.name)).toEqual(["plains"]);
    // and a CRD of the same name starts empty
    await request("POST", CRDS, widgetCrd());
    expect((await request("GET", W)).items).toEqual([]);
  });

  /** A watch from `rv`; resolves to a function that reads `n` events (the stream must end by then). */
  async function fetchWatch(path: string, rv: string) {
    const { s } = servers.length ? { s: servers[0]! } : { s: undefined! };
    const r = await fetch(`${s.url}${path}?watch=true&resourceVersion=${rv}`, { headers: { authorization: "Bearer t" }, tls: { ca: s.certs.ca } } as RequestInit);
    return (n: number) => readWatchEvents(r.body!, n);
  }
});

describe("scopes and versions", () => {
  const { request, failure } = start();

  test("a cluster-scoped resource has no namespace; a namespaced one needs one", async () => {
    await request("POST", CRDS, widgetCrd({ scope: "Cluster", group: "cluster.example.com" }));
    const w = await request("POST", "/apis/cluster.example.com/v1/widgets", { metadata: { name: "c" }, spec: { size: 1 } });
    expect(w.metadata.namespace).toBeUndefined();
    expect((await failure(request("GET", "/apis/cluster.example.com/v1/namespaces/default/widgets"))).code).toBe(404);
  });

  test("served versions are views of the storage version; an unserved one is 404; discovery prefers the highest", async () => {
    const base = widgetCrd().spec.versions[0] as Record<string, unknown>;
    const schema = { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties: { size: { type: "integer" }, old: { type: "string" } } } } } };
    const crd = widgetCrd({
      group: "multi.example.com",
      versions: [
        { ...base, name: "v1beta1", storage: false, schema },
        { ...base, name: "v1", storage: true },
        { ...base, name: "v1alpha1", served: false, storage: false, schema },
      ],
    });
    await request("POST", CRDS, crd);
    const g = await request("GET", "/apis/multi.example.com");
    expect(g.versions.map((v: { version: string }) => v.version)).toEqual(["v1", "v1beta1"]);
    expect(g.preferredVersion.version).toBe("v1");
    const b = await request("POST", "/apis/multi.example.com/v1beta1/namespaces/default/widgets", { apiVersion: "multi.example.com/v1beta1", kind: "Widget", metadata: { name: "x" }, spec: { size: 2, old: "o" } });
    expect(b.apiVersion).toBe("multi.example.com/v1beta1");
    const v1 = await request("GET", "/apis/multi.example.com/v1/namespaces/default/widgets/x");
    // the storage version's schema does not know "old": it was kept as written (no conversion)
    expect([v1.apiVersion, v1.spec.size]).toEqual(["multi.example.com/v1", 2]);
    expect((await failure(request("GET", "/apis/multi.example.com/v1alpha1/namespaces/default/widgets"))).code).toBe(404);
    expect((await failure(request("POST", "/apis/multi.example.com/v1beta1/namespaces/default/widgets", { apiVersion: "multi.example.com/v1", kind: "Widget", metadata: { name: "y" } }))).code).toBe(400);
  });
});

describe("refused CRDs (422 naming the field)", () => {
  const { s, request, failure } = start();
  const refused = async (crd: unknown) => {
    const f = await failure(request("POST", CRDS, crd));
    expect(f.code).toBe(422);
    return f.message;
  };

  test("names, group, storage versions, schema", async () => {
    expect(await refused(widgetCrd({ group: "nodot", name: "widgets.nodot" }))).toContain('spec.group: Invalid value: "nodot": should be a domain with at least one dot');
    expect(await refused(widgetCrd({ name: "wrong.example.com" }))).toContain('metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group');
    expect(await refused(widgetCrd({ names: { plural: "Widgets" }, name: "widgets.example.com" }))).toContain('spec.names.plural: Invalid value: "Widgets": a DNS-1035 label');
    const v = widgetCrd().spec.versions[0] as Record<string, unknown>;
    expect(await refused(widgetCrd({ versions: [{ ...v, storage: false }] }))).toContain("spec.versions: Invalid value: 1: must have exactly one version marked as storage version");
    expect(await refused(widgetCrd({ versions: [v, { ...v, name: "v2" }] }))).toContain("must have exactly one version marked as storage version");
    expect(await refused(widgetCrd({ versions: [{ ...v, schema: undefined }] }))).toContain("spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required");
    const untyped = { openAPIV3Schema: { type: "object", properties: { spec: { properties: { a: { type: "string" } } } } } };
    expect(await refused(widgetCrd({ versions: [{ ...v, schema: untyped }] }))).toContain("spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields");
    const column = { ...v, additionalPrinterColumns: [{ name: "X", type: "text", jsonPath: "status.x" }] };
    const m = await refused(widgetCrd({ versions: [column] }));
    expect(m).toContain('spec.versions[0].additionalPrinterColumns[0].type: Unsupported value: "text"');
    expect(m).toContain('spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: "status.x": must be a simple json path starting with .');
    expect(await refused(widgetCrd({ versions: [{ ...v, additionalPrinterColumns: [{ name: "X", type: "string", jsonPath: ".a[1,2]" }] }] }))).toContain("must be a valid JSONPath");
    expect(await refused(widgetCrd({ group: "x.k8s.io", name: "widgets.x.k8s.io" }))).toContain("protected groups must have approval annotation");
  });

  test("names already served in the group", async () => {
    await request("POST", CRDS, widgetCrd());
    expect(await refused(widgetCrd({ names: { plural: "gadgets", shortNames: ["wd"] }, name: "gadgets.example.com" }))).toContain('spec.names.shortNames[0]: Invalid value: "wd": is already in use by widgets.example.com');
    expect(await refused(widgetCrd({ names: { plural: "gadgets", shortNames: [] }, name: "gadgets.example.com" }))).toContain('spec.names.kind: Invalid value: "Widget": is already in use by widgets.example.com');
    const approved = widgetCrd({ group: "networking.k8s.io", names: { plural: "networkpolicies", kind: "Np", shortNames: [] }, name: "networkpolicies.networking.k8s.io" });
    (approved.metadata as Record<string, unknown>).annotations = { "api-approved.kubernetes.io": "yes" };
    expect(await refused(approved)).toContain('spec.names.plural: Invalid value: "networkpolicies": is already in use by networkpolicies.networking.k8s.io');
  });

  test("updates: scope immutable, a stored version stays listed", async () => {
    const cur = await request("GET", `${CRDS}/widgets.example.com`);
    let f = await failure(request("PUT", `${CRDS}/widgets.example.com`, { ...cur, spec: { ...cur.spec, scope: "Cluster" } }));
    expect(f.message).toContain('spec.scope: Invalid value: "Cluster": field is immutable');
    const v2 = { ...cur.spec.versions[0], name: "v2" };
    f = await failure(request("PUT", `${CRDS}/widgets.example.com`, { ...cur, spec: { ...cur.spec, versions: [v2] } }));
    expect(f.message).toContain('status.storedVersions[0]: Invalid value: "v1": missing from spec.versions');
    // adding a version is fine, and serves it
    await request("POST", "/apis/example.com/v1/namespaces/default/widgets", widget("old", { size: 1 }));
    const ok = await request("PUT", `${CRDS}/widgets.example.com`, { ...cur, spec: { ...cur.spec, versions: [{ ...cur.spec.versions[0], storage: false }, { ...v2, storage: true }] } });
    expect(ok.status.storedVersions).toEqual(["v1", "v2"]);
    expect((await request("GET", "/apis/example.com/v2/namespaces/default/widgets")).items.map((i: { apiVersion: string }) => i.apiVersion)).toEqual(["example.com/v2"]);
    // an update writes the object in the new storage version (kube's storage migration)
    const store = servers.find((x) => x.url === s.url)!.store;
    const t = store.type("example.com", "widgets")!;
    expect(store.get(t, "default", "old").apiVersion).toBe("example.com/v1");
    await request("PATCH", "/apis/example.com/v1/namespaces/default/widgets/old", { metadata: { labels: { migrated: "yes" } } });
    expect(store.get(t, "default", "old").apiVersion).toBe("example.com/v2");
    // a kind renamed: served with the new kind, rewritten with it by the next update
    const now = await request("GET", `${CRDS}/widgets.example.com`);
    await request("PUT", `${CRDS}/widgets.example.com`, { ...now, spec: { ...now.spec, names: { ...now.spec.names, kind: "Gadget", listKind: "GadgetList" } } });
    const renamed = await request("GET", "/apis/example.com/v2/namespaces/default/widgets");
    expect([renamed.kind, renamed.items[0].kind, store.get(store.type("example.com", "widgets")!, "default", "old").kind]).toEqual(["GadgetList", "Gadget", "Widget"]);
  });
});

describe("a restarted store", () => {
  test("keeps its CRDs and their objects, served as before", async () => {
    const a = start();
    await a.request("POST", CRDS, widgetCrd());
    await a.request("POST", "/apis/example.com/v1/namespaces/default/widgets", widget("kept", { size: 2 }));
    const snap = a.s.store.snapshot();
    const b = start(new Store(a.s.store.allTypes(), 100, snap));
    expect((await b.request("GET", "/apis/example.com/v1/namespaces/default/widgets/kept")).spec.size).toBe(2);
    expect((await b.failure(b.request("POST", "/apis/example.com/v1/namespaces/default/widgets", widget("bad", { size: -1 })))).code).toBe(422);
  });
});

describe("owned custom objects", () => {
  const { request, failure } = start();

  test("a SkeinNode-like object owned by its Node goes with it; propagationPolicy Orphan keeps it; other policies are 400", async () => {
    await request("POST", CRDS, widgetCrd({ scope: "Cluster" }));
    const W = "/apis/example.com/v1/widgets";
    for (const n of ["n1", "n2"]) {
      const node = await request("POST", "/api/v1/nodes", { metadata: { name: n } });
      await request("POST", W, { metadata: { name: n, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: n, uid: node.metadata.uid }] }, spec: { size: 1 } });
    }
    await request("DELETE", "/api/v1/nodes/n1");
    expect((await request("GET", W)).items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(["n2"]);
    expect((await failure(request("DELETE", "/api/v1/nodes/n2", { propagationPolicy: "Sometimes" }))).message).toBe('propagationPolicy: Unsupported value: "Sometimes": supported values: "Background", "Foreground", "Orphan"');
    await request("DELETE", "/api/v1/nodes/n2", { propagationPolicy: "Orphan" });
    expect((await request("GET", W)).items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(["n2"]);
  });
});

describe("hostile CRDs", () => {
  const { request, failure } = start();

  test("a schema nested as deep as a body may be, and objects as deep, are handled without exhausting the stack", async () => {
    // each level is two JSON levels (properties, then the schema): 240 levels stay within 500
    let schema: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 240; i++) schema = { type: "object", properties: { a: schema } };
    const crd = widgetCrd({ names: { plural: "deeps", kind: "Deep", shortNames: [], categories: [] }, versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", properties: { spec: schema } } } }] });
    await request("POST", CRDS, crd);
    let value: unknown = "x";
    for (let i = 0; i < 240; i++) value = { a: value, junk: { deep: 1 } };
    const o = await request("POST", "/apis/example.com/v1/namespaces/default/deeps", { metadata: { name: "d" }, spec: value });
    let depth = 0;
    for (let v = o.spec; v && typeof v === "object"; v = v.a) {
      expect(v.junk).toBeUndefined();
      depth++;
    }
    expect(depth).toBe(240);
    // one level more than a body may nest is refused before any of it is looked at
    let tooDeep: unknown = 1;
    for (let i = 0; i < 600; i++) tooDeep = { a: tooDeep };
    expect((await failure(request("POST", "/apis/example.com/v1/namespaces/default/deeps", { metadata: { name: "e" }, spec: tooDeep }))).code).toBe(400);
  });

  test("a printer column's JSONPath is bounded", async () => {
    const v = widgetCrd().spec.versions[0] as Record<string, unknown>;
    const crd = widgetCrd({ names: { plural: "longs", kind: "Long", shortNames: [], categories: [] }, versions: [{ ...v, additionalPrinterColumns: [{ name: "X", type: "string", jsonPath: "." + "a.".repeat(1000) + "b" }] }] });
    expect((await failure(request("POST", CRDS, crd))).message).toContain("longer than 1024 characters");
  });
});
