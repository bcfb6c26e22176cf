// The sync steps against recording fakes of nft and the netlink sink: what goes where, in
// which order, and what a rejected step leaves as the base of the next sync.
import { expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { Datapath } from "./datapath.ts";
import type { Batch } from "./nfnl.ts";
import { NftError, type Nft } from "./nft.ts";

class Recorder implements Nft {
  readonly backend = "exec" as const;
  log: string[] = [];
  failNext = false;
  run(script: string): string {
    if (this.failNext) {
      this.failNext = false;
      throw new NftError("/dev/stdin:1:1: Error: injected", script);
    }
    this.log.push(`nft: ${script}`);
    return "";
  }
  send(b: Batch): void {
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
  expect(rec.log[1]).toContain("add chain ring4_0_53; add rule to ring4_0_53; add 53 elements of be4_0");
  expect(rec.log[2]).toContain("add chain inet skein t_1");
  rec.log = [];
  const b = compile(state(["10.244.0.2", "10.244.0.4"]), { ...opts, previous: a });
  const r = dp.sync(b);
  expect(r.kind).toBe("delta");
  // the ring slots first, then the hairpin set; no table, no chain
  expect(rec.log.map((l) => l.split(":")[0])).toEqual(["batch", "nft"]);
  expect(rec.log[0]).toMatch(/^batch: delete \d+ elements of be4_0; add \d+ elements of be4_0$/);
  expect(rec.log[1]).not.toContain("chain");
  expect(dp.sync(b)).toMatchObject({ kind: "none", lines: 0, ringOps: 0 });
});

test("a rejected nft step undoes the ring batch and keeps the previous tables as the base", () => {
  const rec = new Recorder();
  const dp = new Datapath(rec, rec);
  const a = compile(state(["10.244.0.2"]), opts);
  dp.sync(a);
  rec.log = [];
  const b = compile(state(["10.244.0.9"]), { ...opts, previous: a });
  rec.failNext = true;
  expect(() => dp.sync(b)).toThrow(/injected/);
  // forward batch, then the batch that puts the old slots back
  expect(rec.log).toHaveLength(2);
  expect(rec.log.every((l) => l.startsWith("batch: delete 29 elements of be4_0; add 29 elements of be4_0"))).toBe(true);
  rec.log = [];
  dp.sync(b);
  // the retried delta still removes what a put there, so it starts from a, not from b
  expect(rec.log[1]).toContain("delete element inet skein hairpin4 { 10.244.0.2 . 10.244.0.2 }");
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
  expect(rec.log[1]).toBe("batch: delete 29 elements of be4_0; flush chain ring4_0_29; delete chain ring4_0_29");
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
  expect(rec.log[3]).toBe("batch: flush chain ring4_0_29; delete chain ring4_0_29; delete map be4_0; delete map be6_0");
});
