// Telling the agent's own transactions from everyone else's, against a fake listener and a
// fake ruleset generation: the kernel side is in test/drift.e2e.test.ts.
import { expect, test } from "bun:test";
import type { NftTransaction } from "../sys/nfevents.ts";
import { KernelOwner, type NftEventSource } from "./owner.ts";

/** A ruleset: commits bump the generation; the listener hears those made while it listens. */
class Ruleset implements NftEventSource {
  gen = 10;
  listening = true;
  queue: NftTransaction[] = [];
  lost = false;
  pauses = 0;
  genid(): number {
    return this.gen;
  }
  commit(pid: number, table = "skein", heard = this.listening): void {
    this.gen++;
    if (heard) this.queue.push({ genid: this.gen, pid, proc: pid === 1 ? "skein" : "nft", changes: [{ op: "del", kind: "setelem", family: "inet", table, name: "svc4" }], unlisted: 0 });
  }
  read() {
    const r = { transactions: this.queue.splice(0), lost: this.lost };
    this.lost = false;
    return r;
  }
  pause(): void {
    this.listening = false;
    this.pauses++;
  }
  resume(): void {
    this.listening = true;
  }
}

test("the agent's own writes are not heard and leave nothing to report; others' are named", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  owner.own(() => rs.commit(1));
  owner.own(() => rs.commit(1));
  expect(rs.pauses).toBe(2);
  expect(rs.listening).toBe(true);
  expect(owner.poll()).toEqual({ skein: [], cni: [], doubt: [] });
  expect(owner.changed()).toBe(false);
  rs.commit(77);
  rs.commit(78, "skein_cni");
  rs.commit(79, "unrelated");
  const f = owner.poll();
  expect(f.skein).toEqual(["deleted elements of svc4 by nft (pid 77)"]);
  expect(f.cni).toEqual(["deleted elements of svc4 by nft (pid 78)"]);
  expect(f.doubt).toEqual([]);
  // everything heard is accounted for: the periodic check has nothing to read
  expect(owner.changed()).toBe(false);
});

test("a refused write adds no generation; one that went in adds one", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  expect(() =>
    owner.own(() => {
      throw new Error("refused");
    }),
  ).toThrow("refused");
  expect(rs.listening).toBe(true);
  expect(owner.poll().doubt).toEqual([]);
  expect(owner.changed()).toBe(false);
});

test("another process committing while the agent writes (unheard) is a doubt, and so are lost notifications", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  owner.own(() => {
    rs.commit(77); // while the listener is paused: never heard
    rs.commit(1);
  });
  const f = owner.poll();
  expect(f.skein).toEqual([]);
  expect(f.doubt).toHaveLength(1);
  expect(f.doubt[0]).toContain("another process changed nftables meanwhile");
  expect(owner.poll().doubt).toEqual([]);
  rs.lost = true;
  expect(owner.poll().doubt).toEqual(["the kernel dropped nftables notifications (the listener's buffer overflowed)"]);
});

test("a generation committed before a write and heard only after it is no doubt; one never heard is, at the second poll", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  // committed (and counted in the generation) before the agent's write; its notification
  // arrives after: the poll between sees a gap below the agent's generation
  rs.gen++;
  const late: NftTransaction = { genid: rs.gen, pid: 77, proc: "nft", changes: [], unlisted: 0 };
  owner.own(() => rs.commit(1));
  expect(owner.poll().doubt).toEqual([]);
  expect(owner.changed()).toBe(true);
  rs.queue.push(late);
  expect(owner.poll().doubt).toEqual([]);
  expect(owner.changed()).toBe(false);
  // never heard: a doubt once it outlives a poll, then settled
  rs.commit(77, "x", false);
  owner.own(() => rs.commit(1));
  expect(owner.poll().doubt).toEqual([]);
  expect(owner.poll().doubt).toEqual([`ruleset generation ${rs.gen - 1} was committed unheard`]);
  expect(owner.changed()).toBe(false);
});

test("settle(): the ruleset as it is now is accounted for", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  rs.commit(77, "x", false);
  expect(owner.changed()).toBe(true);
  owner.settle();
  expect(owner.changed()).toBe(false);
});

test("a transaction of someone else's with more changes than the listener lists is a doubt", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  rs.gen++;
  rs.queue.push({ genid: rs.gen, pid: 77, proc: "nft", changes: [], unlisted: 5000 });
  expect(owner.poll().doubt).toEqual(["nft (pid 77) changed 5000 objects more than the notifications list"]);
  rs.gen++;
  rs.queue.push({ genid: rs.gen, pid: 1, proc: "skein", changes: [], unlisted: 5000 });
  expect(owner.poll().doubt).toEqual([]);
});

test("a small write of the agent's is heard, not paused for: its own notifications are skipped, a neighbour's commit at the same moment is heard, no doubt", () => {
  const rs = new Ruleset();
  const owner = new KernelOwner(rs, rs, 1);
  owner.own(() => {
    rs.commit(77, "other"); // a neighbour writing nftables at the same moment
    rs.commit(1);
  }, false);
  expect(rs.pauses).toBe(0);
  const f = owner.poll();
  expect(f).toEqual({ skein: [], cni: [], doubt: [] });
  expect(owner.changed()).toBe(false);
});
