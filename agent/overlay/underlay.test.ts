import { afterAll, expect, test } from "bun:test";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { inNetns, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import { subnetOf, underlayOf } from "./underlay.ts";

test("subnetOf: the network of an address and prefix", () => {
  expect(subnetOf("192.168.50.11", 24)).toBe("192.168.50.0/24");
  expect(subnetOf("10.99.0.14", 32)).toBe("10.99.0.14/32");
  expect(subnetOf("10.1.2.3", 0)).toBe("0.0.0.0/0");
  expect(subnetOf("2001:db8::5", 64)).toBe("2001:db8::/64");
});

const ns = `skt-ul${Math.random().toString(36).slice(2, 6)}`;
afterAll(() => deleteNetns(ns));
test("underlayOf: the interface holding the address, its subnet and MTU; undefined for an address the node does not have", () => {
  const path = addNetns(ns);
  run(inNetns(path, ["ip", "link", "add", "ulA", "mtu", "1400", "type", "veth", "peer", "name", "ulB"]));
  run(inNetns(path, ["ip", "addr", "add", "192.168.77.9/26", "dev", "ulA"]));
  const nl = Netlink.open(path);
  try {
    expect(underlayOf(nl, "192.168.77.9")).toEqual({ dev: "ulA", subnet: "192.168.77.0/26", mtu: 1400 });
    expect(underlayOf(nl, "192.168.77.10")).toBeUndefined();
  } finally {
    nl.close();
  }
});
