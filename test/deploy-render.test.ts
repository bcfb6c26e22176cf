// deploy/skein.yaml is what an admin applies: it must be exactly its sources rendered (so an
// edit to deploy/base or the CRD is never lost by forgetting to render), and every document in
// it an object kubectl can apply (apiVersion, kind, metadata.name; a namespace where the kind
// is namespaced). Runs the real script as a process, in check mode.
import { expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { OUTPUT, render, SOURCES } from "../scripts/render-deploy.ts";

const ROOT = resolve(import.meta.dir, "..");
const SCRIPT = join(ROOT, "scripts/render-deploy.ts");

function check(root: string): { code: number; stderr: string } {
  const r = Bun.spawnSync([process.execPath, SCRIPT, "--root", root, "--check"], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stderr: r.stderr.toString() };
}

test("deploy/skein.yaml is its sources rendered (render-deploy.ts --check passes)", () => {
  const r = check(ROOT);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
});

test("--check fails when a source changed and the file was not rendered again, and rendering fixes it", () => {
  const tmp = mkdtempSync(join(tmpdir(), "skein-deploy-render-"));
  try {
    cpSync(join(ROOT, "deploy"), join(tmp, "deploy"), { recursive: true });
    const cm = join(tmp, "deploy/base/configmap.yaml");
    writeFileSync(cm, readFileSync(cm, "utf8").replace('overlay-mode: "auto"', 'overlay-mode: "vxlan"'));
    const r = check(tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("differs from its sources");
    const w = Bun.spawnSync([process.execPath, SCRIPT, "--root", tmp], { stdout: "pipe", stderr: "pipe" });
    expect(w.exitCode).toBe(0);
    expect(readFileSync(join(tmp, "deploy", OUTPUT), "utf8")).toContain('overlay-mode: "vxlan"');
    expect(check(tmp).code).toBe(0);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

// kinds that live in no namespace; every other kind here must name one
const CLUSTER_SCOPED = new Set(["Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"]);

test("every document of deploy/skein.yaml parses strictly and names apiVersion, kind and metadata.name", () => {
  const text = readFileSync(join(ROOT, "deploy", OUTPUT), "utf8");
  const docs = parseAllDocuments(text, { uniqueKeys: true, strict: true });
  if (!Array.isArray(docs)) throw new Error("deploy/skein.yaml: no documents");
  const seen: string[] = [];
  for (const [i, doc] of docs.entries()) {
    expect({ doc: i, errors: doc.errors.map((e) => e.message), warnings: doc.warnings.map((e) => e.message) }).toEqual({ doc: i, errors: [], warnings: [] });
    const o = doc.toJS() as Record<string, unknown> | null;
    expect(o !== null && typeof o === "object").toBe(true);
    const { apiVersion, kind, metadata } = o as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
    expect({ doc: i, apiVersion: typeof apiVersion, kind: typeof kind, name: typeof metadata?.name }).toEqual({ doc: i, apiVersion: "string", kind: "string", name: "string" });
    const ns = CLUSTER_SCOPED.has(kind as string) ? undefined : "skein-system";
    expect({ kind, name: metadata?.name, namespace: metadata?.namespace }).toEqual({ kind, name: metadata?.name, namespace: ns });
    seen.push(`${kind}/${metadata?.name as string}`);
  }
  // every source is in, in order: the namespace first, the agents last
  expect(seen[0]).toBe("Namespace/skein-system");
  expect(seen[1]).toBe("CustomResourceDefinition/skeinnodes.skein.io");
  expect(seen.at(-1)).toBe("DaemonSet/skein-agent");
  expect(seen).toEqual(expect.arrayContaining(["ServiceAccount/skein-agent", "ClusterRole/skein-agent", "ClusterRoleBinding/skein-agent", "ConfigMap/skein-config", "ConfigMap/skein-nats-config", "Service/skein-nats-headless", "Service/skein-nats", "StatefulSet/skein-nats"]));
  expect(new Set(seen).size).toBe(seen.length);
});

test("render() reads every source in SOURCES, each under its own Source line", () => {
  const out = render(join(ROOT, "deploy"));
  const marks = [...out.matchAll(/^# Source: deploy\/(.+)$/gm)].map((m) => m[1]);
  expect(marks).toEqual([...SOURCES]);
});

// The DaemonSet passes the ConfigMap to the agent through env and $(VAR) in its args: a key or
// a variable misspelt would reach the agent as a literal "$(SKEIN_…)" or stop the pod.
test("the DaemonSet's args name only variables it defines, from keys the ConfigMap has, and the conflist is deploy/10-skein.conflist", () => {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy", OUTPUT), "utf8"));
  if (!Array.isArray(docs)) throw new Error("no documents");
  const objs = docs.map((d) => d.toJS() as { kind: string; metadata: { name: string }; data?: Record<string, string>; spec?: any });
  const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === "skein-config")!;
  const ds = objs.find((o) => o.kind === "DaemonSet")!;
  const agent = ds.spec.template.spec.containers.find((c: { name: string }) => c.name === "agent");
  const env = new Map<string, { valueFrom?: { configMapKeyRef?: { name: string; key: string; optional?: boolean } } }>(agent.env.map((e: { name: string }) => [e.name, e]));
  const used = (agent.args as string[]).flatMap((a) => [...a.matchAll(/\$\(([A-Z_]+)\)/g)].map((m) => m[1]!));
  expect(used.length).toBeGreaterThan(0);
  for (const v of used) expect({ v, defined: env.has(v) }).toEqual({ v, defined: true });
  for (const [name, e] of env) {
    const ref = e.valueFrom?.configMapKeyRef;
    if (!ref || ref.optional) continue;
    expect({ name, configMap: ref.name, hasKey: cm.data?.[ref.key] !== undefined }).toEqual({ name, configMap: "skein-config", hasKey: true });
  }
  expect(JSON.parse(cm.data!["10-skein.conflist"]!)).toEqual(JSON.parse(readFileSync(join(ROOT, "deploy/10-skein.conflist"), "utf8")));
  // the password file the agent is given is the one the Secret volume mounts
  const pw = (agent.args as string[]).find((a) => a.startsWith("--nats-password-file="))!.split("=")[1]!;
  const mount = agent.volumeMounts.find((m: { mountPath: string }) => pw.startsWith(m.mountPath + "/"));
  const vol = ds.spec.template.spec.volumes.find((v: { name: string }) => v.name === mount?.name);
  expect(vol?.secret?.secretName).toBe("skein-nats");
  expect(vol.secret.items.map((i: { path: string }) => `${mount.mountPath}/${i.path}`)).toContain(pw);
});
