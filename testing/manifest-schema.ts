// A manifest object checked against the model of its kind in @kubernetes/client-node (the
// OpenAPI of the Kubernetes version the library was generated from): every field name must
// be one the kind has, at every depth, and every value of the type the model gives it.
// Misspelled fields (`tolerations` under a container, `hostnetwork`) are what kubectl
// --validate would refuse and what this catches without a cluster.
import * as k8s from "@kubernetes/client-node";

type Attr = { name: string; baseName: string; type: string };
type Model = { getAttributeTypeMap(): Attr[] };

const models = k8s as unknown as Record<string, Model | undefined>;

/** The model class name of an apiVersion and kind: apps/v1 DaemonSet → V1DaemonSet. */
export function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split("/").pop()!;
  return `${version[0]!.toUpperCase()}${version.slice(1)}${kind}`;
}

const MAP = /^\{ \[key: string\]: (.+); \}$/;
const ARRAY = /^Array<(.+)>$/;

function check(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const a = ARRAY.exec(type);
  if (a) {
    if (!Array.isArray(value)) return void out.push(`${path}: expected a list (${type})`);
    value.forEach((v, i) => check(v, a[1]!, `${path}[${i}]`, out));
    return;
  }
  const m = MAP.exec(type);
  if (m) {
    if (typeof value !== "object" || Array.isArray(value)) return void out.push(`${path}: expected a map (${type})`);
    for (const [key, v] of Object.entries(value)) check(v, m[1]!, `${path}.${key}`, out);
    return;
  }
  switch (type) {
    case "any":
    case "object":
      return;
    case "string":
      if (typeof value !== "string") out.push(`${path}: expected a string, found ${JSON.stringify(value)}`);
      return;
    case "number":
      if (typeof value !== "number") out.push(`${path}: expected a number, found ${JSON.stringify(value)}`);
      return;
    case "boolean":
      if (typeof value !== "boolean") out.push(`${path}: expected true or false, found ${JSON.stringify(value)}`);
      return;
    case "Date":
      if (typeof value !== "string" || Number.isNaN(Date.parse(value))) out.push(`${path}: expected a time`);
      return;
    case "IntOrString":
      if (typeof value !== "string" && typeof value !== "number") out.push(`${path}: expected a number or a string`);
      return;
  }
  const model = models[type];
  if (!model?.getAttributeTypeMap) return void out.push(`${path}: no model ${type} in @kubernetes/client-node`);
  if (typeof value !== "object" || Array.isArray(value)) return void out.push(`${path}: expected an object (${type})`);
  const attrs = new Map(model.getAttributeTypeMap().map((x) => [x.baseName, x]));
  for (const [key, v] of Object.entries(value)) {
    const attr = attrs.get(key);
    if (!attr) out.push(`${path}.${key}: ${type} has no field ${key}`);
    else check(v, attr.type, `${path}.${key}`, out);
  }
}

/** What is wrong with one manifest object (empty: nothing). */
export function manifestProblems(o: unknown): string[] {
  if (!o || typeof o !== "object" || Array.isArray(o)) return ["not an object"];
  const x = o as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  if (typeof x.apiVersion !== "string" || typeof x.kind !== "string") return ["apiVersion and kind must be strings"];
  const name = modelName(x.apiVersion, x.kind);
  const out: string[] = [];
  if (typeof x.metadata?.name !== "string" || !x.metadata.name) out.push(`${x.kind}: metadata.name is missing`);
  check(o, name, `${x.kind}/${String(x.metadata?.name ?? "?")}`, out);
  return out;
}
