// Request bodies in Kubernetes' protobuf encoding, which kubectl and client-go send for
// built-in kinds (Content-Type application/vnd.kubernetes.protobuf): the 4-byte magic "k8s\0",
// then a runtime.Unknown whose typeMeta names the kind and whose raw field is the object
// (k8s.io.api.core.v1.Namespace, …). The server stores and serves the Kubernetes JSON form, so
// an object is converted to the JSON Go's encoding/json would have written for the same Go
// struct: field presence alone cannot say that (generated Go code writes every non-pointer
// field, zero or not), so k8s-proto.ts carries each field's pointer/omitempty/inline tags.
import { createFileRegistry, fromBinary, isFieldSet, ScalarType, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { GO_FIELDS, SCHEMA } from "./k8s-proto.ts";
import { groupVersion, type KubeObject, type ResourceType } from "./resources.ts";
import { ApiError } from "./store.ts";
import { depthOf } from "./validate.ts";

export const PROTOBUF = "application/vnd.kubernetes.protobuf";
const MAGIC = [0x6b, 0x38, 0x73, 0x00];
/** kube-apiserver's own limit on a request body */
export const MAX_PROTOBUF_BYTES = 3 * 1024 * 1024;
/** the served kinds nest at most 10 messages deep; more is not a Kubernetes object */
const RECURSION_LIMIT = 32;
/** nesting allowed in the JSON that FieldsV1 carries inside the protobuf */
const MAX_JSON_DEPTH = 64;

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, SCHEMA));
const UNKNOWN = registry.getMessage("k8s.io.apimachinery.pkg.runtime.Unknown")!;
const META = "k8s.io.apimachinery.pkg.apis.meta.v1.";
const TIME = `${META}Time`;
const FIELDS_V1 = `${META}FieldsV1`;
const QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";

/** The protobuf message of a served type: k8s.io.api.<first label of the group, or core>.<version>.<Kind>. */
export function schemaOf(t: Pick<ResourceType, "group" | "version" | "kind">): DescMessage | undefined {
  return registry.getMessage(`k8s.io.api.${t.group ? t.group.split(".")[0] : "core"}.${t.version}.${t.kind}`);
}

const unsupported = (why: string) => new ApiError(415, "UnsupportedMediaType", `the body of the request could not be decoded as ${PROTOBUF}: ${why}`);
const bad = (why: string) => new ApiError(400, "BadRequest", `the body of the request could not be decoded: ${why}`);

/** A protobuf request body for `expected` as the object in its JSON form; ApiError 400, 413 or 415 otherwise. */
export function decodeProtobuf(bytes: Uint8Array, expected: ResourceType, maxBytes = MAX_PROTOBUF_BYTES): KubeObject {
  if (bytes.length > maxBytes) throw new ApiError(413, "RequestEntityTooLarge", `the request body is ${bytes.length} bytes, more than the limit of ${maxBytes}`);
  if (bytes.length < MAGIC.length || MAGIC.some((b, i) => bytes[i] !== b)) throw unsupported('it does not start with the magic "k8s\\0"');
  const env = parse(UNKNOWN, bytes.subarray(MAGIC.length), "the envelope (runtime.Unknown)");
  const typeMeta = env.typeMeta as { apiVersion: string; kind: string } | undefined;
  const raw = env.raw as Uint8Array;
  if (env.contentEncoding) throw unsupported(`contentEncoding ${JSON.stringify(env.contentEncoding)} is not supported`);
  if (env.contentType && env.contentType !== PROTOBUF) throw unsupported(`contentType ${JSON.stringify(env.contentType)} is not supported`);
  const apiVersion = groupVersion(expected);
  if (typeMeta?.kind !== expected.kind || typeMeta.apiVersion !== apiVersion) {
    const named = `${JSON.stringify(typeMeta?.kind ?? "")} in version ${JSON.stringify(typeMeta?.apiVersion ?? "")}`;
    throw new ApiError(400, "BadRequest", `the body of the request is ${named}, which cannot be handled as a ${expected.kind} (${apiVersion})`);
  }
  const desc = schemaOf(expected);
  if (!desc) throw unsupported(`there is no protobuf schema for ${expected.kind} (${apiVersion}); send application/json`);
  const object = kubeJson(desc, parse(desc, raw, `${expected.kind} (${apiVersion})`), expected.kind);
  const metadata = (object.metadata ?? {}) as KubeObject["metadata"];
  return { apiVersion, kind: expected.kind, ...object, metadata };
}

function parse(desc: DescMessage, bytes: Uint8Array, what: string): Message & Record<string, unknown> {
  try {
    // unknown fields are dropped, as kube-apiserver drops them from protobuf
    return fromBinary(desc, bytes, { readUnknownFields: false, recursionLimit: RECURSION_LIMIT }) as Message & Record<string, unknown>;
  } catch (e) {
    throw bad(`${what} is not valid protobuf: ${(e as Error).message}`);
  }
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function kubeJson(desc: DescMessage, msg: Record<string, unknown>, path: string): Record<string, Json> {
  const out: Record<string, Json> = {};
  const tags = GO_FIELDS[desc.typeName] ?? {};
  for (const f of desc.fields) {
    const tag = tags[f.name] ?? "";
    const [flags = "", json = f.name] = tag.split("=");
    if (json === "-") continue;
    const at = `${path}.${json}`;
    const v = msg[f.localName];
    if (f.fieldKind === "list") {
      const items = v as unknown[];
      if (items.length) out[json] = items.map((x, i) => (f.listKind === "message" ? special(f.message, x as Record<string, unknown>, `${at}[${i}]`) : scalar(f, x, `${at}[${i}]`)) ?? null);
    } else if (f.fieldKind === "map") {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length) out[json] = Object.fromEntries(entries.map(([k, x]) => [k, (f.mapKind === "message" ? special(f.message, x as Record<string, unknown>, `${at}[${k}]`) : scalar(f, x, `${at}[${k}]`)) ?? null]));
    } else if (f.fieldKind === "message") {
      if (!isFieldSet(msg as Message, f)) continue;
      const o = special(f.message, v as Record<string, unknown>, at);
      if (o === undefined) continue;
      if (flags.includes("i") && o && typeof o === "object" && !Array.isArray(o)) Object.assign(out, o);
      else out[json] = o;
    } else if (f.fieldKind === "scalar") {
      // a pointer is written only when set, zero or not; any other field always, and Go
      // omits its zero value only with omitempty
      if (flags.includes("p") ? !isFieldSet(msg as Message, f) : flags.includes("o") && isZero(v)) continue;
      out[json] = scalar(f, v, at);
    } else throw bad(`${at}: ${f.fieldKind} fields are not part of the Kubernetes schema`);
  }
  return out;
}

/** A message, or one of the types with a JSON form of their own; undefined for a zero time (Go writes null). */
function special(desc: DescMessage, msg: Record<string, unknown>, path: string): Json | undefined {
  switch (desc.typeName) {
    case TIME: {
      const seconds = int64(msg.seconds, `${path}.seconds`);
      if (seconds === 0 && msg.nanos === 0) return undefined;
      const d = new Date(seconds * 1000);
      const year = d.getUTCFullYear();
      if (!(year >= 1 && year <= 9999)) throw bad(`${path}: ${seconds} seconds is not a time in years 1 to 9999`);
      return d.toISOString().replace(/\.\d+Z$/, "Z");
    }
    case QUANTITY:
      return msg.string as string;
    case INT_OR_STRING: {
      const type = int64(msg.type, `${path}.type`);
      if (type === 0) return msg.intVal as number;
      if (type === 1) return msg.strVal as string;
      throw bad(`${path}: IntOrString type ${type} is neither 0 (int) nor 1 (string)`);
    }
    case FIELDS_V1:
      return rawJson(msg.Raw as Uint8Array, path);
  }
  return kubeJson(desc, msg, path);
}

function scalar(f: DescField, v: unknown, path: string): Json {
  const kind = f.fieldKind === "map" ? f.mapKind === "scalar" && f.scalar : f.scalar;
  switch (kind) {
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return int64(v, path);
    case ScalarType.BYTES:
      return Buffer.from(v as Uint8Array).toString("base64");
  }
  return v as Json;
}

function int64(v: unknown, path: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw bad(`${path}: ${String(v)} is beyond the integers JSON can carry exactly`);
  return n;
}

const isZero = (v: unknown) => v === "" || v === 0 || v === 0n || v === false || (v instanceof Uint8Array && v.length === 0);

/** JSON embedded in a protobuf bytes field, bounded in nesting. */
function rawJson(raw: Uint8Array, path: string): Json | undefined {
  if (!raw.length) return undefined;
  let v: Json;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) as Json;
  } catch (e) {
    throw bad(`${path}: not JSON: ${(e as Error).message}`);
  }
  // JSON.parse itself has no depth limit
  if (depthOf(v, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw bad(`${path}: JSON nested deeper than ${MAX_JSON_DEPTH}`);
  return v;
}
