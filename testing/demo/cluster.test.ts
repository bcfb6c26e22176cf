import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { nodeDefs, readState } from "./cluster.ts";

test("nodes: 1 to 6, the third behind the NAT", () => {
  expect(nodeDefs(3).map((d) => [d.name, d.segment])).toEqual([["node1", "a"], ["node2", "a"], ["node3", "nat"]]);
  expect(nodeDefs(6).filter((d) => d.segment === "nat")).toHaveLength(1);
  expect(() => nodeDefs(0)).toThrow(/1 to 6/);
  expect(() => nodeDefs(7)).toThrow(/1 to 6/);
});

test("a state file is read strictly: anything but the demo's own shape is no state", () => {
  const dir = mkdtempSync(`${tmpdir()}/skein-demo-state-`);
  try {
    const good = { version: 1, pid: 0, dir, nodes: [{ name: "node1", ns: "node1", address: "192.168.50.21", podCIDR: "10.244.1.0/24", segment: "a" }], kubeconfig: `${dir}/kubeconfig`, started: "now" };
    const read = (v: unknown) => (writeFileSync(`${dir}/state.json`, typeof v === "string" ? v : JSON.stringify(v)), readState(dir));
    expect(read(good)?.nodes[0]?.name).toBe("node1");
    expect(read("garbage{")).toBeUndefined();
    expect(read({ ...good, pid: -1 })).toBeUndefined();
    expect(read({ ...good, nodes: [{ ...good.nodes[0], ns: "../../etc" }] })).toBeUndefined();
    expect(read({ ...good, nodes: Array.from({ length: 7 }, () => good.nodes[0]) })).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
