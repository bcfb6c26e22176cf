import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { DEFAULT_MTU, resolveNetwork } from "./commands.ts";
import { parseNetConf } from "./config.ts";
import { CniError } from "./spec.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-net-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const conf = (extra: Record<string, unknown>) => parseNetConf(JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "skein", ...extra }));
const nodeFile = (content: unknown) => {
  const p = `${dir}/node-${crypto.randomUUID()}.json`;
  writeFileSync(p, JSON.stringify(content));
  return p;
};

describe("the pod interface's MTU", () => {
  test("follows the node file the agent wrote (its overlay's MTU)", () => {
    const p = nodeFile({ podCIDRs: ["10.244.1.0/24"], mtu: 1450 });
    expect(resolveNetwork(conf({ nodeFile: p })).mtu).toBe(1450);
  });
  test("the configuration's own mtu wins over the node file's", () => {
    const p = nodeFile({ podCIDRs: ["10.244.1.0/24"], mtu: 1450 });
    expect(resolveNetwork(conf({ nodeFile: p, mtu: 9000 })).mtu).toBe(9000);
  });
  test("1500 when neither says", () => {
    const p = nodeFile({ podCIDRs: ["10.244.1.0/24"] });
    expect(resolveNetwork(conf({ nodeFile: p })).mtu).toBe(DEFAULT_MTU);
    expect(resolveNetwork(conf({ podCIDRs: ["10.244.1.0/24"] })).mtu).toBe(DEFAULT_MTU);
  });
  test("a node file with an MTU no interface can have is refused, naming the field", () => {
    for (const mtu of [100, 70000, 1.5, "1450"]) {
      const p = nodeFile({ podCIDRs: ["10.244.1.0/24"], mtu });
      expect(() => resolveNetwork(conf({ nodeFile: p }))).toThrow(CniError);
      expect(() => resolveNetwork(conf({ nodeFile: p }))).toThrow(/mtu/);
    }
  });
});
