// The model of compiled tables: which addresses are hairpinned, and target ids that do not
// fit skein's bits of the packet mark.
import { describe, expect, test } from "bun:test";
import { inCidrs } from "../../compiler/keys.ts";
import { Datapath } from "./datapath.ts";
import { objects, tablesOf } from "./fixtures.case.ts";
import type { Marks } from "./marks.ts";
import { model } from "./model.ts";
import { renderFull } from "./nft-text.ts";

describe("mark ranges", () => {
  test("ids the range cannot hold are an error naming the target, at render and at sync", () => {
    const many = tablesOf(objects(300)); // ids up to 300; 8 bits hold 255
    const narrow: Marks = { mark: 0xff000000, ctMark: 0xffff0000 };
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

