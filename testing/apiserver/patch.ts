// PATCH bodies as kube-apiserver applies them: JSON merge patch (RFC 7386), JSON patch
// (RFC 6902, through fast-json-patch), and strategic merge patch for the lists this project
// meets, merged by their merge key (k8s.io/api's patchMergeKey tags) with the directives
// kubectl sends ($patch, $setElementOrder, $retainKeys, $deleteFromPrimitiveList).
import jsonpatch, { type Operation } from "fast-json-patch";
import { ApiError } from "./store.ts";
import { MAX_BODY_BYTES } from "./body.ts";

type J = unknown;
type Obj = Record<string, J>;
const isObj = (v: J): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** kube-apiserver's cap on the operations of one JSON patch */
export const MAX_JSON_PATCH_OPS = 10_000;

export const PATCH_TYPES = ["application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json"];

export function mergePatch(target: J, patch: J): J {
  if (!isObj(patch)) return patch;
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Lists merged by key (path without indexes → the key); primitive lists merged as sets. */
const MERGE_KEYS: Record<string, string> = {
  "spec.ports": "port",
  "spec.containers": "name",
  "spec.initContainers": "name",
  "spec.containers.ports": "containerPort",
  "spec.containers.env": "name",
  "spec.volumes": "name",
  "spec.taints": "key",
  "spec.tolerations": "key",
  "status.conditions": "type",
  "status.addresses": "type",
  "status.podIPs": "ip",
  "metadata.ownerReferences": "uid",
};
const PRIMITIVE_SETS = new Set(["metadata.finalizers", "spec.podCIDRs"]);

export function strategicMergePatch(target: J, patch: J, path = ""): J {
  if (!isObj(patch)) return patch;
  if (patch.$patch === "replace") {
    const { $patch: _, ...rest } = patch;
    return rest;
  }
  if (patch.$patch === "delete") return undefined;
  let out: Obj = isObj(target) ? { ...target } : {};
  const retain = patch.$retainKeys;
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys" || k.startsWith("$setElementOrder/") || k.startsWith("$deleteFromPrimitiveList/")) continue;
    const p = path ? `${path}.${k}` : k;
    if (v === null) delete out[k];
    else if (Array.isArray(v) && MERGE_KEYS[p]) out[k] = mergeList(out[k], v, MERGE_KEYS[p], p);
    else if (Array.isArray(v) && PRIMITIVE_SETS.has(p)) out[k] = [...new Set([...(Array.isArray(out[k]) ? out[k] : []), ...v])];
    else {
      const m = strategicMergePatch(out[k], v, p);
      if (m === undefined) delete out[k];
      else out[k] = m;
    }
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$deleteFromPrimitiveList/") && Array.isArray(v)) {
      const f = k.slice("$deleteFromPrimitiveList/".length);
      if (Array.isArray(out[f])) out[f] = (out[f] as J[]).filter((x) => !v.includes(x));
    }
    if (k.startsWith("$setElementOrder/") && Array.isArray(v)) {
      const f = k.slice("$setElementOrder/".length);
      const key = MERGE_KEYS[path ? `${path}.${f}` : f];
      if (Array.isArray(out[f])) out[f] = reorder(out[f] as J[], v, key);
    }
  }
  if (Array.isArray(retain)) out = Object.fromEntries(Object.entries(out).filter(([k]) => retain.includes(k)));
  return out;
}

function mergeList(target: J, patch: J[], key: string, path: string): J[] {
  const out = Array.isArray(target) ? [...target] : [];
  for (const item of patch) {
    if (!isObj(item) || !(key in item)) throw new ApiError(422, "Invalid", `${path}: every item of a strategic merge patch needs its merge key ${JSON.stringify(key)}`);
    const i = out.findIndex((x) => isObj(x) && x[key] === item[key]);
    if (item.$patch === "delete") {
      if (i >= 0) out.splice(i, 1);
    } else if (i >= 0) out[i] = strategicMergePatch(out[i], item, path);
    else out.push(strategicMergePatch(undefined, item, path));
  }
  return out;
}

/** Items named in `order` first, in that order; the others after, as they were. */
function reorder(list: J[], order: J[], key: string | undefined): J[] {
  const id = (x: J) => (key && isObj(x) ? x[key] : x);
  const rank = new Map(order.map((o, i) => [id(o), i]));
  return list.map((x, i) => ({ x, r: rank.get(id(x)) ?? order.length + i })).sort((a, b) => a.r - b.r).map((e) => e.x);
}

export function applyPatch(contentType: string, target: J, body: string, limit = MAX_BODY_BYTES): J {
  if (contentType.startsWith("application/apply-patch")) {
    throw new ApiError(415, "UnsupportedMediaType", `server-side apply (${contentType}) is not supported by this server: use client-side apply (kubectl apply without --server-side) - accepted media types include: ${PATCH_TYPES.join(", ")}`);
  }
  if (!PATCH_TYPES.includes(contentType)) throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(", ")}`);
  let patch: J;
  try {
    patch = JSON.parse(body);
  } catch (e) {
    throw new ApiError(400, "BadRequest", `error decoding patch: ${(e as Error).message}`);
  }
  let out: J;
  switch (contentType) {
    case "application/merge-patch+json":
      out = mergePatch(target, patch);
      break;
    case "application/strategic-merge-patch+json":
      out = strategicMergePatch(target, patch);
      break;
    case "application/json-patch+json":
      out = jsonPatch(target, patch, limit);
      break;
    default:
      throw new Error(`unreachable: patch type ${contentType}`);
  }
  // every patch type can grow an object past what a request could have sent whole
  const size = out === undefined ? 0 : Buffer.byteLength(JSON.stringify(out));
  if (size > limit) throw new ApiError(413, "RequestEntityTooLarge", `Request entity too large: the patched object is ${size} bytes, limit is ${limit}`);
  return out;
}

/**
 * RFC 6902, op by op: copies can double the object each time (30 of them ask for gigabytes),
 * so the values ops add or copy share one budget, measured before any is copied.
 */
function jsonPatch(target: J, patch: J, limit: number): J {
  if (!Array.isArray(patch)) throw new ApiError(400, "BadRequest", "a JSON patch must be a list of operations");
  if (patch.length > MAX_JSON_PATCH_OPS) throw new ApiError(413, "RequestEntityTooLarge", `the allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPS}, got: ${patch.length}`);
  let doc = structuredClone(target);
  let budget = limit;
  patch.forEach((op: Operation, i) => {
    try {
      if (isObj(op) && (op.op === "add" || op.op === "replace" || op.op === "copy")) {
        let value: J = undefined;
        if (op.op === "copy") {
          try {
            value = jsonpatch.getValueByPointer(doc, String(op.from));
          } catch {
            // a bad pointer: applyOperation below says so
          }
        } else value = op.value;
        budget -= sizeWithin(value, budget);
        if (budget < 0) throw new ApiError(413, "RequestEntityTooLarge", `the JSON patch could not be applied: operation ${i} (${op.op}) takes the values the patch adds or copies past ${limit} bytes`);
      }
      doc = jsonpatch.applyOperation(doc, op, true, true, true, i).newDocument;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(422, "Invalid", `the JSON patch could not be applied: operation ${i}: ${(e as Error).message.split("\n")[0]}`);
    }
  });
  return doc;
}

/**
 * About the bytes `v` takes as JSON, walking no further than it takes to pass `budget`
 * (then it answers budget + 1), so measuring a huge value costs no more than a small one.
 */
export function sizeWithin(v: J, budget: number): number {
  let n = 0;
  const stack: J[] = [v];
  while (stack.length) {
    const x = stack.pop();
    if (typeof x === "string") n += x.length + 2;
    else if (Array.isArray(x)) {
      n += 2 + x.length;
      for (const y of x) stack.push(y);
    } else if (isObj(x)) {
      n += 2;
      for (const [k, y] of Object.entries(x)) {
        n += k.length + 4;
        stack.push(y);
      }
    } else n += x === undefined ? 0 : String(x).length;
    if (n > budget) return budget + 1;
  }
  return n;
}
