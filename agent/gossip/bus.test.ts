// The gossip bus against real nats-server processes on loopback (testing/nats.ts).
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { connect, nkeys } from "nats";
import pino from "pino";
import { NatsCluster, TcpRelay, type NatsOptions } from "../../testing/nats.ts";
import { GossipBus, type GossipBusOptions } from "./bus.ts";
import { parseNatsConfig, type NatsConfig } from "./config.ts";
import { decodeRecord, encodeRecord, type NodeRecord } from "./record.ts";

const SECRET = "pa55-w0rd-n0t-f0r-logs";
const fixtures: NatsCluster[] = [];
const buses: GossipBus[] = [];
const tmp = mkdtempSync(`${tmpdir()}/skein-bus-`);

afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.stop()));
  await Promise.all(fixtures.splice(0).map((f) => f.close()));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function nats(o: NatsOptions = {}): Promise<NatsCluster> {
  const c = await NatsCluster.start(o);
  fixtures.push(c);
  return c;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(10);
  }
  return performance.now() - t0;
}

const record = (i: number, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  node: `n${i}`,
  podCIDRs: [`10.244.${i}.0/24`],
  underlay: `192.168.50.${10 + i}`,
  vtepMac: `02:00:00:00:00:0${i}`,
  version: "0.1.0",
  seq: 0,
  startedAt: 1_798_000_000_000,
  ...extra,
});

/** A bus for node n<i> that keeps what it hears: the latest record per key, deletes, live flips, log lines. */
function startBus(i: number, config: NatsConfig, o: Partial<GossipBusOptions> & { rec?: () => NodeRecord } = {}) {
  const seen = new Map<string, NodeRecord>();
  const bad: string[] = [];
  const deleted: string[] = [];
  const liveFlips: boolean[] = [];
  const lines: string[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => void lines.push(s) });
  const bus = GossipBus.start({
    config,
    bucket: "skein-nodes",
    replicas: 1,
    ttlMs: 5000,
    heartbeatMs: 500,
    retryMs: 100,
    record: o.rec ?? (() => record(i)),
    log,
    onPut(key, bytes) {
      try {
        seen.set(key, decodeRecord(key, bytes));
      } catch (e) {
        bad.push((e as Error).message);
      }
    },
    onDelete(key) {
      seen.delete(key);
      deleted.push(key);
    },
    onLive(live) {
      liveFlips.push(live);
    },
    ...o,
  });
  buses.push(bus);
  return { bus, seen, bad, deleted, liveFlips, lines, live: () => liveFlips.at(-1) === true };
}

const cfg = (c: NatsCluster, extra: Partial<NatsConfig> = {}) => parseNatsConfig({ servers: c.urls, ...extra });

/** The records the bucket holds under `keys`, read by a separate client. */
async function bucketRecords(urls: string[], keys: string[]): Promise<Map<string, NodeRecord>> {
  const nc = await connect({ servers: urls.map((u) => u.replace("nats://", "")), timeout: 1000 });
  try {
    const kv = await nc.jetstream({ timeout: 1000 }).views.kv("skein-nodes", { bindOnly: true });
    const out = new Map<string, NodeRecord>();
    for (const k of keys) {
      const e = await kv.get(k);
      if (e && e.operation === "PUT") out.set(k, decodeRecord(k, e.value));
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe("GossipBus on one server", () => {
  test("two buses see each other's records within 2 s; live after the initial values", async () => {
    const c = await nats();
    const times: number[] = [];
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      const a = startBus(1 + 2 * run, cfg(c));
      const b = startBus(2 + 2 * run, cfg(c));
      await waitFor("each bus sees the other", () => a.seen.has(`n${2 + 2 * run}`) && b.seen.has(`n${1 + 2 * run}`), 2000);
      times.push(performance.now() - t0);
      await waitFor("live", () => a.live() && b.live(), 2000);
      expect(a.seen.get(`n${2 + 2 * run}`)).toMatchObject({ node: `n${2 + 2 * run}`, underlay: `192.168.50.${12 + 2 * run}` });
      // later buses also get the records already in the bucket, as initial values
      if (run > 0) expect(a.seen.has("n1")).toBe(true);
    }
    times.sort((x, y) => x - y);
    console.log(`gossip: bus start to peer seeing the record: p50 ${times[1]!.toFixed(0)} ms (runs: ${times.map((t) => t.toFixed(0)).join(", ")} ms)`);
  });

  test("heartbeats refresh the record with a growing seq; leave() deletes the key and a purge removes one: peers see onDelete", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c));
    const b = startBus(2, cfg(c));
    await waitFor("b sees a", () => b.seen.has("n1"));
    const seq0 = b.seen.get("n1")!.seq;
    await waitFor("a heartbeat", () => (b.seen.get("n1")?.seq ?? 0) > seq0, 2000);
    await a.bus.leave();
    await waitFor("b gets the delete", () => b.deleted.includes("n1"));
    expect(b.seen.has("n1")).toBe(false);
    // a purge (an operator's clean-up) is a delete too
    await waitFor("b sees itself", () => b.seen.has("n2"));
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    await (await nc.jetstream().views.kv("skein-nodes", { bindOnly: true })).purge("n2");
    await nc.close();
    await waitFor("b gets the purge as a delete", () => b.deleted.includes("n2"));
  });

  test("a value that is not a record reaches onPut as bytes (the peer book refuses it); the bus goes on", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c));
    await waitFor("live", a.live);
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    const kv = await nc.jetstream().views.kv("skein-nodes", { bindOnly: true });
    await kv.put("n9", new TextEncoder().encode("garbage"));
    await kv.put("n8", new Uint8Array([0xc1, 0x00]));
    await nc.close();
    await waitFor("both refused", () => a.bad.length >= 2);
    expect(a.bad.join("\n")).toContain('node record "n9"');
    startBus(2, cfg(c));
    await waitFor("a still sees new records", () => a.seen.has("n2"));
    expect(a.live()).toBe(true);
  });

  test("server restarted without its JetStream state: the bucket and both records come back", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c));
    const b = startBus(2, cfg(c));
    await waitFor("both see each other", () => a.seen.has("n2") && b.seen.has("n1"));
    await c.stop(0);
    const t0 = performance.now();
    await c.start(0, { wipe: true, wait: false });
    // a fresh client finds both records in the new bucket
    let have = new Map<string, NodeRecord>();
    for (const deadline = performance.now() + 5000; performance.now() < deadline; await Bun.sleep(20)) {
      have = await bucketRecords(c.urls, ["n1", "n2"]).catch(() => new Map());
      if (have.has("n1") && have.has("n2")) break;
    }
    const refill = performance.now() - t0;
    if (have.size !== 2) console.log(`logs:\n${a.lines.join("")}\n${b.lines.join("")}\n${c.logTail(0, 4000)}`);
    expect([...have.keys()].sort()).toEqual(["n1", "n2"]);
    console.log(`gossip: records back after a stateless server restart (from the server's start): ${refill.toFixed(0)} ms`);
    // and the watches work on the new stream: a's next heartbeat reaches b
    const seqAfter = have.get("n1")!.seq;
    await waitFor("b sees a's heartbeat on the new bucket", () => (b.seen.get("n1")?.seq ?? -1) > seqAfter, 3000);
    await waitFor("both live again", () => a.live() && b.live(), 3000);
  });

  test("server back without state and the bucket re-created by another before this bus reconnects: it still watches the new bucket", async () => {
    const c = await nats();
    // a slow reconnect leaves time for another client to create the bucket first, so this
    // bus's put succeeds and only its own reconnect handling can tell the watch is stale
    const a = startBus(1, cfg(c), { retryMs: 1500 });
    await waitFor("live", a.live);
    await c.stop(0);
    await waitFor("not live", () => a.liveFlips.at(-1) === false);
    await c.start(0, { wipe: true });
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    const kv = await nc.jetstream().views.kv("skein-nodes", { history: 1, ttl: 5000, maxValueSize: 4096 });
    await kv.put("n9", encodeRecord(record(9)));
    await waitFor("a live again", a.live, 6000);
    await kv.put("n8", encodeRecord(record(8)));
    await nc.close();
    await waitFor("a sees the records of the new bucket", () => a.seen.has("n9") && a.seen.has("n8"), 3000);
  });

  test("the bucket deleted while connected: re-created at the next heartbeat and watched again", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c));
    const b = startBus(2, cfg(c));
    await waitFor("both see each other", () => a.seen.has("n2") && b.seen.has("n1"));
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    await (await nc.jetstreamManager()).streams.delete("KV_skein-nodes");
    await nc.close();
    const t0 = performance.now();
    const have = () => bucketRecords(c.urls, ["n1", "n2"]).catch(() => new Map<string, NodeRecord>());
    for (let m = await have(); !(m.has("n1") && m.has("n2")); m = await have()) {
      if (performance.now() - t0 > 5000) throw new Error(`the bucket was not refilled within 5 s; a's log:\n${a.lines.join("")}`);
      await Bun.sleep(20);
    }
    const seq = b.seen.get("n1")!.seq;
    await waitFor("b follows a's heartbeats on the new bucket", () => (b.seen.get("n1")?.seq ?? -1) > seq + 1, 3000);
  });

  test("server down at start: the bus keeps trying, never throws, and goes live when it comes up", async () => {
    const c = await nats();
    await c.stop(0);
    const a = startBus(1, cfg(c));
    await waitFor("a logged connection failures", () => a.lines.some((l) => l.includes("cannot connect to NATS")), 3000);
    expect(a.liveFlips).toEqual([]);
    await c.start(0);
    await waitFor("live once the server is up", a.live, 5000);
    const b = startBus(2, cfg(c));
    await waitFor("a sees b", () => a.seen.has("n2"), 2000);
  });

  test("disconnect: onLive(false); reconnect: live again and records flow", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c));
    await waitFor("live", a.live);
    await c.stop(0);
    await waitFor("not live", () => a.liveFlips.at(-1) === false);
    await c.start(0);
    await waitFor("live again", a.live, 5000);
    const b = startBus(2, cfg(c));
    await waitFor("a sees b after the reconnect", () => a.seen.has("n2"), 2000);
  });

  test("a connection cut while the server keeps its state: live again once the watch (kept, or rebuilt when it is slow to deliver) delivers the put made after the reconnect", async () => {
    const c = await nats();
    const relay = await TcpRelay.start(c.nodes[0]!.port);
    try {
      const a = startBus(1, parseNatsConfig({ servers: [relay.url] }));
      const b = startBus(2, cfg(c));
      await waitFor("both live and seeing each other", () => a.live() && b.live() && a.seen.has("n2") && b.seen.has("n1"));
      const seq = b.seen.get("n1")!.seq;
      relay.cut();
      await waitFor("a not live", () => a.liveFlips.at(-1) === false);
      await waitFor("a live again", a.live, 3000);
      // kept when it delivers within a quarter second of the reconnect, else built once more
      expect(a.bus.watchStarts).toBeLessThanOrEqual(2);
      await waitFor("b sees a's puts after the cut", () => b.seen.get("n1")!.seq > seq + 1, 3000);
      const bSeq = a.seen.get("n2")!.seq;
      await waitFor("a still sees b's heartbeats on the kept watch", () => a.seen.get("n2")!.seq > bSeq, 3000);
    } finally {
      await relay.close();
    }
  });

  test("log lines carry the caller's fields once: the bus adds no \"part\" of its own", async () => {
    const c = await nats();
    const lines: string[] = [];
    const a = startBus(1, cfg(c), { log: pino({ level: "debug" }, { write: (s: string) => void lines.push(s) }).child({ part: "gossip" }) });
    await waitFor("live", a.live);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l.match(/"part":/g)).toEqual(['"part":']);
  });

  test("at most maxKeys keys are tracked", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c), { maxKeys: 2 });
    await waitFor("live", a.live);
    startBus(2, cfg(c));
    startBus(3, cfg(c));
    await waitFor("the third key is refused", () => a.lines.some((l) => l.includes("too many keys")), 3000);
    expect(a.seen.size).toBe(2);
  });
});

describe("GossipBus on a 3-server cluster, replicas 3", () => {
  test("killing the server a bus is connected to loses no record, and updates keep coming", async () => {
    const c = await nats({ servers: 3 });
    const a = startBus(1, cfg(c), { replicas: 3 });
    const b = startBus(2, cfg(c), { replicas: 3 });
    const d = startBus(3, cfg(c), { replicas: 3 });
    await waitFor("all see all", () => [a, b, d].every((x) => x.seen.size === 3), 10_000);
    const server = a.bus.server;
    expect(server).toBeDefined();
    const victim = c.nodes.findIndex((s) => server === `127.0.0.1:${s.port}`);
    expect(victim).toBeGreaterThanOrEqual(0);
    const seqAtKill = new Map([a, b, d].map((x) => [x, x.seen.get("n1")!.seq] as const));
    await c.kill(victim);
    const t0 = performance.now();
    // every bus keeps getting a's heartbeats (those connected to the victim after reconnecting)
    await waitFor("a's heartbeats reach every bus after the kill", () => [a, b, d].every((x) => x.seen.get("n1")!.seq > seqAtKill.get(x)!), 20_000);
    const flowing = performance.now() - t0;
    // a bus is live once its watch is back, which waits for the stream's new leader: JetStream's
    // election took from under a second to 22 s on a loaded CI machine
    await waitFor("every bus live again", () => [a, b, d].every((x) => x.live()), 30_000);
    // every record still readable by a new client (once the stream has a leader again, if it lost it)
    const rest = c.urls.filter((_, i) => i !== victim);
    let have = new Map<string, NodeRecord>();
    for (const deadline = performance.now() + 20_000; performance.now() < deadline && have.size < 3; await Bun.sleep(50)) {
      have = await bucketRecords(rest, ["n1", "n2", "n3"]).catch(() => new Map());
    }
    expect([...have.keys()].sort()).toEqual(["n1", "n2", "n3"]);
    const readable = performance.now() - t0;
    // a new node joins while one server is down; everyone sees it
    const t1 = performance.now();
    const e = startBus(4, cfg(c), { replicas: 3 });
    await waitFor("a, b and d see the new node", () => [a, b, d].every((x) => x.seen.has("n4")), 15_000);
    const joined = performance.now() - t1;
    await waitFor("e sees everyone", () => e.seen.size === 4, 5000);
    console.log(`gossip: 3-server cluster, server ${victim} (a's) killed: heartbeats reach every bus after ${flowing.toFixed(0)} ms, all records readable by a new client after ${readable.toFixed(0)} ms, a new node seen by all ${joined.toFixed(0)} ms after its start`);
  }, 60_000);
});

describe("GossipBus with authentication and TLS", () => {
  test("user/password: a wrong password is logged and retried, the right one works, no secret in the logs", async () => {
    const c = await nats({ auth: { user: "skein", password: SECRET } });
    const wrong = startBus(1, cfg(c, { user: "skein", password: "not-the-password" }));
    const right = startBus(2, cfg(c, { user: "skein", password: SECRET }));
    await waitFor("the right one is live", right.live);
    await waitFor("the wrong one says why, more than once", () => wrong.lines.filter((l) => /authorization violation/i.test(l)).length >= 1 && wrong.lines.filter((l) => l.includes("cannot connect")).length >= 2, 5000);
    expect(wrong.liveFlips).toEqual([]);
    for (const l of [...wrong.lines, ...right.lines]) {
      expect(l).not.toContain(SECRET);
      expect(l).not.toContain("not-the-password");
    }
  });

  test("token", async () => {
    const c = await nats({ auth: { token: SECRET } });
    const right = startBus(1, cfg(c, { token: SECRET }));
    const none = startBus(2, cfg(c));
    await waitFor("live with the token", right.live);
    await waitFor("refused without it", () => none.lines.some((l) => /authorization violation/i.test(l)), 5000);
    for (const l of right.lines) expect(l).not.toContain(SECRET);
  });

  test("nkey: the seed file signs the server's nonce", async () => {
    const user = nkeys.createUser();
    const seedFile = `${tmp}/user.nk`;
    writeFileSync(seedFile, new TextDecoder().decode(user.getSeed()));
    const c = await nats({ auth: { nkey: user.getPublicKey() } });
    const right = startBus(1, cfg(c, { nkeySeedFile: seedFile }));
    const other = nkeys.createUser();
    const otherFile = `${tmp}/other.nk`;
    writeFileSync(otherFile, new TextDecoder().decode(other.getSeed()));
    const wrong = startBus(2, cfg(c, { nkeySeedFile: otherFile }));
    await waitFor("live with the nkey", right.live);
    await waitFor("refused with another nkey", () => wrong.lines.some((l) => /authorization violation/i.test(l)), 5000);
    const seed = new TextDecoder().decode(user.getSeed());
    for (const l of right.lines) expect(l).not.toContain(seed);
  });

  test("TLS with a CA: verified with the CA, refused without it", async () => {
    const dir = `${tmp}/tls`;
    await Bun.$`mkdir -p ${dir}
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=skein-test-ca -keyout ${dir}/ca.key -out ${dir}/ca.pem
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=nats -keyout ${dir}/server.key -out ${dir}/server.csr
      printf 'subjectAltName=IP:127.0.0.1\n' > ${dir}/ext.cnf
      openssl x509 -req -in ${dir}/server.csr -CA ${dir}/ca.pem -CAkey ${dir}/ca.key -CAcreateserial -days 1 -extfile ${dir}/ext.cnf -out ${dir}/server.pem`.quiet();
    const c = await nats({ tls: { cert: `${dir}/server.pem`, key: `${dir}/server.key` } });
    const tlsUrls = c.urls.map((u) => u.replace("nats://", "tls://"));
    const good = startBus(1, parseNatsConfig({ servers: tlsUrls, tls: { ca: `${dir}/ca.pem` } }));
    const noCa = startBus(2, parseNatsConfig({ servers: tlsUrls }));
    await waitFor("live over TLS", good.live, 5000);
    await waitFor("the one without the CA fails", () => noCa.lines.some((l) => l.includes("cannot connect")), 5000);
    expect(noCa.liveFlips).toEqual([]);
  });
});

describe("GossipBus against hostile servers and buckets", () => {
  /** A TCP listener on loopback that accepts and never says a word, counting its open connections. */
  async function silentServer() {
    const open = new Set<Socket>();
    let accepted = 0;
    const server = createServer((s) => {
      accepted++;
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => {});
    });
    const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
    return {
      url: `nats://127.0.0.1:${port}`,
      open: () => open.size,
      accepted: () => accepted,
      close: () => {
        for (const s of open) s.destroy();
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  test("a server that accepts and never speaks: retried with backoff, logged once, no socket left open; a speaking server in the same list is used", async () => {
    const silent = await silentServer();
    try {
      const a = startBus(1, parseNatsConfig({ servers: [silent.url] }));
      await waitFor("four attempts", () => silent.accepted() >= 4, 15_000);
      // the attempt under way at most
      expect(silent.open()).toBeLessThanOrEqual(1);
      await a.bus.stop();
      await waitFor("every connection closed after stop()", () => silent.open() === 0, 2000);
      const warned = a.lines.filter((l) => l.includes('"level":40') && l.includes("do not speak NATS"));
      expect(warned.length).toBe(1);
      expect(warned[0]).toContain(silent.url.replace("nats://", ""));
      // a silent server beside a real one: the real one is used, the silent one never held open
      const c = await nats();
      const b = startBus(2, parseNatsConfig({ servers: [silent.url, c.url] }));
      await waitFor("live through the speaking server", b.live, 5000);
      expect(b.bus.server).toBe(c.url.replace("nats://", ""));
      expect(silent.open()).toBe(0);
    } finally {
      await silent.close();
    }
  }, 30_000);

  test("a server left out at connect (it did not speak then) is tried again once the connected one is gone for good", async () => {
    const x = await nats();
    const y = await nats();
    await y.stop(0);
    const a = startBus(1, parseNatsConfig({ servers: [x.url, y.url] }));
    await waitFor("live on x", a.live, 5000);
    await x.stop(0);
    await y.start(0);
    // the connection was given x alone: its reconnects give up, and the next connection finds y
    await waitFor("live again on y", () => a.live() && a.bus.server === y.url.replace("nats://", ""), 20_000);
  }, 30_000);

  test("stop() against a server that never speaks leaves nothing that keeps the process alive", async () => {
    const silent = await silentServer();
    try {
      const script = `${tmp}/silent-stop.ts`;
      writeFileSync(
        script,
        `import pino from "pino";
import { GossipBus } from ${JSON.stringify(`${import.meta.dir}/bus.ts`)};
import { parseNatsConfig } from ${JSON.stringify(`${import.meta.dir}/config.ts`)};
const bus = GossipBus.start({ config: parseNatsConfig({ servers: [${JSON.stringify(silent.url)}] }), bucket: "skein-nodes", replicas: 1, ttlMs: 5000, heartbeatMs: 500, retryMs: 100,
  record: () => ({ node: "n1", podCIDRs: ["10.244.1.0/24"], underlay: "192.168.50.11", vtepMac: "02:00:00:00:00:01", version: "0.1.0", seq: 0, startedAt: 1 }),
  log: pino({ level: "silent" }), onPut() {}, onDelete() {}, onLive() {} });
await Bun.sleep(4000);
await bus.stop();
console.log("stopped");
`,
      );
      const p = Bun.spawn([process.execPath, script], { cwd: import.meta.dir, stdout: "pipe", stderr: "pipe" });
      let out = "";
      const reader = (async () => {
        for await (const b of p.stdout) out += new TextDecoder().decode(b);
      })();
      try {
        await waitFor("stop() resolved", () => out.includes("stopped"), 15_000);
        const t0 = performance.now();
        await waitFor("the process exits by itself", () => p.exitCode !== null, 2000);
        console.log(`gossip: a silent server; the process exited ${(performance.now() - t0).toFixed(0)} ms after stop() resolved, ${silent.accepted()} connections accepted`);
        expect(p.exitCode).toBe(0);
      } finally {
        p.kill("SIGKILL");
        await p.exited;
        await reader;
      }
    } finally {
      await silent.close();
    }
  }, 30_000);

  test("keys that expired in the bucket (no word on the watch) stop counting against maxKeys: a node joining later is seen", async () => {
    const c = await nats();
    const a = startBus(1, cfg(c), { maxKeys: 2, ttlMs: 1000, heartbeatMs: 300 });
    await waitFor("live", a.live);
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    await (await nc.jetstream().views.kv("skein-nodes", { bindOnly: true })).put("junk-0", new TextEncoder().encode("x"));
    await nc.close();
    await waitFor("the junk key reached a", () => a.bad.length >= 1, 3000);
    // junk-0 expires in the server after a second; n2 comes after that
    const nc2 = await connect({ servers: c.url.replace("nats://", "") });
    const kv2 = await nc2.jetstream().views.kv("skein-nodes", { bindOnly: true });
    for (const t0 = performance.now(); (await kv2.get("junk-0")) !== null; await Bun.sleep(50)) {
      if (performance.now() - t0 > 5000) throw new Error("junk-0 did not expire in the bucket");
    }
    await nc2.close();
    const b = startBus(2, cfg(c), { maxKeys: 2, ttlMs: 1000, heartbeatMs: 300 });
    await waitFor("a sees the new node", () => a.seen.has("n2"), 5000);
    await waitFor("b sees a", () => b.seen.has("n1"), 2000);
  });

  test("a bucket made by someone else with history 64 and no max age: the difference is logged and the max age set to the ttl; another max age is logged and kept", async () => {
    const c = await nats();
    const nc = await connect({ servers: c.url.replace("nats://", "") });
    try {
      await nc.jetstream().views.kv("skein-nodes", { history: 64 });
      const a = startBus(1, cfg(c));
      await waitFor("live", a.live);
      const jsm = await nc.jetstreamManager();
      for (const t0 = performance.now(); (await jsm.streams.info("KV_skein-nodes")).config.max_age !== 5000 * 1_000_000; await Bun.sleep(50)) {
        if (performance.now() - t0 > 3000) throw new Error("the max age was not set");
      }
      const warned = a.lines.filter((l) => l.includes("made with other settings"));
      expect(warned.length).toBe(1);
      expect(warned[0]).toContain('"maxAge":"never (0), not 5000 ms"');
      expect(warned[0]).toContain('"history":"64, not 1"');
      await a.bus.stop();
      // a finite max age that differs is the operator's choice: told, kept
      await jsm.streams.delete("KV_skein-nodes");
      await nc.jetstream().views.kv("skein-nodes", { history: 1, ttl: 60_000 });
      const b = startBus(2, cfg(c));
      await waitFor("live", b.live);
      expect((await jsm.streams.info("KV_skein-nodes")).config.max_age).toBe(60_000 * 1_000_000);
      expect(b.lines.filter((l) => l.includes("made with other settings")).join("")).toContain('"maxAge":"60000 ms, not 5000 ms"');
      expect(b.lines.join("")).not.toContain('"history"');
    } finally {
      await nc.close();
    }
  });

  test("a bucket without max age and a user who may not change streams: logged, and the bus gossips on the bucket as it is", async () => {
    const c = await nats({ auth: { user: "skein", password: SECRET, denyPublish: ["$JS.API.STREAM.UPDATE.>"] } });
    const nc = await connect({ servers: c.url.replace("nats://", ""), user: "skein", pass: SECRET });
    try {
      await nc.jetstream().views.kv("skein-nodes", { history: 1 });
      const a = startBus(1, cfg(c, { user: "skein", password: SECRET }));
      const b = startBus(2, cfg(c, { user: "skein", password: SECRET }));
      await waitFor("both live and seeing each other", () => a.live() && b.live() && a.seen.has("n2") && b.seen.has("n1"));
      expect(a.lines.join("")).toContain("could not set the bucket's max age");
      expect((await (await nc.jetstreamManager()).streams.info("KV_skein-nodes")).config.max_age).toBe(0);
    } finally {
      await nc.close();
    }
  });

  const TTL_MS = 2000;
  for (const how of ["destroyed", "re-created by another with history 64 and no max age"] as const) {
    test(`the bucket ${how} under two running buses: each sees the other's heartbeats again within 1.5 s, and both stay live`, async () => {
      const c = await nats();
      // a shorter ttl than the others' so that two of them pass sooner
      const a = startBus(1, cfg(c), { ttlMs: TTL_MS, heartbeatMs: 300 });
      const b = startBus(2, cfg(c), { ttlMs: TTL_MS, heartbeatMs: 300 });
      // a few heartbeats first: the revisions of a bucket in use are past those of a new one
      await waitFor("both live and a few heartbeats", () => a.live() && b.live() && (a.seen.get("n2")?.seq ?? 0) >= 3 && (b.seen.get("n1")?.seq ?? 0) >= 3);
      const nc = await connect({ servers: c.url.replace("nats://", "") });
      try {
        const js = nc.jetstream();
        if (how === "destroyed") await (await js.views.kv("skein-nodes", { bindOnly: true })).destroy();
        else {
          await (await nc.jetstreamManager()).streams.delete("KV_skein-nodes");
          await js.views.kv("skein-nodes", { history: 64 });
        }
      } finally {
        await nc.close();
      }
      const t0 = performance.now();
      const seqA = b.seen.get("n1")!.seq;
      const seqB = a.seen.get("n2")!.seq;
      // the next heartbeat within 500 ms, and the one after it seen at once: a re-created
      // bucket's lower revisions tell at once that the watch is on a stream that is gone (the
      // watchdog alone, waiting 2 s for the own put, took 2 s)
      await waitFor("each sees the other's heartbeats on the new bucket", () => b.seen.get("n1")!.seq > seqA + 1 && a.seen.get("n2")!.seq > seqB + 1, 1500);
      const back = performance.now() - t0;
      await waitFor("both live", () => a.live() && b.live(), 2000);
      // and they stay so: heartbeats keep coming for two ttls, and nobody goes deaf
      const flipsA = a.liveFlips.length;
      const flipsB = b.liveFlips.length;
      for (const until = performance.now() + 2 * TTL_MS; performance.now() < until; ) {
        const sa = b.seen.get("n1")!.seq;
        const sb = a.seen.get("n2")!.seq;
        await waitFor("heartbeats still flowing", () => b.seen.get("n1")!.seq > sa && a.seen.get("n2")!.seq > sb, 2000);
      }
      expect(a.liveFlips.length).toBe(flipsA);
      expect(b.liveFlips.length).toBe(flipsB);
      console.log(`gossip: bucket ${how}: heartbeats flow both ways again after ${back.toFixed(0)} ms; watch starts a ${a.bus.watchStarts}, b ${b.bus.watchStarts}`);
    }, 30_000);
  }
});
