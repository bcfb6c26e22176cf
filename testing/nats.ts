// Real nats-server processes (Debian's) with JetStream, on loopback, for the gossip tests: one
// server or a cluster joined by routes. Ports are free ports picked at start and kept across
// restarts (a client's server list stays valid); stores, configs and logs live in one temp
// dir. A server can be stopped, killed and started again, with or without its JetStream store
// (a server that lost its state is what the heartbeats must refill). close() kills them all.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from "node:net";
import type { Subprocess } from "bun";
import { inNetns, runAsync } from "../agent/sys/exec.ts";

export interface NatsOptions {
  /** servers in the cluster; 1 = a lone server without cluster block */
  servers?: number;
  /** client authentication the servers require */
  auth?: { user: string; password: string; denyPublish?: string[] } | { token: string } | { nkey: string };
  /** TLS for clients: PEM files of the server's certificate and key (and a CA to verify clients) */
  tls?: { cert: string; key: string; ca?: string };
  /** how long start() waits for every server to be healthy */
  readyMs?: number;
  /** run the servers in this network namespace (a path), listening on `host` there, for
   * agents in other namespaces of a lab; default: the caller's namespace, on loopback */
  netns?: string;
  host?: string;
}

export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  httpPort: number;
  store: string;
  config: string;
  log: string;
  proc?: Subprocess;
}

/** A TCP port free on loopback right now (a server started a moment later takes it). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

const q = (s: string) => JSON.stringify(s);

export class NatsCluster {
  readonly dir: string;
  readonly nodes: NatsNode[] = [];
  private closed = false;

  private constructor(readonly o: NatsOptions) {
    this.dir = mkdtempSync(`${tmpdir()}/skein-nats-`);
    const n = o.servers ?? 1;
    const taken = new Set<number>();
    const port = () => {
      for (;;) {
        const p = freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    for (let i = 0; i < n; i++) {
      const name = `s${i}`;
      this.nodes.push({ name, port: port(), clusterPort: port(), httpPort: port(), store: `${this.dir}/${name}/js`, config: `${this.dir}/${name}/nats.conf`, log: `${this.dir}/${name}/nats.log` });
    }
    for (const s of this.nodes) {
      mkdirSync(`${this.dir}/${s.name}`, { recursive: true });
      writeFileSync(s.config, this.configText(s));
    }
  }

  /** Starts the servers and waits until every one reports JetStream healthy. */
  static async start(o: NatsOptions = {}): Promise<NatsCluster> {
    const c = new NatsCluster(o);
    try {
      for (let i = 0; i < c.nodes.length; i++) c.spawn(i);
      await Promise.all(c.nodes.map((_, i) => c.ready(i)));
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  /** Client URLs, one per server. */
  get urls(): string[] {
    return this.nodes.map((s) => `nats://${this.host}:${s.port}`);
  }

  private get host(): string {
    return this.o.host ?? "127.0.0.1";
  }

  get url(): string {
    return this.urls[0]!;
  }

  private configText(s: NatsNode): string {
    const lines = [`server_name: ${s.name}`, `listen: "${this.host}:${s.port}"`, `http: "${this.host}:${s.httpPort}"`, `log_file: ${q(s.log)}`, `jetstream { store_dir: ${q(s.store)} }`];
    if (this.nodes.length > 1) {
      const routes = this.nodes.filter((x) => x !== s).map((x) => `"nats-route://${this.host}:${x.clusterPort}"`);
      lines.push(`cluster { name: skein, listen: "${this.host}:${s.clusterPort}", routes: [${routes.join(", ")}] }`);
    }
    const a = this.o.auth;
    if (a && "user" in a && a.denyPublish) lines.push(`authorization { users: [ { user: ${q(a.user)}, password: ${q(a.password)}, permissions: { publish: { allow: [">"], deny: [${a.denyPublish.map(q).join(", ")}] } } } ] }`);
    else if (a && "user" in a) lines.push(`authorization { user: ${q(a.user)}, password: ${q(a.password)} }`);
    else if (a && "token" in a) lines.push(`authorization { token: ${q(a.token)} }`);
    else if (a && "nkey" in a) lines.push(`authorization { users: [ { nkey: ${q(a.nkey)} } ] }`);
    const t = this.o.tls;
    if (t) lines.push(`tls { cert_file: ${q(t.cert)}, key_file: ${q(t.key)}${t.ca ? `, ca_file: ${q(t.ca)}, verify: true` : ""} }`);
    return `${lines.join("\n")}\n`;
  }

  private spawn(i: number): void {
    const s = this.nodes[i]!;
    if (s.proc && s.proc.exitCode === null && !s.proc.killed) throw new Error(`nats server ${s.name} is running`);
    s.proc = Bun.spawn(inNetns(this.o.netns, ["nats-server", "-c", s.config]), { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  }

  /** Waits until server `i` answers /healthz (JetStream enabled and current) with 200. */
  async ready(i: number, timeoutMs = this.o.readyMs ?? 15_000): Promise<void> {
    const s = this.nodes[i]!;
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      if (s.proc?.exitCode !== null && s.proc?.exitCode !== undefined) throw new Error(`nats server ${s.name} exited ${s.proc.exitCode}: ${this.logTail(i)}`);
      try {
        const url = `http://${this.host}:${s.httpPort}/healthz`;
        if (this.o.netns) {
          // asked from inside the servers' namespace, by this same runtime
          const r = await runAsync(inNetns(this.o.netns, [process.execPath, "-e", `const r = await fetch(${q(url)}, { signal: AbortSignal.timeout(1000) }); console.log(r.status, await r.text()); process.exit(r.ok ? 0 : 1)`]), { allowFail: true, timeoutMs: 5000 });
          last = r.stdout.trim() || r.stderr.trim();
          if (r.exitCode === 0) return;
        } else {
          const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
          last = `${r.status} ${await r.text()}`;
          if (r.ok) return;
        }
      } catch (e) {
        last = String(e);
      }
      await Bun.sleep(50);
    }
    throw new Error(`nats server ${s.name} not healthy within ${timeoutMs} ms (last: ${last}): ${this.logTail(i)}`);
  }

  /** The end of server `i`'s log, for error messages. */
  logTail(i: number, chars = 2000): string {
    const p = this.nodes[i]!.log;
    if (!existsSync(p)) return "(no log)";
    const t = readFileSync(p, "utf8");
    return t.slice(-chars);
  }

  /** Stops server `i` (SIGTERM: a clean shutdown) and waits for it to exit. */
  async stop(i: number): Promise<void> {
    const p = this.nodes[i]!.proc;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGTERM");
    await p.exited;
  }

  /** Kills server `i` (SIGKILL: no shutdown at all) and waits for it to exit. */
  async kill(i: number): Promise<void> {
    const p = this.nodes[i]!.proc;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGKILL");
    await p.exited;
  }

  /** Starts server `i` again on its ports; `wipe` removes its JetStream store first (a server
   * that comes back without its state). `wait` (default) waits until it is healthy. */
  async start(i: number, o: { wipe?: boolean; wait?: boolean } = {}): Promise<void> {
    if (o.wipe) rmSync(this.nodes[i]!.store, { recursive: true, force: true });
    this.spawn(i);
    if (o.wait !== false) await this.ready(i);
  }

  /** stop (or kill) then start. */
  async restart(i: number, o: { wipe?: boolean; kill?: boolean } = {}): Promise<void> {
    if (o.kill) await this.kill(i);
    else await this.stop(i);
    await this.start(i, { wipe: o.wipe });
  }

  /** Kills every server and removes the temp dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP relay on loopback to one port, whose connections can be cut while it keeps listening:
 * a client loses its connection and gets it back at once, while the server stays up and keeps
 * its state (what a network blip does, and a server restart does not).
 */
export class TcpRelay {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly socks: Set<Socket>,
  ) {}

  static async start(targetPort: number): Promise<TcpRelay> {
    const socks = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = netConnect(targetPort, "127.0.0.1");
      socks.add(client);
      socks.add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
        socks.delete(client);
        socks.delete(upstream);
      };
      for (const s of [client, upstream]) {
        s.on("error", end);
        s.on("close", end);
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
    });
    return new TcpRelay(server, port, socks);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Drops every connection now; new ones are relayed as before. */
  cut(): void {
    for (const s of this.socks) s.destroy();
    this.socks.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
