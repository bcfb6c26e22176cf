import { describe, expect, test } from "bun:test";
import { parseNetConf, poolsFrom } from "./config.ts";
import { CniError } from "./spec.ts";

const ok = { cniVersion: "1.0.0", name: "k8s-pod-network", type: "skein" };
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return [(e as CniError).code, (e as Error).message] as const;
  }
  return [0, ""] as const;
};

describe("parseNetConf", () => {
  test("fills defaults and keeps runtime fields it does not use", () => {
    const c = parseNetConf(JSON.stringify({ ...ok, runtimeConfig: { portMappings: [] }, capabilities: { x: true } }));
    expect(c.mtu).toBe(1500);
    expect(c.masquerade).toBe(true);
    expect(c.dataDir).toBe("/var/lib/skein/ipam");
    expect(c.nodeFile).toBe("/var/lib/skein/node.json");
  });

  test.each([
    ["not JSON", "{", 6, /not valid JSON/],
    ["a string", '"x"', 6, /must be a JSON object/],
    ["no cniVersion", JSON.stringify({ name: "n", type: "skein" }), 1, /incompatible CNI version null/],
    ["0.3.1", JSON.stringify({ ...ok, cniVersion: "0.3.1" }), 1, /incompatible CNI version "0\.3\.1"/],
    ["bad name", JSON.stringify({ ...ok, name: "-x" }), 7, /name \("-x"\): must start with a letter/],
    ["missing name", JSON.stringify({ cniVersion: "1.0.0", type: "skein" }), 7, /name \(missing\)/],
    ["relative dataDir", JSON.stringify({ ...ok, dataDir: "ipam" }), 7, /dataDir \("ipam"\): must be an absolute path/],
    ["three podCIDRs", JSON.stringify({ ...ok, podCIDRs: ["10.0.0.0/24", "10.1.0.0/24", "fd00::/64"] }), 7, /podCIDRs/],
    ["bad clusterCIDR", JSON.stringify({ ...ok, clusterCIDRs: ["10.0.0.0/8", "x"] }), 7, /clusterCIDRs\[1\]: "x" is not a valid CIDR/],
    ["bad nameserver", JSON.stringify({ ...ok, dns: { nameservers: ["10.0.0.300"] } }), 7, /dns\.nameservers\[0\]/],
    ["host-local ipam", JSON.stringify({ ...ok, ipam: { type: "host-local" } }), 2, /ipam\.type/],
  ])("%s", (_n, input, code, msg) => {
    const [c, m] = codeOf(() => parseNetConf(input));
    expect(c).toBe(code);
    expect(m).toMatch(msg);
  });

  test("ipam of type skein is accepted", () => {
    expect(parseNetConf(JSON.stringify({ ...ok, ipam: { type: "skein" } })).ipam?.type).toBe("skein");
  });
});

test("poolsFrom refuses two CIDRs of one family", () => {
  const [c, m] = codeOf(() => poolsFrom(["10.0.0.0/24", "10.1.0.0/24"], "podCIDRs"));
  expect(c).toBe(7);
  expect(m).toMatch(/two CIDRs of one address family/);
  expect(poolsFrom(["10.0.0.0/24", "fd00::/64"], "podCIDRs").map((p) => p.family)).toEqual([4, 6]);
});
