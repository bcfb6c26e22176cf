// Request bodies, read as hostile input: never more than MAX_BODY_BYTES held (counted while
// the stream is read, so a chunked body without content-length is cut off too), and JSON
// nested no deeper than MAX_JSON_DEPTH, checked before JSON.parse: an object nested tens of
// thousands of levels deep parses, but overflows the stack of every later JSON.stringify,
// so every list of its type would fail and so would the save.
import { ApiError } from "./errors.ts";
import { readStreamBounded } from "../../agent/sys/bounded-read.ts";

/** kube-apiserver's limit for a JSON or YAML request body (3 MiB) */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;
/** kube-apiserver allows 10,000 levels (Go's stacks grow); here recursion over the object
 * must not overflow (docs/architecture.md), and real objects stay far below this */
export const MAX_JSON_DEPTH = 500;

const tooLarge = (limit: number) => new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${limit}`);

/** The body's bytes, refused with 413 as soon as they pass `limit`. */
export async function readBytes(req: Request, limit = MAX_BODY_BYTES): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? 0);
  if (declared > limit) throw tooLarge(limit);
  return readStreamBounded(req.body, limit, () => tooLarge(limit));
}

/** Throws when `text` (JSON) nests arrays and objects deeper than `max`. */
export function checkDepth(text: string, max = MAX_JSON_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) throw new ApiError(400, "BadRequest", `the body of the request could not be decoded: JSON nested deeper than ${max} levels`);
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

/** The body as text (UTF-8, size-limited); "" when there is none. */
export async function readText(req: Request, limit = MAX_BODY_BYTES): Promise<string> {
  return new TextDecoder().decode(await readBytes(req, limit));
}

/** The body as parsed JSON, size- and depth-limited; undefined when there is none. */
export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const text = await readText(req, limit);
  if (!text) return undefined;
  checkDepth(text);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "BadRequest", `the body of the request could not be decoded: ${(e as Error).message}`);
  }
}
