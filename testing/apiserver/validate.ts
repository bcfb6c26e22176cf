// What kube-apiserver checks of every object written, before storage: the kind and apiVersion
// in the body against the path's, names by kind (k8s.io/apimachinery's validation of
// ObjectMeta: DNS-1123 subdomains for most kinds, labels for Namespaces, RFC 1035 labels for
// Services), generateName by the same rule, label keys and values, annotation keys, and the
// depth of the object (body.ts). Failures are Status objects naming the field, as kube-apiserver
// words them, so a client's error message says what to fix.
import { MAX_JSON_DEPTH } from "./body.ts";
import { groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { ApiError } from "./errors.ts";

const LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const SUBDOMAIN = `${LABEL}(\\.${LABEL})*`;
const DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const whole = (re: string) => new RegExp(`^(?:${re})$`);

type Check = (v: string) => string[];

const dns1123Label: Check = (v) => [
  ...(v.length > 63 ? ["must be no more than 63 characters"] : []),
  ...(whole(LABEL).test(v) ? [] : [`a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${LABEL}')`]),
];
const dns1123Subdomain: Check = (v) => [
  ...(v.length > 253 ? ["must be no more than 253 characters"] : []),
  ...(whole(SUBDOMAIN).test(v) ? [] : [`a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${SUBDOMAIN}')`]),
];
const dns1035Label: Check = (v) => [
  ...(v.length > 63 ? ["must be no more than 63 characters"] : []),
  ...(whole(DNS1035).test(v) ? [] : [`a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '${DNS1035}')`]),
];

/** The name rule of each kind (kube-apiserver's ValidateXName); a DNS-1123 subdomain for the rest. */
const NAME_RULES: Record<string, Check> = { Namespace: dns1123Label, Service: dns1035Label };
export const nameRule = (t: ResourceType): Check => (t.group === "" ? NAME_RULES[t.kind] : undefined) ?? dns1123Subdomain;

/** A generateName is checked as the name it starts (a trailing '-' stands for what follows). */
const asPrefix = (v: string) => (v.length > 1 && v.endsWith("-") ? v.slice(0, -1) + "a" : v);

/** Label and annotation keys: an optional DNS subdomain prefix and '/', then a name part. */
function qualifiedName(v: string): string[] {
  const parts = v.split("/");
  let name = v;
  const errs: string[] = [];
  if (parts.length === 2) {
    const [prefix, n] = parts as [string, string];
    name = n;
    if (!prefix) errs.push("prefix part must be non-empty");
    else errs.push(...dns1123Subdomain(prefix).map((m) => `prefix part ${m}`));
  } else if (parts.length > 2) {
    return [`a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  }
  if (!name) errs.push("name part must be non-empty");
  else if (name.length > 63) errs.push("name part must be no more than 63 characters");
  if (name && !whole(QUALIFIED).test(name)) errs.push(`name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED}')`);
  return errs;
}

function labelValue(v: string): string[] {
  return [
    ...(v.length > 63 ? ["must be no more than 63 characters"] : []),
    ...(v === "" || whole(QUALIFIED).test(v) ? [] : [`a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(${QUALIFIED})?')`]),
  ];
}

/** kube-apiserver's path.IsValidPathSegmentName: what a name in a URL may not be. */
export function pathSegmentProblems(v: string): string[] {
  if (v === "." || v === "..") return [`may not be '${v}'`];
  return [...(v.includes("/") ? ["may not contain '/'"] : []), ...(v.includes("%") ? ["may not contain '%'"] : [])];
}

interface FieldError {
  field: string;
  value: unknown;
  detail: string;
  type?: "FieldValueInvalid" | "FieldValueRequired" | "FieldValueTypeInvalid";
}

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : typeof v === "object" ? "object" : String(v));
const describe = (e: FieldError) => (e.type === "FieldValueRequired" ? `Required value: ${e.detail}` : `Invalid value: ${show(e.value)}: ${e.detail}`);

/** 422 Invalid, worded and shaped as kube-apiserver's (causes name each field). */
export function invalid(t: ResourceType, name: string, errs: FieldError[]): ApiError {
  const lines = errs.map((e) => `${e.field}: ${describe(e)}`);
  const all = lines.length === 1 ? lines[0] : `[${lines.join(", ")}]`;
  return new ApiError(422, "Invalid", `${t.kind} ${JSON.stringify(name)} is invalid: ${all}`, {
    name,
    ...(t.group ? { group: t.group } : {}),
    kind: t.kind,
    causes: errs.map((e) => ({ reason: e.type ?? "FieldValueInvalid", message: describe(e), field: e.field })),
  });
}

/**
 * The body's kind and apiVersion against the path's type: missing ones are taken from the
 * path (as kube-apiserver's decoder defaults them); different ones are 400, never a Pod
 * stored as a Service.
 */
export function checkTypeMeta(t: ResourceType, body: KubeObject): void {
  const gv = groupVersion(t);
  if (body.apiVersion !== undefined && body.apiVersion !== "" && body.apiVersion !== gv) {
    throw new ApiError(400, "BadRequest", `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${gv})`);
  }
  if (body.kind !== undefined && body.kind !== "" && body.kind !== t.kind) {
    throw new ApiError(400, "BadRequest", `${String(body.kind)} in version ${JSON.stringify(t.version)} cannot be handled as a ${t.kind}: the kind in the data (${String(body.kind)}) does not match the kind of the path (${t.kind})`);
  }
}

/** How deep `o` nests, without recursion (the object may be the hostile part). */
export function depthOf(o: unknown, stopAt = Infinity): number {
  let max = 0;
  const todo: Array<[unknown, number]> = [[o, 0]];
  while (todo.length) {
    const [v, d] = todo.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (d + 1 > max && (max = d + 1) > stopAt) return max;
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (typeof x === "object" && x !== null) todo.push([x, d + 1]);
  }
  return max;
}

/**
 * ObjectMeta as kube-apiserver validates it on create and update (after generateName made the
 * name): name by the kind's rule, generateName, namespace, labels, annotation keys; and the
 * object's depth. Throws 422 naming every bad field.
 */
export function validateObject(t: ResourceType, o: KubeObject): void {
  const m = o.metadata;
  const name = typeof m.name === "string" ? m.name : "";
  const errs: FieldError[] = [];
  const rule = nameRule(t);
  if (m.generateName !== undefined && m.generateName !== "") {
    if (typeof m.generateName !== "string") errs.push({ field: "metadata.generateName", value: m.generateName, detail: "must be a string", type: "FieldValueTypeInvalid" });
    else for (const d of [...rule(asPrefix(m.generateName)), ...pathSegmentProblems(m.generateName)]) errs.push({ field: "metadata.generateName", value: m.generateName, detail: d });
  }
  if (!name) errs.push({ field: "metadata.name", value: "", detail: "name or generateName is required", type: "FieldValueRequired" });
  else for (const d of [...rule(name), ...pathSegmentProblems(name)]) errs.push({ field: "metadata.name", value: name, detail: d });
  if (t.namespaced) {
    const ns = m.namespace;
    if (typeof ns !== "string" || !ns) errs.push({ field: "metadata.namespace", value: "", detail: "", type: "FieldValueRequired" });
    else for (const d of dns1123Label(ns)) errs.push({ field: "metadata.namespace", value: ns, detail: d });
  }
  for (const [field, map, values] of [
    ["metadata.labels", m.labels, true],
    ["metadata.annotations", m.annotations, false],
  ] as const) {
    if (map === undefined || map === null) continue;
    if (typeof map !== "object" || Array.isArray(map)) {
      errs.push({ field, value: map, detail: "must be a map of strings", type: "FieldValueTypeInvalid" });
      continue;
    }
    for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
      for (const d of qualifiedName(k)) errs.push({ field, value: k, detail: d });
      if (typeof v !== "string") errs.push({ field: `${field}.${k}`, value: v, detail: "must be a string", type: "FieldValueTypeInvalid" });
      else if (values) for (const d of labelValue(v)) errs.push({ field, value: v, detail: d });
    }
  }
  if (depthOf(o, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) errs.push({ field: "<root>", value: "object", detail: `nested deeper than ${MAX_JSON_DEPTH} levels` });
  if (errs.length) throw invalid(t, name, errs);
}
