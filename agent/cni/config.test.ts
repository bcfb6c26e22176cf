import { describe, expect, test } from "bun:test";
import { HOSTILE, UNUSABLE_POD_CIDRS, VALID_ADDRESSES, VALID_CIDRS, VALID_POD_CIDRS } from "../../compiler/address.case.ts";
import { quote } from "../../compiler/address.ts";
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
    expect(c.mtu).toBeUndefined(); // the node file's, else 1500 (commands.ts resolveNetwork)
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

describe("every address and CIDR of the configuration is read strictly (compiler/address.case.ts)", () => {
  // each field holding an address or CIDR, as a function putting a value there
  const fields: Array<[string, (v: unknown) => Record<string, unknown>]> = [
    ["podCIDRs[0]", (v) => ({ ...ok, podCIDRs: [v] })],
    ["podCIDRs[1]", (v) => ({ ...ok, podCIDRs: ["10.244.1.0/24", v] })],
    ["clusterCIDRs[0]", (v) => ({ ...ok, clusterCIDRs: [v] })],
    ["clusterCIDRs[1]", (v) => ({ ...ok, clusterCIDRs: ["10.244.0.0/16", v] })],
    ["dns.nameservers[0]", (v) => ({ ...ok, dns: { nameservers: [v] } })],
  ];
  const cases = fields.flatMap(([field, put]) => [
    ...HOSTILE.map((h) => [`${field} = ${quote(h.value)}`, field, put(h.value)] as const),
    ...(field.startsWith("podCIDRs") ? UNUSABLE_POD_CIDRS.map(([c]) => [`${field} = ${c} (cannot work)`, field, put(c)] as const) : []),
  ]);

  test.each(cases)("%s: code 7, naming the field", (_n, field, conf) => {
    const [c, m] = codeOf(() => parseNetConf(JSON.stringify(conf)));
    expect(c).toBe(7);
    expect(m).toMatch(new RegExp(`^invalid network configuration: ${field.replace(/[[\].]/g, "\\$&")}[: ]`));
    expect(m.length).toBeLessThan(400);
  });

  test("pod CIDRs that cannot work say why", () => {
    for (const [cidr, why] of UNUSABLE_POD_CIDRS) expect(codeOf(() => parseNetConf(JSON.stringify({ ...ok, podCIDRs: [cidr] })))[1]).toMatch(why);
  });

  test("valid values are taken as they are", () => {
    for (const p of VALID_POD_CIDRS) expect(parseNetConf(JSON.stringify({ ...ok, podCIDRs: [p] })).podCIDRs).toEqual([p]);
    expect(parseNetConf(JSON.stringify({ ...ok, clusterCIDRs: VALID_CIDRS })).clusterCIDRs).toEqual(VALID_CIDRS);
    expect(parseNetConf(JSON.stringify({ ...ok, dns: { nameservers: VALID_ADDRESSES } })).dns?.nameservers).toEqual(VALID_ADDRESSES);
  });
});
