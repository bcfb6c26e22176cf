// The sync steps against recording fakes of nft and the netlink sink: what goes where, in
// which order, and what a rejected step leaves as the base of the next sync.
import { expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { Datapath } from "./datapath.ts";
import { IncrementalCompiler } from "../../compiler/incremental.ts";
import type { Batch } from "./nfnl.ts";
import { NftError, type Nft } from "./nft.ts";

class Recorder implements Nft {
  readonly backend = "exec" as const;
  log: string[] = [];
  failNext = false;
  /** nft runs to let through before one is refused (-1: none) */
  failAfter = -1;
  /** batches to refuse from now on (0: none) */
  failBatches = 0;
  run(script: string): string {
    if (this.failAfter === 0 || this.failNext) {
      this.failNext = false;
      this.failAfter = -1;
      throw new NftError("/dev/stdin:1:1: Error: injected", script);
    }
    if (this.failAfter > 0) this.failAfter--;
    this.log.push(`nft: ${script}`);
    return "";
  }
  send(b: Batch): void {
    if (this.failBatches > 0) {
      this.failBatches--;
      throw new Error("nftables refused the batch: injected");
    }
    this.log.push(`batch: ${[...b.what.values()].join("; ")}`);
  }
}

const state = (eps: string[], name = "web") =>
  clusterStateFrom([
    { kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } },
    { kind: "EndpointSlice", metadata: { name: `${name}-1`, namespace: "default", labels: { "kubernetes.io/service-name": name } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: eps.map((a) => ({ addresses: [a] })) },
  ]).state;
const opts = { nodeName: "", nodeIPs: [], ringFactor: 25 };

test("first a new table (skeleton, ring batch, targets), then deltas, nothing when nothing changed", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2", "10.244.0.3"]), opts);
  expect(dp.sync(a).kind).toBe("full");
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["nft", "batch", "nft"]);
  expect(rec.log[0]).toContain("delete table inet skein");
  expect(rec.log[1]).toContain("add chain ring4_0_53; add the protocol set of ring4_0_53; add the protocols of ring4_0_53; add rule to ring4_0_53; add 53 elements of be4_0");
  expect(rec.log[2]).toContain("add chain inet skein t_1");
  rec.log = [];
  const b = compile(state(["10.244.0.2", "10.244.0.4"]), { ...opts, previous: a });
  const r = dp.sync(b);
  expect(r.kind).toBe("delta");
  // netlink only: the changed slots and the new hairpin address, then the gone address
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["batch", "batch"]);
  expect(rec.log[0]).toMatch(/^batch: delete \d+ elements of be4_0; add \d+ elements of be4_0; add 1 elements of hairpin4$/);
  expect(rec.log[1]).toBe("batch: delete 1 elements of hairpin4");
  expect(dp.sync(b)).toMatchObject({ kind: "none", lines: 0, ringOps: 0 });
});

test("a rejected nft step undoes the ring batch and keeps the previous tables as the base", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2"]), opts);
  dp.sync(a);
  rec.log = [];
  // another service in its place: a new target chain, so an nft step
  const b = compile(state(["10.244.0.9"], "other"), { ...opts, previous: a });
  rec.failNext = true;
  expect(() => dp.sync(b)).toThrow(/injected/);
  // forward batch, then the batch that takes it back
  expect(rec.log).toEqual(["batch: add 29 elements of be4_0; add 1 elements of hairpin4", "batch: delete 29 elements of be4_0; delete 1 elements of hairpin4"]);
  rec.log = [];
  dp.sync(b);
  // the retried delta still removes what a put there, so it starts from a, not from b
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["batch", "nft", "batch"]);
  expect(rec.log[2]).toBe("batch: delete 29 elements of be4_0; delete 1 elements of hairpin4");
});

test("a removed service: its target chain goes in the nft step, its ring slots and chain after", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2"], "web"), opts);
  dp.sync(a);
  rec.log = [];
  dp.sync(compile(state([], "other"), { ...opts, previous: a }));
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["nft", "batch"]);
  expect(rec.log[0]).toContain("delete chain inet skein t_1");
  expect(rec.log[1]).toBe("batch: delete 29 elements of be4_0; delete 1 elements of hairpin4; flush chain ring4_0_29; delete chain ring4_0_29");
});

test("rings outgrowing their maps switch banks: new maps and ring chains beside the old, one switch, old bank gone", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2"]), opts);
  dp.sync(a);
  rec.log = [];
  // 200 backends: a ring of 5003 slots, past the first map size of 4096
  const many = [...Array(200).keys()].map((i) => `10.250.${i >> 8}.${i & 255}`);
  const r = dp.sync(compile(state(many), { ...opts, previous: a }));
  expect(r.kind).toBe("rebuild");
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["nft", "batch", "nft", "batch"]);
  expect(rec.log[0]).toContain("add map inet skein be4_1 {");
  expect(rec.log[0]).toContain("size 8192;");
  expect(rec.log[1]).toContain("add chain ring4_1_5003");
  expect(rec.log[2]).toContain("goto ring4_1_5003");
  expect(rec.log[1]).toContain("add 200 elements of hairpin4");
  expect(rec.log[3]).toBe("batch: delete 1 elements of hairpin4; flush chain ring4_0_29; delete chain ring4_0_29; delete map be4_0; delete map be6_0");
});

test("a change of one service among many is planned from that service alone", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const ic = new IncrementalCompiler(opts);
  const st = (i: number, eps: string[]) => state(eps, `s${i}`);
  for (let i = 0; i < 300; i++) {
    const s = st(i, [`10.244.${i >> 8}.${i & 255}`, "10.249.0.1"]); // every service shares 10.249.0.1
    ic.setService({ ...s.services[0]!, clusterIPs: [`10.96.${i >> 8}.${i & 255}`] });
    ic.setSlice(s.slices[0]!);
  }
  expect(dp.apply(ic.compile(), () => ic.tables()).kind).toBe("full");
  rec.log = [];
  // s7 swaps the shared backend for its own: its slots change, the new address goes in, the
  // shared one stays for the others
  ic.setSlice(st(7, ["10.244.0.7", "10.248.0.7"]).slices[0]!);
  const r = dp.apply(ic.compile(), () => { throw new Error("the whole tables are not needed for a delta"); });
  expect(r).toMatchObject({ kind: "delta", lines: 0 });
  expect(rec.log).toHaveLength(1);
  expect(rec.log[0]).toMatch(/^batch: delete \d+ elements of be4_0; add \d+ elements of be4_0; add 1 elements of hairpin4$/);
  expect(dp.apply(ic.compile(), () => ic.tables()).kind).toBe("none");
});

test("a cleanup step that keeps failing is tried once more, then dropped: it never blocks the syncs after it", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2"], "web"), opts);
  dp.sync(a);
  // the service goes: its target chain in the nft step, then the cleanup batch, which fails
  const b = compile(state([], "other"), { ...opts, previous: a });
  rec.failBatches = 1;
  expect(() => dp.sync(b)).toThrow(/injected/);
  // the next sync tries it once more, fails, and gives the error up
  rec.failBatches = 1;
  rec.log = [];
  expect(() => dp.sync(b)).toThrow(/injected/);
  // the one after is not held by it: the cleanup is gone, the sync has nothing to do
  rec.log = [];
  expect(dp.sync(b).kind).toBe("none");
  expect(rec.log).toEqual([]);
  // and a new table drops a cleanup still waiting without trying it
  dp.sync(a);
  rec.failBatches = 1;
  expect(() => dp.sync(b)).toThrow(/injected/);
  rec.log = [];
  expect(dp.sync(b, { full: true }).kind).toBe("full");
  expect(rec.log.some((l) => l.includes("delete 29 elements"))).toBe(false);
  expect(rec.log[0]).toContain("delete table inet skein");
});

test("rebuild: the whole tables in a bank switch though the rings fit, every ring written anew", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2", "10.244.0.3"]), opts);
  dp.sync(a);
  rec.log = [];
  const r = dp.sync(a, { rebuild: true });
  expect(r.kind).toBe("rebuild");
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["nft", "batch", "nft", "batch"]);
  expect(rec.log[1]).toContain("add chain ring4_1_53; add the protocol set of ring4_1_53; add the protocols of ring4_1_53; add rule to ring4_1_53; add 53 elements of be4_1");
  expect(rec.log[3]).toContain("delete map be4_0");
});

test("drift(): nothing to compare before a table is in force; then the kernel's listing against the model", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  expect(dp.drift(undefined)).toEqual([]);
  dp.sync(compile(state(["10.244.0.2"]), opts));
  expect(dp.drift(undefined)).toEqual(["table inet skein is missing"]);
});

test("policy: with the skeleton of a new table, then deltas at once; a refused one is replaced whole next, chains of what the kernel kept included; a rewrite replaces a known one", async () => {
  const { policyTables } = await import("./policy.case.ts");
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const p1 = policyTables();
  // no table yet: it waits for the first sync, whose skeleton carries it
  expect(dp.policy(p1).kind).toBe("none");
  expect(rec.log).toEqual([]);
  dp.sync(compile(state(["10.244.0.2"]), opts));
  expect(rec.log[0]).toContain("delete table inet skein");
  expect(rec.log[0]).toContain("add element inet skein pol_allow_in");
  expect(dp.policyInForce()).toBe(p1);
  rec.log = [];
  // a pod moved to another identity (d became like b): a delta, no flush
  const p2 = policyTables(true);
  expect(dp.policy(p2).kind).toBe("delta");
  expect(rec.log.length).toBe(1);
  expect(rec.log[0]).not.toMatch(/flush (set|map)/);
  expect(rec.log[0]).toContain("delete element inet skein pol_spod4 { 10.244.0.5 }");
  rec.log = [];
  // refused: the kernel keeps p2; the next load replaces it whole, dropping p2's chains it no longer uses
  rec.failNext = true;
  expect(() => dp.policy(p1)).toThrow("injected");
  expect(dp.policyInForce()).toBeUndefined();
  const p3 = { ...p2, pods: p2.pods.filter((p) => p.id !== 5) };
  dp.policy(p3);
  expect(rec.log[0]).toContain("flush set inet skein pol_allow_in");
  expect(rec.log[0]).toContain("delete chain inet skein pols_5");
  expect(dp.policyInForce()).toBe(p3);
  rec.log = [];
  // a rewrite replaces what is known too
  dp.policy(p3, true, true);
  expect(rec.log[0]).toContain("flush map inet skein pol_spod4");
  // and the same tables again without one: nothing
  rec.log = [];
  expect(dp.policy(p3).kind).toBe("none");
  expect(rec.log).toEqual([]);
});

test("policy: the allow elements no address can match yet go first; when the rest is refused they are taken out again, and the next load replaces the policy whole", async () => {
  const { policyTables, withNewIdentity } = await import("./policy.case.ts");
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const p1 = policyTables();
  dp.policy(p1);
  dp.sync(compile(state(["10.244.0.2"]), opts));
  rec.log = [];
  const p2 = withNewIdentity(p1);
  rec.failAfter = 1;
  expect(() => dp.policy(p2)).toThrow("injected");
  expect(rec.log).toEqual([
    "nft: add element inet skein pol_allow_in { 0x00050000 . 0x00080000 . 17 . 53-53 }\nadd element inet skein pol_allow_out { 0x00080000 . 0x00040000 . 6 . 80-80 }\n",
    "nft: delete element inet skein pol_allow_in { 0x00050000 . 0x00080000 . 17 . 53-53 }\ndelete element inet skein pol_allow_out { 0x00080000 . 0x00040000 . 6 . 80-80 }\n",
  ]);
  expect(dp.policyInForce()).toBeUndefined();
  rec.log = [];
  dp.policy(p2);
  expect(rec.log.length).toBe(1);
  expect(rec.log[0]).toContain("flush set inet skein pol_allow_in");
  expect(dp.policyInForce()).toBe(p2);
});
