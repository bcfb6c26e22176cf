// NetworkPolicy as nft text (no root): identity chains, elements, deltas, the atomic replace.
// That nft loads it and packets obey it is test/policy-datapath.e2e.test.ts's.
import { describe, expect, test } from "bun:test";
import { DEFAULT_MARKS, type Marks } from "./marks.ts";
import { renderFull, renderSkeleton } from "./nft-text.ts";
import { policyTables, withNewIdentity } from "./policy.case.ts";
import { inertAllowAddsFirst, POLICY_SETS, renderPolicy, renderPolicyDelta, renderPolicyReplace } from "./policy-text.ts";
import { objects, tablesOf } from "./fixtures.case.ts";

const linesOf = (s: string) => s.split("\n").filter(Boolean);

describe("renderPolicy", () => {
  const text = renderPolicy(policyTables(), DEFAULT_MARKS);
  test("one pair of identity chains per identity an address has, BLOCKED included: the source in the packet mark, the destination in the conntrack mark below the masquerade flag", () => {
    const chains = linesOf(text).filter((l) => l.startsWith("add chain"));
    expect(chains).toEqual([2, 3, 4, 5, 6, 7].flatMap((id) => [`add chain inet skein pols_${id}`, `add chain inet skein pold_${id}`]));
    expect(text).toContain("add rule inet skein pols_3 meta mark set meta mark & 0x0000ffff | 0x00030000\n");
    expect(text).toContain("add rule inet skein pold_3 ct mark set ct mark & 0x8000ffff | 0x00030000\n");
    expect(text).toContain("add rule inet skein pold_2 ct mark set ct mark & 0x8000ffff | 0x00020000\n");
  });

  test("addresses go to their identity's chains; ranges by interval; isolated identities twice; allow elements shifted into the mark bits", () => {
    expect(text).toContain("add element inet skein pol_spod4 { 10.244.0.2 : goto pols_3, 10.244.0.3 : goto pols_4, 10.244.0.4 : goto pols_5, 10.244.0.5 : goto pols_7 }");
    expect(text).toContain("add element inet skein pol_dpod6 { fd00:244::2 : goto pold_3, fd00:244::3 : goto pold_4, fd00:244::4 : goto pold_5, fd00:244::5 : goto pold_7 }");
    expect(text).toContain("add element inet skein pol_srange4 { 10.244.0.0-10.244.0.255 : goto pols_2, 192.0.2.0-192.0.2.255 : goto pols_6 }");
    expect(text).toContain("add element inet skein pol_drange6 { 2001:db8:2::-2001:db8:2::ffff:ffff:ffff:ffff : goto pold_6, fd00:244::-fd00:244::ffff : goto pold_2 }");
    expect(text).toContain("add element inet skein pol_local4 { 10.244.0.2, 10.244.0.3, 10.244.0.4, 10.244.0.5 }");
    expect(text).toContain("add element inet skein pol_iso_in { 0x00020000, 0x00040000, 0x00050000 }");
    expect(text).toContain("add element inet skein pol_drop_in { 0x00020000, 0x00040000, 0x00050000 }");
    expect(text).toContain("add element inet skein pol_iso_out { 0x00020000, 0x00030000, 0x00070000 }");
    expect(text).toContain("add element inet skein pol_allow_in { 0x00010000 . 0x00050000 . 0-255 . 0-65535, 0x00030000 . 0x00040000 . 6 . 80-80, 0x00030000 . 0x00050000 . 6 . 8000-8100, 0x00040000 . 0x00050000 . 17 . 0-65535, 0x00060000 . 0x00040000 . 0-255 . 0-65535 }");
    expect(text).toContain("0x00070000 . 0x00000000 . 6 . 80-80, 0x00070000 . 0x00030000-0x00070000 . 6 . 80-80 }");
  });

  test("other mark ranges: identities shift into them, every other bit is kept", () => {
    const marks: Marks = { mark: 0x00ffff00, ctMark: 0x7fc00000 }; // identities in 0x3fc00000
    const t = renderPolicy(policyTables(), marks);
    expect(t).toContain("add rule inet skein pols_3 meta mark set meta mark & 0xff0000ff | 0x00000300\n");
    expect(t).toContain("add rule inet skein pold_3 ct mark set ct mark & 0xc03fffff | 0x00c00000\n");
    expect(t).toContain("0x00000700 . 0x00c00000-0x01c00000 . 6 . 80");
    // 8 identity bits hold 255: an identity past them is refused, never wrapped into another
    const many = policyTables();
    many.pods[0] = { ...many.pods[0]!, id: 256 };
    expect(() => renderPolicy(many, marks)).toThrow("identity 256 (pod address 10.244.0.2) does not fit the mark ranges, which hold identities up to 255");
  });

  test("with the skeleton in one transaction, identity chains come before the maps that go to them (nft 1.0.6 refuses the other order for interval maps)", () => {
    const all = linesOf(renderSkeleton(0, { 4: 4096, 6: 4096 }, DEFAULT_MARKS, policyTables()));
    const chain = all.indexOf("add chain inet skein pols_6");
    expect(chain).toBeGreaterThan(2);
    expect(chain).toBeLessThan(all.findIndex((l) => l.startsWith("add map inet skein pol_srange4")));
    expect(all.findIndex((l) => l.startsWith("add element inet skein pol_srange4"))).toBeGreaterThan(all.findIndex((l) => l.startsWith("add rule inet skein pol_forward")));
    const full = renderFull(tablesOf(objects(2)), 0, DEFAULT_MARKS, {}, policyTables());
    expect(full).toContain(renderPolicy(policyTables(), DEFAULT_MARKS).split("\n").find((l) => l.startsWith("add element inet skein pol_allow_out"))!);
    expect(renderFull(tablesOf(objects(2)))).not.toContain("pols_");
  });
});

describe("renderPolicyDelta", () => {
  test("no change, no transaction", () => {
    expect(renderPolicyDelta(policyTables(), policyTables(), DEFAULT_MARKS)).toBe("");
  });

  test("an address moving between identities in use: two lines per map it is in", () => {
    const next = policyTables();
    next.pods = next.pods.map((p) => (p.ip === "10.244.0.5" ? { ...p, id: 4 } : p));
    expect(linesOf(renderPolicyDelta(policyTables(), next, DEFAULT_MARKS))).toEqual([
      "delete element inet skein pol_spod4 { 10.244.0.5 }",
      "add element inet skein pol_spod4 { 10.244.0.5 : goto pols_4 }",
      "delete element inet skein pol_dpod4 { 10.244.0.5 }",
      "add element inet skein pol_dpod4 { 10.244.0.5 : goto pold_4 }",
    ]);
  });

  test("identity chains added before the elements that go to them, removed after the last element that did", () => {
    const gone = linesOf(renderPolicyDelta(policyTables(), policyTables(true), DEFAULT_MARKS));
    expect(gone.slice(-4)).toEqual(["flush chain inet skein pols_7", "delete chain inet skein pols_7", "flush chain inet skein pold_7", "delete chain inet skein pold_7"]);
    expect(gone).toContain("delete element inet skein pol_iso_out { 0x00070000 }");
    expect(gone).toContain("delete element inet skein pol_allow_out { 0x00070000 . 0x00000000 . 6 . 80-80, 0x00070000 . 0x00030000-0x00070000 . 6 . 80-80 }");
    expect(gone.filter((l) => l.startsWith("add chain"))).toEqual([]);
    const back = linesOf(renderPolicyDelta(policyTables(true), policyTables(), DEFAULT_MARKS));
    expect(back.slice(0, 4)).toEqual([
      "add chain inet skein pols_7",
      "add rule inet skein pols_7 meta mark set meta mark & 0x0000ffff | 0x00070000",
      "add chain inet skein pold_7",
      "add rule inet skein pold_7 ct mark set ct mark & 0x8000ffff | 0x00070000",
    ]);
    expect(back.filter((l) => /chain/.test(l))).toHaveLength(2);
  });
});

describe("renderPolicyReplace", () => {
  test("one transaction: every policy set flushed, identity chains not wanted dropped, the rest refilled, then the new elements", () => {
    const text = linesOf(renderPolicyReplace(policyTables(true), DEFAULT_MARKS, ["pols_3", "pold_3", "pols_7", "pold_9", "t_5", "pol_forward", "ring4_0_7"]));
    expect(text.slice(0, POLICY_SETS.length)).toEqual(POLICY_SETS.map((s) => `flush ${/pod|range/.test(s) ? "map" : "set"} inet skein ${s}`));
    expect(text).toContain("flush chain inet skein pols_3");
    expect(text).toContain("add rule inet skein pols_3 meta mark set meta mark & 0x0000ffff | 0x00030000");
    expect(text).not.toContain("add chain inet skein pols_3");
    expect(text).toContain("add chain inet skein pols_4");
    for (const c of ["pols_7", "pold_9"]) expect(text).toContain(`delete chain inet skein ${c}`);
    expect(text.join("\n")).not.toMatch(/t_5|pol_forward|ring4/);
    const firstElement = text.findIndex((l) => l.startsWith("add element"));
    expect(text.slice(firstElement).every((l) => l.startsWith("add element"))).toBe(true);
    expect(text.slice(firstElement)).toEqual(linesOf(renderPolicy(policyTables(true), DEFAULT_MARKS)).filter((l) => l.startsWith("add element")));
  });
});

describe("renderPolicyReplace with the allow sets read from the kernel", () => {
  test("those sets are not flushed: only the elements the kernel lacks are added, only those not wanted deleted; the other sets are flushed and refilled", () => {
    const next = policyTables(true);
    const allowIn = linesOf(renderPolicy(next, DEFAULT_MARKS)).find((l) => l.startsWith("add element inet skein pol_allow_in"))!;
    const wanted = allowIn.replace(/^.*\{ | \}$/g, "").split(", ");
    const known = new Map([
      ["pol_allow_in", new Set([...wanted.slice(1), "0x00090000 . 0x00030000 . 6 . 443-443"])],
      ["pol_allow_out", new Set<string>()],
    ]);
    const text = linesOf(renderPolicyReplace(next, DEFAULT_MARKS, [], known));
    expect(text.filter((l) => l.startsWith("flush set") || l.startsWith("flush map"))).toEqual(POLICY_SETS.filter((s) => !known.has(s)).map((s) => `flush ${/pod|range/.test(s) ? "map" : "set"} inet skein ${s}`));
    expect(text.filter((l) => l.includes(" pol_allow_in "))).toEqual(["delete element inet skein pol_allow_in { 0x00090000 . 0x00030000 . 6 . 443-443 }", `add element inet skein pol_allow_in { ${wanted[0]} }`]);
    // an empty set read: every element added, none deleted
    expect(text.filter((l) => l.includes(" pol_allow_out "))).toEqual(linesOf(renderPolicy(next, DEFAULT_MARKS)).filter((l) => l.includes(" pol_allow_out ")));
    // the rest as without them
    const rest = (ls: string[]) => ls.filter((l) => !l.includes(" pol_allow_") && !l.startsWith("flush set") && !l.startsWith("flush map"));
    expect(rest(text)).toEqual(rest(linesOf(renderPolicyReplace(next, DEFAULT_MARKS, []))));
  });
});

describe("inertAllowAddsFirst", () => {
  // withNewIdentity: a's IPv4 address at a new identity 8, elements to and from it, and one
  // between identities in use
  const prev = policyTables();
  const next = withNewIdentity(prev);
  const used = [2, 3, 4, 5, 6, 7];
  test("the elements one of whose sides no address goes to yet come first, alone; the rest as the delta has them", () => {
    const delta = renderPolicyDelta(prev, next, DEFAULT_MARKS);
    const { first, then } = inertAllowAddsFirst(delta, next, DEFAULT_MARKS, used);
    expect(linesOf(first)).toEqual(["add element inet skein pol_allow_in { 0x00050000 . 0x00080000 . 17 . 53-53 }", "add element inet skein pol_allow_out { 0x00080000 . 0x00040000 . 6 . 80-80 }"]);
    // a range that takes in a used id (7..8) is not inert; neither is d -> c
    expect(then).toContain("add element inet skein pol_allow_in { 0x00060000 . 0x00070000-0x00080000 . 17 . 53-53 }");
    expect(then).toContain("add element inet skein pol_allow_out { 0x00070000 . 0x00050000 . 6 . 443-443 }");
    // together, the delta's lines, element by element
    const elems = (text: string) => linesOf(text).flatMap((l) => {
      const m = /^(.*) \{ (.*) \}$/.exec(l);
      return m ? m[2]!.split(", ").map((k) => `${m[1]} ${k}`) : [l];
    }).sort();
    expect(elems(first + then)).toEqual(elems(delta));
  });
  test("nothing first when every identity is in use, or when the text flushes an allow set", () => {
    expect(inertAllowAddsFirst(renderPolicyDelta(prev, next, DEFAULT_MARKS), next, DEFAULT_MARKS, [...used, 8]).first).toBe("");
    const replace = renderPolicyReplace(next, DEFAULT_MARKS, []);
    expect(inertAllowAddsFirst(replace, next, DEFAULT_MARKS, used)).toEqual({ first: "", then: replace });
  });
});

describe("through a Service across nodes", () => {
  const base = policyTables();
  const t = { ...base, viaService: [5], serviceSources: [{ family: 4 as const, ip: "10.244.0.1", id: 1 }, { family: 4 as const, ip: "10.244.9.1", id: 1 }], serviceSource: { 4: "10.244.0.1" } };
  test("identities reached through a Service, every node's source as VIA_SERVICE, this node's source on the way out", () => {
    const text = renderPolicy(t, DEFAULT_MARKS);
    expect(text).toContain("add element inet skein pol_viasvc { 0x00050000 }");
    expect(text).toContain("10.244.9.1 : goto pols_1");
    expect(text).toContain("add chain inet skein pols_1\n");
    expect(text).toContain("add element inet skein pol_svcaddr4 { 10.244.0.1, 10.244.9.1 }");
    expect(text).toContain("add rule inet skein pol_svcsrc ct mark & 0x7fff0000 @pol_viasvc ip daddr != @pol_local4 snat ip to 10.244.0.1\n");
    expect(text).not.toContain("snat ip6");
  });
  test("the source rules change with the node's address, flushed and written anew; a replace writes them always", () => {
    const moved = { ...t, serviceSource: { 4: "10.244.5.1", 6: "fd00:5::1" } };
    const d = linesOf(renderPolicyDelta(t, moved, DEFAULT_MARKS));
    expect(d).toEqual(["flush chain inet skein pol_svcsrc", "add rule inet skein pol_svcsrc ct mark & 0x7fff0000 @pol_viasvc ip daddr != @pol_local4 snat ip to 10.244.5.1", "add rule inet skein pol_svcsrc ct mark & 0x7fff0000 @pol_viasvc ip6 daddr != @pol_local6 snat ip6 to fd00:5::1"]);
    expect(renderPolicyDelta(t, { ...t }, DEFAULT_MARKS)).toBe("");
    expect(renderPolicyReplace(t, DEFAULT_MARKS, [])).toContain("flush chain inet skein pol_svcsrc\n");
  });
});
