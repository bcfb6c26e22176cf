// A real nats-server (Debian's) with JetStream on a free loopback port, for the gossip tests.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";

export interface NatsServer {
  port: number;
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function accepts(port: number): Promise<boolean> {
  try {
    const sock = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    sock.end();
    return true;
  } catch {
    return false;
  }
}

export async function startNats(timeoutMs = 10_000): Promise<NatsServer> {
  const port = await freePort();
  const store = mkdtempSync(`${tmpdir()}/skein-nats-`);
  const proc = Bun.spawn(["nats-server", "-a", "127.0.0.1", "-p", String(port), "--jetstream", "--store_dir", store], { stdout: "ignore", stderr: "pipe" });
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited ${proc.exitCode}: ${await new Response(proc.stderr).text()}`);
    if (Date.now() > deadline) {
      proc.kill();
      throw new Error(`nats-server did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    }
    await Bun.sleep(20);
  }
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      proc.kill();
      await proc.exited;
      rmSync(store, { recursive: true, force: true });
    },
  };
}
