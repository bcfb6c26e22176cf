// CustomResourceDefinitions as kube-apiserver's apiextensions server handles them: a CRD is
// validated (kube's ValidateCustomResourceDefinition where it matters: group with a dot,
// names as DNS labels, name = <plural>.<group>, exactly one storage version, a structural
// schema per version, printer columns with a type and a JSONPath, no names already taken in
// its group), defaulted (singular, listKind, conversion), given its status (acceptedNames,
// NamesAccepted and Established, storedVersions), and from then on its resource is served:
// every served version a view of the storage version's objects, pruned, defaulted and
// validated by the schema, with the CRD's printer columns. Deleting a CRD deletes its objects
// first, then the resource stops being served.
import { groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { typeKey, type Store } from "./store.ts";
import { dns1123Subdomain, invalid, type FieldError } from "./validate.ts";
import { applySchema, structuralErrors, validateValue, type Schema } from "./schema.ts";
import { parseJsonPath, ParseError } from "./jsonpath.ts";
import { customPrinter, type ColumnSpec } from "./printers.ts";
import type { Catalog, Served } from "./catalog.ts";

export const CRD_GROUP = "apiextensions.k8s.io";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown) => (typeof v === "string" ? v : "");

interface Names {
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  shortNames: string[];
  categories: string[];
}
interface Version {
  name: string;
  served: boolean;
  storage: boolean;
  schema: Schema;
  status: boolean;
  columns: ColumnSpec[];
}

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const dns1035 = (v: string) => (v.length > 63 ? ["must be no more than 63 characters"] : DNS1035.test(v) ? [] : ["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]);
const COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"];
const COLUMN_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];
const quoted = (xs: string[]) => xs.map((x) => `"${x}"`).join(", ");

/** What kube's defaulting fills in of a CRD: names.singular, names.listKind, conversion. */
export function defaultCrd(o: KubeObject): void {
  if (!isObj(o.spec)) return;
  const spec = o.spec;
  if (isObj(spec.names)) {
    const n = spec.names;
    if (!n.singular && typeof n.kind === "string") n.singular = n.kind.toLowerCase();
    if (!n.listKind && typeof n.kind === "string" && n.kind) n.listKind = `${n.kind}List`;
  }
  spec.conversion ??= { strategy: "None" };
  if (Array.isArray(spec.versions)) for (const v of spec.versions) if (isObj(v)) for (const k of ["served", "storage"]) v[k] ??= false;
}

/** kube's ValidateCustomResourceDefinition, the parts that matter here; `o` is defaulted. */
export function crdErrors(o: KubeObject): FieldError[] {
  const errs: FieldError[] = [];
  const spec = isObj(o.spec) ? o.spec : undefined;
  if (!spec) return [{ field: "spec", value: "", detail: "", type: "FieldValueRequired" }];
  const group = spec.group;
  if (typeof group !== "string" || !group) errs.push({ field: "spec.group", value: "", detail: "", type: "FieldValueRequired" });
  else {
    for (const d of dns1123Subdomain(group)) errs.push({ field: "spec.group", value: group, detail: d });
    if (group.split(".").length < 2) errs.push({ field: "spec.group", value: group, detail: "should be a domain with at least one dot" });
    // kube reserves its own groups for APIs it approved
    if (/(^|\.)(k8s\.io|kubernetes\.io)$/.test(group) && !o.metadata.annotations?.["api-approved.kubernetes.io"]) {
      errs.push({ field: "metadata.annotations[api-approved.kubernetes.io]", value: "", detail: 'protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111', type: "FieldValueRequired" });
    }
  }
  if (spec.scope !== "Cluster" && spec.scope !== "Namespaced") errs.push(spec.scope === undefined || spec.scope === "" ? { field: "spec.scope", value: "", detail: "", type: "FieldValueRequired" } : { field: "spec.scope", value: spec.scope, detail: quoted(["Cluster", "Namespaced"]), type: "FieldValueNotSupported" });
  const names = isObj(spec.names) ? spec.names : undefined;
  if (!names) errs.push({ field: "spec.names", value: "", detail: "", type: "FieldValueRequired" });
  else {
    const label = (f: string, v: unknown, need: boolean) => {
      if (v === undefined || v === "") {
        if (need) errs.push({ field: `spec.names.${f}`, value: "", detail: "", type: "FieldValueRequired" });
      } else if (typeof v !== "string") errs.push({ field: `spec.names.${f}`, value: v, detail: "must be a string", type: "FieldValueTypeInvalid" });
      else for (const d of dns1035(v)) errs.push({ field: `spec.names.${f}`, value: v, detail: d });
    };
    label("plural", names.plural, true);
    label("singular", names.singular, true);
    for (const k of ["kind", "listKind"]) {
      const v = names[k];
      if (typeof v !== "string" || !v) errs.push({ field: `spec.names.${k}`, value: "", detail: "", type: "FieldValueRequired" });
      else for (const d of dns1035(v.toLowerCase())) errs.push({ field: `spec.names.${k}`, value: v, detail: d });
    }
    if (typeof names.kind === "string" && names.kind && names.kind === names.listKind) errs.push({ field: "spec.names.listKind", value: names.listKind, detail: "kind and listKind may not be the same or parsing become ambiguous" });
    for (const k of ["shortNames", "categories"]) {
      const list = names[k];
      if (list === undefined) continue;
      if (!Array.isArray(list)) errs.push({ field: `spec.names.${k}`, value: list, detail: "must be a list of strings", type: "FieldValueTypeInvalid" });
      else list.forEach((v, i) => (typeof v !== "string" ? errs.push({ field: `spec.names.${k}[${i}]`, value: v, detail: "must be a string", type: "FieldValueTypeInvalid" }) : dns1035(v).forEach((d) => errs.push({ field: `spec.names.${k}[${i}]`, value: v, detail: d }))));
    }
    if (typeof names.plural === "string" && typeof group === "string" && o.metadata.name !== `${names.plural}.${group}`) {
      errs.push({ field: "metadata.name", value: o.metadata.name, detail: 'must be spec.names.plural+"."+spec.group' });
    }
  }
  const conv = spec.conversion;
  if (isObj(conv) && conv.strategy !== "None") errs.push({ field: "spec.conversion.strategy", value: conv.strategy, detail: '"None" (a conversion webhook is not supported by this test API server)', type: "FieldValueNotSupported" });
  if (spec.preserveUnknownFields === true) errs.push({ field: "spec.preserveUnknownFields", value: true, detail: "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead" });
  const versions = spec.versions;
  if (!Array.isArray(versions) || !versions.length) {
    errs.push({ field: "spec.versions", value: "", detail: "must have exactly one version marked as storage version", type: "FieldValueRequired" });
    return errs;
  }
  const seen = new Set<string>();
  let storage = 0;
  let served = 0;
  versions.forEach((v, i) => {
    const f = `spec.versions[${i}]`;
    if (!isObj(v)) return errs.push({ field: f, value: v, detail: "must be an object", type: "FieldValueTypeInvalid" });
    const name = v.name;
    if (typeof name !== "string" || !name) errs.push({ field: `${f}.name`, value: "", detail: "", type: "FieldValueRequired" });
    else {
      for (const d of dns1035(name)) errs.push({ field: `${f}.name`, value: name, detail: d });
      if (seen.has(name)) errs.push({ field: `${f}.name`, value: name, detail: "", type: "FieldValueDuplicate" });
      seen.add(name);
    }
    for (const k of ["served", "storage"]) if (typeof v[k] !== "boolean") errs.push({ field: `${f}.${k}`, value: v[k], detail: "must be a boolean", type: "FieldValueTypeInvalid" });
    if (v.storage === true) storage++;
    if (v.served === true) served++;
    const schema = isObj(v.schema) ? v.schema.openAPIV3Schema : undefined;
    errs.push(...structuralErrors(schema, `${f}.schema.openAPIV3Schema`));
    const sub = v.subresources;
    if (sub !== undefined && sub !== null) {
      if (!isObj(sub)) errs.push({ field: `${f}.subresources`, value: sub, detail: "must be an object", type: "FieldValueTypeInvalid" });
      else {
        if (sub.status !== undefined && !isObj(sub.status)) errs.push({ field: `${f}.subresources.status`, value: sub.status, detail: "must be an object", type: "FieldValueTypeInvalid" });
        if (sub.scale !== undefined) errs.push({ field: `${f}.subresources.scale`, value: "", detail: "the scale subresource is not supported by this test API server", type: "FieldValueForbidden" });
      }
    }
    const cols = v.additionalPrinterColumns;
    if (cols !== undefined) {
      if (!Array.isArray(cols)) errs.push({ field: `${f}.additionalPrinterColumns`, value: cols, detail: "must be a list", type: "FieldValueTypeInvalid" });
      else cols.forEach((c, j) => errs.push(...columnErrors(c, `${f}.additionalPrinterColumns[${j}]`)));
    }
  });
  if (storage !== 1) errs.push({ field: "spec.versions", value: versions.length, detail: "must have exactly one version marked as storage version" });
  if (!served) errs.push({ field: "spec.versions", value: versions.length, detail: "must have at least one version marked as served" });
  return errs;
}

/** kube's ValidateCustomResourceColumnDefinition. */
function columnErrors(c: unknown, f: string): FieldError[] {
  if (!isObj(c)) return [{ field: f, value: c, detail: "must be an object", type: "FieldValueTypeInvalid" }];
  const errs: FieldError[] = [];
  if (typeof c.name !== "string" || !c.name) errs.push({ field: `${f}.name`, value: "", detail: "", type: "FieldValueRequired" });
  if (typeof c.type !== "string" || !c.type) errs.push({ field: `${f}.type`, value: "", detail: quoted(COLUMN_TYPES), type: "FieldValueRequired" });
  else if (!COLUMN_TYPES.includes(c.type)) errs.push({ field: `${f}.type`, value: c.type, detail: quoted(COLUMN_TYPES), type: "FieldValueNotSupported" });
  if (c.format !== undefined && c.format !== "" && !COLUMN_FORMATS.includes(c.format as string)) errs.push({ field: `${f}.format`, value: c.format, detail: quoted(COLUMN_FORMATS), type: "FieldValueNotSupported" });
  if (c.priority !== undefined && !(Number.isSafeInteger(c.priority) && (c.priority as number) >= 0)) errs.push({ field: `${f}.priority`, value: c.priority, detail: "must be a non-negative integer" });
  if (c.description !== undefined && typeof c.description !== "string") errs.push({ field: `${f}.description`, value: c.description, detail: "must be a string", type: "FieldValueTypeInvalid" });
  const p = c.jsonPath;
  if (typeof p !== "string" || !p) errs.push({ field: `${f}.jsonPath`, value: "", detail: "", type: "FieldValueRequired" });
  else if (p[0] !== ".") errs.push({ field: `${f}.jsonPath`, value: p, detail: "must be a simple json path starting with ." });
  else {
    try {
      parseJsonPath(p);
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      errs.push({ field: `${f}.jsonPath`, value: p, detail: `must be a valid JSONPath: ${e.message}` });
    }
  }
  return errs;
}

/** What a CRD update may not change (kube's ValidateCustomResourceDefinitionUpdate). */
export function crdUpdateErrors(next: KubeObject, cur: KubeObject): FieldError[] {
  const errs: FieldError[] = [];
  const ns = (next.spec ?? {}) as Obj;
  const cs = (cur.spec ?? {}) as Obj;
  for (const k of ["group", "scope"]) if (ns[k] !== cs[k]) errs.push({ field: `spec.${k}`, value: ns[k], detail: "field is immutable" });
  const names = new Set(Array.isArray(ns.versions) ? ns.versions.map((v) => (isObj(v) ? v.name : undefined)) : []);
  const stored = isObj(cur.status) && Array.isArray(cur.status.storedVersions) ? cur.status.storedVersions : [];
  stored.forEach((v, i) => {
    if (!names.has(v)) errs.push({ field: `status.storedVersions[${i}]`, value: v, detail: `missing from spec.versions; ${v} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in ${v} and removes ${v} from status.storedVersions` });
  });
  return errs;
}

function namesOf(o: KubeObject): Names {
  const n = ((o.spec as Obj).names ?? {}) as Obj;
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  return { plural: str(n.plural), singular: str(n.singular), kind: str(n.kind), listKind: str(n.listKind), shortNames: list(n.shortNames), categories: list(n.categories) };
}

function versionsOf(o: KubeObject): Version[] {
  return ((o.spec as Obj).versions as Obj[]).map((v) => ({
    name: str(v.name),
    served: v.served === true,
    storage: v.storage === true,
    schema: (v.schema as Obj).openAPIV3Schema as Schema,
    status: isObj(v.subresources) && isObj(v.subresources.status),
    columns: Array.isArray(v.additionalPrinterColumns) ? (v.additionalPrinterColumns as ColumnSpec[]) : [],
  }));
}

/** The store type a (valid, defaulted) CRD's objects are kept in: its storage version's. */
export function storedTypeOf(crd: KubeObject): ResourceType {
  const spec = crd.spec as Obj;
  const names = namesOf(crd);
  const storage = versionsOf(crd).find((v) => v.storage)!;
  return {
    group: str(spec.group),
    version: storage.name,
    plural: names.plural,
    singular: names.singular,
    kind: names.kind,
    namespaced: spec.scope === "Namespaced",
    status: storage.status,
    shortNames: names.shortNames,
    categories: names.categories,
    fields: {},
    custom: true,
    validate: (o) => validateValue(o, storage.schema, ""),
  };
}

/** Every served version of a CRD, each a view of the storage version's objects. */
export function servedOf(crd: KubeObject, stored: ResourceType): Served[] {
  return versionsOf(crd)
    .filter((v) => v.served)
    .map((v) => {
    const type: ResourceType = { ...stored, version: v.name, status: v.status, validate: undefined };
    const gv = groupVersion(type);
    return {
      type,
      stored,
      // kube prunes and defaults by the request's version, then keeps the storage version
      toStored: (o) => ({ ...(applySchema(o, v.schema) as KubeObject), apiVersion: groupVersion(stored) }),
      // (an object written before its CRD renamed its kind is served with the kind of now)
      fromStored: (o) => (o.apiVersion === gv && o.kind === type.kind ? o : { ...o, apiVersion: gv, kind: type.kind }),
      printer: customPrinter(v.columns),
    };
  });
}

const cond = (type: string, reason: string, message: string, prev: unknown, now: string) => {
  const old = Array.isArray(prev) ? prev.find((c) => isObj(c) && c.type === type && c.status === "True") : undefined;
  return { type, status: "True", lastTransitionTime: isObj(old) && typeof old.lastTransitionTime === "string" ? old.lastTransitionTime : now, reason, message };
};

/** The status kube's naming and establishing controllers give an accepted CRD. */
function statusOf(crd: KubeObject, prev: unknown): Obj {
  const p = isObj(prev) ? prev : {};
  const names = namesOf(crd);
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const storage = versionsOf(crd).find((v) => v.storage)!.name;
  const stored = Array.isArray(p.storedVersions) ? p.storedVersions.filter((v): v is string => typeof v === "string") : [];
  return {
    conditions: [cond("NamesAccepted", "NoConflicts", "no conflicts found", p.conditions, now), cond("Established", "InitialNamesAccepted", "the initial names have been accepted", p.conditions, now)],
    acceptedNames: { plural: names.plural, singular: names.singular, kind: names.kind, listKind: names.listKind, ...(names.shortNames.length ? { shortNames: names.shortNames } : {}), ...(names.categories.length ? { categories: names.categories } : {}) },
    storedVersions: stored.includes(storage) ? stored : [...stored, storage],
  };
}

/** A CRD's names against what its group already serves (other CRDs', built-in types'). */
function clashErrors(crd: KubeObject, catalog: Catalog): FieldError[] {
  const names = namesOf(crd);
  const group = str((crd.spec as Obj).group);
  const errs: FieldError[] = [];
  for (const s of catalog.all()) {
    const t = s.type;
    if (t.group !== group || (s.stored.custom && s.stored.plural === names.plural)) continue;
    const taken = `${t.plural}${t.group ? `.${t.group}` : ""}`;
    const theirs = new Set([t.plural, t.singular, ...t.shortNames]);
    if (theirs.has(names.plural)) errs.push({ field: "spec.names.plural", value: names.plural, detail: `is already in use by ${taken}` });
    if (theirs.has(names.singular)) errs.push({ field: "spec.names.singular", value: names.singular, detail: `is already in use by ${taken}` });
    names.shortNames.forEach((n, i) => theirs.has(n) && errs.push({ field: `spec.names.shortNames[${i}]`, value: n, detail: `is already in use by ${taken}` }));
    if (t.kind === names.kind) errs.push({ field: "spec.names.kind", value: names.kind, detail: `is already in use by ${taken}` });
  }
  return errs;
}

/**
 * Serves `store`'s CRDs and those written from now on: a CRD write is validated, defaulted
 * and given its status (the hooks), and each committed one (re)registers its resource (a
 * watch of the CRDs, which also registers those the store starts with).
 */
export function attachCrds(store: Store, catalog: Catalog): void {
  const crdType = store.type(CRD_GROUP, "customresourcedefinitions");
  if (!crdType) return;
  const refuse = (o: KubeObject, errs: FieldError[]) => {
    if (errs.length) throw invalid(crdType, o.metadata.name ?? "", errs);
  };
  store.setHooks(crdType, {
    create: (o) => {
      defaultCrd(o);
      refuse(o, crdErrors(o));
      refuse(o, clashErrors(o, catalog));
      o.status = statusOf(o, undefined);
    },
    update: (next, cur) => {
      defaultCrd(next);
      refuse(next, crdErrors(next));
      refuse(next, crdUpdateErrors(next, cur));
      refuse(next, clashErrors(next, catalog));
      next.status = statusOf(next, cur.status);
    },
    deleting: (o) => {
      const t = store.type(str((o.spec as Obj).group), namesOf(o).plural);
      if (!t?.custom) return;
      for (const x of store.list(t).items) store.delete(t, x.metadata.namespace, x.metadata.name!, { gracePeriodSeconds: 0 });
    },
  });
  store.watch(crdType, {}, (e) => {
    const crd = e.object;
    const stored = storedTypeOf(crd);
    catalog.removeStored(stored);
    if (e.type === "DELETED") {
      store.removeType(stored);
      return;
    }
    store.addType(stored);
    for (const s of servedOf(crd, stored)) catalog.add(s);
  });
}

export const isCrdType = (t: Pick<ResourceType, "group" | "plural">) => typeKey(t) === `${CRD_GROUP}/customresourcedefinitions`;
