// One suite, two targets: the rendered text (no root) and the same text loaded into a real
// kernel in a private namespace, so the renderer cannot drift from what nft accepts.
import { afterAll, describe, expect, test } from "bun:test";
import { poolFromCidr } from "../ipam/cidr.ts";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { inNetns, run } from "../sys/exec.ts";
import { MASQ_TABLE, renderMasquerade } from "./masquerade.ts";

const pools = [poolFromCidr("10.244.1.0/24"), poolFromCidr("fd00:10:244:1::/64")];

describe("renderMasquerade", () => {
  test("replaces the table atomically and masquerades only off-cluster traffic", () => {
    const { script: t, fingerprint } = renderMasquerade(pools, ["10.244.0.0/16"]);
    expect(t.split("\n").slice(0, 4)).toEqual([`add table inet ${MASQ_TABLE}`, `delete table inet ${MASQ_TABLE}`, `table inet ${MASQ_TABLE} {`, `  comment "${fingerprint}"`]);
    expect(t).toContain("set pods4 { type ipv4_addr; flags interval; elements = { 10.244.1.0/24 }; }");
    expect(t).toContain("set cluster4 { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 }; }");
    expect(t).toContain("ip saddr @pods4 ip daddr != @cluster4 masquerade");
  });

  test("traffic into the overlay from outside the pod network leaves with the tunnel's address", () => {
    const { script: t } = renderMasquerade(pools, ["10.244.0.0/16"]);
    expect(t).toContain('oifname "skein.vxlan" ip saddr != @cluster4 masquerade');
    expect(t).toContain('oifname "skein.vxlan" ip6 saddr != @cluster6 masquerade');
  });

  test("without cluster CIDRs, the node's own pod CIDRs are the cluster", () => {
    expect(renderMasquerade(pools, []).script).toContain("set cluster6 { type ipv6_addr; flags interval; elements = { fd00:10:244:1::/64 }; }");
  });

  test("the fingerprint follows the content", () => {
    const a = renderMasquerade(pools, ["10.244.0.0/16"]).fingerprint;
    expect(renderMasquerade(pools, ["10.244.0.0/16"]).fingerprint).toBe(a);
    expect(renderMasquerade(pools, ["10.0.0.0/8"]).fingerprint).not.toBe(a);
  });

  const ns = `skt-masq${Math.random().toString(36).slice(2, 6)}`;
  afterAll(() => deleteNetns(ns));
  test("nft accepts the script, twice in a row, in a private namespace", () => {
    const path = addNetns(ns);
    for (let i = 0; i < 2; i++) run(inNetns(path, ["nft", "-f", "-"]), { stdin: renderMasquerade(pools, ["10.244.0.0/16"]).script });
    const listed = run(inNetns(path, ["nft", "list", "table", "inet", MASQ_TABLE])).stdout;
    expect(listed).toContain("masquerade");
    expect(listed.match(/masquerade/g)).toHaveLength(4);
    expect(listed).toContain(`comment "${renderMasquerade(pools, ["10.244.0.0/16"]).fingerprint}"`);
  });
});
