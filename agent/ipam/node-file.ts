// The node file: what the agent learned about this node (its spec.podCIDRs) and the CNI
// plugin reads. The agent writes it; the plugin only reads it.
import { existsSync, renameSync, writeFileSync } from "node:fs";
import * as v from "valibot";
import { NotAFileError, readFileBounded, TooLargeError } from "../sys/bounded-read.ts";
import { AddressError } from "../../compiler/address.ts";
import { parseCidr, poolFromCidr, poolsFromCidrs } from "./cidr.ts";

/** far above any real node file (two pod CIDRs and a few cluster CIDRs) */
export const NODE_FILE_LIMIT = 64 * 1024;

const NodeFileSchema = v.object({
  nodeName: v.optional(v.string()),
  podCIDRs: v.pipe(v.array(v.string()), v.minLength(1), v.maxLength(2)),
  clusterCIDRs: v.optional(v.array(v.string())),
  /** the pods' interface MTU the node's overlay leaves room for (the underlay's, less 50 bytes
   * for VXLAN); a network configuration's own `mtu` wins */
  mtu: v.optional(v.pipe(v.number(), v.integer(), v.minValue(576), v.maxValue(65535))),
});
export type NodeFile = v.InferOutput<typeof NodeFileSchema>;

export class NodeFileError extends Error {}
/** The file reads but what it holds is refused (a field and why): an invalid configuration,
 * where NodeFileError alone is a file that cannot be read. */
export class NodeFileInvalid extends NodeFileError {}

/** undefined while the file does not exist yet (the agent has not seen spec.podCIDRs). */
export function readNodeFile(path: string): NodeFile | undefined {
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileBounded(path, NODE_FILE_LIMIT, `node file ${path}`).toString("utf8");
  } catch (e) {
    if (e instanceof TooLargeError || e instanceof NotAFileError) throw new NodeFileError(e.message);
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
    throw new NodeFileInvalid(`node file ${path}: ${i.path?.map((p) => (typeof p.key === "number" ? `[${p.key}]` : `.${String(p.key)}`)).join("").replace(/^\./, "") || "top level"}: ${i.message}`);
  }
  // read strictly (compiler/address.ts), the pod CIDRs also for whether they can work: the
  // agent writes only such values, so anything else was not written by it
  const field = (name: string, check: () => unknown) => {
    try {
      check();
    } catch (e) {
      if (e instanceof AddressError) throw new NodeFileInvalid(`node file ${path}: ${name}: ${e.message}`);
      throw e;
    }
  };
  r.output.podCIDRs.forEach((c, i) => field(`podCIDRs[${i}]`, () => poolFromCidr(c)));
  field("podCIDRs", () => poolsFromCidrs(r.output.podCIDRs));
  r.output.clusterCIDRs?.forEach((c, i) => field(`clusterCIDRs[${i}]`, () => parseCidr(c)));
  return r.output;
}

export function writeNodeFile(path: string, content: NodeFile): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + "\n", { mode: 0o644 });
  renameSync(tmp, path);
}
