// The SkeinNode CRD (deploy/crds/skeinnode.yaml) through kubectl against `skein apiserver`, as
// an operator meets it: applied and Established, a SkeinNode created and its status written
// through the status subresource, `kubectl get skeinnodes` and `kubectl get sn -o wide`
// printing the printer columns with their values, -o json, a watch, a restart that keeps
// them, one going with its Node, an invalid CRD refused, deletion; and Events, as `kubectl get events` and
// `kubectl describe` show them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { useTempDir, waitFor } from "./harness/index.ts";
import { KUBECTL, KubectlServer } from "./harness/kubectl.ts";

const TOKEN = "skeinnode-e2e-token";
const MANIFEST = resolve(import.meta.dir, "../deploy/crds/skeinnode.yaml");
const dir = useTempDir("skeinnode-crd");
const server = new KubectlServer(dir, TOKEN);
const kc = (...args: string[]) => server.kc(...args);
const ok = (...args: string[]) => server.ok(...args);

/** `kubectl apply` of a manifest written to a file (no OpenAPI is served: --validate=false). */
async function apply(name: string, manifest: unknown) {
  const file = `${dir}/${name}.json`;
  await Bun.write(file, JSON.stringify(manifest));
  return kc("apply", "--validate=false", "-f", file);
}

/** A kubectl table as rows of cells, cut at the header's column starts (cells may be empty or hold spaces). */
function table(text: string): Array<Record<string, string>> {
  const lines = text.split("\n").filter((l) => l.trim());
  const header = lines[0]!;
  const starts = [...header.matchAll(/\S+(?: \S+)*/g)].map((m) => ({ name: m[0], at: m.index! }));
  return lines.slice(1).map((l) => Object.fromEntries(starts.map((c, i) => [c.name, l.slice(c.at, i + 1 < starts.length ? starts[i + 1]!.at : undefined).trim()])));
}
const headers = (text: string) => [...text.split("\n")[0]!.matchAll(/\S+(?: \S+)*/g)].map((m) => m[0]);

beforeAll(() => server.start(), 30_000);

afterAll(() => server.stop());

describe("the SkeinNode CRD through kubectl", () => {
  test("kubectl apply of deploy/crds/skeinnode.yaml: Established, served as skeinnodes.skein.io (sn, cluster-scoped, status)", async () => {
    expect(await ok("apply", "--validate=false", "-f", MANIFEST)).toContain("customresourcedefinition.apiextensions.k8s.io/skeinnodes.skein.io created");
    expect(await ok("wait", "--for", "condition=Established", "crd/skeinnodes.skein.io", "--timeout=20s")).toContain("condition met");
    const res = table(await ok("api-resources", "--api-group", "skein.io"));
    expect(res).toEqual([{ NAME: "skeinnodes", SHORTNAMES: "sn", APIVERSION: "skein.io/v1alpha1", NAMESPACED: "false", KIND: "SkeinNode" }]);
    expect(table(await ok("get", "crd"))[0]!.NAME).toBe("skeinnodes.skein.io");
    // applied again: nothing changes
    expect(await ok("apply", "--validate=false", "-f", MANIFEST)).toContain("unchanged");
  }, 60_000);

  test("a SkeinNode, its status written through the status subresource, printed with the columns", async () => {
    // owned by its Node, which must exist: an object whose owners never existed is collected
    await apply("node-n1", { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } });
    const uid = await ok("get", "node", "n1", "-o", "jsonpath={.metadata.uid}");
    const created = await apply("n1", { apiVersion: "skein.io/v1alpha1", kind: "SkeinNode", metadata: { name: "n1", ownerReferences: [{ apiVersion: "v1", kind: "Node", name: "n1", uid }] }, spec: {} });
    expect(created.out).toContain("skeinnode.skein.io/n1 created");
    await apply("n2", { apiVersion: "skein.io/v1alpha1", kind: "SkeinNode", metadata: { name: "n2" }, spec: {} });
    const status = { ready: false, reasons: ["peers unknown"], mode: "vxlan", version: "0.1.0", addresses: { underlay: "192.168.50.11", podCIDRs: ["10.244.1.0/24"] }, peers: { total: 3, reachable: 2, unreachable: ["n3"] }, peersSummary: "2/3", tableGeneration: 17, lastError: "route to n3: no reply", lastUpdate: "2026-11-29T10:00:00Z", conditions: [{ type: "Ready", status: "False", reason: "PeersUnreachable", message: "n3 unreachable", lastTransitionTime: "2026-11-29T10:00:00Z" }] };
    expect(await ok("patch", "skeinnode", "n1", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status }))).toContain("skeinnode.skein.io/n1 patched");
    await ok("patch", "sn", "n2", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { ready: true, mode: "direct", peersSummary: "3/3", tableGeneration: 4 } }));

    const plain = await ok("get", "skeinnodes");
    expect(headers(plain)).toEqual(["NAME", "READY", "MODE", "PEERS", "GENERATION", "AGE"]);
    const rows = table(plain);
    expect(rows.map((r): Record<string, unknown> => ({ ...r, AGE: /^\d+s$/.test(r.AGE!) ? "age" : r.AGE }))).toEqual([
      { NAME: "n1", READY: "false", MODE: "vxlan", PEERS: "2/3", GENERATION: "17", AGE: "age" },
      { NAME: "n2", READY: "true", MODE: "direct", PEERS: "3/3", GENERATION: "4", AGE: "age" },
    ]);
    const wide = await ok("get", "sn", "-o", "wide");
    expect(headers(wide)).toEqual(["NAME", "READY", "MODE", "PEERS", "GENERATION", "ERROR", "AGE"]);
    const w = table(wide);
    // a column without a value is an empty cell, as kube-apiserver sends null for it
    expect([w[0]!.ERROR, w[1]!.ERROR]).toEqual(["route to n3: no reply", ""]);

    const json = JSON.parse(await ok("get", "skeinnodes", "-o", "json"));
    expect(json.kind).toBe("List");
    const n1 = json.items.find((i: { metadata: { name: string } }) => i.metadata.name === "n1");
    expect({ apiVersion: n1.apiVersion, kind: n1.kind, status: n1.status, owner: n1.metadata.ownerReferences[0].kind }).toEqual({ apiVersion: "skein.io/v1alpha1", kind: "SkeinNode", status, owner: "Node" });
    // a main write leaves the status alone; a status write the schema refuses is refused
    expect(await ok("patch", "sn", "n1", "--type=merge", "-p", JSON.stringify({ status: { mode: "none" } }))).toContain("(no change)");
    const bad = await kc("patch", "sn", "n1", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { mode: "fast", reasons: Array(11).fill("r"), lastError: "x".repeat(1025) } }));
    expect(bad.code).not.toBe(0);
    expect(bad.err).toContain('status.mode: Unsupported value: "fast": supported values: "auto", "vxlan", "direct", "none"');
    expect(bad.err).toContain("status.reasons: Too many: 11: must have at most 10 items");
    expect(bad.err).toContain("status.lastError: Too long: may not be more than 1024 bytes");
    expect(await ok("get", "sn", "n1", "-o", "jsonpath={.status.mode}")).toBe("vxlan");
  }, 60_000);

  test("kubectl get sn -w sees a status write", async () => {
    const w = Bun.spawn([KUBECTL!, "--kubeconfig", `${dir}/kubeconfig`, "--cache-dir", `${dir}/cache`, "get", "sn", "n2", "-w"], { stdout: "pipe", stderr: "pipe" });
    let seen = "";
    const pump = (async () => {
      for await (const c of w.stdout) seen += new TextDecoder().decode(c);
    })();
    try {
      await waitFor("the watch's first row", () => seen.includes("3/3"), 20_000);
      await ok("patch", "sn", "n2", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { peersSummary: "2/4", tableGeneration: 5 } }));
      const row = await waitFor("the written row in the watch", () => seen.split("\n").find((l) => l.includes("2/4")), 20_000);
      expect(row.trim().split(/\s+/).slice(0, 5)).toEqual(["n2", "true", "direct", "2/4", "5"]);
    } finally {
      w.kill();
      await w.exited;
      await pump.catch(() => {});
    }
  }, 60_000);

  test("a restarted (killed) skein apiserver still serves the CRD and its SkeinNodes", async () => {
    await server.stop("SIGKILL");
    await server.start();
    const rows = table(await ok("get", "skeinnodes"));
    expect(rows.map((r) => [r.NAME, r.PEERS, r.GENERATION])).toEqual([
      ["n1", "2/3", "17"],
      ["n2", "2/4", "5"],
    ]);
  }, 60_000);

  test("a SkeinNode owned by its Node goes when the Node is deleted (the garbage collector)", async () => {
    await apply("node-n3", { apiVersion: "v1", kind: "Node", metadata: { name: "n3" } });
    const uid = await ok("get", "node", "n3", "-o", "jsonpath={.metadata.uid}");
    await apply("sn-n3", { apiVersion: "skein.io/v1alpha1", kind: "SkeinNode", metadata: { name: "n3", ownerReferences: [{ apiVersion: "v1", kind: "Node", name: "n3", uid }] }, spec: {} });
    expect(table(await ok("get", "sn")).map((r) => r.NAME)).toEqual(["n1", "n2", "n3"]);
    expect(await ok("delete", "node", "n3")).toContain('node "n3" deleted');
    expect((await kc("get", "sn", "n3")).err).toContain('skeinnodes.skein.io "n3" not found');
  }, 60_000);

  test("an invalid CRD is refused, naming the fields", async () => {
    const r = await apply("bad-crd", {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "things.nodot" },
      spec: { group: "nodot", scope: "Cluster", names: { plural: "things", kind: "Thing" }, versions: [{ name: "v1", served: true, storage: false }] },
    });
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('The CustomResourceDefinition "things.nodot" is invalid');
    expect(r.err).toContain('spec.group: Invalid value: "nodot": should be a domain with at least one dot');
    expect(r.err).toContain("spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required");
    expect(r.err).toContain("must have exactly one version marked as storage version");
    expect((await kc("get", "crd", "things.nodot")).err).toContain("not found");
  }, 60_000);

  test("deleting the CRD deletes the SkeinNodes and stops serving them", async () => {
    expect(await ok("delete", "crd", "skeinnodes.skein.io")).toContain('customresourcedefinition.apiextensions.k8s.io "skeinnodes.skein.io" deleted');
    const r = await kc("get", "skeinnodes");
    expect(r.code).not.toBe(0);
    // kubectl's discovery cache may still name the resource: then the list itself is 404
    expect(r.err).toMatch(/the server doesn't have a resource type "skeinnodes"|Unable to list "skein.io\/v1alpha1, Resource=skeinnodes": the server could not find the requested resource/);
    // a new CRD of that name starts with none
    await ok("apply", "--validate=false", "-f", MANIFEST);
    await ok("wait", "--for", "condition=Established", "crd/skeinnodes.skein.io", "--timeout=20s");
    const again = await kc("get", "skeinnodes");
    expect({ code: again.code, out: again.out, err: again.err }).toEqual({ code: 0, out: "", err: "No resources found\n" });
  }, 60_000);
});

describe("Events through kubectl", () => {
  test("kubectl get events and kubectl describe show an Event skein's agent would write", async () => {
    await ok("run", "web", "--image=any");
    const uid = await ok("get", "pod", "web", "-o", "jsonpath={.metadata.uid}");
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const ev = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "web.skein1", namespace: "default" },
      involvedObject: { apiVersion: "v1", kind: "Pod", name: "web", namespace: "default", uid },
      reason: "UnsupportedPolicy",
      message: "NetworkPolicy default/deny: endPort is not supported",
      type: "Warning",
      source: { component: "skein-agent", host: "n1" },
      reportingComponent: "skein.io/agent",
      reportingInstance: "n1",
      firstTimestamp: now,
      lastTimestamp: now,
      count: 3,
    };
    expect((await apply("event", ev)).out).toContain("event/web.skein1 created");
    const all = await ok("get", "events", "-A");
    expect(headers(all)).toEqual(["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    const row = table(all).find((r) => r.REASON === "UnsupportedPolicy")!;
    expect<Record<string, unknown>>({ ...row, "LAST SEEN": /^\d+s$/.test(row["LAST SEEN"]!) }).toEqual({ NAMESPACE: "default", "LAST SEEN": true, TYPE: "Warning", REASON: "UnsupportedPolicy", OBJECT: "pod/web", MESSAGE: "NetworkPolicy default/deny: endPort is not supported" });
    const wide = table(await ok("get", "events", "-o", "wide")).find((r) => r.REASON === "UnsupportedPolicy")!;
    expect([wide.SOURCE, wide.COUNT, wide.NAME]).toEqual(["skein-agent, n1", "3", "web.skein1"]);
    expect(table(await ok("get", "events", "--field-selector", "type=Warning,involvedObject.kind=Pod")).map((r) => r.REASON)).toEqual(["UnsupportedPolicy"]);
    expect(await ok("get", "events", "--field-selector", "type=Normal")).toBe("");
    // describe finds it by the pod's kind, name, namespace and uid
    const described = await ok("describe", "pod", "web");
    const events = described.slice(described.indexOf("Events:"));
    expect(events).toMatch(/Warning\s+UnsupportedPolicy\s+\d+s \(x3 over \d+s\)\s+skein-agent\s+NetworkPolicy default\/deny: endPort is not supported/);
    // and through events.k8s.io/v1, the same object
    expect(JSON.parse(await ok("get", "events.v1.events.k8s.io", "web.skein1", "-o", "json"))).toMatchObject({ apiVersion: "events.k8s.io/v1", regarding: { kind: "Pod", name: "web" }, note: ev.message, deprecatedCount: 3 });
  }, 60_000);
});
