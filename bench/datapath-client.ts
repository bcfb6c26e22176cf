export {};
// Helper of bench/datapath.ts, run inside the client namespace. `latency HOST PORT N`: N
// TCP connections one after another, each timed from connect() to the handshake's end (the
// SYN is the packet that walks the service rules), printed as JSON microseconds.
// `throughput HOST PORT MB`: MB sent over one connection, timed to the server's
// acknowledgement of the last byte; prints MB/s.
const [mode, host, portArg, nArg] = process.argv.slice(2);
const port = Number(portArg);
const n = Number(nArg);

function connectOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = Bun.nanoseconds();
    const timer = setTimeout(() => reject(new Error(`connect to ${host}:${port} timed out`)), 2000);
    Bun.connect({
      hostname: host!,
      port,
      socket: {
        open(s) {
          const us = (Bun.nanoseconds() - t0) / 1000;
          clearTimeout(timer);
          s.end();
          resolve(us);
        },
        data() {},
        connectError(_s, e) {
          clearTimeout(timer);
          reject(e);
        },
      },
    }).catch(reject);
  });
}

if (mode === "latency") {
  const us: number[] = [];
  for (let i = 0; i < n; i++) us.push(await connectOnce());
  console.log(JSON.stringify(us));
} else if (mode === "throughput") {
  const chunk = new Uint8Array(1 << 20);
  const mbps = await new Promise<number>((resolve, reject) => {
    let t0 = 0;
    let left = n;
    // a 4-byte length first: the server answers once it has read that many bytes
    let rest = new Uint8Array(4);
    new DataView(rest.buffer).setUint32(0, n * chunk.length);
    const pump = (s: { write(b: Uint8Array): number }) => {
      // write until the socket's buffer is full; drain() resumes where it stopped
      for (;;) {
        if (!rest.length) {
          if (left === 0) return;
          left--;
          rest = chunk;
        }
        const w = s.write(rest);
        if (w <= 0) return;
        rest = rest.subarray(w);
      }
    };
    Bun.connect({
      hostname: host!,
      port,
      socket: {
        open(s) {
          t0 = Bun.nanoseconds();
          pump(s);
        },
        drain(s) {
          pump(s);
        },
        data() {
          // the server's one byte after it has read everything
          resolve(n / ((Bun.nanoseconds() - t0) / 1e9));
        },
        connectError(_s, e) {
          reject(e);
        },
      },
    }).catch(reject);
  });
  console.log(JSON.stringify(mbps));
} else {
  console.error("usage: datapath-client.ts latency|throughput HOST PORT N");
  process.exit(2);
}
