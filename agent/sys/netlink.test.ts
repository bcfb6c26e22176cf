// nftables batches the kernel refuses, against a real kernel in a namespace of the test's
// own: every exchange ends with the right answer, never a hang. The batches are sent from a
// child process with a deadline (test/fixtures/netlink-batches.ts), so that a send that
// never returns fails its test instead of stopping the suite.
import { describe, expect, test } from "bun:test";
import { readdirSync, readlinkSync } from "node:fs";
import { resolve } from "node:path";
import { useLab } from "../../test/harness/index.ts";
import { inNetns, run } from "./exec.ts";
import { Netlink } from "./netlink.ts";
import { BatchBuilder, type Batch } from "../datapath/nfnl.ts";

const FIXTURE = resolve(import.meta.dir, "../../test/fixtures/netlink-batches.ts");
/** what a child gets to send its batches: the kernel answers within milliseconds */
const DEADLINE_MS = 8000;

const lab = useLab("netlink");

interface Outcome {
  ok: boolean;
  error?: string;
  errno?: number;
  ms: number;
  seqs: number[];
}

async function send(batches: Batch[], o: { netns?: string; wrap?: string[]; batchTimeoutMs?: number; signals?: { everyMs: number; count: number } } = {}): Promise<Outcome[] & { signals?: number }> {
  const input = JSON.stringify({
    netns: o.netns,
    batchTimeoutMs: o.batchTimeoutMs,
    signals: o.signals,
    batches: batches.map((b) => ({ bytes: Buffer.from(b.bytes).toString("base64"), what: [...b.what] })),
  });
  const p = Bun.spawn([...(o.wrap ?? []), process.execPath, FIXTURE], { stdin: Buffer.from(input), stdout: "pipe", stderr: "pipe", timeout: DEADLINE_MS, killSignal: "SIGKILL" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (p.signalCode) throw new Error(`the batches got no answer within ${DEADLINE_MS} ms: the send hung (${err.trim()})`);
  if (code !== 0) throw new Error(`the batch sender exited ${code}: ${err.trim()}`);
  const r = JSON.parse(out) as { results: Outcome[]; signals: number };
  return Object.assign(r.results, { signals: r.signals });
}

const chains = (...names: string[]) => {
  const b = new BatchBuilder("skein");
  for (const n of names) b.addChain(n);
  return b;
};
/** an element for a map that does not exist: the kernel refuses this message with ENOENT */
const refused = (b: BatchBuilder, map: string) => (b.elements("add", map, new Uint8Array(8), 8, new Uint8Array(8), 8), b);
const chainsIn = (path: string) => [...run(inNetns(path, ["nft", "list", "table", "inet", "skein"])).stdout.matchAll(/chain (\S+) \{/g)].map((m) => m[1]).sort();

describe("nftables batches the kernel refuses", () => {
  test("refused on its first message (a bad batch header): an error at once, and the socket serves the next batch", async () => {
    const path = lab.host("a");
    run(inNetns(path, ["nft", "add table inet skein"]));
    const bad = chains("x").build();
    bad.bytes[18] = 0; // the header's res_id (big-endian): subsystem 255, which does not exist
    bad.bytes[19] = 255;
    const [r1, r2] = await send([bad, chains("ok").build()], { netns: path });
    expect(r1!.error).toMatch(/refused the batch at "its start \(the batch header\)": EINVAL/);
    expect(r1!.ms).toBeLessThan(1000);
    expect(r2!.ok).toBe(true);
    expect(chainsIn(path)).toEqual(["ok"]);
  });

  test("refused at message k: that message is named, the rest of the answer is not read as the next batch's, and sequence numbers grow", async () => {
    const path = lab.host("b");
    run(inNetns(path, ["nft", "add table inet skein"]));
    // the kernel answers a refusal in the middle with that message's error and then the ack
    // the last message asked for: that ack must not answer the batch after it
    const results = await send(
      [
        refusedThen("a1", "no_such_map", "a2"),
        chains("b1").build(),
        refused(chains("c1", "c2"), "nope2").build(),
        chains("d1").build(),
      ],
      { netns: path },
    );
    expect(results.map((r) => r.error ?? "ok")).toEqual([
      'nftables refused the batch at "add 1 elements of no_such_map": ENOENT',
      "ok",
      'nftables refused the batch at "add 1 elements of nope2": ENOENT',
      "ok",
    ]);
    expect(chainsIn(path)).toEqual(["b1", "d1"]);
    // each batch's messages are numbered consecutively, after every earlier batch's
    const seqs = results.flatMap((r) => r.seqs);
    for (const r of results) expect(r.seqs).toEqual(r.seqs.map((_, i) => r.seqs[0]! + i));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  test("never answered (a second batch header makes the kernel drop it silently): a timeout naming the batch, not a hang", async () => {
    const path = lab.host("c");
    run(inNetns(path, ["nft", "add table inet skein"]));
    const b = chains("x").build();
    const twice = new Uint8Array(20 + b.bytes.length);
    twice.set(b.bytes.subarray(0, 20));
    twice.set(b.bytes, 20);
    const [r1, r2] = await send([{ ...b, bytes: twice }, chains("after").build()], { netns: path, batchTimeoutMs: 300 });
    expect(r1!.error).toBe("nftables batch: no answer from the kernel within 300 ms");
    expect(r2!.ok).toBe(true);
    expect(chainsIn(path)).toEqual(["after"]);
  });

  test("signals during the wait neither end it nor stretch it: the receive is retried until the answer or the timeout", async () => {
    const path = lab.host("e");
    run(inNetns(path, ["nft", "add table inet skein"]));
    const b = chains("x").build();
    const twice = new Uint8Array(20 + b.bytes.length);
    twice.set(b.bytes.subarray(0, 20));
    twice.set(b.bytes, 20);
    // a signal every 200 ms for 4 s, against a timeout of 1 s
    const results = await send([{ ...b, bytes: twice }], { netns: path, batchTimeoutMs: 1000, signals: { everyMs: 200, count: 20 } });
    expect(results.signals).toBeGreaterThanOrEqual(3);
    const r = results[0];
    expect(r!.error).toBe("nftables batch: no answer from the kernel within 1000 ms");
    expect(r!.ms).toBeGreaterThan(950);
    expect(r!.ms).toBeLessThan(2500);
  });

  test("without CAP_NET_ADMIN: refused at its header with EPERM at once", async () => {
    const path = lab.host("d");
    run(inNetns(path, ["nft", "add table inet skein"]));
    const noCaps = inNetns(path, ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]);
    // the capability is gone indeed in what setpriv runs
    expect(run([...noCaps, "grep", "^CapEff", "/proc/self/status"]).stdout).toMatch(/CapEff:\s+0+\n/);
    const [r] = await send([chains("x").build()], { wrap: noCaps });
    expect(r!.error).toMatch(/refused the batch at "its start \(the batch header\)": EPERM/);
    expect(chainsIn(path)).toEqual([]);
  });
});

/** a batch: chain `first`, then an element for the missing map `map`, then chain `last` */
function refusedThen(first: string, map: string, last: string): Batch {
  const b = refused(chains(first), map);
  b.addChain(last);
  return b.build();
}

/** This process's descriptors and what each is. Bun closes the stdio sockets of finished
 * children when it gets to it, so descriptors may go away meanwhile; none may come. */
const fds = () =>
  readdirSync("/proc/self/fd").flatMap((f) => {
    try {
      return [`${f} ${readlinkSync(`/proc/self/fd/${f}`)}`];
    } catch {
      return []; // the directory's own descriptor, closed by now
    }
  });
const added = (before: string[]) => fds().filter((f) => !before.includes(f));

describe("the socket", () => {
  test("closing twice leaves alone the descriptor a newer socket took over", () => {
    const before = fds();
    const a = Netlink.openNetfilter();
    a.close();
    const b = Netlink.openNetfilter(); // gets the number a had
    try {
      a.close();
      expect(b.tableUserdata("inet", "skt-no-such-table")).toBeUndefined();
      expect(() => a.genid()).toThrow(/the netlink socket is closed/);
    } finally {
      b.close();
    }
    expect(added(before)).toEqual([]);
  });

  test("a namespace that cannot be entered leaves no descriptor behind", () => {
    const before = fds();
    for (let i = 0; i < 20; i++) expect(() => Netlink.open("/proc/self/ns/mnt")).toThrow(/enter network namespace \/proc\/self\/ns\/mnt: EINVAL/);
    expect(added(before)).toEqual([]);
  });

  test("the ruleset's generation: one more per committed transaction, none for a refused one", () => {
    const path = lab.host("g");
    const nl = Netlink.openNetfilter(path);
    try {
      const g0 = nl.generation();
      expect(g0.pid).toBe(process.pid); // the kernel numbers this (main) thread as the process
      run(inNetns(path, ["nft", "add table inet skein"]));
      expect(nl.genid()).toBe(g0.genid + 1);
      run(inNetns(path, ["nft", "delete table inet skt-none"]), { allowFail: true });
      expect(nl.genid()).toBe(g0.genid + 1);
      nl.sendBatch(chains("x").build());
      expect(nl.genid()).toBe(g0.genid + 2);
      expect(() => nl.sendBatch(refused(chains("y"), "none").build())).toThrow(/ENOENT/);
      expect(nl.genid()).toBe(g0.genid + 2);
    } finally {
      nl.close();
    }
  });
});
