import { expect, test } from "bun:test";
import { nodeDefs } from "./cluster.ts";

test("nodes: 1 to 6, the third behind the NAT", () => {
  expect(nodeDefs(3).map((d) => [d.name, d.segment])).toEqual([["node1", "a"], ["node2", "a"], ["node3", "nat"]]);
  expect(nodeDefs(6).filter((d) => d.segment === "nat")).toHaveLength(1);
  expect(() => nodeDefs(0)).toThrow(/1 to 6/);
  expect(() => nodeDefs(7)).toThrow(/1 to 6/);
});
