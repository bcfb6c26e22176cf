// What kube-apiserver checks of every object written, before storage: the kind and apiVersion
// in the body against the path's, names by kind (k8s.io/apimachinery's validation of
// ObjectMeta: DNS-1123 subdomains for most kinds, labels for Namespaces, RFC 1035 labels for
// Services), generateName by the same rule, label keys and values, annotation keys, and the
// depth of the object (body.ts). Failures are Status objects naming the field, as kube-apiserver
// words them, so a client's error message says what to fix.
import { MAX_JSON_DEPTH } from "./body.ts";
import { groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { ApiError, describe, invalid, type FieldError } from "./errors.ts";
import { legacyEventErrors } from "./events.ts";
import { addressFamily, cidrsOverlap, parseCidr, specialUse, type Cidr, type Family } from "../../compiler/address.ts";

const LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const SUBDOMAIN = `${LABEL}(\\.${LABEL})*`;
const DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const whole = (re: string) => new RegExp(`^(?:${re})$`);

type Check = (v: string) => string[];

export const dns1123Label: Check = (v) => [
  ...(v.length > 63 ? ["must be no more than 63 characters"] : []),
  ...(whole(LABEL).test(v) ? [] : [`a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${LABEL}')`]),
];
export const dns1123Subdomain: Check = (v) => [
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

export { describe, invalid, type FieldError } from "./errors.ts";

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
 * name): name by the kind's rule, generateName, namespace, labels, annotation keys; the
 * object's depth; and with `fields`, the kind's own fields (FIELD_RULES). Throws 422 naming
 * every bad field.
 */
export function validateObject(t: ResourceType, o: KubeObject, fields = true): void {
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
  errs.push(...stringMap(m.labels, "metadata.labels", true), ...stringMap(m.annotations, "metadata.annotations", false));
  if (depthOf(o, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) errs.push({ field: "<root>", value: "object", detail: `nested deeper than ${MAX_JSON_DEPTH} levels` });
  else if (fields) errs.push(...(FIELD_RULES[`${t.group}/${t.kind}`]?.(o) ?? []), ...(t.validate?.(o) ?? []));
  if (errs.length) throw invalid(t, name, errs);
}

/** Labels (keys and values: kube's ValidateLabels) or annotations (keys only). */
export function stringMap(map: unknown, field: string, values: boolean): FieldError[] {
  if (map === undefined || map === null) return [];
  if (typeof map !== "object" || Array.isArray(map)) return [{ field, value: map, detail: "must be a map of strings", type: "FieldValueTypeInvalid" }];
  const errs: FieldError[] = [];
  for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
    for (const d of qualifiedName(k)) errs.push({ field, value: k, detail: d });
    if (typeof v !== "string") errs.push({ field: `${field}.${k}`, value: v, detail: "must be a string", type: "FieldValueTypeInvalid" });
    else if (values) for (const d of labelValue(v)) errs.push({ field, value: v, detail: d });
  }
  return errs;
}

// Field rules by kind: what kube-apiserver's ValidateNetworkPolicy, ValidateEndpointSlice and
// ValidateNode check of the fields a network provider builds its datapath from (ports,
// protocols, addresses, CIDRs, selectors). Addresses and CIDRs go through compiler/address.ts,
// the one strict reader (canonical text only; a CIDR without host bits), which is stricter
// than kube-apiserver's sloppy parser on purpose: what this server takes, skein reads.

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const typeErr = (field: string, value: unknown, what: string): FieldError => ({ field, value, detail: `must be ${what}`, type: "FieldValueTypeInvalid" });
const quoted = (xs: readonly string[]) => xs.map((x) => `"${x}"`).join(", ");
const notSupported = (field: string, value: unknown, allowed: readonly string[]): FieldError => ({ field, value, detail: quoted(allowed), type: "FieldValueNotSupported" });

/** The items of a list field (none when absent), or a type error. */
function listOf(v: unknown, field: string, errs: FieldError[]): unknown[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  errs.push(typeErr(field, v, "a list"));
  return [];
}

export const PROTOCOLS = ["SCTP", "TCP", "UDP"] as const;

/** A protocol: absent (defaulted to TCP) or one of TCP, UDP, SCTP. */
export function protocolErrors(v: unknown, field: string): FieldError[] {
  return v === undefined || (PROTOCOLS as readonly unknown[]).includes(v) ? [] : [notSupported(field, v, PROTOCOLS)];
}

/** kube's IsValidPortNum: an integer 1-65535. */
export function portNumberErrors(v: unknown, field: string): FieldError[] {
  if (typeof v !== "number" || !Number.isInteger(v)) return [{ field, value: v, detail: "must be an integer between 1 and 65535, inclusive" }];
  return v < 1 || v > 65535 ? [{ field, value: v, detail: "must be between 1 and 65535, inclusive" }] : [];
}

/** kube's IsValidPortName: an IANA_SVC_NAME (RFC 6335), what a named port may be called. */
export function portNameProblems(v: string): string[] {
  const out: string[] = [];
  if (v.length > 15) out.push("must be no more than 15 characters");
  if (!/^[-a-z0-9]+$/.test(v)) out.push("must contain only alpha-numerics and '-'");
  if (!/[a-z]/.test(v)) out.push("must contain at least one letter (a-z)");
  if (v.includes("--")) out.push("must not contain consecutive hyphens");
  if (v.startsWith("-") || v.endsWith("-")) out.push("must not begin or end with a hyphen");
  return out;
}

/** kube's ValidatePortNumOrName: a port number, or the name of a container's port. */
export function portNumOrNameErrors(v: unknown, field: string): FieldError[] {
  if (typeof v === "string") return portNameProblems(v).map((detail) => ({ field, value: v, detail }));
  return portNumberErrors(v, field);
}

const OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"];

/** kube's ValidateLabelSelector: matchLabels as labels; each of matchExpressions a label key,
 * a known operator, and values as the operator wants them (some for In and NotIn, none for
 * Exists and DoesNotExist), each a label value. */
export function labelSelectorErrors(sel: unknown, field: string): FieldError[] {
  if (sel === undefined || sel === null) return [];
  if (!isObj(sel)) return [typeErr(field, sel, "a label selector (matchLabels, matchExpressions)")];
  const errs = stringMap(sel.matchLabels, `${field}.matchLabels`, true);
  for (const [i, r] of listOf(sel.matchExpressions, `${field}.matchExpressions`, errs).entries()) {
    const f = `${field}.matchExpressions[${i}]`;
    if (!isObj(r)) {
      errs.push(typeErr(f, r, "an object"));
      continue;
    }
    const values = listOf(r.values, `${f}.values`, errs);
    if (r.operator === "In" || r.operator === "NotIn") {
      if (!values.length) errs.push({ field: `${f}.values`, value: r.values, detail: "must be specified when `operator` is 'In' or 'NotIn'", type: "FieldValueRequired" });
    } else if (r.operator === "Exists" || r.operator === "DoesNotExist") {
      if (values.length) errs.push({ field: `${f}.values`, value: r.values, detail: "may not be specified when `operator` is 'Exists' or 'DoesNotExist'", type: "FieldValueForbidden" });
    } else errs.push({ field: `${f}.operator`, value: r.operator, detail: `not a valid selector operator (${OPERATORS.join(", ")})` });
    if (typeof r.key !== "string") errs.push(typeErr(`${f}.key`, r.key, "a string"));
    else for (const d of qualifiedName(r.key)) errs.push({ field: `${f}.key`, value: r.key, detail: d });
    for (const [j, v] of values.entries()) {
      if (typeof v !== "string") errs.push(typeErr(`${f}.values[${j}]`, v, "a string"));
      else for (const d of labelValue(v)) errs.push({ field: `${f}.values[${j}]`, value: v, detail: d });
    }
  }
  return errs;
}

/** A CIDR read by compiler/address.ts, or undefined with the reason in `errs`. */
function cidrOf(v: unknown, field: string, errs: FieldError[]): Cidr | undefined {
  try {
    return parseCidr(v);
  } catch (e) {
    errs.push({ field, value: v, detail: `must be a valid CIDR: ${(e as Error).message}` });
    return undefined;
  }
}

/** ValidateNetworkPolicyPort: protocol, port (number or name), endPort from port on. */
function networkPolicyPort(p: unknown, f: string): FieldError[] {
  if (!isObj(p)) return [typeErr(f, p, "an object")];
  const errs = protocolErrors(p.protocol, `${f}.protocol`);
  if (p.port !== undefined && p.port !== null) errs.push(...portNumOrNameErrors(p.port, `${f}.port`));
  if (p.endPort !== undefined && p.endPort !== null) {
    if (p.port === undefined || p.port === null) errs.push({ field: `${f}.port`, value: p.port, detail: "must specify port when endPort is set", type: "FieldValueRequired" });
    else if (typeof p.port === "string") errs.push({ field: `${f}.endPort`, value: p.endPort, detail: "may not be specified when `port` is non-numeric", type: "FieldValueForbidden" });
    else if (typeof p.endPort === "number" && typeof p.port === "number" && p.endPort < p.port) errs.push({ field: `${f}.endPort`, value: p.endPort, detail: "must be greater than or equal to `port`" });
    errs.push(...portNumberErrors(p.endPort, `${f}.endPort`));
  }
  return errs;
}

/** ValidateNetworkPolicyPeer: one kind of peer; an ipBlock's except strictly inside its cidr. */
function networkPolicyPeer(peer: unknown, f: string): FieldError[] {
  if (!isObj(peer)) return [typeErr(f, peer, "an object")];
  const errs: FieldError[] = [];
  const present = (["podSelector", "namespaceSelector", "ipBlock"] as const).filter((k) => peer[k] !== undefined && peer[k] !== null);
  for (const k of ["podSelector", "namespaceSelector"] as const) errs.push(...labelSelectorErrors(peer[k], `${f}.${k}`));
  if (!present.length) errs.push({ field: f, value: peer, detail: "must specify a peer", type: "FieldValueRequired" });
  else if (present.length > 1 && present.includes("ipBlock")) errs.push({ field: f, value: peer, detail: "may not specify both ipBlock and another peer", type: "FieldValueForbidden" });
  const b = peer.ipBlock;
  if (b === undefined || b === null) return errs;
  if (!isObj(b)) return [...errs, typeErr(`${f}.ipBlock`, b, "an object")];
  if (b.cidr === undefined || b.cidr === "") return [...errs, { field: `${f}.ipBlock.cidr`, value: b.cidr, detail: "", type: "FieldValueRequired" }];
  const cidr = cidrOf(b.cidr, `${f}.ipBlock.cidr`, errs);
  for (const [i, x] of listOf(b.except, `${f}.ipBlock.except`, errs).entries()) {
    const field = `${f}.ipBlock.except[${i}]`;
    const e = cidrOf(x, field, errs);
    if (cidr && e && !(e.prefix > cidr.prefix && cidrsOverlap(cidr, e))) errs.push({ field, value: x, detail: "must be a strict subset of `cidr`" });
  }
  return errs;
}

const POLICY_TYPES = ["Egress", "Ingress"];

function networkPolicy(o: Obj): FieldError[] {
  const spec = o.spec;
  if (spec === undefined) return [];
  if (!isObj(spec)) return [typeErr("spec", spec, "an object")];
  const errs = labelSelectorErrors(spec.podSelector, "spec.podSelector");
  for (const [dir, peers] of [["ingress", "from"], ["egress", "to"]] as const) {
    for (const [i, rule] of listOf(spec[dir], `spec.${dir}`, errs).entries()) {
      const f = `spec.${dir}[${i}]`;
      if (!isObj(rule)) {
        errs.push(typeErr(f, rule, "an object"));
        continue;
      }
      for (const [j, p] of listOf(rule.ports, `${f}.ports`, errs).entries()) errs.push(...networkPolicyPort(p, `${f}.ports[${j}]`));
      for (const [j, p] of listOf(rule[peers], `${f}.${peers}`, errs).entries()) errs.push(...networkPolicyPeer(p, `${f}.${peers}[${j}]`));
    }
  }
  const types = listOf(spec.policyTypes, "spec.policyTypes", errs);
  if (types.length > 2) errs.push({ field: "spec.policyTypes", value: types, detail: "may not specify more than two policyTypes" });
  else for (const [i, p] of types.entries()) if (!POLICY_TYPES.includes(p as string)) errs.push(notSupported(`spec.policyTypes[${i}]`, p, POLICY_TYPES));
  return errs;
}

const ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS = 1000;
const MAX_ADDRESSES = 100;
const MAX_SLICE_PORTS = 20000;
const INT32_MAX = 2 ** 31 - 1;

/** ValidateEndpointSlice: the address type, each endpoint's addresses of that type (and not
 * of a special range, ValidateEndpointIP), unique port names, protocols. A slice port's number
 * is not range-checked: kube-apiserver does not either (validatePorts), so a client meets
 * such slices on a real cluster and must refuse them itself. */
function endpointSlice(o: Obj): FieldError[] {
  const errs: FieldError[] = [];
  const at = o.addressType;
  if (at === undefined || at === "") errs.push({ field: "addressType", value: at, detail: "", type: "FieldValueRequired" });
  else if (!ADDRESS_TYPES.includes(at as string)) errs.push(notSupported("addressType", at, ADDRESS_TYPES));
  const family: Family | undefined = at === "IPv4" ? 4 : at === "IPv6" ? 6 : undefined;
  const endpoints = listOf(o.endpoints, "endpoints", errs);
  if (endpoints.length > MAX_ENDPOINTS) errs.push({ field: "endpoints", value: endpoints.length, detail: `must have at most ${MAX_ENDPOINTS} items` });
  else
    for (const [i, ep] of endpoints.entries()) {
      const f = `endpoints[${i}]`;
      if (!isObj(ep)) {
        errs.push(typeErr(f, ep, "an object"));
        continue;
      }
      const addrs = listOf(ep.addresses, `${f}.addresses`, errs);
      if (!addrs.length) errs.push({ field: `${f}.addresses`, value: ep.addresses, detail: "must contain at least 1 address", type: "FieldValueRequired" });
      else if (addrs.length > MAX_ADDRESSES) errs.push({ field: `${f}.addresses`, value: addrs.length, detail: `must have at most ${MAX_ADDRESSES} items` });
      else
        for (const [j, a] of addrs.entries()) {
          const field = `${f}.addresses[${j}]`;
          if (family === undefined) {
            if (typeof a !== "string") errs.push(typeErr(field, a, "a string"));
            continue;
          }
          try {
            addressFamily(a, family);
            const why = specialUse(a as string);
            if (why) errs.push({ field, value: a, detail: `may not be ${why}` });
          } catch (e) {
            errs.push({ field, value: a, detail: `must be a valid IPv${family} address: ${(e as Error).message}` });
          }
        }
      if (ep.nodeName !== undefined && ep.nodeName !== null) {
        if (typeof ep.nodeName !== "string") errs.push(typeErr(`${f}.nodeName`, ep.nodeName, "a string"));
        else for (const d of dns1123Subdomain(ep.nodeName)) errs.push({ field: `${f}.nodeName`, value: ep.nodeName, detail: d });
      }
      if (ep.hostname !== undefined && ep.hostname !== null) {
        if (typeof ep.hostname !== "string") errs.push(typeErr(`${f}.hostname`, ep.hostname, "a string"));
        else for (const d of dns1123Label(ep.hostname)) errs.push({ field: `${f}.hostname`, value: ep.hostname, detail: d });
      }
    }
  const ports = listOf(o.ports, "ports", errs);
  if (ports.length > MAX_SLICE_PORTS) errs.push({ field: "ports", value: ports.length, detail: `must have at most ${MAX_SLICE_PORTS} items` });
  else {
    const names = new Set<string>();
    for (const [i, p] of ports.entries()) {
      const f = `ports[${i}]`;
      if (!isObj(p)) {
        errs.push(typeErr(f, p, "an object"));
        continue;
      }
      const name = p.name ?? "";
      if (typeof name !== "string") errs.push(typeErr(`${f}.name`, name, "a string"));
      else {
        if (name) for (const d of dns1123Label(name)) errs.push({ field: `${f}.name`, value: name, detail: d });
        if (names.has(name)) errs.push({ field: `${f}.name`, value: name, detail: "", type: "FieldValueDuplicate" });
        names.add(name);
      }
      errs.push(...protocolErrors(p.protocol, `${f}.protocol`));
      if (p.port !== undefined && p.port !== null && (typeof p.port !== "number" || !Number.isInteger(p.port) || Math.abs(p.port) > INT32_MAX)) errs.push(typeErr(`${f}.port`, p.port, "a 32-bit integer"));
    }
  }
  return errs;
}

/** ValidateNode's pod CIDRs: valid CIDRs, at most one per IP family; and its status. */
function node(o: Obj): FieldError[] {
  const errs = nodeStatus(o.status);
  const spec = o.spec;
  if (spec === undefined) return errs;
  if (!isObj(spec)) return [...errs, typeErr("spec", spec, "an object")];
  if (spec.podCIDR !== undefined && spec.podCIDR !== "") cidrOf(spec.podCIDR, "spec.podCIDR", errs);
  const list = listOf(spec.podCIDRs, "spec.podCIDRs", errs);
  const cidrs = list.map((c, i) => cidrOf(c, `spec.podCIDRs[${i}]`, errs));
  if (list.length > 2 || (cidrs.length === 2 && cidrs[0] && cidrs[1] && cidrs[0].family === cidrs[1].family)) errs.push({ field: "spec.podCIDRs", value: list, detail: "may specify no more than one CIDR for each IP family" });
  return errs;
}

const NODE_ADDRESS_TYPES = ["ExternalDNS", "ExternalIP", "Hostname", "InternalDNS", "InternalIP"];

/** A Node's status.addresses (what the agents route by): a list of {type, address}, each
 * type a known one, no address twice (ValidateNodeUpdate). The rest of the status is not read
 * by skein; it only has to be an object. */
function nodeStatus(status: unknown): FieldError[] {
  if (status === undefined || status === null) return [];
  if (!isObj(status)) return [typeErr("status", status, "an object")];
  const errs: FieldError[] = [];
  const seen = new Set<string>();
  for (const [i, a] of listOf(status.addresses, "status.addresses", errs).entries()) {
    const f = `status.addresses[${i}]`;
    if (!isObj(a)) {
      errs.push(typeErr(f, a, "an object (type, address)"));
      continue;
    }
    if (!NODE_ADDRESS_TYPES.includes(a.type as string)) errs.push(notSupported(`${f}.type`, a.type, NODE_ADDRESS_TYPES));
    if (typeof a.address !== "string") errs.push(typeErr(`${f}.address`, a.address, "a string"));
    const k = `${String(a.type)}/${String(a.address)}`;
    if (seen.has(k)) errs.push({ field: f, value: a.address, detail: "", type: "FieldValueDuplicate" });
    seen.add(k);
  }
  return errs;
}

const IP_MODES = ["Proxy", "VIP"];

/** A Service's status.loadBalancer (ValidateLoadBalancerStatus): each ingress an ip (a valid
 * address) or hostname (a DNS name, not an address), an ipMode only with an ip, and ports of
 * valid numbers and protocols. The spec's rules are services.ts's. */
function service(o: Obj): FieldError[] {
  const status = o.status;
  if (status === undefined || status === null) return [];
  if (!isObj(status)) return [typeErr("status", status, "an object")];
  const lb = status.loadBalancer;
  if (lb === undefined || lb === null) return [];
  if (!isObj(lb)) return [typeErr("status.loadBalancer", lb, "an object (ingress)")];
  const errs: FieldError[] = [];
  for (const [i, ing] of listOf(lb.ingress, "status.loadBalancer.ingress", errs).entries()) {
    const f = `status.loadBalancer.ingress[${i}]`;
    if (!isObj(ing)) {
      errs.push(typeErr(f, ing, "an object (ip, hostname, ipMode, ports)"));
      continue;
    }
    if (ing.ip !== undefined && ing.ip !== "") {
      try {
        addressFamily(ing.ip);
      } catch (e) {
        errs.push({ field: `${f}.ip`, value: ing.ip, detail: `must be a valid IP address: ${(e as Error).message}` });
      }
    }
    if (ing.hostname !== undefined && ing.hostname !== "") {
      if (typeof ing.hostname !== "string") errs.push(typeErr(`${f}.hostname`, ing.hostname, "a string"));
      else {
        for (const d of dns1123Subdomain(ing.hostname)) errs.push({ field: `${f}.hostname`, value: ing.hostname, detail: d });
        if (/^[\d.]+$|:/.test(ing.hostname)) errs.push({ field: `${f}.hostname`, value: ing.hostname, detail: "must be a DNS name, not an IP address" });
      }
    }
    if (ing.ipMode !== undefined && ing.ipMode !== null) {
      if (!IP_MODES.includes(ing.ipMode as string)) errs.push(notSupported(`${f}.ipMode`, ing.ipMode, IP_MODES));
      else if (ing.ip === undefined || ing.ip === "") errs.push({ field: `${f}.ipMode`, value: ing.ipMode, detail: "must be specified when `ip` is set", type: "FieldValueRequired" });
    }
    for (const [j, p] of listOf(ing.ports, `${f}.ports`, errs).entries()) {
      const pf = `${f}.ports[${j}]`;
      if (!isObj(p)) {
        errs.push(typeErr(pf, p, "an object (port, protocol, error)"));
        continue;
      }
      errs.push(...portNumberErrors(p.port, `${pf}.port`), ...protocolErrors(p.protocol, `${pf}.protocol`));
    }
  }
  return errs;
}

const FIELD_RULES: Record<string, (o: Obj) => FieldError[]> = {
  "networking.k8s.io/NetworkPolicy": networkPolicy,
  "discovery.k8s.io/EndpointSlice": endpointSlice,
  "/Node": node,
  "/Service": service,
  "/Event": (o) => legacyEventErrors(o),
};

const sameJSON = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const specField = (o: Obj, k: string) => (isObj(o.spec) ? o.spec[k] : undefined);
const podCIDRForbidden = (field: string, value: unknown): FieldError => ({ field, value, detail: 'node updates may not change podCIDR except from "" to valid', type: "FieldValueForbidden" });

/** What an update may not do that a create may (kube's ValidateXUpdate, old against new): a
 * Node's pod CIDRs may be set once, an EndpointSlice's addressType never changes, and a
 * Namespace with a deletionTimestamp stays Terminating (without one, it is Active). */
const UPDATE_RULES: Record<string, (next: Obj, cur: Obj) => FieldError[]> = {
  "/Node": (next, cur) => {
    const errs: FieldError[] = [];
    const was = specField(cur, "podCIDRs");
    if (Array.isArray(was) && was.length && !sameJSON(specField(next, "podCIDRs"), was)) errs.push(podCIDRForbidden("spec.podCIDRs", specField(next, "podCIDRs")));
    const one = specField(cur, "podCIDR");
    if (typeof one === "string" && one !== "" && specField(next, "podCIDR") !== one) errs.push(podCIDRForbidden("spec.podCIDR", specField(next, "podCIDR")));
    return errs;
  },
  "/Pod": podUpdate,
  "discovery.k8s.io/EndpointSlice": (next, cur) => (sameJSON(next.addressType, cur.addressType) ? [] : [{ field: "addressType", value: next.addressType, detail: "field is immutable" }]),
  "/Namespace": (next, cur) => {
    const phase = isObj(next.status) ? next.status.phase : undefined;
    const meta = isObj(next.metadata) ? next.metadata : {};
    if (meta.deletionTimestamp) return phase === "Terminating" ? [] : [{ field: "status.phase", value: phase, detail: "may only be 'Terminating' if `deletionTimestamp` is not empty" }];
    // a status write that leaves the phase out is defaulted to Active (SetDefaults_NamespaceStatus)
    return phase === undefined || phase === "Active" || sameJSON(phase, isObj(cur.status) ? cur.status.phase : undefined) ? [] : [{ field: "status.phase", value: phase, detail: "may only be 'Active' if `deletionTimestamp` is empty" }];
  },
};

/** kube 1.32's ValidatePodUpdate words what a pod update may change (InPlacePodVerticalScaling off) */
const POD_UPDATABLE = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/**
 * kube's ValidatePodUpdate: a pod's spec is fixed once created but for its images, deadline,
 * tolerations, grace period and scheduling gates (taken as they are here, without their own
 * finer rules). So spec.nodeName is never set or changed by an update: only the binding
 * subresource (Store.bind) sets it.
 */
function podUpdate(next: Obj, cur: Obj): FieldError[] {
  const a = isObj(next.spec) ? next.spec : {};
  const b = isObj(cur.spec) ? cur.spec : {};
  const images = (list: unknown, from: unknown) => (Array.isArray(list) ? list.map((c, i) => (isObj(c) && Array.isArray(from) && isObj(from[i]) ? { ...c, image: from[i].image } : c)) : list);
  const munged: Obj = { ...a, containers: images(a.containers, b.containers), initContainers: images(a.initContainers, b.initContainers) };
  for (const k of ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"]) munged[k] = b[k];
  const changed = [...new Set([...Object.keys(munged), ...Object.keys(b)])].filter((k) => !sameJSON(munged[k], b[k])).sort();
  if (!changed.length) return [];
  const diff = changed.map((k) => `\n  - ${k}: ${JSON.stringify(b[k] ?? null)}\n  + ${k}: ${JSON.stringify(munged[k] ?? null)}`).join("");
  return [{ field: "spec", value: next.spec, detail: `${POD_UPDATABLE}${diff}`, type: "FieldValueForbidden" }];
}

/** The update rules of `t` for `next` replacing `cur`; throws 422 naming each field. */
export function validateUpdate(t: ResourceType, next: KubeObject, cur: KubeObject): void {
  const errs = UPDATE_RULES[`${t.group}/${t.kind}`]?.(next as Obj, cur as Obj) ?? [];
  if (errs.length) throw invalid(t, next.metadata.name ?? "", errs);
}
