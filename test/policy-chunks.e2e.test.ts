// Thousands of allow elements reach the kernel as they were written, and a delta removes them
// again. nft 1.0.6 swaps the bytes of the marks in the first element of every netlink message
// after the first of one command line (1,260 elements each, for the allow sets' concatenated
// intervals): with more elements per line than that, a load would allow pairs nobody allowed
// and the delta that deletes them would fail (policy-text.ts ALLOW_CHUNK).
import { expect, test } from "bun:test";
import { useLab } from "./harness/index.ts";
import { renderSkeleton } from "../agent/datapath/nft-text.ts";
import { renderPolicyDelta } from "../agent/datapath/policy-text.ts";
import { DEFAULT_MARKS } from "../agent/datapath/marks.ts";
import type { AllowElement, PolicyTables } from "../compiler/policy/types.ts";

const lab = useLab("polchunk");

function tables(n: number): PolicyTables {
  const allow: AllowElement[] = [];
  for (let i = 0; i < n; i++) allow.push({ src: 3 + i, srcLast: 3 + i, dst: 5, dstLast: 5, proto: 6, protoLast: 6, port: 1000 + (i % 50), portLast: 1000 + (i % 50), policies: ["ns/p"] });
  return {
    identities: [{ id: 5, key: "pod|ns|app=a||", name: "pod ns app=a", local: true, ingressBy: ["ns/p"], egressBy: [] }],
    pods: [{ family: 4, ip: "10.244.0.5", id: 5 }],
    ranges: [],
    isolatedIngress: [5],
    isolatedEgress: [],
    allowIngress: allow,
    allowEgress: [],
    localAddresses: ["10.244.0.5"],
    generated: [],
    problems: [],
  };
}

/** The allow-in set as the kernel lists it: "src dst proto port" per element, marks shifted back. */
async function listed(ns: string): Promise<string[]> {
  const r = await lab.exec(ns, ["nft", "-j", "list", "set", "inet", "skein", "pol_allow_in"]);
  const set = (JSON.parse(r.stdout).nftables as Array<Record<string, { elem?: unknown[] }>>).find((x) => x.set)!.set!;
  return (set.elem ?? []).map((e) => {
    const c = ((e as { elem?: { val: unknown } }).elem?.val ?? e) as { concat: unknown[] };
    const [s, d, p, port] = c.concat as [number, number, string | number, number];
    return `${s >>> 16} ${d >>> 16} ${p} ${port}`;
  });
}

test("3,000 allow elements in one load are listed as written, and one delta deletes them all", async () => {
  lab.host("n");
  const t = tables(3000);
  await lab.exec("n", ["nft", "-f", "-"], { stdin: renderSkeleton(0, { 4: 4096, 6: 4096 }, DEFAULT_MARKS, t) });
  const want = t.allowIngress.map((e) => `${e.src} ${e.dst} tcp ${e.port}`).sort();
  expect((await listed("n")).sort()).toEqual(want);
  const none = { ...t, allowIngress: [] };
  await lab.exec("n", ["nft", "-f", "-"], { stdin: renderPolicyDelta(t, none, DEFAULT_MARKS) });
  expect(await listed("n")).toEqual([]);
}, 60_000);
