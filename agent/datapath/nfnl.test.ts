// Ring batches against a real kernel in a private namespace.
import { expect, test } from "bun:test";
import { Netlink } from "../sys/netlink.ts";
import { datapathIn, listing, objects, tablesOf, useNetns } from "./fixtures.case.ts";
import { BatchBuilder } from "./nfnl.ts";

const netns = useNetns(`skt-nfnl${Math.random().toString(36).slice(2, 6)}`);

test("a refused ring batch names what it did and changes nothing", () => {
  const path = netns("c");
  const live = datapathIn(path);
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

