// One long-lived process per pod (or node) of the policy lab: it serves TCP, UDP and SCTP on
// the lab's ports and probes others on request, so that a whole reachability matrix costs one
// round of parallel probes instead of a process per probe. Run inside the namespace as
// `bun testing/policy-prober.ts --name NAME --ports 80,81 [--no-serve]`; it prints "ready",
// then answers each request line on standard input (JSON) with one line of JSON.
//
// A denied connection is dropped, so a probe fails by its timeout. Every UDP and SCTP probe
// leaves from a port no earlier probe of this process used: a new flow to conntrack each time,
// never an entry of an earlier, allowed probe that the datapath would let through as
// established. (TCP needs no such care: the kernel never reuses a live 4-tuple, and conntrack
// treats a SYN on a closed entry as new.)
//
// SCTP: the kernels here have no SCTP sockets (no sctp module; socket(…, IPPROTO_SCTP) says
// EPROTONOSUPPORT), but netfilter tracks SCTP and raw sockets carry it. So an SCTP probe is an
// INIT sent on a raw socket, answered by the peer's prober with an INIT-ACK (whose state
// cookie carries the server's name): exactly the first exchange of an association, valid to
// conntrack (checksums, verification tags), and what a policy judges.
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { createConnection, type Socket } from "node:net";

export type ProbeProto = "tcp" | "udp" | "sctp";
export interface ProbeTarget {
  proto: ProbeProto;
  ip: string;
  port: number;
}
export interface ProbeOutcome {
  ok: boolean;
  /** the server's answer: "<its name> <the source address it saw>" */
  answer?: string;
  error?: string;
  /** for a probe that timed out: its window (Date.now() times) and how late its timer fired */
  window?: [number, number];
  lateMs?: number;
}

/** No answer in time: when the wait began and ended, and how late the timer fired (a stalled loop fires late). */
class Timeout extends Error {
  constructor(
    what: string,
    readonly window: [number, number],
    readonly lateMs: number,
  ) {
    super(`${what}: no answer within ${window[1] - window[0]} ms`);
  }
}

/** Requests on standard input, one JSON object a line; each is answered with `{ id, ... }`. */
export type ProberRequest =
  | { id: number; op: "probe"; timeoutMs: number; targets: ProbeTarget[] }
  /** opens a long-lived TCP connection or UDP flow (fixed source port) and keeps it */
  | { id: number; op: "open"; flow: string; proto: "tcp" | "udp"; ip: string; port: number; timeoutMs: number }
  /** one exchange on an open flow: ok when the server answers within the timeout */
  | { id: number; op: "echo"; flow: string; timeoutMs: number }
  | { id: number; op: "close"; flow: string }
  /** the longest stall of this process's event loop that overlapped from..to (Date.now() times) */
  | { id: number; op: "stalls"; from: number; to: number };

const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0x800;
const IPPROTO_SCTP = 132;
const MSG_DONTWAIT = 0x40;
const SCTP_INIT = 1;
const SCTP_INIT_ACK = 2;
/** probes' own source ports: below the kernel's ephemeral range, above the lab's servers */
const FIRST_SOURCE_PORT = 20000;
const SOURCE_PORTS = 10000;

const CRC32C = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32c (Castagnoli), SCTP's checksum (RFC 9260 appendix A). */
export function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC32C[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** An SCTP packet of one INIT or INIT-ACK chunk; the checksum is stored as the kernel stores it (little-endian). */
export function sctpPacket(o: { sport: number; dport: number; vtag: number; type: number; initTag: number; cookie?: string }): Uint8Array {
  const cookie = o.cookie === undefined ? undefined : new TextEncoder().encode(o.cookie);
  const param = cookie ? (4 + cookie.length + 3) & ~3 : 0;
  const chunkLen = 20 + param;
  const b = new Uint8Array(12 + chunkLen);
  const v = new DataView(b.buffer);
  v.setUint16(0, o.sport);
  v.setUint16(2, o.dport);
  v.setUint32(4, o.vtag);
  v.setUint8(12, o.type);
  v.setUint16(14, chunkLen);
  v.setUint32(16, o.initTag);
  v.setUint32(20, 65535); // a_rwnd
  v.setUint16(24, 1); // outbound streams
  v.setUint16(26, 1); // inbound streams
  v.setUint32(28, o.initTag); // initial TSN
  if (cookie) {
    v.setUint16(32, 7); // State Cookie
    v.setUint16(34, 4 + cookie.length);
    b.set(cookie, 36);
  }
  v.setUint32(8, crc32c(b), true);
  return b;
}

export interface SctpChunk {
  src: string;
  sport: number;
  dport: number;
  vtag: number;
  type: number;
  initTag: number;
  cookie: string;
}

/** An IPv4 packet as a raw socket delivers it (IP header first); undefined unless it is one INIT or INIT-ACK. */
export function parseSctp(p: Uint8Array): SctpChunk | undefined {
  if (p.length < 20 || p[0]! >> 4 !== 4) return undefined;
  const ihl = (p[0]! & 15) * 4;
  const s = p.subarray(ihl);
  if (s.length < 32) return undefined;
  const v = new DataView(s.buffer, s.byteOffset, s.length);
  const type = v.getUint8(12);
  if (type !== SCTP_INIT && type !== SCTP_INIT_ACK) return undefined;
  const chunkLen = Math.min(v.getUint16(14), s.length - 12);
  let cookie = "";
  for (let at = 32; at + 4 <= 12 + chunkLen; ) {
    const len = v.getUint16(at + 2);
    if (len < 4) break;
    if (v.getUint16(at) === 7) cookie = new TextDecoder().decode(s.subarray(at + 4, Math.min(at + len, s.length)));
    at += (len + 3) & ~3;
  }
  return { src: `${p[12]}.${p[13]}.${p[14]}.${p[15]}`, sport: v.getUint16(0), dport: v.getUint16(2), vtag: v.getUint32(4), type, initTag: v.getUint32(16), cookie };
}

function sockaddrIn(ip: string): Uint8Array {
  const sa = new Uint8Array(16);
  new DataView(sa.buffer).setUint16(0, AF_INET, true);
  sa.set(ip.split(".").map(Number), 4);
  return sa;
}

/** A raw IPv4 SCTP socket through libc, polled (the kernel has no SCTP stack to wait on). */
class RawSctp {
  private readonly lib = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
  private readonly fd: number;
  private readonly buf = new Uint8Array(2048);

  constructor(onPacket: (c: SctpChunk) => void) {
    this.fd = this.lib.socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_SCTP);
    if (this.fd < 0) throw new Error(`raw SCTP socket: errno ${read.i32(this.lib.__errno_location() as Pointer, 0)}`);
    setInterval(() => {
      for (;;) {
        const n = Number(this.lib.recv(this.fd, ptr(this.buf), this.buf.length, MSG_DONTWAIT));
        if (n <= 0) return;
        const c = parseSctp(this.buf.subarray(0, n));
        if (c) onPacket(c);
      }
    }, 2);
  }

  send(ip: string, packet: Uint8Array): void {
    const sa = sockaddrIn(ip);
    const n = Number(this.lib.sendto(this.fd, ptr(packet), packet.length, 0, ptr(sa), sa.length));
    if (n !== packet.length) throw new Error(`sendto ${ip}: errno ${read.i32(this.lib.__errno_location() as Pointer, 0)}`);
  }
}

const plain = (addr: string) => addr.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");
const randomTag = () => (crypto.getRandomValues(new Uint32Array(1))[0]! | 1) >>> 0;

type Udp = Bun.udp.Socket<"buffer">;

/**
 * The stalls of this process's event loop (a timer that fires late): a probe that got no answer
 * while its prober, or the prober serving it, stood still is no evidence of a drop.
 */
class StallWatch {
  private readonly stalls: Array<{ end: number; ms: number }> = [];
  static readonly EVERY_MS = 10;
  /** lateness below this is ordinary timer jitter */
  static readonly NOISE_MS = 20;

  constructor() {
    let last = Date.now();
    setInterval(() => {
      const now = Date.now();
      const late = now - last - StallWatch.EVERY_MS;
      last = now;
      if (late < StallWatch.NOISE_MS) return;
      this.stalls.push({ end: now, ms: late });
      if (this.stalls.length > 4096) this.stalls.splice(0, 2048);
    }, StallWatch.EVERY_MS);
  }

  worst(from: number, to: number): number {
    let w = 0;
    for (const s of this.stalls) if (s.end >= from && s.end - s.ms <= to) w = Math.max(w, s.ms);
    return w;
  }
}

interface Flow {
  proto: "tcp" | "udp";
  ip: string;
  port: number;
  /** the next answer, when someone waits for one */
  waiting?: (answer: string) => void;
  tcp?: Socket;
  udp?: Udp;
}

export class Prober {
  private nextPort = 0;
  private readonly sctpWaiting = new Map<string, (answer: string) => void>();
  private readonly flows = new Map<string, Flow>();
  private raw!: RawSctp;

  constructor(
    readonly name: string,
    readonly ports: number[],
    readonly serve: boolean,
  ) {}

  private readonly stalls = new StallWatch();

  async start(): Promise<void> {
    this.raw = new RawSctp((c) => this.onSctp(c));
    if (!this.serve) return;
    for (const port of this.ports) {
      Bun.listen({
        hostname: "0.0.0.0",
        port,
        socket: {
          open: (s) => void s.write(`${this.name} ${plain(s.remoteAddress)}\n`),
          // an open flow's exchanges: every line gets the answer again
          data: (s, d) => void (d.includes(10) && s.write(`${this.name} ${plain(s.remoteAddress)}\n`)),
        },
      });
      await Bun.udpSocket({
        hostname: "0.0.0.0",
        port,
        socket: { data: (s, _b, p, addr) => void s.send(`${this.name} ${plain(addr)}\n`, p, addr) },
      });
    }
  }

  private sourcePort(): number {
    return FIRST_SOURCE_PORT + (this.nextPort++ % SOURCE_PORTS);
  }

  private onSctp(c: SctpChunk): void {
    if (c.type === SCTP_INIT && this.serve && this.ports.includes(c.dport) && c.vtag === 0) {
      this.raw.send(c.src, sctpPacket({ sport: c.dport, dport: c.sport, vtag: c.initTag, type: SCTP_INIT_ACK, initTag: randomTag(), cookie: `${this.name} ${c.src}` }));
    } else if (c.type === SCTP_INIT_ACK) {
      const k = `${c.src}:${c.sport}:${c.dport}:${c.vtag}`;
      const w = this.sctpWaiting.get(k);
      if (w) {
        this.sctpWaiting.delete(k);
        w(c.cookie);
      }
    }
  }

  /** Resolves with the answer, or rejects after timeoutMs. */
  private within(timeoutMs: number, what: string, start: (done: (answer: string) => void, fail: (e: Error) => void) => () => void): Promise<string> {
    return new Promise((resolve, reject) => {
      let cleanup = () => {};
      const t0 = Date.now();
      const timer = setTimeout(() => {
        cleanup();
        reject(new Timeout(what, [t0, t0 + timeoutMs], Date.now() - t0 - timeoutMs));
      }, timeoutMs);
      const finish = (f: () => void) => {
        clearTimeout(timer);
        cleanup();
        f();
      };
      cleanup = start(
        (a) => finish(() => resolve(a)),
        (e) => finish(() => reject(e)),
      );
    });
  }

  private probeTcp(t: ProbeTarget, timeoutMs: number): Promise<string> {
    return this.within(timeoutMs, `tcp ${t.ip}:${t.port}`, (done, fail) => {
      const sock = createConnection({ host: t.ip, port: t.port });
      let buf = "";
      sock.on("data", (d) => {
        buf += d.toString();
        const nl = buf.indexOf("\n");
        if (nl >= 0) done(buf.slice(0, nl));
      });
      sock.on("error", (e) => fail(e));
      sock.on("end", () => fail(new Error(`tcp ${t.ip}:${t.port}: closed without an answer`)));
      return () => sock.destroy();
    });
  }

  private async probeUdp(t: ProbeTarget, timeoutMs: number): Promise<string> {
    let answered: (a: string) => void = () => {};
    const sock = await this.udpSocket((a) => answered(a));
    return this.within(timeoutMs, `udp ${t.ip}:${t.port}`, (done) => {
      answered = done;
      sock.send("probe\n", t.port, t.ip);
      return () => sock.close();
    });
  }

  /** A UDP socket on the next unused source port (skipping one still taken after a wrap). */
  private async udpSocket(onAnswer: (a: string) => void): Promise<Udp> {
    for (let tries = 0; ; tries++) {
      try {
        return await Bun.udpSocket({ hostname: "0.0.0.0", port: this.sourcePort(), socket: { data: (_s, d) => onAnswer(d.toString().trim()) } });
      } catch (e) {
        if (tries > 100) throw e;
      }
    }
  }

  private probeSctp(t: ProbeTarget, timeoutMs: number): Promise<string> {
    const sport = this.sourcePort();
    const tag = randomTag();
    const k = `${t.ip}:${t.port}:${sport}:${tag}`;
    return this.within(timeoutMs, `sctp ${t.ip}:${t.port}`, (done) => {
      this.sctpWaiting.set(k, done);
      this.raw.send(t.ip, sctpPacket({ sport, dport: t.port, vtag: 0, type: SCTP_INIT, initTag: tag }));
      return () => this.sctpWaiting.delete(k);
    });
  }

  async probe(t: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
    try {
      const answer = await (t.proto === "tcp" ? this.probeTcp(t, timeoutMs) : t.proto === "udp" ? this.probeUdp(t, timeoutMs) : this.probeSctp(t, timeoutMs));
      return { ok: true, answer: answer.trim() };
    } catch (e) {
      return { ok: false, error: (e as Error).message, ...(e instanceof Timeout ? { window: e.window, lateMs: e.lateMs } : {}) };
    }
  }

  async open(r: Extract<ProberRequest, { op: "open" }>): Promise<ProbeOutcome> {
    if (this.flows.has(r.flow)) return { ok: false, error: `flow ${r.flow} is open already` };
    const f: Flow = { proto: r.proto, ip: r.ip, port: r.port };
    const deliver = (a: string) => {
      const w = f.waiting;
      f.waiting = undefined;
      w?.(a.trim());
    };
    try {
      const answer = await this.within(r.timeoutMs, `${r.proto} ${r.ip}:${r.port}`, (done, fail) => {
        f.waiting = done;
        if (r.proto === "udp") {
          void this.udpSocket(deliver).then((u) => {
            f.udp = u;
            u.send("open\n", r.port, r.ip);
          }, fail);
        } else {
          const sock = createConnection({ host: r.ip, port: r.port });
          f.tcp = sock;
          let buf = "";
          sock.on("data", (d) => {
            buf += d.toString();
            for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
              deliver(buf.slice(0, nl));
              buf = buf.slice(nl + 1);
            }
          });
          sock.on("error", (e) => fail(e));
        }
        return () => {};
      });
      this.flows.set(r.flow, f);
      return { ok: true, answer };
    } catch (e) {
      f.tcp?.destroy();
      f.udp?.close();
      return { ok: false, error: (e as Error).message };
    }
  }

  async echo(r: Extract<ProberRequest, { op: "echo" }>): Promise<ProbeOutcome> {
    const f = this.flows.get(r.flow);
    if (!f) return { ok: false, error: `no flow ${r.flow}` };
    if (f.tcp && (f.tcp.destroyed || !f.tcp.writable)) return { ok: false, error: `flow ${r.flow}: the connection was closed` };
    try {
      const answer = await this.within(r.timeoutMs, `flow ${r.flow}`, (done) => {
        f.waiting = done;
        if (f.udp) f.udp.send("echo\n", f.port, f.ip);
        else f.tcp!.write("echo\n");
        return () => (f.waiting = undefined);
      });
      return { ok: true, answer };
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }

  close(flow: string): void {
    const f = this.flows.get(flow);
    this.flows.delete(flow);
    f?.tcp?.destroy();
    f?.udp?.close();
  }

  async handle(r: ProberRequest): Promise<Record<string, unknown>> {
    switch (r.op) {
      case "probe":
        return { results: await Promise.all(r.targets.map((t) => this.probe(t, r.timeoutMs))) };
      case "open":
        return { result: await this.open(r) };
      case "echo":
        return { result: await this.echo(r) };
      case "close":
        this.close(r.flow);
        return {};
      case "stalls":
        return { worst: this.stalls.worst(r.from, r.to) };
    }
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const name = opt("--name");
  const ports = (opt("--ports") ?? "").split(",").filter(Boolean).map(Number);
  if (!name || !ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p >= FIRST_SOURCE_PORT)) {
    console.error("usage: policy-prober.ts --name NAME --ports P1,P2 [--no-serve] (ports below 20000)");
    process.exit(2);
  }
  const p = new Prober(name, ports, !args.includes("--no-serve"));
  await p.start();
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  out({ ready: name });
  for await (const line of console) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as ProberRequest;
    void p.handle(r).then(
      (x) => out({ id: r.id, ...x }),
      (e: Error) => out({ id: r.id, error: e.message }),
    );
  }
  process.exit(0);
}
