// The node file against the shared table of hostile values (compiler/address.case.ts): what
// the agent would never write is refused with the field named, and the CNI plugin answers it
// with code 7 (invalid configuration).
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { HOSTILE, UNUSABLE_POD_CIDRS, VALID_CIDRS, VALID_POD_CIDRS } from "../../compiler/address.case.ts";
import { quote } from "../../compiler/address.ts";
import { useTempDir } from "../../test/harness/index.ts";
import { resolveNetwork } from "../cni/commands.ts";
import { parseNetConf } from "../cni/config.ts";
import { CniError } from "../cni/spec.ts";
import { NodeFileInvalid, readNodeFile, writeNodeFile } from "./node-file.ts";

const tmp = useTempDir("nodefile");
let n = 0;
const file = (content: unknown) => {
  const path = `${tmp}/node-${n++}.json`;
  writeFileSync(path, JSON.stringify(content));
  return path;
};
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("accepted");
};

// each field holding a CIDR, as a function putting a value there
const fields: Array<[string, (v: unknown) => Record<string, unknown>]> = [
  ["podCIDRs[0]", (v) => ({ nodeName: "n1", podCIDRs: [v] })],
  ["podCIDRs[1]", (v) => ({ nodeName: "n1", podCIDRs: ["10.244.3.0/24", v] })],
  ["clusterCIDRs[0]", (v) => ({ nodeName: "n1", podCIDRs: ["10.244.3.0/24"], clusterCIDRs: [v] })],
  ["clusterCIDRs[1]", (v) => ({ nodeName: "n1", podCIDRs: ["10.244.3.0/24"], clusterCIDRs: ["10.244.0.0/16", v] })],
];
const cases = fields.flatMap(([field, put]) => [
  ...HOSTILE.map((h) => [`${field} = ${quote(h.value)}`, field, put(h.value)] as const),
  ...(field.startsWith("podCIDRs") ? UNUSABLE_POD_CIDRS.map(([c]) => [`${field} = ${c} (cannot work)`, field, put(c)] as const) : []),
]);

describe("readNodeFile", () => {
  test.each(cases)("%s is refused, naming the field", (_n, field, content) => {
    const path = file(content);
    const e = refusal(() => readNodeFile(path));
    expect(e).toBeInstanceOf(NodeFileInvalid);
    expect(e.message.startsWith(`node file ${path}: ${field}: `)).toBe(true);
    expect(e.message.length).toBeLessThan(400);
  });

  test("pod CIDRs that cannot work say why", () => {
    for (const [c, why] of UNUSABLE_POD_CIDRS) expect(refusal(() => readNodeFile(file({ podCIDRs: [c] }))).message).toMatch(why);
  });

  test("what the agent writes is read back as it is", () => {
    for (const p of VALID_POD_CIDRS) {
      const path = `${tmp}/written-${n++}.json`;
      const content = { nodeName: "n1", podCIDRs: [p], clusterCIDRs: VALID_CIDRS };
      writeNodeFile(path, content);
      expect(readNodeFile(path)).toEqual(content);
    }
  });
});

describe("the CNI plugin on a refused node file", () => {
  test.each(cases.filter(([, field]) => field === "podCIDRs[0]" || field === "clusterCIDRs[0]"))("%s: code 7, naming the file and field", (_n, field, content) => {
    const path = file(content);
    const conf = parseNetConf(JSON.stringify({ cniVersion: "1.1.0", name: "net", type: "skein", nodeFile: path }));
    const e = refusal(() => resolveNetwork(conf));
    expect(e).toBeInstanceOf(CniError);
    expect((e as CniError).code).toBe(7);
    expect(e.message).toContain(`node file ${path}: ${field}: `);
  });
});
