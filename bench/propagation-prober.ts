// Helper of bench/propagation.ts, run inside the client namespace: connects to ip:port over
// and over (a new TCP connection each time, so each one is translated by the rules in force)
// and prints "<time ms> <answer>" whenever the answering backend changes. Stops after
// `limitS` seconds at the latest. At most one connection per millisecond: a prober that
// opens thousands a second runs through the ephemeral ports within seconds, and a reused
// port meets its earlier connection's conntrack entry and TIME_WAIT socket, which lose the
// new connection (a stall of the timeout below that has nothing to do with the rules).
import { createConnection } from "node:net";

const [ip, port, limitS] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4] ?? 600)];
const now = () => performance.timeOrigin + performance.now();
const until = now() + limitS * 1000;

function once(): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    const s = createConnection({ host: ip, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve("");
    }, 200);
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\n")) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf.split(" ")[0]!);
      }
    });
    s.on("error", (e: Error & { code?: string }) => {
      clearTimeout(timer);
      resolve(`!${e.code ?? e.message}`);
    });
  });
}

let last = "";
while (now() < until) {
  const started = now();
  const a = await once();
  // a connection that got no answer (lost) or failed (an error code): reported, so that a run
  // can tell failed connections from slow propagation
  if (!a) process.stdout.write(`${started.toFixed(2)} lost\n`);
  if (a.startsWith("!")) {
    process.stdout.write(`${started.toFixed(2)} failed ${a.slice(1)}\n`);
    continue;
  }
  const left = 1 - (now() - started);
  if (left > 0) await Bun.sleep(left);
  if (a && a !== last) {
    process.stdout.write(`${now().toFixed(2)} ${a}\n`);
    last = a;
  }
}
