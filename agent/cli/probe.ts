// `skein probe`: a built-in netcat for connectivity checks from inside a pod or node
// namespace (`nsenter --net=… skein probe …`), so the demo and the tests need nothing but
// the skein binary. The server answers every TCP connection and UDP datagram with its name
// and the peer address it saw, which is how masquerade and service NAT become visible.

/** A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; people expect a.b.c.d. */
const plain = (addr: string) => addr.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");

export interface ServeOptions {
  name: string;
  tcp?: number[];
  udp?: number[];
  host: string;
  hold?: boolean;
  /** asked on every TCP connection and UDP datagram (the same protocol), its answer appended:
   * a tier calling the next one, as a frontend calls its backend */
  upstream?: { host: string; port: number };
  /** upstream calls in flight at once; past it a request is answered without one (default 32) */
  maxUpstreamCalls?: number;
  log: (s: string) => void;
}

export async function serve(o: ServeOptions): Promise<never> {
  // what the upstream said, or why it said nothing, as one line of text
  // an upstream that leads back here (a pod whose upstream is its own Service) would make
  // every request a chain of calls without end: the calls in flight are bounded, and a request
  // past the bound is answered at once, which unwinds the chain
  const maxCalls = o.maxUpstreamCalls ?? 32;
  let calls = 0;
  const ask = async (proto: "tcp" | "udp"): Promise<string> => {
    if (!o.upstream) return "";
    if (calls >= maxCalls) return ` -> ${o.upstream.host}:${o.upstream.port} not asked (${maxCalls} calls in flight)`;
    calls++;
    try {
      return ` -> ${await connect(proto, o.upstream.host, o.upstream.port, 1500)}`;
    } catch (e) {
      return ` -> ${o.upstream.host}:${o.upstream.port} no answer (${(e as Error).message.replace(/^\S+ \S+: /, "")})`;
    } finally {
      calls--;
    }
  };
  for (const port of o.tcp ?? []) {
    Bun.listen({
      hostname: o.host,
      port,
      socket: {
        async open(s) {
          const hello = `${o.name} ${plain(s.remoteAddress)}${await ask("tcp")}\n`;
          // --hold keeps the connection and echoes what arrives: a long-lived flow
          if (o.hold) s.write(hello);
          else s.end(hello);
        },
        data(s, d) {
          if (o.hold) s.write(d);
        },
      },
    });
  }
  for (const port of o.udp ?? []) {
    await Bun.udpSocket({
      hostname: o.host,
      port,
      socket: {
        async data(s, _buf, port, addr) {
          s.send(`${o.name} ${plain(addr)}${await ask("udp")}\n`, port, addr);
        },
      },
    });
  }
  const ports = [...(o.tcp ?? []).map((p) => ` tcp/${p}`), ...(o.udp ?? []).map((p) => ` udp/${p}`)].join("");
  o.log(`ready ${o.name}${ports}${o.upstream ? ` upstream ${o.upstream.host}:${o.upstream.port}` : ""}\n`);
  return new Promise<never>(() => {});
}

/** `sourcePort`: send from this port (UDP: datagrams of several calls are one flow to conntrack;
 * either: the 5-tuple, and so the backend a Service's ring picks, is known beforehand). */
export async function connect(proto: "tcp" | "udp", host: string, port: number, timeoutMs: number, sourcePort?: number): Promise<string> {
  if (proto === "tcp") {
    // node:net rather than Bun.connect: a connection attempt still pending at the deadline
    // must be torn down, or it keeps the process alive until the kernel gives up on the SYN
    const { createConnection } = await import("node:net");
    return new Promise<string>((resolve, reject) => {
      let buf = "";
      const sock = createConnection({ host, port, ...(sourcePort ? { localPort: sourcePort } : {}) });
      const fail = (why: string) => {
        clearTimeout(timer);
        sock.destroy();
        reject(new Error(`tcp ${host}:${port}: ${why}`));
      };
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
      sock.on("data", (d) => {
        buf += d.toString();
        // an answer is one line; a server that holds the connection open still answers
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          clearTimeout(timer);
          resolve(buf.slice(0, nl).trim());
          sock.destroy();
        }
      });
      sock.on("end", () => {
        clearTimeout(timer);
        resolve(buf.trim());
        sock.destroy();
      });
      sock.on("error", (e: Error & { code?: string }) => fail(`${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ""}`));
    });
  }
  let answered: (s: string) => void = () => {};
  const answer = new Promise<string>((resolve) => (answered = resolve));
  const sock = await Bun.udpSocket({
    hostname: host.includes(":") ? "::" : "0.0.0.0",
    ...(sourcePort ? { port: sourcePort } : {}),
    socket: {
      data(_s, d) {
        answered(d.toString().trim());
      },
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`udp ${host}:${port}: no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    sock.send("probe", port, host);
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

/**
 * A long-lived TCP session: prints what the server sends, sends what arrives on stdin, and
 * ends when stdin closes (then exits 0) or the connection does (exit 1 if stdin was open).
 */
export async function session(host: string, port: number, out: (s: string) => void): Promise<number> {
  let closed: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (closed = r));
  let inputEnded = false;
  const sock = await Bun.connect({
    hostname: host,
    port,
    socket: {
      data(_s, d) {
        out(d.toString());
      },
      close() {
        closed(inputEnded ? 0 : 1);
      },
      error() {
        closed(1);
      },
    },
  });
  (async () => {
    for await (const chunk of Bun.stdin.stream()) sock.write(chunk);
    inputEnded = true;
    sock.end();
  })();
  return done;
}
