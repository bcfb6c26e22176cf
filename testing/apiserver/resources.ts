// The resource types the test API server serves, as kube-apiserver describes them in
// discovery: group, version, plural, kind, scope, subresources, and the fields a field
// selector may name (kube-apiserver supports metadata.name and metadata.namespace for every
// type, plus a few per type).

import type { FieldError } from "./errors.ts";

export interface ResourceType {
  group: string; // "" for the core group
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  /** has a status subresource: the main resource's writes leave .status alone */
  status: boolean;
  shortNames: string[];
  /** the groups discovery puts it in (`kubectl get all` lists the category "all") */
  categories?: string[];
  /** field selector fields beyond metadata.name and metadata.namespace */
  fields: Record<string, (o: KubeObject) => string>;
  /** defined by a CustomResourceDefinition (crd.ts) */
  custom?: boolean;
  /** the field errors of an object beyond its metadata (a custom resource's schema) */
  validate?: (o: KubeObject) => FieldError[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

const str = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
const at = (o: KubeObject, ...path: string[]): unknown => path.reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), o);

/** The field selector fields of kube's event registry (ToSelectableFields), beyond metadata. */
const EVENT_FIELDS: Record<string, (o: KubeObject) => string> = {
  "involvedObject.kind": (o) => str(at(o, "involvedObject", "kind")),
  "involvedObject.namespace": (o) => str(at(o, "involvedObject", "namespace")),
  "involvedObject.name": (o) => str(at(o, "involvedObject", "name")),
  "involvedObject.uid": (o) => str(at(o, "involvedObject", "uid")),
  "involvedObject.apiVersion": (o) => str(at(o, "involvedObject", "apiVersion")),
  "involvedObject.resourceVersion": (o) => str(at(o, "involvedObject", "resourceVersion")),
  "involvedObject.fieldPath": (o) => str(at(o, "involvedObject", "fieldPath")),
  reason: (o) => str(o.reason),
  reportingComponent: (o) => str(o.reportingComponent),
  source: (o) => str(at(o, "source", "component")) || str(o.reportingComponent),
  type: (o) => str(o.type),
};

export const BUILTIN: ResourceType[] = [
  { group: "", version: "v1", plural: "namespaces", singular: "namespace", kind: "Namespace", namespaced: false, status: true, shortNames: ["ns"], fields: { "status.phase": (o) => str(at(o, "status", "phase")) } },
  { group: "", version: "v1", plural: "nodes", singular: "node", kind: "Node", namespaced: false, status: true, shortNames: ["no"], fields: { "spec.unschedulable": (o) => str(at(o, "spec", "unschedulable") ?? false) } },
  {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    status: true,
    shortNames: ["po"],
    categories: ["all"],
    fields: { "spec.nodeName": (o) => str(at(o, "spec", "nodeName")), "status.phase": (o) => str(at(o, "status", "phase")), "status.podIP": (o) => str(at(o, "status", "podIP")) },
  },
  { group: "", version: "v1", plural: "services", singular: "service", kind: "Service", namespaced: true, status: true, shortNames: ["svc"], categories: ["all"], fields: { "spec.clusterIP": (o) => str(at(o, "spec", "clusterIP")), "spec.type": (o) => str(at(o, "spec", "type")) } },
  { group: "", version: "v1", plural: "events", singular: "event", kind: "Event", namespaced: true, status: false, shortNames: ["ev"], fields: EVENT_FIELDS },
  { group: "", version: "v1", plural: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, status: false, shortNames: ["cm"], fields: {} },
  { group: "discovery.k8s.io", version: "v1", plural: "endpointslices", singular: "endpointslice", kind: "EndpointSlice", namespaced: true, status: false, shortNames: [], fields: { addressType: (o) => str(o.addressType) } },
  { group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions", singular: "customresourcedefinition", kind: "CustomResourceDefinition", namespaced: false, status: true, shortNames: ["crd", "crds"], categories: ["api-extensions"], fields: {} },
  { group: "networking.k8s.io", version: "v1", plural: "networkpolicies", singular: "networkpolicy", kind: "NetworkPolicy", namespaced: true, status: false, shortNames: ["netpol"], fields: {} },
];

export const groupVersion = (t: Pick<ResourceType, "group" | "version">) => (t.group ? `${t.group}/${t.version}` : t.version);

/** The fields a field selector can test on `o`. */
export function fieldsOf(t: ResourceType, o: KubeObject): Record<string, string> {
  const f: Record<string, string> = { "metadata.name": str(o.metadata.name) };
  if (t.namespaced) f["metadata.namespace"] = str(o.metadata.namespace);
  for (const [k, get] of Object.entries(t.fields)) f[k] = get(o);
  return f;
}

export const selectableFields = (t: ResourceType) => ["metadata.name", ...(t.namespaced ? ["metadata.namespace"] : []), ...Object.keys(t.fields)];
