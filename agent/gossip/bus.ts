// The gossip bus: this node's record in a NATS JetStream key-value bucket, put at once on every
// (re)connect and on a heartbeat, and a watch on every key. It never gives up and never throws
// at its caller: an unreachable server, a wrong password or a server that came back without its
// JetStream state are logged and retried.
//
// The watch is the fragile part. Its ordered consumer lives on one server; when that server
// dies the client notices only after missing two of the consumer's heartbeats (10 s or more),
// and when a server comes back without its state the stream starts over at sequence 1, where
// an old consumer resuming at its last sequence would wait for ever. So the bus checks the
// watch by its own record: every put's revision must come back through the watch within a
// couple of seconds, else the watch is built anew. A put that finds no stream (the bucket is
// gone) re-creates the bucket and the watch at once. After a reconnect the old watch is kept
// (rebuilding needs the cluster's meta leader, which may be the server that just died) and the
// bus is live again once the watch has delivered the put made after the reconnect.
//
// Before a connection, every configured server is asked for its first bytes, and only those that
// speak NATS are handed to nats.js, which would leave a socket open for every attempt on a server
// that accepts and says nothing. The records are counted by key, and a key the server let expire
// (of which the watch says nothing) stops counting once it was not put for the bucket's max age.
import { connect as netConnect, type Socket } from "node:net";
import { connect, nanos, type ConnectionOptions, type JetStreamClient, type KV, type KvEntry, type NatsConnection, type QueuedIterator, type Status } from "nats";
import type { Logger } from "pino";
import { clientOptions, redacted, type NatsConfig } from "./config.ts";
import { MAX_RECORD_BYTES, encodeRecord, type NodeRecord } from "./record.ts";

export interface GossipBusOptions {
  config: NatsConfig;
  bucket: string;
  replicas: number;
  /** how long a record lives without a refresh (the bucket's max age) */
  ttlMs: number;
  heartbeatMs: number;
  /** this node's record; the bus sets `seq` itself, counting its puts */
  record: () => Omit<NodeRecord, "seq">;
  log: Logger;
  onPut(key: string, bytes: Uint8Array): void;
  onDelete(key: string): void;
  onLive(live: boolean): void;
  /** keys tracked at most; a new key past this is ignored (logged). A key not put again within
   * the bucket's max age has expired there (the watch says nothing of that) and is forgotten. */
  maxKeys?: number;
  /** the base wait between connection attempts and between retries of a failed step */
  retryMs?: number;
}

export const MAX_KEYS = 10_000;
const MAX_KEY_LENGTH = 253;
/** Log a repeating failure once, then at most this often. */
const QUIET_MS = 30_000;
/** How long a server may take to send its first bytes ("INFO ") before it counts as silent. */
const PREFLIGHT_MS = 1500;
/** The longest wait between two connection attempts (the backoff's cap). */
const MAX_BACKOFF_MS = 5000;
/**
 * Reconnect attempts per server, when connect() was given only some of the configured servers
 * (the others did not speak), before the connection is given up and made anew, so that the
 * others are checked again; with every server given, nats.js reconnects for ever.
 */
const RECONNECT_ATTEMPTS = 20;
/** A connection that stays disconnected this long while a server answers is dropped and made
 * anew: nats.js has been seen (rarely, after a restarted server answered 503 and then dropped
 * its clients) never to reconnect, its own reconnect loop silent; a new connection starts
 * from the probe. */
const STUCK_MS = 3000;

type Watch = QueuedIterator<KvEntry>;

export class GossipBus {
  private readonly o: GossipBusOptions;
  private readonly log: Logger;
  private readonly retryMs: number;
  private readonly maxKeys: number;
  /** tracked keys and when each was last put, oldest first */
  private readonly keys = new Map<string, number>();
  /** the bucket's max age as found on opening it: a key not put again within it has expired */
  private keyTtlMs: number;
  /** connections opened to check that a server speaks NATS, closed by stop() */
  private readonly probes = new Set<Socket>();
  private failures = 0;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private kv: KV | undefined;
  private watch: Watch | undefined;
  /** bumped whenever a watch is given up, so a dead watch's late entries are dropped */
  private gen = 0;
  private seq = 0;
  private readonly self: string;
  /** the revision of this node's last acknowledged put */
  private ownRev = 0;
  /** the oldest acknowledged put the watch has not delivered yet, and when it was acknowledged */
  private unseen: { rev: number; at: number } | undefined;
  /** after a reconnect: live again once the watch delivers the put made after it */
  private catchUp: { rev?: number } | undefined;
  private watchdog: Timer | undefined;
  private starts = 0;
  private connected = false;
  /** when the connection last went from connected to disconnected (undefined: not) */
  private disconnectedAt: number | undefined;
  /** a look at whether a server answers while the client stays disconnected */
  private stuckCheck: Promise<void> | undefined;
  private live = false;
  private needPut = true;
  private needWatch = true;
  private syncing = false;
  private dirty = false;
  private stopped = false;
  private retryTimer: Timer | undefined;
  private heartbeat: Timer | undefined;
  private wake: (() => void) | undefined;
  private readonly done: Promise<void>;
  private readonly quiet = new Map<string, { at: number; count: number }>();

  private constructor(o: GossipBusOptions) {
    this.o = o;
    // the caller names the part (the agent's loggers carry "part")
    this.log = o.log;
    this.retryMs = o.retryMs ?? 300;
    this.maxKeys = o.maxKeys ?? MAX_KEYS;
    this.keyTtlMs = o.ttlMs;
    this.self = o.record().node;
    this.log.info({ nats: redacted(o.config), bucket: o.bucket, replicas: o.replicas, ttlMs: o.ttlMs, heartbeatMs: o.heartbeatMs }, "gossip starting");
    this.done = this.run();
  }

  /** Starts the bus; it keeps trying until stop(), whatever the servers do. */
  static start(o: GossipBusOptions): GossipBus {
    return new GossipBus(o);
  }

  /** The server this bus is connected to ("host:port"), if any: for status pages and tests. */
  get server(): string | undefined {
    return this.connected ? this.nc?.getServer() : undefined;
  }

  /** How many watches this bus has started (1 when nothing went wrong): for metrics and tests. */
  get watchStarts(): number {
    return this.starts;
  }

  /** Puts the record now (it changed). */
  announce(): void {
    this.needPut = true;
    this.kick();
  }

  /** Stops; the record stays in the bucket until it expires. */
  async stop(): Promise<void> {
    if (this.stopped) return this.done;
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    for (const s of this.probes) s.destroy();
    this.probes.clear();
    this.wake?.();
    this.dropWatch();
    this.setLive(false);
    const nc = this.nc;
    if (nc && !nc.isClosed()) await nc.close().catch(() => {});
    await this.done;
  }

  /** Deletes the record (peers see it go at once), then stops. */
  async leave(): Promise<void> {
    if (this.kv && this.connected) {
      try {
        await this.kv.delete(this.self);
      } catch (e) {
        this.log.warn({ err: msg(e) }, "gossip: could not delete the node record; it will expire");
      }
    }
    await this.stop();
  }

  /** Connects, runs until the connection closes for good, and connects again; until stop(). */
  private async run(): Promise<void> {
    while (!this.stopped) {
      let nc: NatsConnection;
      try {
        const o = this.connectOptions();
        // nats.js leaks the socket of a server that accepts and never speaks (its connect
        // timeout rejects but leaves the socket open): only servers that said "INFO " get to it
        const all = (o.servers as string[]) ?? [];
        const found = await Promise.all(all.map((s) => this.probe(s)));
        if (this.stopped) break;
        const speaking = all.filter((_, i) => found[i] === "speaks");
        const silent = all.filter((_, i) => found[i] === "silent");
        if (silent.length > 0) this.warnQuietly(`silent ${silent.join(",")}`, { servers: silent }, "gossip: NATS servers that accept connections but do not speak NATS are left out");
        else this.quiet.forEach((_, k) => k.startsWith("silent ") && this.quiet.delete(k));
        if (speaking.length === 0) throw new Error(`no server answers: ${all.map((s, i) => `${s} ${found[i]}`).join(", ")}`);
        nc = await connect({ ...o, servers: speaking, maxReconnectAttempts: speaking.length < all.length ? RECONNECT_ATTEMPTS : -1 });
      } catch (e) {
        this.warnQuietly("connect", { err: msg(e), nats: redacted(this.o.config) }, "gossip: cannot connect to NATS; retrying");
        await this.pause(this.backoff());
        continue;
      }
      this.failures = 0;
      if (this.stopped) {
        await nc.close().catch(() => {});
        break;
      }
      // followed from the start, so that no disconnect right after connecting is missed
      const status = nc.status();
      this.quiet.delete("connect");
      this.nc = nc;
      this.js = nc.jetstream({ timeout: Math.max(1000, Math.min(5000, this.o.heartbeatMs)) });
      this.log.info({ server: nc.getServer() }, "gossip: connected to NATS");
      this.connected = true;
      this.disconnectedAt = undefined;
      this.kick();
      this.heartbeat = setInterval(() => this.announce(), this.o.heartbeatMs);
      // often: right after a reconnect its stall limit is short (checkWatch)
      this.watchdog = setInterval(() => this.checkWatch(), Math.min(100, this.o.heartbeatMs));
      const statusDone = this.followStatus(status);
      const err = await nc.closed();
      // the status iterator does not end by itself when the connection closes
      (status as unknown as { stop(): void }).stop();
      clearInterval(this.heartbeat);
      clearInterval(this.watchdog);
      this.connected = false;
      this.dropWatch();
      this.setLive(false);
      this.kv = undefined;
      this.nc = undefined;
      this.needPut = true;
      this.needWatch = true;
      this.unseen = undefined;
      this.catchUp = undefined;
      await statusDone;
      if (!this.stopped) {
        this.log.warn({ err: err ? msg(err) : undefined }, "gossip: NATS connection closed; connecting again");
        await this.pause(this.retryMs);
      }
    }
  }

  private connectOptions(): ConnectionOptions {
    return {
      ...clientOptions(this.o.config),
      name: `skein ${this.self}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: this.retryMs,
      reconnectJitter: this.retryMs,
      reconnectJitterTLS: this.retryMs,
      // a wrong password is worth retrying: a rotated Secret may fix it without a restart
      ignoreAuthErrorAbort: true,
      timeout: 3000,
      pingInterval: 5000,
      maxPingOut: 2,
    };
  }

  /** The wait before the next connection attempt: doubling from retryMs up to MAX_BACKOFF_MS, jittered. */
  private backoff(): number {
    const base = Math.min(MAX_BACKOFF_MS, this.retryMs * 2 ** Math.min(this.failures++, 16));
    return base / 2 + (Math.random() * base) / 2;
  }

  /**
   * Whether the server at "host:port" speaks NATS: its first bytes, within PREFLIGHT_MS of the
   * connection, are "INFO ". "silent" when it accepted and said nothing (or something else),
   * else why it could not be reached. The probe's socket is closed whatever happens.
   */
  private probe(server: string): Promise<string> {
    const m = /^\[?(.*?)\]?:(\d+)$/.exec(server);
    if (!m) return Promise.resolve("not host:port");
    return new Promise((resolve) => {
      const sock = netConnect({ host: m[1]!, port: Number(m[2]) });
      this.probes.add(sock);
      let got = Buffer.alloc(0);
      let connected = false;
      const end = (result: string) => {
        clearTimeout(timer);
        sock.destroy();
        this.probes.delete(sock);
        resolve(result);
      };
      const timer = setTimeout(() => end(connected ? "silent" : "connect timeout"), PREFLIGHT_MS);
      sock.on("connect", () => (connected = true));
      sock.on("data", (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (got.length >= 5) end(got.subarray(0, 5).toString("latin1") === "INFO " ? "speaks" : "silent");
      });
      sock.on("error", (e: NodeJS.ErrnoException) => end(e.code ?? e.message));
      sock.on("close", () => end(connected ? "silent" : "closed"));
    });
  }

  private async followStatus(status: AsyncIterable<Status>): Promise<void> {
    for await (const s of status) {
      if (s.type === "disconnect") {
        this.connected = false;
        this.disconnectedAt = Date.now();
        this.setLive(false);
        this.log.warn({ server: String(s.data) }, "gossip: disconnected from NATS; reconnecting");
      } else if (s.type === "reconnect") {
        this.disconnectedAt = undefined;
        this.quiet.delete("nats error");
        this.log.info({ server: String(s.data) }, "gossip: reconnected to NATS");
        this.connected = true;
        this.catchUp = {};
        this.unseen = undefined;
        this.needPut = true;
        this.kick();
      } else if (s.type === "error") {
        this.warnQuietly("nats error", { err: String(s.data) }, "gossip: NATS error");
      }
    }
  }

  /** Builds the watch anew when it has not delivered this node's own put in time. */
  private checkWatch(): void {
    if (!this.connected && this.disconnectedAt !== undefined && Date.now() - this.disconnectedAt > STUCK_MS && this.nc && !this.stuckCheck) {
      // stuck only when a server answers meanwhile: while none does, nats.js's own reconnect
      // (every retryMs) finds it back soonest
      const nc = this.nc;
      const since = this.disconnectedAt;
      const servers = (this.connectOptions().servers as string[]) ?? [];
      this.stuckCheck = Promise.all(servers.map((x) => this.probe(x)))
        .then((found) => {
          if (this.nc !== nc || this.connected || this.stopped || this.disconnectedAt !== since) return;
          if (!found.includes("speaks")) {
            this.disconnectedAt = Date.now();
            return;
          }
          this.log.warn({ ms: Date.now() - since }, "gossip: a NATS server answers but the client does not reconnect; connecting anew");
          this.disconnectedAt = undefined;
          void nc.close().catch(() => {});
        })
        .catch(() => {})
        .finally(() => (this.stuckCheck = undefined));
      return;
    }
    // Right after a reconnect the old watch is most likely gone with the server it lived on
    // (a restarted server keeps no ephemeral consumer), and a node that joined meanwhile
    // waits on it: a quarter second for the first own put, not the steady-state couple of seconds.
    const stall = this.catchUp ? 250 : Math.max(2000, this.o.heartbeatMs);
    if (!this.watch || !this.connected || !this.unseen || Date.now() - this.unseen.at <= stall) return;
    this.log.warn({ rev: this.unseen.rev }, "gossip: the watch did not deliver this node's own put; watching again");
    this.dropWatch();
    this.setLive(false);
    this.needWatch = true;
    this.kick();
  }

  /** Runs sync() until nothing is left to do; a failure retries after a short wait. */
  private kick(): void {
    this.dirty = true;
    if (this.syncing || this.stopped) return;
    this.syncing = true;
    void (async () => {
      try {
        while (this.dirty && !this.stopped && this.connected) {
          this.dirty = false;
          try {
            await this.sync();
            this.quiet.delete("sync");
          } catch (e) {
            this.warnQuietly("sync", { err: msg(e) }, "gossip: bucket step failed; retrying");
            clearTimeout(this.retryTimer);
            this.retryTimer = setTimeout(() => this.kick(), this.retryMs + Math.random() * this.retryMs);
            break;
          }
        }
      } finally {
        this.syncing = false;
      }
    })();
  }

  private async sync(): Promise<void> {
    const js = this.js;
    if (!js) return;
    if (!this.kv) {
      const kv = await js.views.kv(this.o.bucket, { history: 1, ttl: this.o.ttlMs, replicas: this.o.replicas, maxValueSize: MAX_RECORD_BYTES });
      await this.checkBucket(kv);
      this.kv = kv;
    }
    const kv = this.kv;
    if (this.needPut) {
      this.needPut = false;
      const rec = { ...this.o.record(), seq: this.seq++ };
      try {
        const rev = await kv.put(this.self, encodeRecord(rec));
        if (rev <= this.ownRev && this.watch) {
          // revisions only grow in one stream: this is a new one (the bucket was deleted and
          // made again), and the watch on the old one will never hear of it
          this.log.warn({ rev, before: this.ownRev }, "gossip: the bucket's revisions started over (it was made anew); watching again");
          this.dropWatch();
          this.setLive(false);
          this.needWatch = true;
        }
        this.ownRev = rev;
        this.unseen ??= { rev, at: Date.now() };
        if (this.catchUp && this.catchUp.rev === undefined) this.catchUp.rev = rev;
      } catch (e) {
        this.needPut = true;
        // the bucket may be gone (a server that lost its state, a cluster that lost the
        // stream): look for it and create it again, and watch the new one
        this.kv = undefined;
        if (noStream(e)) {
          this.dropWatch();
          this.setLive(false);
          this.needWatch = true;
        }
        throw e;
      }
    }
    if (this.needWatch) {
      this.needWatch = false;
      try {
        await this.startWatch(kv);
      } catch (e) {
        this.needWatch = true;
        this.kv = undefined;
        throw e;
      }
    }
  }

  /**
   * Checks the settings of a bucket this bus may not have made (an operator's, one re-created by
   * another tool): they are logged when they differ from what the bus would make, and a bucket
   * whose records never expire gets the ttl, since there the records of dead nodes would stay
   * for ever and a restarted agent would take them for live ones.
   */
  private async checkBucket(kv: KV): Promise<void> {
    const st = await kv.status();
    const ttl = st.ttl;
    const differs: Record<string, string> = {};
    if (ttl !== this.o.ttlMs) differs.maxAge = ttl === 0 ? `never (0), not ${this.o.ttlMs} ms` : `${ttl} ms, not ${this.o.ttlMs} ms`;
    if (st.history !== 1) differs.history = `${st.history}, not 1`;
    if (Object.keys(differs).length > 0) this.warnQuietly("bucket settings", { bucket: this.o.bucket, ...differs }, ttl === 0 ? "gossip: the bucket was made with other settings; its records never expired: setting its max age to the ttl" : "gossip: the bucket was made with other settings; they are kept");
    this.keyTtlMs = ttl > 0 ? ttl : this.o.ttlMs;
    if (ttl !== 0 || !this.nc) return;
    try {
      const jsm = await this.nc.jetstreamManager({ timeout: Math.max(1000, Math.min(5000, this.o.heartbeatMs)) });
      const config = st.streamInfo.config;
      const maxAge = nanos(this.o.ttlMs);
      // the server refuses a duplicate window longer than the max age
      await jsm.streams.update(config.name, { ...config, max_age: maxAge, duplicate_window: Math.min(config.duplicate_window || maxAge, maxAge) });
    } catch (e) {
      // a user without the right to change streams still gossips, on the bucket as it is
      this.warnQuietly("bucket update", { bucket: this.o.bucket, err: msg(e) }, "gossip: could not set the bucket's max age; records of dead nodes stay in it until deleted");
    }
  }

  private async startWatch(kv: KV): Promise<void> {
    this.dropWatch();
    const gen = ++this.gen;
    this.starts++;
    // a new watch starts with the bucket's current values: it is caught up once they are in
    this.unseen = undefined;
    this.catchUp = undefined;
    const w = await kv.watch({
      key: ">",
      initializedFn: () => {
        if (gen === this.gen && this.connected && !this.catchUp) this.setLive(true);
      },
    });
    if (gen !== this.gen || this.stopped) {
      w.stop();
      return;
    }
    this.watch = w;
    void (async () => {
      let err: unknown;
      try {
        for await (const e of w) {
          if (gen !== this.gen) break;
          this.deliver(e);
        }
      } catch (e) {
        err = e;
      }
      if (gen === this.gen && !this.stopped) {
        // the watch ended by itself (its consumer could not be recreated): build a new one
        this.log.warn({ err: err ? msg(err) : undefined }, "gossip: watch ended; watching again");
        this.watch = undefined;
        this.setLive(false);
        this.needWatch = true;
        this.kv = undefined;
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.kick(), this.retryMs);
      }
    })();
  }

  private dropWatch(): void {
    this.gen++;
    const w = this.watch;
    this.watch = undefined;
    if (w) {
      try {
        w.stop();
      } catch {
        // already stopped
      }
    }
  }

  private deliver(e: KvEntry): void {
    const key = e.key;
    if (key === this.self) this.ownSeen(e.revision);
    if (e.operation === "PUT") {
      if (key.length > MAX_KEY_LENGTH) {
        this.warnQuietly("long key", { key: key.slice(0, 64) }, "gossip: key longer than a Node name ignored");
        return;
      }
      const now = performance.now();
      if (!this.keys.delete(key)) {
        if (this.keys.size >= this.maxKeys) this.forgetExpired(now);
        if (this.keys.size >= this.maxKeys) {
          this.warnQuietly("too many keys", { key, max: this.maxKeys }, "gossip: too many keys in the bucket; new key ignored");
          return;
        }
      }
      // re-inserted, so that the map stays in the order of the last puts
      this.keys.set(key, now);
      // the bytes go on as they are, whatever their size: the peer book refuses what is not a record
      this.call(() => this.o.onPut(key, e.value));
    } else {
      this.keys.delete(key);
      this.call(() => this.o.onDelete(key));
    }
  }

  /**
   * Forgets the keys not put again within the bucket's max age: the server has dropped them
   * without a word on the watch, and counting them would keep new nodes out for ever.
   */
  private forgetExpired(now: number): void {
    if (this.keyTtlMs <= 0) return;
    for (const [k, at] of this.keys) {
      if (now - at <= this.keyTtlMs) break;
      this.keys.delete(k);
    }
  }

  /** The watch delivered this node's own record at revision `rev`. */
  private ownSeen(rev: number): void {
    if (this.unseen && rev >= this.unseen.rev) this.unseen = rev >= this.ownRev ? undefined : { rev: this.ownRev, at: Date.now() };
    if (this.catchUp?.rev !== undefined && rev >= this.catchUp.rev) {
      this.catchUp = undefined;
      if (this.connected) this.setLive(true);
    }
  }

  private setLive(live: boolean): void {
    if (live === this.live) return;
    this.live = live;
    this.log.info({ live }, live ? "gossip live: watching every record" : "gossip not live");
    this.call(() => this.o.onLive(live));
  }

  private call(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.log.error({ err: msg(e) }, "gossip: a callback threw");
    }
  }

  /** Logs at warn the first time and then at most every QUIET_MS, with how often it happened. */
  private warnQuietly(kind: string, obj: Record<string, unknown>, text: string): void {
    const now = Date.now();
    const q = this.quiet.get(kind);
    if (!q || now - q.at >= QUIET_MS) {
      this.log.warn({ ...obj, ...(q ? { times: q.count + 1 } : {}) }, text);
      this.quiet.set(kind, { at: now, count: 0 });
    } else {
      q.count++;
      this.log.debug(obj, text);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(t);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }
}

function msg(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return code && !e.message.includes(String(code)) ? `${e.message} (${String(code)})` : e.message;
  }
  return String(e);
}

/** Whether a failed put says the bucket's stream is not there. */
function noStream(e: unknown): boolean {
  const m = e instanceof Error ? `${e.message} ${String((e as { code?: unknown }).code ?? "")}` : String(e);
  return /503|no responders|stream not found/i.test(m);
}
