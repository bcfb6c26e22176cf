// Renders deploy/skein.yaml, the one file a cluster admin applies, from the sources in
// deploy/base and deploy/crds, in the order kubectl needs them (the namespace before what lives
// in it, the CRD before anything naming its group, the ServiceAccount before its binding, the
// settings and NATS before the agents that read them).
//   bun scripts/render-deploy.ts [--root DIR] [--check]
// --check writes nothing and exits 1 when deploy/skein.yaml is not what would be written, so a
// source edited without rendering is caught (test/deploy-render.test.ts).
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const SOURCES = [
  "base/namespace.yaml",
  "crds/skeinnode.yaml",
  "base/serviceaccount.yaml",
  "base/clusterrole.yaml",
  "base/clusterrolebinding.yaml",
  "base/configmap.yaml",
  "base/nats.yaml",
  "base/daemonset.yaml",
] as const;

export const OUTPUT = "skein.yaml";

const HEADER = [
  "# skein: everything a cluster runs it with, in one file (deploy/README.md says how to install).",
  "# Rendered by scripts/render-deploy.ts from deploy/base and deploy/crds: edit those, then run",
  "#   bun scripts/render-deploy.ts",
].join("\n");

/** The rendered file for the deploy directory `dir`: every source, in order, joined by `---`. */
export function render(dir: string): string {
  const parts = SOURCES.map((src) => {
    const text = readFileSync(join(dir, src), "utf8").trim();
    // a source that starts or ends with a separator would leave an empty document between two
    if (text.startsWith("---") || text.endsWith("---")) throw new Error(`${src}: starts or ends with '---': the renderer adds the separators`);
    return `# Source: deploy/${src}\n${text}`;
  });
  return `${HEADER}\n${parts.join("\n---\n")}\n`;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  let root = resolve(import.meta.dir, "..");
  let check = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--check") check = true;
    else if (a === "--root" && args[i + 1] !== undefined) root = resolve(args[++i]!);
    else {
      console.error(`render-deploy: unknown argument ${JSON.stringify(a)}; usage: render-deploy.ts [--root DIR] [--check]`);
      process.exit(2);
    }
  }
  const dir = join(root, "deploy");
  const out = join(dir, OUTPUT);
  const want = render(dir);
  if (check) {
    const have = existsSync(out) ? readFileSync(out, "utf8") : undefined;
    if (have !== want) {
      console.error(`render-deploy: ${out} ${have === undefined ? "is missing" : "differs from its sources"}: run bun scripts/render-deploy.ts`);
      process.exit(1);
    }
  } else {
    writeFileSync(`${out}.tmp`, want);
    renameSync(`${out}.tmp`, out);
  }
}
