// A virtual lab of network namespaces: hosts, the links between them, servers and probes
// inside them. The demo builds its cluster with it and so do the tests. Every namespace is
// named with the lab's prefix, so destroy() (or `skein cleanup`) finds all of them.
import { addNetns, deleteNetnsWithPrefix, netnsPath } from "../sys/netns.ts";
import { inNetns, run, runAsync, type ExecResult } from "../sys/exec.ts";
import type { Subprocess } from "bun";

export interface ProbeResult {
  ok: boolean;
  /** the server's answer: "<server name> <peer address it saw>" */
  answer: string;
  error: string;
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

  /** Starts `skein probe serve` in a namespace and resolves once it listens. */
  async serve(short: string, o: { name: string; tcp?: number; udp?: number; hold?: boolean }, timeoutMs = 5000): Promise<void> {
    const argv = [this.skeinBin, "probe", "serve", "--name", o.name, ...(o.hold ? ["--hold"] : [])];
    if (o.tcp !== undefined) argv.push("--tcp", String(o.tcp));
    if (o.udp !== undefined) argv.push("--udp", String(o.udp));
    const proc = Bun.spawn(inNetns(this.path(short), argv), { stdout: "pipe", stderr: "pipe" });
    this.servers.push(proc);
    const reader = proc.stdout.getReader();
    const deadline = Date.now() + timeoutMs;
    let seen = "";
    while (!seen.includes("ready")) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`probe server ${o.name} in ${this.name(short)} not ready within ${timeoutMs} ms`);
      const chunk = await Promise.race([reader.read(), Bun.sleep(left).then(() => ({ done: true, value: undefined }))]);
      if (chunk.done) {
        const err = await new Response(proc.stderr).text();
        throw new Error(`probe server ${o.name} in ${this.name(short)} exited: ${err.trim()}`);
      }
      seen += new TextDecoder().decode(chunk.value);
    }
    reader.releaseLock();
  }

  async connect(short: string, proto: "tcp" | "udp", host: string, port: number, timeoutMs = 2000): Promise<ProbeResult> {
    const r = await this.exec(short, [this.skeinBin, "probe", "connect", proto, host, String(port), "--timeout", String(timeoutMs)], {
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
