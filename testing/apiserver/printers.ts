// Table responses (meta.k8s.io/v1 Table), what kubectl asks for with
// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…`: the columns and cells of
// kube-apiserver's printers (pkg/printers/internalversion) for the kinds served here, so that
// `kubectl get` shows what it shows for a real cluster. Cells always hold the wide columns
// (priority 1), as kube-apiserver's table convertor does; kubectl hides them without -o wide.
import type { KubeObject } from "./resources.ts";
import { ApiError } from "./store.ts";
import { eventToCore } from "./events.ts";
import { firstResult, goText, parseJsonPath } from "./jsonpath.ts";

export interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}
export type Printer = { columns: Column[]; cells: (o: KubeObject, now: number) => unknown[] };

const col = (name: string, description: string, o: { priority?: number; format?: string; type?: string } = {}): Column => ({ name, type: o.type ?? "string", format: o.format ?? "", description, priority: o.priority ?? 0 });
const NAME = col("Name", "Name must be unique within a namespace.", { format: "name" });
const AGE = col("Age", "CreationTimestamp is a timestamp representing the server time when this object was created.");
const wide = (name: string, description: string) => col(name, description, { priority: 1 });

type Any = Record<string, any>;
const spec = (o: KubeObject): Any => (o.spec && typeof o.spec === "object" ? (o.spec as Any) : {});
const status = (o: KubeObject): Any => (o.status && typeof o.status === "object" ? (o.status as Any) : {});
const list = (v: unknown): Any[] => (Array.isArray(v) ? v.filter((x) => x && typeof x === "object") : []);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);

/** Go's duration.HumanDuration, which the AGE column uses. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

function age(o: KubeObject, now: number): string {
  const t = Date.parse(String(o.metadata.creationTimestamp ?? ""));
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now - t);
}

/** labels.FormatLabels: sorted key=value pairs, "<none>" for none. */
export function formatLabels(m: unknown): string {
  const e = m && typeof m === "object" ? Object.entries(m as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : [];
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(",") : "<none>";
}

/** metav1.FormatLabelSelector: requirements sorted by key, "<none>" for an empty selector. */
export function formatLabelSelector(sel: unknown): string {
  const s = (sel && typeof sel === "object" ? sel : {}) as { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> };
  const reqs: Array<[string, string]> = Object.entries(s.matchLabels ?? {}).map(([k, v]) => [k, `${k}=${v}`]);
  for (const e of list(s.matchExpressions) as Array<{ key: string; operator: string; values?: string[] }>) {
    const vals = [...strs(e.values)].sort().join(",");
    const text = e.operator === "In" ? `${e.key} in (${vals})` : e.operator === "NotIn" ? `${e.key} notin (${vals})` : e.operator === "Exists" ? e.key : e.operator === "DoesNotExist" ? `!${e.key}` : undefined;
    if (text === undefined) return "<error>";
    reqs.push([e.key, text]);
  }
  reqs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return reqs.length ? reqs.map(([, t]) => t).join(",") : "<none>";
}

/** The first three of a list and "+ N more...", as the EndpointSlice printer shows it. */
function listWithMore(items: string[], max = 3): string {
  const shown = items.slice(0, max).join(",");
  if (items.length > max) return `${shown} + ${items.length - max} more...`;
  return shown || "<unset>";
}

function serviceExternalIP(s: Any, st: Any): string {
  const external = strs(s.externalIPs);
  switch (s.type) {
    case "ClusterIP":
    case "NodePort":
      return external.length ? external.join(",") : "<none>";
    case "LoadBalancer": {
      const lb = [...new Set(list(st.loadBalancer?.ingress).map((i) => i.ip || i.hostname).filter(Boolean) as string[])].sort();
      const all = [...lb, ...external];
      return all.length ? all.join(",") : "<pending>";
    }
    case "ExternalName":
      return String(s.externalName ?? "");
  }
  return "<unknown>";
}

/** PORT(S): `80/TCP`, `80:30080/TCP` with a node port. */
export function servicePorts(ports: unknown): string {
  const p = list(ports).map((x) => (x.nodePort > 0 ? `${x.port}:${x.nodePort}/${x.protocol ?? "TCP"}` : `${x.port}/${x.protocol ?? "TCP"}`));
  return p.length ? p.join(",") : "<none>";
}

function nodeRoles(o: KubeObject): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
    if (k.startsWith("node-role.kubernetes.io/") && k.length > 24) roles.add(k.slice(24));
    else if (k === "kubernetes.io/role" && v) roles.add(v);
  }
  return roles.size ? [...roles].sort().join(",") : "<none>";
}

function podRow(o: KubeObject, now: number): unknown[] {
  const s = spec(o);
  const st = status(o);
  const containers = list(s.containers);
  let restarts = 0;
  let ready = 0;
  let lastRestart = 0;
  let reason: string = st.reason || st.phase || "";
  let running = false;
  for (const c of list(st.containerStatuses).reverse()) {
    restarts += Number(c.restartCount) || 0;
    const finished = Date.parse(c.lastState?.terminated?.finishedAt ?? "");
    if (!Number.isNaN(finished) && finished > lastRestart) lastRestart = finished;
    if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
    else if (c.state?.terminated) {
      const t = c.state.terminated;
      reason = t.reason || (t.signal ? `Signal:${t.signal}` : `ExitCode:${t.exitCode}`);
    } else if (c.ready && c.state?.running) {
      running = true;
      ready++;
    }
  }
  if (reason === "Completed" && running) reason = st.conditions?.some?.((c: Any) => c.type === "Ready" && c.status === "True") ? "Running" : "NotReady";
  if (o.metadata.deletionTimestamp) reason = st.reason === "NodeLost" ? "Unknown" : "Terminating";
  const gates = list(s.readinessGates);
  const gatesTrue = gates.filter((g) => list(st.conditions).some((c) => c.type === g.conditionType && c.status === "True")).length;
  return [
    o.metadata.name,
    `${ready}/${containers.length}`,
    reason,
    lastRestart ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts),
    age(o, now),
    st.podIP || "<none>",
    s.nodeName || "<none>",
    st.nominatedNodeName || "<none>",
    gates.length ? `${gatesTrue}/${gates.length}` : "<none>",
  ];
}

function nodeRow(o: KubeObject, now: number): unknown[] {
  const st = status(o);
  const readyCond = list(st.conditions).find((c) => c.type === "Ready");
  const states = readyCond ? [readyCond.status === "True" ? "Ready" : "NotReady"] : ["Unknown"];
  if (spec(o).unschedulable) states.push("SchedulingDisabled");
  const addr = (type: string) => list(st.addresses).find((a) => a.type === type)?.address || "<none>";
  const info = (st.nodeInfo ?? {}) as Any;
  return [o.metadata.name, states.join(","), nodeRoles(o), age(o, now), info.kubeletVersion ?? "", addr("InternalIP"), addr("ExternalIP"), info.osImage || "<unknown>", info.kernelVersion || "<unknown>", info.containerRuntimeVersion || "<unknown>"];
}

/** translateTimestampSince: the age of a time, "<unknown>" for none */
function since(v: unknown, now: number): string {
  const t = typeof v === "string" ? Date.parse(v) : NaN;
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now - t);
}

/** printEvent (wide, as the server prints): an events.k8s.io/v1 Event is printed as its core form. */
function eventRow(obj: KubeObject, now: number): unknown[] {
  const o = obj.apiVersion === "events.k8s.io/v1" ? eventToCore(obj) : obj;
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  const involved = (o.involvedObject ?? {}) as Any;
  const source = (o.source ?? {}) as Any;
  const series = o.series && typeof o.series === "object" ? (o.series as Any) : undefined;
  const first = o.firstTimestamp ? since(o.firstTimestamp, now) : since(o.eventTime, now);
  let last = o.lastTimestamp ? since(o.lastTimestamp, now) : first;
  let count = Number(o.count) || 0;
  if (series) {
    last = since(series.lastObservedTime, now);
    count = Number(series.count) || 0;
  } else if (count === 0) count = 1;
  const kind = str(involved.kind).toLowerCase();
  const target = str(involved.name) ? `${kind}/${involved.name}` : kind;
  const component = str(source.component) || str(o.reportingComponent);
  const instance = str(source.host) || str(o.reportingInstance);
  return [last, str(o.type), str(o.reason), target, str(involved.fieldPath), instance ? `${component}, ${instance}` : component, str(o.message).trim(), first, count, o.metadata.name];
}

/** The printers, by kind (kinds this server does not serve are never looked up). */
const PRINTERS: Record<string, Printer> = {
  Namespace: { columns: [NAME, col("Status", "The status of the namespace"), AGE], cells: (o, now) => [o.metadata.name, status(o).phase ?? "", age(o, now)] },
  Node: {
    columns: [NAME, col("Status", "The status of the node"), col("Roles", "The roles of the node"), AGE, col("Version", "Kubelet Version reported by the node."), wide("Internal-IP", "List of addresses reachable to the node."), wide("External-IP", "List of addresses reachable to the node."), wide("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."), wide("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."), wide("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).")],
    cells: nodeRow,
  },
  Pod: {
    columns: [NAME, col("Ready", "The aggregate readiness state of this pod for accepting traffic."), col("Status", "The aggregate status of the containers in this pod."), col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."), AGE, wide("IP", "IP address allocated to the pod. Routable at least within the cluster."), wide("Node", "Name of the Node this Pod is running on."), wide("Nominated Node", "Name of the node the Pod is nominated to run on."), wide("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.")],
    cells: podRow,
  },
  Service: {
    columns: [NAME, col("Type", "type determines how the Service is exposed."), col("Cluster-IP", "clusterIP is the IP address of the service."), col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."), col("Port(s)", "The list of ports that are exposed by this service."), AGE, wide("Selector", "Route service traffic to pods with label keys and values matching this selector.")],
    cells: (o, now) => {
      const s = spec(o);
      return [o.metadata.name, s.type ?? "", strs(s.clusterIPs)[0] ?? "<none>", serviceExternalIP(s, status(o)), servicePorts(s.ports), age(o, now), formatLabels(s.selector)];
    },
  },
  EndpointSlice: {
    columns: [NAME, col("AddressType", "The IP protocol for this slice"), col("Ports", "The ports of this slice"), col("Endpoints", "The endpoints of this slice"), AGE],
    cells: (o, now) => [
      o.metadata.name,
      String(o.addressType ?? ""),
      listWithMore(list(o.ports).map((p) => (p.port !== undefined && p.port !== null ? String(p.port) : typeof p.name === "string" ? p.name : "*"))),
      listWithMore(list(o.endpoints).flatMap((e) => strs(e.addresses))),
      age(o, now),
    ],
  },
  Event: {
    columns: [
      col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
      col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
      col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
      col("Object", "The object that this event is about."),
      wide("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."),
      wide("Source", "The component reporting this event. Should be a short machine understandable string."),
      col("Message", "A human-readable description of the status of this operation."),
      wide("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
      wide("Count", "The number of times this event has occurred."),
      col("Name", "Name must be unique within a namespace.", { priority: 1, format: "name" }),
    ],
    cells: eventRow,
  },
  // the default table convertor's, which CRDs themselves are printed with
  CustomResourceDefinition: {
    columns: [NAME, col("Created At", "CreationTimestamp is a timestamp representing the server time when this object was created.", { type: "date" })],
    cells: (o) => [o.metadata.name, o.metadata.creationTimestamp ?? ""],
  },
  NetworkPolicy: { columns: [NAME, col("Pod-Selector", "Selects the pods to which this NetworkPolicy object applies."), AGE], cells: (o, now) => [o.metadata.name, formatLabelSelector(spec(o).podSelector), age(o, now)] },
  ConfigMap: {
    columns: [NAME, col("Data", "Data contains the configuration data."), AGE],
    cells: (o, now) => {
      const n = (v: unknown) => (v && typeof v === "object" ? Object.keys(v).length : 0);
      return [o.metadata.name, n(o.data) + n(o.binaryData), age(o, now)];
    },
  },
};
const DEFAULT: Printer = { columns: [NAME, AGE], cells: (o, now) => [o.metadata.name, age(o, now)] };

/** A CRD's additionalPrinterColumns entry (validated by crd.ts). */
export interface ColumnSpec {
  name: string;
  type: string;
  format?: string;
  description?: string;
  priority?: number;
  jsonPath: string;
}

/** kube's serveDefaultColumnsIfEmpty: a CRD without columns prints its objects' age */
const AGE_COLUMN: ColumnSpec = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: AGE.description };

/** cellForJSONValue: a column's value as kube's CRD table convertor makes it a cell (null
 * when it has no value of the column's type) */
function customCell(type: string, v: unknown, now: number): unknown {
  if (v === undefined || v === null) return null;
  switch (type) {
    case "string":
      return goText(v);
    case "integer":
      return typeof v === "number" ? Math.trunc(v) : null;
    case "number":
      return typeof v === "number" ? v : null;
    case "boolean":
      return typeof v === "boolean" ? v : null;
    case "date": {
      if (typeof v !== "string") return null;
      const t = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) ? Date.parse(v) : NaN;
      return Number.isNaN(t) ? "<invalid>" : humanDuration(now - t);
    }
  }
  return null;
}

/** The Table of a custom resource's version: Name, then its printer columns (or Age). */
export function customPrinter(specs: ColumnSpec[]): Printer {
  const cols = specs.length ? specs : [AGE_COLUMN];
  const paths = cols.map((c) => parseJsonPath(c.jsonPath));
  return {
    columns: [NAME, ...cols.map((c) => ({ name: c.name, type: c.type, format: c.format ?? "", description: c.description ?? "", priority: c.priority ?? 0 }))],
    cells: (o, now) => [o.metadata.name, ...cols.map((c, i) => customCell(c.type, firstResult(paths[i]!, o), now))],
  };
}

/**
 * Whether an Accept header asks for a Table, and of which version: the first media range the
 * server can answer decides, as kube-apiserver's negotiation. A Table in no version served
 * here with nothing else acceptable is 406.
 */
export function wantsTable(accept: string | undefined): "v1" | "v1beta1" | undefined {
  if (!accept || !accept.includes("as=Table")) return undefined;
  for (const range of accept.slice(0, 4096).split(",")) {
    const [type, ...params] = range.split(";").map((x) => x.trim());
    const p = Object.fromEntries(params.map((x) => x.split("=").map((y) => y.trim())));
    if (type !== "application/json" && type !== "*/*" && type !== "application/*") continue;
    if (p.as === undefined) return undefined;
    if (p.as === "Table" && p.g === "meta.k8s.io" && (p.v === "v1" || p.v === "v1beta1")) return p.v;
  }
  throw new ApiError(406, "NotAcceptable", `only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1beta1;g=meta.k8s.io`);
}

export interface TableOptions {
  version: "v1" | "v1beta1";
  /** `?includeObject=`: None, Metadata (the default) or Object */
  includeObject?: string | null;
  /** resourceVersion, continue, remainingItemCount */
  listMeta?: Record<string, unknown>;
  now?: number;
  /** the columns of a type printers.ts does not know (a custom resource's) */
  printer?: Printer;
}

/** The Table of `objects` of `kind`. */
export function tableOf(kind: string, objects: KubeObject[], o: TableOptions): Record<string, unknown> {
  const include = o.includeObject ?? "Metadata";
  if (!["None", "Metadata", "Object"].includes(include)) throw new ApiError(400, "BadRequest", `includeObject: Unsupported value: ${JSON.stringify(include)}: supported values: "None", "Metadata", "Object"`);
  const printer = o.printer ?? PRINTERS[kind] ?? DEFAULT;
  const now = o.now ?? Date.now();
  return {
    kind: "Table",
    apiVersion: `meta.k8s.io/${o.version}`,
    metadata: o.listMeta ?? {},
    columnDefinitions: printer.columns,
    rows: objects.map((obj) => ({
      cells: printer.cells(obj, now),
      ...(include === "None" ? {} : { object: include === "Object" ? obj : { kind: "PartialObjectMetadata", apiVersion: `meta.k8s.io/${o.version}`, metadata: obj.metadata } }),
    })),
  };
}

/** A watch event for a Table watch: its object a Table of one row (errors and bookmarks as they are). */
export function watchTableEvent(e: { type: string; object: KubeObject }, kind: string, o: TableOptions): { type: string; object: unknown } {
  if (e.type === "ERROR" || e.type === "BOOKMARK") return e;
  return { type: e.type, object: tableOf(kind, [e.object], { ...o, listMeta: { resourceVersion: e.object.metadata.resourceVersion } }) };
}
