// A virtual lab of network namespaces: hosts, the links between them, servers and probes
// inside them. The demo builds its cluster with it and so do the tests. Every namespace is
// named with the lab's prefix, so destroy() (or `skein cleanup --namespaces-only`) finds all of them.
import { addNetns, deleteNetnsWithPrefix, netnsPath } from "../agent/sys/netns.ts";
import { inNetns, run, runAsync, type ExecResult } from "../agent/sys/exec.ts";
import type { Subprocess } from "bun";
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from "node:fs";
import type { CniRuntime, Conflist } from "../agent/cni/runtime.ts";

export { DEMO_PREFIX, TEST_PREFIX } from "../agent/sys/netns.ts";

export interface ProbeResult {
  ok: boolean;
  /** the server's answer: "<server name> <peer address it saw>" */
  answer: string;
  error: string;
}

/**
 * What a child process prints, read as it comes: `until` waits, with a deadline, for the
 * output to contain some text. The output is read all the time, not only while someone waits:
 * a child whose pipe nobody empties blocks in its next write once the pipe's 64 KiB are full
 * (an agent logging synchronously would stop serving). Past MAX_TEXT the rest is read and
 * dropped, so offsets into `text` stay valid.
 */
export class OutputWatcher {
  text = "";
  /** more was printed than `text` holds */
  truncated = false;
  private ended = false;
  private readonly decoder = new TextDecoder();
  /** those waiting in until(), woken by every chunk and by the end */
  private readonly waiters = new Set<() => void>();
  static readonly MAX_TEXT = 32 * 1024 * 1024;

  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream.getReader());
  }

  private async pump(reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> }): Promise<void> {
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        if (this.text.length < OutputWatcher.MAX_TEXT) this.text += this.decoder.decode(chunk.value, { stream: true });
        else this.truncated = true;
        for (const w of this.waiters) w();
      }
    } catch {
      // the process went away mid-read: what was read stays
    }
    this.ended = true;
    for (const w of this.waiters) w();
  }

  /** Waits for `what` to appear in the output at or after offset `from`. */
  async until(what: string, timeoutMs: number, from = 0): Promise<"found" | "ended" | "timeout"> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.text.indexOf(what, from) >= 0) return "found";
      if (this.ended) return "ended";
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }
}

export class Lab {
  private readonly servers: Subprocess[] = [];
  private linkSeq = 0;

  constructor(
    readonly prefix: string,
    /** the skein binary, used for `skein probe` inside namespaces */
    readonly skeinBin: string,
  ) {
    if (!/^[a-z0-9-]{3,20}$/.test(prefix)) throw new Error(`lab prefix ${JSON.stringify(prefix)} must be 3-20 of [a-z0-9-]`);
  }

  /** The skein binary, checked when first needed: a lab that runs no probe needs no build. */
  private binary(): string {
    if (!existsSync(this.skeinBin)) throw new Error(`${this.skeinBin} is missing: run 'bun run build' first (the lab runs 'skein probe')`);
    return this.skeinBin;
  }

  name(short: string): string {
    return `${this.prefix}${short}`;
  }

  path(short: string): string {
    return netnsPath(this.name(short));
  }

  /** Creates the namespace `<prefix><short>` with loopback up; returns its path. */
  host(short: string): string {
    return addNetns(this.name(short));
  }

  /** A pod: its namespace, wired by `cni` as a runtime would (container ID `<tag>-<short>`);
   * returns the pod's first address and all of them (with prefix length). */
  async pod(short: string, cni: CniRuntime, conf: Conflist, tag = "ctr"): Promise<{ ip: string; addresses: string[] }> {
    this.host(short);
    const r = (await cni.add(conf, { containerId: `${tag}-${short}`, netns: this.path(short), ifname: "eth0" })) as { ips: Array<{ address: string }> };
    return { ip: r.ips[0]!.address.split("/")[0]!, addresses: r.ips.map((i) => i.address) };
  }

  /** A veth between two namespaces, with an address (CIDR) on each end. */
  wire(a: { ns: string; addr: string }, b: { ns: string; addr: string }): { ifA: string; ifB: string } {
    const n = this.linkSeq++;
    const ifA = `lk${n}a`;
    const ifB = `lk${n}b`;
    run(["ip", "-n", this.name(a.ns), "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", this.name(b.ns)]);
    for (const [ns, ifn, addr] of [
      [a.ns, ifA, a.addr],
      [b.ns, ifB, b.addr],
    ] as const) {
      run(["ip", "-n", this.name(ns), "addr", "add", addr, "dev", ifn]);
      run(["ip", "-n", this.name(ns), "link", "set", ifn, "up"]);
    }
    return { ifA, ifB };
  }

  exec(short: string, argv: string[], opts: { stdin?: string; allowFail?: boolean; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<ExecResult> {
    return runAsync(inNetns(this.path(short), argv), opts);
  }

  /**
   * Starts a long-running process in a namespace (stopped by destroy()) and, with `ready`,
   * resolves once its standard output (or, with `stream: "stderr"`, its error output) says so.
   */
  async spawn(short: string, argv: string[], o: { ready?: string; stream?: "stdout" | "stderr"; timeoutMs?: number; what?: string } = {}): Promise<{ proc: Subprocess<"ignore", "pipe", "pipe">; out: OutputWatcher }> {
    const proc = Bun.spawn(inNetns(this.path(short), argv), { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.servers.push(proc);
    const other = o.stream === "stderr" ? proc.stdout : proc.stderr;
    const out = new OutputWatcher(o.stream === "stderr" ? proc.stderr : proc.stdout);
    if (o.ready === undefined) return { proc, out };
    const what = o.what ?? argv.join(" ");
    const ready = await out.until(o.ready, o.timeoutMs ?? 5000);
    if (ready === "timeout") throw new Error(`${what} in ${this.name(short)} not ready within ${o.timeoutMs ?? 5000} ms: ${out.text.trim()}`);
    if (ready === "ended") throw new Error(`${what} in ${this.name(short)} exited: ${(out.text + (await new Response(other).text())).trim()}`);
    return { proc, out };
  }

  /**
   * Starts a process in a namespace (undefined: this process's) that outlives this one (`skein demo --keep`): a session of
   * its own (a Ctrl-C in the terminal does not reach it), its output appended to `log`, since
   * a pipe would break once its reader exits. With `ready`, resolves once the log says so.
   * Returns its pid; destroy() still ends it, as does removing its namespace.
   */
  async spawnDetached(short: string | undefined, argv: string[], o: { log: string; ready?: string; timeoutMs?: number; what?: string; env?: Record<string, string | undefined> }): Promise<number> {
    const fd = openSync(o.log, "a", 0o600);
    // the log may hold an earlier run's output: only what this one appends counts
    const from = fstatSync(fd).size;
    let proc: Subprocess;
    try {
      proc = Bun.spawn(["setsid", ...inNetns(short === undefined ? undefined : this.path(short), argv)], { stdin: "ignore", stdout: fd, stderr: fd, ...(o.env ? { env: o.env } : {}) });
    } finally {
      closeSync(fd);
    }
    proc.unref();
    this.servers.push(proc);
    if (o.ready === undefined) return proc.pid;
    const what = o.what ?? argv.join(" ");
    const timeoutMs = o.timeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = existsSync(o.log) ? readFileSync(o.log, "utf8").slice(from) : "";
      if (text.includes(o.ready)) return proc.pid;
      const where = short === undefined ? "" : ` in ${this.name(short)}`;
      if (proc.exitCode !== null) throw new Error(`${what}${where} exited ${proc.exitCode}: ${text.slice(-2000).trim()}`);
      if (Date.now() > deadline) throw new Error(`${what}${where} not ready within ${timeoutMs} ms: ${text.slice(-2000).trim()}`);
      await Bun.sleep(25);
    }
  }

  /** Starts `skein probe serve` in a namespace and resolves once it listens. */
  async serve(short: string, o: { name: string; tcp?: number; udp?: number; hold?: boolean }, timeoutMs = 5000): Promise<void> {
    const argv = [this.binary(), "probe", "serve", "--name", o.name, ...(o.hold ? ["--hold"] : [])];
    if (o.tcp !== undefined) argv.push("--tcp", String(o.tcp));
    if (o.udp !== undefined) argv.push("--udp", String(o.udp));
    await this.spawn(short, argv, { ready: "ready", timeoutMs, what: `probe server ${o.name}` });
  }

  async connect(short: string, proto: "tcp" | "udp", host: string, port: number, timeoutMs = 2000): Promise<ProbeResult> {
    const r = await this.exec(short, [this.binary(), "probe", "connect", proto, host, String(port), "--timeout", String(timeoutMs)], {
      allowFail: true,
      timeoutMs: timeoutMs + 5000,
    });
    return { ok: r.exitCode === 0, answer: r.stdout.trim(), error: r.stderr.trim() };
  }

  async ping(short: string, ip: string, timeoutS = 2): Promise<boolean> {
    const r = await this.exec(short, ["ping", "-n", "-q", "-c", "1", "-W", String(timeoutS), ip], { allowFail: true });
    return r.exitCode === 0;
  }

  destroy(): string[] {
    for (const s of this.servers) s.kill("SIGKILL");
    this.servers.length = 0;
    return deleteNetnsWithPrefix(this.prefix);
  }
}
