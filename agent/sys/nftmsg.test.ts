// The decoding of nftables notifications, without a kernel: messages as the kernel builds
// them, and hostile ones (a listener reads whatever arrives on the group).
import { describe, expect, test } from "bun:test";
import { decodeNft, MAX_CHANGES, TransactionAssembler } from "./nftmsg.ts";

const enc = new TextEncoder();

/** One nftables message: netlink header, nfgenmsg, attributes (strings NUL-terminated). */
function msg(type: number, family: number, attrs: Array<[number, string | number]>): Uint8Array {
  const body: number[] = [];
  for (const [t, v] of attrs) {
    const payload = typeof v === "string" ? [...enc.encode(v), 0] : [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
    const len = 4 + payload.length;
    body.push(len & 255, len >> 8, t & 255, t >> 8, ...payload);
    while (body.length % 4) body.push(0);
  }
  const out = new Uint8Array(20 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, out.length, true);
  dv.setUint16(4, (10 << 8) | type, true);
  out[16] = family;
  out.set(body, 20);
  return out;
}
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
};
const gen = (genid: number, pid: number, proc: string) => msg(15, 0, [[1, genid], [2, pid], [3, proc]]);

describe("decodeNft", () => {
  test("each kind of change, with its table and the name that matters", () => {
    const d = (m: Uint8Array) => decodeNft(m, 0, m.length);
    expect(d(msg(2, 1, [[1, "skein"]]))).toEqual({ change: { op: "del", kind: "table", family: "inet", table: "skein" } });
    expect(d(msg(3, 2, [[1, "t"], [2, 7], [3, "c"]]))).toEqual({ change: { op: "new", kind: "chain", family: "ip", table: "t", name: "c" } });
    expect(d(msg(8, 10, [[1, "t"], [2, "c"], [3, 9]]))).toEqual({ change: { op: "del", kind: "rule", family: "ip6", table: "t", name: "c" } });
    expect(d(msg(14, 1, [[1, "skein"], [2, "be4_0"]]))).toEqual({ change: { op: "del", kind: "setelem", family: "inet", table: "skein", name: "be4_0" } });
    expect(d(msg(30, 7, [[1, "b"], [2, "s"]]))).toEqual({ change: { op: "del", kind: "setelem", family: "bridge", table: "b", name: "s" } });
    expect(d(msg(99, 42, [[1, "x"], [2, "y"]]))).toEqual({ change: { op: "new", kind: "other", family: "42", table: "x" } });
    expect(d(gen(17, 1234, "nft"))).toEqual({ gen: { genid: 17, pid: 1234, proc: "nft" } });
  });

  test("malformed messages are reported, never thrown on", () => {
    const m = msg(3, 1, [[1, "t"], [3, "c"]]);
    new DataView(m.buffer).setUint16(20, 200, true); // the first attribute overruns the message
    expect(decodeNft(m, 0, m.length)).toHaveProperty("malformed");
    expect(decodeNft(m, 0, 18)).toHaveProperty("malformed"); // no room for nfgenmsg
    const noId = msg(15, 0, [[3, "nft"]]);
    expect(decodeNft(noId, 0, noId.length)).toHaveProperty("malformed"); // a generation without its id
    expect(decodeNft(noId, 0, noId.length + 8)).toHaveProperty("malformed"); // longer than the bytes at hand
    const other = msg(3, 1, []);
    new DataView(other.buffer).setUint16(4, (11 << 8) | 3, true); // another subsystem
    expect(decodeNft(other, 0, other.length)).toEqual({ ignored: true });
    // a name without its NUL, longer than any nftables name: cut at 256 bytes
    const long = msg(0, 1, [[1, "a".repeat(1000)]]);
    const r = decodeNft(long, 0, long.length) as { change: { table: string } };
    expect(r.change.table.length).toBe(256);
  });
});

describe("TransactionAssembler", () => {
  test("changes are held until their generation message, across datagrams", () => {
    const a = new TransactionAssembler();
    a.datagram(cat(msg(14, 1, [[1, "skein"], [2, "m"]]), msg(8, 1, [[1, "skein"], [2, "c"]])), 1 << 30);
    expect(a.take()).toEqual({ transactions: [], lost: false });
    expect(a.open).toBe(true);
    a.datagram(cat(gen(5, 99, "nft"), msg(2, 1, [[1, "skein_cni"]]), gen(6, 100, "firewalld")), 1 << 30);
    expect(a.take()).toEqual({
      transactions: [
        {
          genid: 5,
          pid: 99,
          proc: "nft",
          unlisted: 0,
          changes: [
            { op: "del", kind: "setelem", family: "inet", table: "skein", name: "m" },
            { op: "del", kind: "rule", family: "inet", table: "skein", name: "c" },
          ],
        },
        { genid: 6, pid: 100, proc: "firewalld", unlisted: 0, changes: [{ op: "del", kind: "table", family: "inet", table: "skein_cni" }] },
      ],
      lost: false,
    });
    expect(a.open).toBe(false);
  });

  test("a gap drops the open transaction: its changes are not credited to the next committer", () => {
    const a = new TransactionAssembler();
    a.datagram(msg(2, 1, [[1, "skein"]]), 1 << 30);
    a.gap();
    a.datagram(cat(msg(3, 1, [[1, "skein"], [3, "mine"]]), gen(9, 1, "skein")), 1 << 30);
    expect(a.take()).toEqual({ transactions: [{ genid: 9, pid: 1, proc: "skein", unlisted: 0, changes: [{ op: "new", kind: "chain", family: "inet", table: "skein", name: "mine" }] }], lost: true });
    expect(a.take().lost).toBe(false);
  });

  test("a transaction's changes are listed up to MAX_CHANGES and counted past it", () => {
    const a = new TransactionAssembler();
    const one = msg(12, 1, [[1, "skein"], [2, "be4_0"]]);
    const many = new Uint8Array(one.length * (MAX_CHANGES + 5));
    for (let i = 0; i < MAX_CHANGES + 5; i++) many.set(one, i * one.length);
    a.datagram(cat(many, gen(3, 4, "skein")), 1 << 30);
    const [t] = a.take().transactions;
    expect([t!.changes.length, t!.unlisted]).toEqual([MAX_CHANGES, 5]);
  });

  test("hostile datagrams (random bytes, truncated and overrunning lengths) never throw", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0), seed >>> 8);
    const a = new TransactionAssembler();
    const valid = cat(msg(3, 1, [[1, "t"], [3, "c"]]), gen(1, 2, "x"));
    let lost = 0;
    for (let i = 0; i < 20_000; i++) {
      const b = new Uint8Array(rnd() % 200);
      for (let j = 0; j < b.length; j++) b[j] = rnd() & 255;
      // half of them: a valid message with some bytes changed, so decoding gets deep
      if (i % 2) {
        b.set(valid.subarray(0, Math.min(b.length, valid.length)));
        if (b.length) b[rnd() % b.length] = rnd() & 255;
      }
      expect(() => a.datagram(b, b.length)).not.toThrow();
      if (a.take().lost) lost++;
    }
    expect(lost).toBeGreaterThan(0);
  });
});
