// The node file: what the agent learned about this node (its spec.podCIDRs) and the CNI
// plugin reads. The agent writes it; the plugin only reads it.
import { existsSync, renameSync, writeFileSync } from "node:fs";
import * as v from "valibot";
import { readFileBounded, TooLargeError } from "../sys/bounded-read.ts";

/** far above any real node file (two pod CIDRs and a few cluster CIDRs) */
export const NODE_FILE_LIMIT = 64 * 1024;

const NodeFileSchema = v.object({
  nodeName: v.optional(v.string()),
  podCIDRs: v.pipe(v.array(v.string()), v.minLength(1), v.maxLength(2)),
  clusterCIDRs: v.optional(v.array(v.string())),
});
export type NodeFile = v.InferOutput<typeof NodeFileSchema>;

export class NodeFileError extends Error {}

/** undefined while the file does not exist yet (the agent has not seen spec.podCIDRs). */
export function readNodeFile(path: string): NodeFile | undefined {
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileBounded(path, NODE_FILE_LIMIT, `node file ${path}`).toString("utf8");
  } catch (e) {
    if (e instanceof TooLargeError) throw new NodeFileError(e.message);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new NodeFileError(`node file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  const r = v.safeParse(NodeFileSchema, raw);
  if (!r.success) {
    const i = r.issues[0]!;
    throw new NodeFileError(`node file ${path}: ${i.path?.map((p) => String(p.key)).join(".") || "top level"}: ${i.message}`);
  }
  return r.output;
}

export function writeNodeFile(path: string, content: NodeFile): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + "\n", { mode: 0o644 });
  renameSync(tmp, path);
}
