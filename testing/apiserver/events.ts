// Events as kube-apiserver keeps them: one store of core v1 Events, served also as
// events.k8s.io/v1 Events (the same objects under other field names, as kube's conversion
// between the two versions names them, field selectors renamed alike; core v1's are in
// resources.ts), and kube's ValidateEventCreate: the legacy rules for core v1 writes, the strict ones for
// events.k8s.io writes (pkg/apis/core/validation/events.go).
import { invalid, type FieldError } from "./errors.ts";
import type { KubeObject, ResourceType } from "./resources.ts";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown) => (typeof v === "string" ? v : "");

/** events.k8s.io/v1 field selector names → the core ones (kube's AddFieldLabelConversionsForEvent). */
export const EVENTS_V1_FIELDS: Record<string, string> = {
  "metadata.name": "metadata.name",
  "metadata.namespace": "metadata.namespace",
  reason: "reason",
  type: "type",
  reportingController: "reportingComponent",
  ...Object.fromEntries(["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"].map((k) => [`regarding.${k}`, `involvedObject.${k}`])),
};

/** core v1 field → events.k8s.io/v1 field, for the fields that are named differently */
const RENAMED: Array<[string, string]> = [
  ["involvedObject", "regarding"],
  ["message", "note"],
  ["reportingComponent", "reportingController"],
  ["source", "deprecatedSource"],
  ["firstTimestamp", "deprecatedFirstTimestamp"],
  ["lastTimestamp", "deprecatedLastTimestamp"],
  ["count", "deprecatedCount"],
];
/** the fields both versions name alike */
const SHARED = ["metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type"];

const empty = (v: unknown) => v === undefined || v === null || v === "" || v === 0;

/**
 * An events.k8s.io/v1 Event in its stored (core v1) form. Fields neither version has are
 * dropped, as kube's decoder drops unknown fields.
 */
export function eventToCore(o: KubeObject): KubeObject {
  const out: Obj = { apiVersion: "v1", kind: "Event" };
  for (const k of SHARED) if (o[k] !== undefined) out[k] = o[k];
  for (const [core, v1] of RENAMED) if (o[v1] !== undefined) out[core] = o[v1];
  return out as KubeObject;
}

/** A stored (core v1) Event as events.k8s.io/v1 serves it: what Go writes for its struct. */
export function eventFromCore(o: KubeObject): KubeObject {
  const out: Obj = { apiVersion: "events.k8s.io/v1", kind: "Event", metadata: o.metadata, eventTime: o.eventTime ?? null };
  for (const k of SHARED) if (k !== "metadata" && k !== "eventTime" && !empty(o[k])) out[k] = o[k];
  for (const [core, v1] of RENAMED) if (!empty(o[core])) out[v1] = o[core];
  out.regarding ??= {};
  out.deprecatedSource ??= {};
  out.deprecatedFirstTimestamp ??= null;
  out.deprecatedLastTimestamp ??= null;
  return out as KubeObject;
}

/** What Go writes for a core v1 Event's fields that have no omitempty: kube-apiserver's answer
 * always has them, so a stored Event is completed with them. */
export function completeCoreEvent(o: KubeObject): void {
  o.involvedObject ??= {};
  o.source ??= {};
  o.firstTimestamp ??= null;
  o.lastTimestamp ??= null;
  o.eventTime ??= null;
  o.reportingComponent ??= "";
  o.reportingInstance ??= "";
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** A time field: absent/null, or an RFC 3339 time (what kube's decoder reads into metav1.Time). */
function timeErrors(o: Obj, k: string): FieldError[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  return typeof v === "string" && RFC3339.test(v) && !Number.isNaN(Date.parse(v)) ? [] : [{ field: k, value: v, detail: "must be an RFC 3339 time", type: "FieldValueTypeInvalid" }];
}

const REPORTING_INSTANCE_LIMIT = 128;
const ACTION_LIMIT = 128;
const REASON_LIMIT = 128;
const NOTE_LIMIT = 1024;
const QUALIFIED = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** The types of an Event's fields: strings, an integer count, objects, times. */
function shapeErrors(o: Obj): FieldError[] {
  const errs: FieldError[] = [];
  for (const k of ["reason", "message", "type", "action", "reportingComponent", "reportingInstance"]) {
    if (o[k] !== undefined && o[k] !== null && typeof o[k] !== "string") errs.push({ field: k, value: o[k], detail: "must be a string", type: "FieldValueTypeInvalid" });
  }
  for (const k of ["involvedObject", "source", "series", "related"]) {
    if (o[k] !== undefined && o[k] !== null && !isObj(o[k])) errs.push({ field: k, value: o[k], detail: "must be an object", type: "FieldValueTypeInvalid" });
  }
  if (o.count !== undefined && o.count !== null && !(Number.isInteger(o.count) && (o.count as number) >= -(2 ** 31) && (o.count as number) < 2 ** 31)) errs.push({ field: "count", value: o.count, detail: "must be a 32-bit integer", type: "FieldValueTypeInvalid" });
  for (const k of ["firstTimestamp", "lastTimestamp", "eventTime"]) errs.push(...timeErrors(o, k));
  if (isObj(o.series)) {
    const s = o.series;
    if (s.count !== undefined && !Number.isInteger(s.count)) errs.push({ field: "series.count", value: s.count, detail: "must be an integer", type: "FieldValueTypeInvalid" });
    errs.push(...timeErrors(s, "lastObservedTime").map((e) => ({ ...e, field: `series.${e.field}` })));
  }
  return errs;
}

/** kube's legacyValidateEvent, which every Event write passes (core v1 ones only this);
 * `controllerField` is how the request's version names reportingComponent. */
export function legacyEventErrors(o: Obj, controllerField = "reportingComponent"): FieldError[] {
  const errs = shapeErrors(o);
  if (errs.length) return errs;
  const meta = isObj(o.metadata) ? o.metadata : {};
  const ns = str(meta.namespace);
  const involved = isObj(o.involvedObject) ? o.involvedObject : {};
  const ins = str(involved.namespace);
  const mismatch = (): FieldError => ({ field: "involvedObject.namespace", value: ins, detail: "does not match event.namespace" });
  if (empty(o.eventTime)) {
    // an old-style Event: its namespace is its object's ("default" for cluster-scoped ones)
    if (ins === "" ? ns !== "" && ns !== "default" : ns !== ins) errs.push(mismatch());
    return errs;
  }
  if (ins === "" && ns !== "default" && ns !== "kube-system") errs.push(mismatch());
  const controller = str(o.reportingComponent);
  if (!controller) errs.push({ field: controllerField, value: "", detail: "", type: "FieldValueRequired" });
  else if (controller.length > 316 || !QUALIFIED.test(controller)) errs.push({ field: controllerField, value: controller, detail: "must be a qualified name: alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'" });
  const bounded = (k: string, v: string, limit: number) => {
    if (!v) errs.push({ field: k, value: "", detail: "", type: "FieldValueRequired" });
    else if (v.length > limit) errs.push({ field: k, value: "", detail: `can have at most ${limit} characters` });
  };
  bounded("reportingInstance", str(o.reportingInstance), REPORTING_INSTANCE_LIMIT);
  bounded("action", str(o.action), ACTION_LIMIT);
  bounded("reason", str(o.reason), REASON_LIMIT);
  if (str(o.message).length > NOTE_LIMIT) errs.push({ field: "message", value: "", detail: `can have at most ${NOTE_LIMIT} characters` });
  return errs;
}

/** kube's ValidateEventCreate for an events.k8s.io/v1 write (`o` in the core form): the
 * legacy rules and the strict ones of the new API. */
export function strictEventErrors(o: Obj): FieldError[] {
  const errs = legacyEventErrors(o, "reportingController");
  if (errs.some((e) => e.type === "FieldValueTypeInvalid")) return errs;
  if (isObj(o.series)) {
    if (!(Number(o.series.count) >= 2)) errs.push({ field: "series.count", value: "", detail: "should be at least 2" });
    if (empty(o.series.lastObservedTime)) errs.push({ field: "series.lastObservedTime", value: "", detail: "", type: "FieldValueRequired" });
  }
  if (empty(o.eventTime)) errs.push({ field: "eventTime", value: "", detail: "", type: "FieldValueRequired" });
  if (o.type !== "Normal" && o.type !== "Warning") errs.push({ field: "type", value: "", detail: `has invalid value: ${str(o.type)}` });
  for (const k of ["firstTimestamp", "lastTimestamp", "count"]) if (!empty(o[k])) errs.push({ field: k, value: "", detail: "needs to be unset" });
  const source = isObj(o.source) ? o.source : {};
  if (!empty(source.component) || !empty(source.host)) errs.push({ field: "source", value: "", detail: "needs to be unset" });
  return errs;
}

/** The events.k8s.io/v1 view of the stored core Events: the conversions a request goes through. */
export function eventsV1View(core: ResourceType): { toStored: (o: KubeObject) => KubeObject; fromStored: (o: KubeObject) => KubeObject; fields: Record<string, string> } {
  return {
    toStored: (o) => {
      const c = eventToCore(o);
      const errs = strictEventErrors(c);
      if (errs.length) throw invalid({ ...core, group: "events.k8s.io" }, str(o.metadata?.name), errs);
      return c;
    },
    fromStored: eventFromCore,
    fields: EVENTS_V1_FIELDS,
  };
}

