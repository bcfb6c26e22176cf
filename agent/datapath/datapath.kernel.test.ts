// The datapath against a real kernel in a private namespace: a delta (or a bank switch)
// applied on top of the previous tables must leave exactly what a full load of the new tables
// leaves.
import { describe, expect, test } from "bun:test";
import { IncrementalCompiler } from "../../compiler/incremental.ts";
import { asMap, feed } from "../../compiler/generate.ts";
import { inNetns, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import { Datapath } from "./datapath.ts";
import { datapathIn, listing, objects, opts, ringChainsAndGuards, tablesOf, useNetns } from "./fixtures.case.ts";
import { emptyModel, model, patchModel } from "./model.ts";
import type { Nft } from "./nft.ts";
import { planUnits } from "./plan.ts";

const netns = useNetns(`skt-dp${Math.random().toString(36).slice(2, 6)}`);

describe("in a kernel", () => {
  test("a delta over the previous tables leaves what a full load of the new ones does; so does a bank switch", () => {
    const path = netns("a");
    const a = tablesOf(objects(40));
    const b = tablesOf(
      objects(45, {
        skip: (i) => i === 3 || i === 11, // services removed
        // 5 loses its endpoints, 6 grows to a new ring size (a new ring chain), 9 shrinks
        endpoints: (i) => (i === 5 ? [] : i === 6 ? ["10.244.0.6", "10.245.0.6", "10.247.0.6"] : i === 9 ? ["10.244.0.9"] : [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]),
        affinity: (i) => i === 8,
      }),
      a,
    );
    const many = [...Array(200).keys()].map((i) => `10.250.${i >> 8}.${i & 255}`);
    const c = tablesOf(objects(45, { endpoints: (i) => (i === 2 ? many : [`10.244.${i >> 8}.${i & 255}`]) }), b);
    const live = datapathIn(path);
    try {
      expect(live.dp.sync(a).kind).toBe("full");
      expect(live.dp.sync(b).kind).toBe("delta");
      const viaDelta = listing(path);
      // a ring chain the delta removed took its rule's guard set along
      const guarded = ringChainsAndGuards(live.nl);
      expect(guarded.chains).toBeGreaterThan(1);
      expect(guarded.guards).toBe(guarded.chains);
      expect(live.dp.sync(c).kind).toBe("rebuild");
      const viaRebuild = listing(path);
      expect(ringChainsAndGuards(live.nl)).toEqual({ chains: 2, guards: 2 });
      const fresh = datapathIn(path);
      try {
        fresh.dp.sync(b);
        expect(viaDelta).toEqual(listing(path));
        fresh.dp.sync(c, { full: true });
        expect(viaRebuild).toEqual(listing(path));
      } finally {
        fresh.close();
      }
    } finally {
      live.close();
    }
  });

  test("per-service deltas (incremental compiles) leave what a full load of the same tables does", () => {
    const path = netns("d");
    const ic = new IncrementalCompiler(opts);
    const live = datapathIn(path);
    const shared = (i: number) => [`10.244.0.${i}`, "10.249.0.1"]; // 10.249.0.1 backs several services
    const second = {
      skip: (i: number) => i === 3 || i === 11,
      endpoints: (i: number) => (i === 1 ? ["10.244.0.1"] : i < 6 ? shared(i) : i === 7 ? [] : i === 8 ? ["10.244.0.8", "10.245.0.8", "10.247.0.8"] : i === 9 ? ["10.244.0.9"] : [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]),
      affinity: (i: number) => i === 10,
      external: (i: number) => (i === 3 || i === 4 ? ["203.0.113.3"] : []),
    };
    const steps = [
      // s3 and s4 claim one external address: s3 serves it
      objects(40, { endpoints: (i) => (i < 6 ? shared(i) : [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]), external: (i) => (i === 3 || i === 4 ? ["203.0.113.3"] : []) }),
      // services removed (one of the sharers among them, and s3: s4 takes the external
      // address over), a sharer leaves the shared backend,
      // one loses its endpoints, one grows to a new ring size, one shrinks, one pins clients
      objects(45, second),
      // one more sharer leaves it, the only service that changes: the others keep the address
      objects(45, { ...second, endpoints: (i) => (i === 2 ? ["10.244.0.2"] : second.endpoints(i)) }),
      // the last sharers go; the ring size of 8 is no longer used by anyone
      objects(45, { skip: (i) => i < 6, endpoints: (i) => [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`] }),
    ];
    try {
      let prev = new Map<string, unknown>();
      const kinds: string[] = [];
      const patched = emptyModel(0);
      for (const objs of steps) {
        const next = asMap(objs);
        feed(ic, prev, next);
        const changes = ic.compile();
        kinds.push(live.dp.apply(changes, () => ic.tables()).kind);
        prev = next;
        // the model patched service by service counts each hairpin address's users as a
        // model of everything does
        const side = (k: "before" | "after") => model({ frontends: changes.flatMap((c) => c[k].frontends), targets: changes.flatMap((c) => c[k].targets) });
        const [before, after] = [side("before"), side("after")];
        planUnits(patched, before, after);
        patchModel(patched, before, after);
        expect(patched.hairpins).toEqual(model(ic.tables()).hairpins);
        const viaUnits = listing(path);
        const fresh = datapathIn(path);
        try {
          fresh.dp.sync(ic.tables(), { full: true });
          expect(viaUnits).toEqual(listing(path));
        } finally {
          fresh.close();
        }
        live.dp.assume(ic.tables()); // the fresh load replaced the table: same content, new handles
      }
      expect(kinds).toEqual(["full", "delta", "delta", "delta"]);
    } finally {
      live.close();
    }
  });

  test("a cold load and a bank switch in many ring batches leave what one batch each does", () => {
    const path = netns("f");
    const a = tablesOf(objects(30));
    const b = tablesOf(objects(90), a); // 4,770 slots, more than a's maps hold (4,096): a bank switch
    const load = (fillSlots: number) => {
      const nl = Netlink.openNetfilter(path);
      const batches: number[] = [];
      const nft: Nft = { backend: "exec", run: (script) => run(inNetns(path, ["nft", "-f", "-"]), { stdin: script }).stdout };
      const dp = new Datapath(nft, { send: (x) => (batches.push(x.messages), nl.sendBatch(x)) }, [], fillSlots);
      try {
        expect(dp.sync(a).kind).toBe("full");
        const cold = listing(path);
        expect(dp.sync(b).kind).toBe("rebuild");
        return { cold, switched: listing(path), batches: batches.length };
      } finally {
        nl.close();
      }
    };
    const whole = load(1 << 16);
    const parts = load(100);
    expect(parts.batches).toBeGreaterThan(whole.batches + 20);
    expect(parts.cold).toEqual(whole.cold);
    expect(parts.switched).toEqual(whole.switched);
  });

});

describe("policy in a kernel", () => {
  test("pod addresses moved between identities over netlink leave what a load of the new tables does", async () => {
    const { policyTables } = await import("./policy.case.ts");
    const p1 = policyTables();
    // a's IPv4 address takes b's identity, c's IPv6 address a's: every identity keeps an address
    const moved = { ...p1, pods: p1.pods.map((p) => (p.ip === "10.244.0.2" ? { ...p, id: 4 } : p.ip === "fd00:244::4" ? { ...p, id: 3 } : p)) };
    const a = netns("pa");
    const b = netns("pb");
    const tables = tablesOf(objects(3));
    const live = datapathIn(a);
    const ref = datapathIn(b);
    try {
      live.dp.policy(p1, false);
      live.dp.sync(tables);
      const r = live.dp.policy(moved);
      // over netlink: no nft text at all
      expect(r).toMatchObject({ kind: "delta", lines: 0, ringOps: 2 });
      ref.dp.policy(moved, false);
      ref.dp.sync(tables);
      expect(listing(a)).toEqual(listing(b));
      // and back: the same again
      expect(live.dp.policy(p1)).toMatchObject({ kind: "delta", lines: 0 });
      ref.dp.policy(p1, false);
      ref.dp.sync(tables, { full: true });
      expect(listing(a)).toEqual(listing(b));
    } finally {
      live.close();
      ref.close();
    }
  });
  test("an adopted table's policy read back: allow sets as allowKey spells them, pod addresses and ranges at their ids; the replace writes only the allow elements that differ, and leaves what a load does", async () => {
    const { policyTables } = await import("./policy.case.ts");
    const { readKernelPolicy } = await import("./policy-adopt.ts");
    const { readTable } = await import("./adopt.ts");
    const { allowKey, policyContent } = await import("./policy-text.ts");
    const { DEFAULT_MARKS } = await import("./marks.ts");
    const p1 = policyTables();
    const p2 = policyTables(true);
    const a = netns("ka");
    const b = netns("kb");
    const tables = tablesOf(objects(3));
    const first = datapathIn(a);
    const ref = datapathIn(b);
    try {
      first.dp.policy(p1, false);
      first.dp.sync(tables);
      const kp = readKernelPolicy(first.nl, DEFAULT_MARKS);
      const want = policyContent(p1, DEFAULT_MARKS).elements;
      for (const set of ["pol_allow_in", "pol_allow_out"]) expect([set, [...kp.allow.get(set)!].sort()]).toEqual([set, [...want.get(set)!.keys()].sort()]);
      expect(Object.fromEntries(kp.ids.pods)).toEqual(Object.fromEntries(p1.pods.map((p) => [p.ip, p.id])));
      expect(Object.fromEntries(kp.ids.ranges)).toEqual(Object.fromEntries(p1.ranges.map((r) => [r.first, r.id])));
      // a restarted agent adopts the table, then replaces its policy by p2
      const found = readTable(first.nl)!;
      expect(found.ok).toBe(true);
      const scripts: string[] = [];
      const nl = first.nl;
      const nft: Nft = { backend: "exec", run: (script) => (scripts.push(script), run(inNetns(a, ["nft", "-f", "-"]), { stdin: script }).stdout) };
      const adopted = new Datapath(nft, { send: (x) => nl.sendBatch(x) });
      if (!found.ok) throw new Error(found.why);
      adopted.adopt(found.model, found.stale, [...policyContent(p1, DEFAULT_MARKS).chains.keys()], kp.allow);
      adopted.policy(p2);
      const allowLines = scripts.join("").split("\n").filter((l) => l.includes(" pol_allow_"));
      const before = policyContent(p1, DEFAULT_MARKS).elements;
      const after = policyContent(p2, DEFAULT_MARKS).elements;
      const changed = ["pol_allow_in", "pol_allow_out"].flatMap((set) => [...[...before.get(set)!.keys()].filter((k) => !after.get(set)!.has(k)), ...[...after.get(set)!.keys()].filter((k) => !before.get(set)!.has(k))]);
      expect(changed.length).toBeGreaterThan(0);
      // every allow line names a changed element, and no allow set is flushed
      const named = allowLines.flatMap((l) => l.replace(/^.*\{ | \}$/g, "").split(", "));
      expect(named.sort()).toEqual(changed.sort());
      expect(allowLines.every((l) => !l.startsWith("flush"))).toBe(true);
      ref.dp.policy(p2, false);
      ref.dp.sync(tables);
      expect(listing(a)).toEqual(listing(b));
      // the sets changed after they were read (an element the difference deletes is gone): that
      // transaction is refused, and the policy written whole instead
      const again = new Datapath(nft, { send: (x) => nl.sendBatch(x) });
      const read = readKernelPolicy(nl, DEFAULT_MARKS);
      // the element p3 no longer wants, gone from the kernel after the read
      const p3 = { ...p2, allowIngress: p2.allowIngress.slice(1) };
      run(inNetns(a, ["nft", `delete element inet skein pol_allow_in { ${allowKey(p2.allowIngress[0]!, DEFAULT_MARKS)} }`]));
      const again2 = readTable(nl)!;
      if (!again2.ok) throw new Error(again2.why);
      again.adopt(again2.model, again2.stale, [...policyContent(p2, DEFAULT_MARKS).chains.keys()], read.allow);
      scripts.length = 0;
      expect(() => again.policy(p3)).not.toThrow();
      expect(scripts.length).toBe(2);
      expect(scripts[1]).toContain("flush set inet skein pol_allow_in");
      ref.dp.policy(p3);
      expect(listing(a)).toEqual(listing(b));
    } finally {
      first.close();
      ref.close();
    }
  });
  test("a pod moved to a new identity: the allow elements no address can match yet go in first, in a transaction of their own; the result is what a load does", async () => {
    const { policyTables, withNewIdentity } = await import("./policy.case.ts");
    const p1 = policyTables();
    const p2 = withNewIdentity(p1);
    const a = netns("na");
    const b = netns("nb");
    const tables = tablesOf(objects(3));
    const scripts: string[] = [];
    const nl = Netlink.openNetfilter(a);
    const nft: Nft = { backend: "exec", run: (script) => (scripts.push(script), run(inNetns(a, ["nft", "-f", "-"]), { stdin: script }).stdout) };
    const live = new Datapath(nft, { send: (x) => nl.sendBatch(x) });
    const ref = datapathIn(b);
    try {
      live.policy(p1, false);
      live.sync(tables);
      scripts.length = 0;
      live.policy(p2);
      expect(scripts.length).toBe(2);
      expect(scripts[0]).toBe("add element inet skein pol_allow_in { 0x00050000 . 0x00080000 . 17 . 53-53 }\nadd element inet skein pol_allow_out { 0x00080000 . 0x00040000 . 6 . 80-80 }\n");
      expect(scripts[1]).toContain("add chain inet skein pols_8");
      ref.dp.policy(p2, false);
      ref.dp.sync(tables);
      expect(listing(a)).toEqual(listing(b));
    } finally {
      nl.close();
      ref.close();
    }
  });
});
