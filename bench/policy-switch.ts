// What a packet meets while an nft transaction moves an address to another identity: the
// address map of the policy (a hash map, address -> id) and the allow set (a set of
// concatenations with intervals, id . port) change together. In a network namespace of its
// own, a sender streams UDP to 127.0.0.1:5000 while transactions run; the output hook looks up
// the address's id, then (id . port) in the allow set, and counts what misses. Three ways:
// the ids kept (only other allow elements churn: what a restarted agent writes now that it
// keeps the kernel's ids), the id moved in one transaction (map element and allow element
// swapped together), and the id moved the way the agent writes a delta (the new id's allow
// element first, in a transaction of its own; then the map and the old element).
// `bun bench/policy-switch.ts [TRANSACTIONS] [FILLER]` as root (default 30, 1,500)
import { randomBytes } from "node:crypto";
import { NftEvents } from "../agent/sys/nfevents.ts";

if (process.argv[2] === "--send") {
  // the sender, inside the namespace: as fast as it can for the given seconds (or until
  // SIGTERM); prints how many packets went through (a dropped one fails its send)
  const sink = await Bun.udpSocket({ hostname: "127.0.0.1", port: 5000, socket: { data() {} } });
  const s = await Bun.udpSocket({});
  let until = performance.now() + Number(process.argv[3]) * 1000;
  process.on("SIGTERM", () => (until = 0));
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 200; i++) {
      try {
        s.send("x", 5000, "127.0.0.1");
        n++;
      } catch {
        // a full socket buffer: the next round
      }
    }
    await Bun.sleep(0);
  }
  sink.close();
  s.close();
  console.log(n);
  process.exit(0);
}

const transactions = Number(process.argv[2] ?? 30);
const fillerCount = Number(process.argv[3] ?? 1500);
const ns = `skbench-sw-${randomBytes(3).toString("hex")}`;
const sh = (argv: string[], stdin?: string) => {
  const r = Bun.spawnSync(argv, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
};
const nft = (script: string) => sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], script);
const dropped = () => Number(/packets (\d+)/.exec(sh(["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "t", "out"]))?.[1] ?? NaN);

const filler = Array.from({ length: fillerCount }, (_, i) => `${100 + i} . ${1000 + (i % 4000)}-${1000 + (i % 4000)}`).join(", ");
const churn = `delete element inet t allow { ${filler} }\nadd element inet t allow { ${filler} }\n`;
const moveMap = (to: number) => `delete element inet t ids { 127.0.0.1 }\nadd element inet t ids { 127.0.0.1 : ${to} }\n`;
type Mode = { name: string; step: (from: number, to: number) => string[] };
const modes: Mode[] = [
  { name: "ids kept (other elements churn)", step: () => [churn] },
  { name: "id moved in one transaction", step: (from, to) => [moveMap(to) + `delete element inet t allow { ${from} . 5000-5000 }\nadd element inet t allow { ${to} . 5000-5000 }\n` + churn] },
  { name: "id moved, its new element first", step: (from, to) => [`add element inet t allow { ${to} . 5000-5000 }\n`, moveMap(to) + `delete element inet t allow { ${from} . 5000-5000 }\n` + churn] },
];

sh(["ip", "netns", "add", ns]);
try {
  sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  const rows: string[][] = [];
  for (const mode of modes) {
    nft(`table inet t
delete table inet t
table inet t {
  map ids { type ipv4_addr : mark; elements = { 127.0.0.1 : 5 } }
  set allow { type mark . inet_service; flags interval; elements = { 5 . 5000-5000, ${filler} } }
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 127.0.0.1 udp dport 5000 meta mark set ip daddr map @ids
    ip daddr 127.0.0.1 udp dport 5000 meta mark . udp dport @allow accept
    ip daddr 127.0.0.1 udp dport 5000 counter drop
  }
}
`);
    // an nftables listener, as the agent keeps one: the kernel then writes a notification per change
    const listener = NftEvents.open(`/run/netns/${ns}`);
    const drain = setInterval(() => listener.read(), 5);
    const sender = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, import.meta.path, "--send", "600"], { stdout: "pipe", stderr: "inherit" });
    await Bun.sleep(300);
    const t0 = performance.now();
    let id = 5;
    for (let i = 0; i < transactions; i++) {
      const to = id === 5 ? 6 : 5;
      for (const t of mode.step(id, to)) nft(t);
      id = to;
    }
    const ms = performance.now() - t0;
    sender.kill("SIGTERM");
    const sent = (await new Response(sender.stdout).text()).trim();
    await sender.exited;
    clearInterval(drain);
    listener.close();
    const d = dropped();
    rows.push([mode.name, String(transactions), (ms / transactions).toFixed(0), sent, String(d)]);
  }
  const head = ["how", "transactions", "ms each", "packets through", "packets dropped"];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(" | ")} |`;
  console.log([line(head), `|${w.map((x) => "-".repeat(x + 2)).join("|")}|`, ...rows.map(line)].join("\n"));
} finally {
  Bun.spawnSync(["ip", "netns", "del", ns]);
}
