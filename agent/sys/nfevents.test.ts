// nftables change notifications against a real kernel, in namespaces of the test's own:
// foreign changes made by nft execs, transactions of the listening process itself, an
// overflowing receive buffer, and a paused listener.
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { useLab, waitFor } from "../../test/harness/index.ts";
import { inNetns, run } from "./exec.ts";
import { NftEvents, type NftTransaction } from "./nfevents.ts";
import { Netlink } from "./netlink.ts";
import { BatchBuilder } from "../datapath/nfnl.ts";

const lab = useLab("nfevents");

const SETUP = `
add table inet skein
add chain inet skein c
add rule inet skein c ip daddr 192.0.2.1 accept
add rule inet skein c ip daddr 192.0.2.2 accept
add map inet skein m { type ipv4_addr : ipv4_addr; }
add element inet skein m { 192.0.2.10 : 198.51.100.1, 192.0.2.11 : 198.51.100.2 }
add table inet skein_cni
add chain inet skein_cni post
`;

/** Runs nft in the namespace; returns its pid (nsenter execs nft in place: the same process). */
async function nft(path: string, script: string): Promise<number> {
  const p = Bun.spawn(inNetns(path, ["nft", "-f", "-"]), { stdin: Buffer.from(script), stdout: "pipe", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`nft ${script.trim()}: ${err}`);
  return p.pid;
}

/** The next `n` transactions the listener hears, within a deadline. */
async function next(ev: NftEvents, n = 1): Promise<{ transactions: NftTransaction[]; lost: boolean }> {
  const got: NftTransaction[] = [];
  let lost = false;
  await waitFor(`${n} nftables transaction(s)`, () => {
    const r = ev.read();
    got.push(...r.transactions);
    lost ||= r.lost;
    return got.length >= n;
  });
  return { transactions: got, lost };
}

describe("nftables change notifications", () => {
  test("foreign changes: an element deleted, a chain flushed, a table deleted, each with what it changed and who committed it", async () => {
    const path = lab.host("f");
    await nft(path, SETUP);
    const ev = NftEvents.open(path);
    const nl = Netlink.openNetfilter(path);
    try {
      expect(ev.read()).toEqual({ transactions: [], lost: false }); // made before it listened

      let pid = await nft(path, "delete element inet skein m { 192.0.2.10 }");
      let r = await next(ev);
      expect(r.lost).toBe(false);
      expect(r.transactions).toEqual([{ genid: nl.genid(), pid, proc: "nft", unlisted: 0, changes: [{ op: "del", kind: "setelem", family: "inet", table: "skein", name: "m" }] }]);
      expect(pid).not.toBe(process.pid);

      pid = await nft(path, "flush chain inet skein c");
      r = await next(ev);
      expect(r.transactions.map((t) => [t.pid, t.genid, t.changes])).toEqual([
        [
          pid,
          nl.genid(),
          [
            { op: "del", kind: "rule", family: "inet", table: "skein", name: "c" },
            { op: "del", kind: "rule", family: "inet", table: "skein", name: "c" },
          ],
        ],
      ]);

      pid = await nft(path, "delete table inet skein_cni");
      r = await next(ev);
      expect(r.transactions).toHaveLength(1);
      const t = r.transactions[0]!;
      expect([t.pid, t.proc, t.genid]).toEqual([pid, "nft", nl.genid()]);
      // the table's chain goes with it, and the table itself last
      expect(t.changes).toEqual([
        { op: "del", kind: "chain", family: "inet", table: "skein_cni", name: "post" },
        { op: "del", kind: "table", family: "inet", table: "skein_cni" },
      ]);
      expect(ev.read()).toEqual({ transactions: [], lost: false });
    } finally {
      ev.close();
      nl.close();
    }
  });

  test("this process's own transactions carry its pid: libnftables and a netlink batch", async () => {
    const path = lab.host("o");
    // a child in the namespace: libnftables works in the namespace of the thread that calls it
    const fixture = resolve(import.meta.dir, "../../test/fixtures/nfevents-own.ts");
    const out = run(inNetns(path, [process.execPath, fixture])).stdout;
    const r = JSON.parse(out) as { pid: number; kernel: { genid: number; pid: number; proc: string }; backend: string; transactions: NftTransaction[]; lost: boolean };
    expect(r.backend).toBe("libnftables");
    expect(r.lost).toBe(false);
    expect(r.transactions.map((t) => ({ pid: t.pid, proc: t.proc, changes: t.changes.map((c) => `${c.op} ${c.kind} ${c.table} ${c.name ?? ""}`) }))).toEqual([
      { pid: r.pid, proc: r.kernel.proc, changes: ["new table skein ", "new chain skein own1"] },
      { pid: r.pid, proc: r.kernel.proc, changes: ["new chain skein own2"] },
    ]);
    // the kernel numbers the caller the same way when asked for the generation
    expect(r.kernel.pid).toBe(r.pid);
    expect(r.kernel.genid).toBe(r.transactions[1]!.genid);
    expect(r.transactions[1]!.genid).toBe(r.transactions[0]!.genid + 1);

    // and a batch this (test) process sends into the namespace from its main thread
    const ev = NftEvents.open(path);
    const nl = Netlink.openNetfilter(path);
    try {
      const b = new BatchBuilder("skein");
      b.addChain("own3");
      nl.sendBatch(b.build());
      const t = (await next(ev)).transactions[0]!;
      expect([t.pid, t.genid, t.changes]).toEqual([process.pid, nl.genid(), [{ op: "new", kind: "chain", family: "inet", table: "skein", name: "own3" }]]);
    } finally {
      ev.close();
      nl.close();
    }
  });

  test("an overflowing receive buffer is reported as lost, never silently, and the listener goes on", async () => {
    const path = lab.host("v");
    await nft(path, "add table inet skein\nadd set inet skein s { type ipv4_addr; size 65536; }\n");
    const ev = NftEvents.open(path, { receiveBufferBytes: 64 * 1024 });
    try {
      // 5,000 element notifications (some 600 KB of buffer) into 128 KB
      const els = Array.from({ length: 5000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
      await nft(path, `add element inet skein s { ${els.join(", ")} }`);
      const r = ev.read();
      expect(r.lost).toBe(true);
      // what was heard of the transaction is dropped with it: its generation message was lost
      expect(r.transactions).toEqual([]);
      const pid = await nft(path, "add chain inet skein after");
      const again = await next(ev);
      expect(again.lost).toBe(false);
      expect(again.transactions.map((t) => [t.pid, t.changes])).toEqual([[pid, [{ op: "new", kind: "chain", family: "inet", table: "skein", name: "after" }]]]);
    } finally {
      ev.close();
    }
  });

  test("pause() stops delivery and keeps what came before; resume() starts it again", async () => {
    const path = lab.host("p");
    await nft(path, "add table inet skein");
    const ev = NftEvents.open(path);
    try {
      await nft(path, "add chain inet skein before");
      ev.pause();
      await nft(path, "add chain inet skein while_paused");
      const r = ev.read();
      expect(r.lost).toBe(false);
      expect(r.transactions.map((t) => t.changes.map((c) => c.name))).toEqual([["before"]]);
      expect(ev.read().transactions).toEqual([]);
      ev.resume();
      await nft(path, "add chain inet skein resumed");
      expect((await next(ev)).transactions.map((t) => t.changes.map((c) => c.name))).toEqual([["resumed"]]);
      ev.pause();
      ev.pause(); // twice is once
      ev.resume();
      ev.close();
      ev.close();
      expect(ev.read()).toEqual({ transactions: [], lost: false });
    } finally {
      ev.close();
    }
  });
});
