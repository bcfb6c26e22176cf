// Helper of bench/propagation.ts, run inside the client namespace: connects to ip:port over
// and over (a new TCP connection each time, so each one is translated by the rules in force)
// and prints "<time ms> <answer>" whenever the answering backend changes. Stops after
// `limitS` seconds at the latest.
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
    s.on("error", () => {
      clearTimeout(timer);
      resolve("");
    });
  });
}

let last = "";
while (now() < until) {
  const a = await once();
  if (a && a !== last) {
    process.stdout.write(`${now().toFixed(2)} ${a}\n`);
    last = a;
  }
}
