// The renderer as text (no root), and the datapath against a real kernel in a private
// namespace: a delta (or a bank switch) applied on top of the previous tables must leave
// exactly what a full load of the new tables leaves.
import { afterAll, describe, expect, test } from "bun:test";
import { compile, type Tables } from "../../compiler/reference/compile.ts";
import { IncrementalCompiler } from "../../compiler/incremental.ts";
import { asMap, feed } from "../../compiler/generate.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { adoptedModel, listTable, readTable } from "./adopt.ts";
import { inNetns, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import { Datapath } from "./datapath.ts";
import { BatchBuilder } from "./nfnl.ts";
import type { Nft } from "./nft.ts";
import { inCidrs } from "../../compiler/keys.ts";
import { emptyModel, model, patchModel, planUnits, renderDelta, renderFull, ringDiff, splitFill } from "./render.ts";
import { DEFAULT_MARKS, type Marks } from "./marks.ts";

type Tweak = { endpoints?: (i: number) => string[]; skip?: (i: number) => boolean; affinity?: (i: number) => boolean; external?: (i: number) => string[] };
function objects(n: number, tw: Tweak = {}): unknown[] {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    if (tw.skip?.(i)) continue;
    objs.push({
      kind: "Service",
      metadata: { name: `s${i}`, namespace: "default" },
      spec: { type: i % 5 === 0 ? "NodePort" : "ClusterIP", clusterIP: `10.96.${i >> 8}.${i & 255}`, externalIPs: tw.external?.(i) ?? [], sessionAffinity: tw.affinity?.(i) ? "ClientIP" : "None", ports: [{ port: 80, nodePort: 30000 + i }] },
    });
    const eps = tw.endpoints?.(i) ?? [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`];
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: eps.map((a) => ({ addresses: [a] })),
    });
  }
  return objs;
}
const opts = { nodeName: "", nodeIPs: ["198.18.0.1"], ringFactor: 25 };
const tablesOf = (objs: unknown[], previous?: Tables) => compile(clusterStateFrom(objs).state, { ...opts, previous });

describe("renderFull", () => {
  test("sets, maps and rules that look them up stay constant as services grow", () => {
    const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
    const small = renderFull(tablesOf(objects(3)));
    const large = renderFull(tablesOf(objects(300)));
    for (const re of [/^add (map|set) /gm, /@be4_0/g, /vmap @svc4/g]) expect(count(large, re)).toBe(count(small, re));
    expect(count(large, /^add chain inet skein t_\d+$/gm)).toBe(300);
    expect(count(large, /^add chain inet skein ring4_/gm)).toBe(1); // one ring size, one ring chain
  });

  test("replaces the table atomically", () => {
    expect(renderFull(tablesOf(objects(1))).split("\n").slice(0, 3)).toEqual(["add table inet skein", "delete table inet skein", 'add table inet skein { comment "skein marks: packet 0xffff0000 conntrack 0x80000000"; }']);
  });
});

describe("mark ranges", () => {
  // the id in bits 8-23 of the packet mark, the masquerade flag in bit 30 of the ct mark
  const marks: Marks = { mark: 0x00ffff00, ctMark: 0x7f000000 };
  const t = tablesOf(objects(12));
  const text = renderFull(t, 0, marks);

  test("target chains change only skein's bits of the packet mark; rings are keyed by them", () => {
    for (const x of t.targets) {
      const v = `0x${(x.id << 8).toString(16).padStart(8, "0")}`;
      expect(text).toContain(`add rule inet skein t_${x.id} meta mark set meta mark & 0xff0000ff | ${v} goto ring4_0_53 comment`);
      expect(text).toMatch(new RegExp(`add element inet skein be4_0 \\{ (.*, )?${v} \\. 0 : `));
    }
    // NodePorts (every fifth service) masquerade: one bit of the ct mark, the others kept
    const nodePort = t.frontends.find((f) => f.masquerade)!.target;
    expect(text).toContain(`add rule inet skein t_${nodePort}_m ct mark set ct mark | 0x40000000 meta mark set meta mark & 0xff0000ff | 0x0000${(nodePort << 8).toString(16).padStart(4, "0")} goto ring4_0_53`);
    expect(text).toContain("add rule inet skein nat_postrouting ct mark & 0x40000000 == 0x40000000 masquerade");
    expect(text).toContain("dnat ip to meta mark & 0x00ffff00 . jhash ip saddr . th sport mod 53 seed 0x0 map @be4_0");
    expect(text).toContain('add table inet skein { comment "skein marks: packet 0x00ffff00 conntrack 0x7f000000"; }');
    // nothing sets the whole mark any more, nor looks the whole mark up
    expect(text).not.toMatch(/meta mark set \d|meta mark set 0x|to meta mark \./);
    expect(renderFull(t)).toContain("meta mark set meta mark & 0x0000ffff | 0x00010000 goto");
  });

  test("ids the range cannot hold are an error naming the target, at render and at sync", () => {
    const many = tablesOf(objects(300)); // ids up to 300; 8 bits hold 255
    const narrow: Marks = { mark: 0xff000000, ctMark: 0x80000000 };
    const last = many.targets.find((x) => x.id === 256)!;
    const why = `target 256 (${last.service} ${last.scope}) does not fit the packet mark range 0xff000000, which holds ids 1-255: give --mark-mask more bits`;
    expect(() => model(many, 0, undefined, narrow)).toThrow(why);
    expect(() => renderFull(many, 0, narrow)).toThrow(why);
    const dp = new Datapath({ backend: "exec", run: () => { throw new Error("no nft text expected"); } }, { send: () => { throw new Error("no batch expected"); } }, [], undefined, narrow);
    expect(() => dp.sync(many)).toThrow(why);
    expect(model(tablesOf(objects(255)), 0, undefined, narrow).rings.size).toBe(255);
    // a range that is no range is refused before anything is rendered
    expect(() => model(tablesOf(objects(1)), 0, undefined, { mark: 0xff00ff00, ctMark: 1 })).toThrow("packet mark range: 0xff00ff00 is not one run of contiguous bits");
  });
});

describe("renderDelta", () => {
  const before = tablesOf(objects(50));
  test("no change, no transaction", () => {
    expect(renderDelta(model(before), model(tablesOf(objects(50), before)))).toBe("");
  });

  test("one endpoint of one service: only that target's ring slots and the hairpin pair, no nft text", () => {
    const after = tablesOf(objects(50, { endpoints: (i) => (i === 7 ? ["10.244.0.7", "10.246.0.7"] : [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]) }), before);
    expect(renderDelta(model(before), model(after))).toBe("");
    const rings = ringDiff(model(before), model(after));
    expect(rings.hairpinAdd).toEqual({ 4: ["10.246.0.7"], 6: [] });
    expect(rings.hairpinDel).toEqual({ 4: ["10.245.0.7"], 6: [] });
    const target = after.targets.find((t) => t.service === "default/s7:80/TCP")!.id;
    expect(rings.addChains).toEqual([]);
    expect(rings.delChains).toEqual([]);
    for (const m of [rings.add, rings.del]) {
      expect([...m.keys()]).toEqual(["be4_0"]);
      expect(m.get("be4_0")!.every((op) => op.mark === target << 16)).toBe(true); // the default range: the upper 16 bits
    }
  });
});

test("a fill split into batches: every slot once, none over the limit, chains and hairpins first", () => {
  const md = model(tablesOf(objects(5)));
  const fill = ringDiff(emptyModel(0), md);
  const parts = splitFill(fill, 40);
  const slots = (o: typeof fill) => [...o.add.values()].flat().flatMap((op) => Array.from({ length: op.to - op.from }, (_, i) => `${op.mark}/${op.from + i}`));
  expect(parts.length).toBe(Math.ceil(slots(fill).length / 40));
  for (const p of parts) expect(slots(p).length).toBeLessThanOrEqual(40);
  expect(parts.flatMap(slots)).toEqual(slots(fill));
  expect(parts[0]!.addChains).toEqual(fill.addChains);
  expect(parts[0]!.hairpinAdd).toEqual(fill.hairpinAdd);
  for (const p of parts.slice(1)) expect([p.addChains.length, p.hairpinAdd[4].length]).toEqual([0, 0]);
  expect(() => splitFill(ringDiff(md, emptyModel(0)), 40)).toThrow(/removes no/);
});

describe("hairpin addresses", () => {
  test("only this node's pods when its pod CIDRs are known, every backend otherwise", () => {
    // a dual-stack service and v4 ones: backends 10.244.x.y and 10.245.x.y, and an IPv6 one
    const objs = [
      ...objects(3),
      { kind: "Service", metadata: { name: "v6", namespace: "default" }, spec: { clusterIPs: ["fd00:96::6"], ipFamilies: ["IPv6"], ports: [{ port: 80 }] } },
      { kind: "EndpointSlice", metadata: { name: "v6-a", namespace: "default", labels: { "kubernetes.io/service-name": "v6" } }, addressType: "IPv6", ports: [{ port: 80 }], endpoints: [{ addresses: ["fd00:244:0:1::5"] }, { addresses: ["fd00:245::5"] }] },
    ];
    const t = tablesOf(objs);
    const all = model(t).hairpins;
    expect([...all[4].keys()].sort()).toEqual(["10.244.0.0", "10.244.0.1", "10.244.0.2", "10.245.0.0", "10.245.0.1", "10.245.0.2"]);
    expect([...all[6].keys()].sort()).toEqual(["fd00:244:0:1::5", "fd00:245::5"]);
    // a /23 and a /60: prefixes that end inside a byte
    const local = model(t, 0, inCidrs(["10.244.0.0/23", "fd00:244::/60"])).hairpins;
    expect([...local[4].keys()].sort()).toEqual(["10.244.0.0", "10.244.0.1", "10.244.0.2"]);
    expect([...local[6].keys()]).toEqual(["fd00:244:0:1::5"]);
    expect([...model(t, 0, inCidrs(["10.244.1.0/24"])).hairpins[4].keys()]).toEqual([]);
  });
});

const ns = `skt-rend${Math.random().toString(36).slice(2, 6)}`;
afterAll(() => {
  deleteNetns(ns);
  deleteNetns(`${ns}b`);
  deleteNetns(`${ns}c`);
  deleteNetns(`${ns}d`);
  deleteNetns(`${ns}e`);
  deleteNetns(`${ns}f`);
  deleteNetns(`${ns}g`);
});

describe("in a kernel", () => {
  // nft through an exec in the namespace, ring batches over a netlink socket opened in it
  const datapath = (path: string, marks?: Marks) => {
    const nft: Nft = { backend: "exec", run: (script) => run(inNetns(path, ["nft", "-f", "-"]), { stdin: script }).stdout };
    const nl = Netlink.openNetfilter(path);
    return { dp: new Datapath(nft, { send: (b) => nl.sendBatch(b) }, [], undefined, marks), nl, close: () => nl.close() };
  };
  // The kernel lists chains in creation order and hash-set elements in its own order, so
  // compare the JSON listing as sets of objects, without handles; banks renamed to one.
  const listing = (path: string) => {
    const j = JSON.parse(run(inNetns(path, ["nft", "-j", "list", "table", "inet", "skein"])).stdout) as { nftables: Array<Record<string, Record<string, unknown>>> };
    const norm = j.nftables.map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body as Record<string, unknown>;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
      return JSON.stringify({ [kind]: rest }).replace(/(be[46]|ring[46]a?)_1/g, "$1_0");
    });
    return norm.sort();
  };

  test("a delta over the previous tables leaves what a full load of the new ones does; so does a bank switch", () => {
    const path = addNetns(ns);
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
    const live = datapath(path);
    try {
      expect(live.dp.sync(a).kind).toBe("full");
      expect(live.dp.sync(b).kind).toBe("delta");
      const viaDelta = listing(path);
      expect(live.dp.sync(c).kind).toBe("rebuild");
      const viaRebuild = listing(path);
      const fresh = datapath(path);
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

  test("a new agent adopts the table an earlier one left: one bank switch, then what a fresh load gives", async () => {
    const path = addNetns(`${ns}e`);
    const a = tablesOf(objects(30));
    const b = tablesOf(objects(32, { skip: (i) => i === 4, endpoints: (i) => (i === 7 ? [] : [`10.244.${i >> 8}.${i & 255}`, `10.246.${i >> 8}.${i & 255}`]) }));
    const nftIn = (args: string[]) => run(inNetns(path, ["nft", ...args])).stdout;
    const earlier = datapath(path);
    const later = datapath(path);
    try {
      expect(readTable(earlier.nl)).toBeUndefined();
      earlier.dp.sync(a);
      // an interrupted switch left the other bank's maps and a ring chain behind
      nftIn(["add map inet skein be4_1 { typeof meta mark . numgen inc mod 2 : ip daddr . th dport; size 4096; }"]);
      nftIn(["add map inet skein be6_1 { typeof meta mark . numgen inc mod 2 : ip6 daddr . th dport; size 4096; }"]);
      nftIn(["add chain inet skein ring4_1_7"]);
      const found = readTable(earlier.nl)!;
      if (!found.ok) throw new Error(found.why);
      expect(found.model.bank).toBe(0);
      expect(found.stale).toEqual({ bank: 1, chains: ["ring4_1_7"] });
      // the elements read back are the ones skein wrote, key for key
      expect(found.model.elements).toEqual(model(a).elements);
      // (by address: the kernel does not say how many targets use one)
      for (const fam of [4, 6] as const) expect([...found.model.hairpins[fam].keys()].sort()).toEqual([...model(a).hairpins[fam].keys()].sort());
      later.dp.adopt(found.model, found.stale);
      // b ids differ from a's (another compile): every target chain is replaced in the switch
      expect(later.dp.sync(b).kind).toBe("rebuild");
      const adopted = listing(path);
      const fresh = datapath(path);
      try {
        fresh.dp.sync(b, { full: true });
        expect(adopted).toEqual(listing(path));
      } finally {
        fresh.close();
      }
      // a table of the name that skein did not make (or an older layout) is not adopted
      nftIn(["delete table inet skein"]);
      nftIn(["add table inet skein"]);
      expect(readTable(earlier.nl)).toMatchObject({ ok: false, why: expect.stringContaining("lacks nat_prerouting") });
    } finally {
      earlier.close();
      later.close();
    }
  });

  test("per-service deltas (incremental compiles) leave what a full load of the same tables does", () => {
    const path = addNetns(`${ns}d`);
    const ic = new IncrementalCompiler(opts);
    const live = datapath(path);
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
        const fresh = datapath(path);
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

  test("a refused ring batch names what it did and changes nothing", () => {
    const path = addNetns(`${ns}c`);
    const live = datapath(path);
    try {
      const a = tablesOf(objects(5));
      live.dp.sync(a);
      const before = listing(path);
      const nl = Netlink.openNetfilter(path);
      try {
        const b = new BatchBuilder("skein");
        b.elements("add", "be4_0", new Uint8Array(8), 8, new Uint8Array(8), 8); // valid
        b.elements("add", "no_such_map", new Uint8Array(8), 8, new Uint8Array(8), 8);
        expect(() => nl.sendBatch(b.build())).toThrow(/refused the batch at "add 1 elements of no_such_map": ENOENT/);
      } finally {
        nl.close();
      }
      expect(listing(path)).toEqual(before);
    } finally {
      live.close();
    }
  });

  test("a cold load and a bank switch in many ring batches leave what one batch each does", () => {
    const path = addNetns(`${ns}f`);
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

  // also what holds the ring rule and ring keys nfnl.ts encodes equal to those nft makes of
  // the text, in the default mark range and in another
  test.each([DEFAULT_MARKS, { mark: 0x0fffff00, ctMark: 0x00000f00 }])("the one-file form (skein tables --nft) loads with nft alone and holds the same table (marks %o)", (marks) => {
    const path = addNetns(`${ns}b`);
    try {
      const b = tablesOf(objects(20, { affinity: (i) => i === 4 }));
      run(inNetns(path, ["nft", "-f", "-"]), { stdin: renderFull(b, 0, marks) });
      // nft text needs its `meta l4proto` guard in front of a transport mapping; the batch has none
      const text = listing(path).map((l) => l.replace(/\{"match":\{"op":"==","left":\{"meta":\{"key":"l4proto"\}\},"right":\{"set":\["tcp","udp","sctp"\]\}\}\},/g, ""));
      expect(text.join()).toContain(`{"&":[{"meta":{"key":"mark"}},${marks.mark}]}`);
      const live = datapath(path, marks);
      try {
        live.dp.sync(b);
        expect(text).toEqual(listing(path));
      } finally {
        live.close();
      }
    } finally {
      deleteNetns(`${ns}b`);
    }
  });

  test("a table made with other mark ranges, or by an earlier version (none recorded), is not adopted", async () => {
    const path = addNetns(`${ns}g`);
    const nftIn = (args: string[]) => run(inNetns(path, ["nft", ...args])).stdout;
    const marks: Marks = { mark: 0x00ffff00, ctMark: 0x40000000 };
    const live = datapath(path, marks);
    try {
      live.dp.sync(tablesOf(objects(5)));
      expect(readTable(live.nl, marks)).toMatchObject({ ok: true });
      expect(readTable(live.nl)).toEqual({ ok: false, why: "table inet skein was made with the mark ranges packet 0x00ffff00, conntrack 0x40000000; this agent uses packet 0xffff0000, conntrack 0x80000000" });
      expect(readTable(live.nl, { ...marks, ctMark: 0x80000000 })).toMatchObject({ ok: false, why: expect.stringContaining("this agent uses packet 0x00ffff00, conntrack 0x80000000") });
      // the comment as the kernel lists it; a table without one (what earlier versions made)
      expect(listTable(live.nl)!.comment).toBe("skein marks: packet 0x00ffff00 conntrack 0x40000000");
      const terse = (JSON.parse(nftIn(["-j", "-t", "list", "table", "inet", "skein"])) as { nftables: Array<Record<string, any>> }).nftables;
      expect(adoptedModel(terse, new Map(), undefined, marks)).toMatchObject({ ok: false, why: expect.stringContaining("records no mark ranges (made by an earlier version of skein") });
      expect(adoptedModel(terse, new Map(), "skein marks: packet 0x00ffff00 conntrack 0x40000000", marks)).toMatchObject({ ok: true });
    } finally {
      live.close();
    }
  });
});
