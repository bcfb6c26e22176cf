// deploy/ as a cluster admin applies it: every manifest object checked against the model of
// its kind (@kubernetes/client-node), and the ClusterRole holding exactly the permissions the
// agent's code uses, found by reading its API calls (testing/api-calls.ts).
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { apiCalls, grant, grantsOf, parsePath } from "../testing/api-calls.ts";
import { manifestProblems } from "../testing/manifest-schema.ts";

const ROOT = resolve(import.meta.dir, "..");
const DEPLOY = join(ROOT, "deploy");

/** Every YAML document under deploy/, with its file. */
function manifests(): Array<{ file: string; doc: any }> {
  const out: Array<{ file: string; doc: any }> = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        for (const d of parseAllDocuments(readFileSync(p, "utf8"))) {
          if (d.errors.length) throw new Error(`${p}: ${d.errors[0]!.message}`);
          const doc = d.toJS();
          if (doc) out.push({ file: p.slice(ROOT.length + 1), doc });
        }
      }
    }
  };
  walk(DEPLOY);
  return out;
}

describe("manifests", () => {
  test("every object matches the model of its kind", () => {
    const all = manifests();
    expect(all.length).toBeGreaterThan(0);
    const problems = all.flatMap(({ file, doc }) => manifestProblems(doc).map((p) => `${file}: ${p}`));
    expect(problems).toEqual([]);
  });

  test("the checker finds misspelled fields and wrong types (so the test above can fail)", () => {
    const ds = { apiVersion: "apps/v1", kind: "DaemonSet", metadata: { name: "x" }, spec: { template: { spec: { hostnetwork: true, containers: [{ name: "a", ports: [{ containerPort: "80" }], tolerations: [] }] } } } };
    expect(manifestProblems(ds)).toEqual([
      "DaemonSet/x.spec.template.spec.hostnetwork: V1PodSpec has no field hostnetwork",
      'DaemonSet/x.spec.template.spec.containers[0].ports[0].containerPort: expected a number, found "80"',
      "DaemonSet/x.spec.template.spec.containers[0].tolerations: V1Container has no field tolerations",
    ]);
    expect(manifestProblems({ apiVersion: "v1", kind: "ConfigMap", metadata: {} })).toEqual(["ConfigMap: metadata.name is missing"]);
  });
});

describe("RBAC", () => {
  const calls = apiCalls(ROOT);

  test("the agent's API calls are found and resolved", () => {
    // what the scan saw, for whoever reads the test's output
    for (const c of calls) console.log(`${c.file}:${c.line} ${c.verb} ${c.group || "core"}/${c.resource}  (${c.method} ${c.path})`);
    const verbs = new Set(calls.map(grant));
    // the informers, the SkeinNode and the Events are all there
    for (const g of ["core pods list", "core pods watch", "discovery.k8s.io endpointslices watch", "skein.io skeinnodes/status patch", "core events create"]) expect(verbs).toContain(g);
  });

  test("the ClusterRole grants exactly what the agent's code calls", () => {
    const roles = manifests().filter(({ doc }) => doc.kind === "ClusterRole" && doc.metadata?.name === "skein-agent");
    expect(roles.length).toBeGreaterThan(0);
    const want = [...new Set(calls.map(grant))].sort();
    for (const { file, doc } of roles) expect({ file, grants: grantsOf(doc) }).toEqual({ file, grants: want });
  });

  test("the scan sees a new call in any file, resolves its path, and refuses one it cannot read", () => {
    const dir = mkdtempSync(join(tmpdir(), "skein-rbac-"));
    try {
      mkdirSync(join(dir, "agent", "x"), { recursive: true });
      writeFileSync(
        join(dir, "agent", "x", "a.ts"),
        'export const GROUP = "apps";\nconst BASE = `/apis/${GROUP}/v1`;\nclass C {\n  get path(): string {\n    return `${BASE}/namespaces/${this.ns}/deployments/${this.name}`;\n  }\n  async f() {\n    await this.kube.request<X>("DELETE", this.path);\n    await this.kube.request("GET", `/api/v1/secrets`);\n  }\n}\n',
      );
      writeFileSync(join(dir, "agent", "x", "a.test.ts"), 'kube.request("POST", "/api/v1/namespaces");\n');
      expect(apiCalls(dir).map(grant)).toEqual(["apps deployments delete", "core secrets list"]);
      // a nested type argument, and a list through listAll, are calls too
      writeFileSync(join(dir, "agent", "x", "c.ts"), 'await k.request<{ items: Array<Record<string, X>> }>("PUT", "/api/v1/namespaces/a/configmaps/b");\nawait listAll<X>(this.client, "/api/v1/nodes", { pageSize: 5 });\n');
      expect(apiCalls(dir).map(grant).sort()).toEqual(["apps deployments delete", "core configmaps update", "core nodes list", "core secrets list"]);
      writeFileSync(join(dir, "agent", "x", "b.ts"), "kube.request(\"PATCH\", somewhere);\n");
      expect(() => apiCalls(dir)).toThrow("agent/x/b.ts:1: cannot resolve the path somewhere");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(parsePath("/api/v1/namespaces")).toEqual({ group: "", resource: "namespaces", item: false });
    expect(parsePath("/api/v1/namespaces/kube-system/events/e1")).toEqual({ group: "", resource: "events", item: true });
    expect(parsePath("/apis/skein.io/v1alpha1/skeinnodes/n1/status")).toEqual({ group: "skein.io", resource: "skeinnodes/status", item: true });
    expect(() => grantsOf({ rules: [{ apiGroups: [""], resources: ["*"], verbs: ["get"] }] })).toThrow("wildcard");
  });
});
