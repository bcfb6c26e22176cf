// The load generator of bench/gossip.ts (b): a NATS client inside the control-plane namespace
// that puts the records of `count` simulated nodes into the gossip bucket, as their agents'
// heartbeats would. It waits for commands on stdin, one a line, and answers each with a JSON
// line: "put" puts every record once (seq one higher than the last round) and answers
// {first, last} (ms since the epoch when the first put was sent and the last one acknowledged);
// "exit" closes the connection. The records are the bench's (gossipPeer), encoded by the
// agent's own encodeRecord.
// argv: url bucket count
import { connect } from "nats";
import { encodeRecord } from "../agent/gossip/record.ts";
import { gossipPeer } from "./gossip-peers.ts";

const [url, bucket, countText] = process.argv.slice(2) as [string, string, string];
const count = Number(countText);
if (!url || !bucket || !Number.isInteger(count) || count < 1 || count > 10_000) {
  console.error("usage: gossip-load.ts url bucket count (1-10000)");
  process.exit(2);
}
const startedAt = Date.now();
const nc = await connect({ servers: url, timeout: 5000 });
const kv = await nc.jetstream().views.kv(bucket);
const peers = Array.from({ length: count }, (_, i) => gossipPeer(i));
let seq = 0;
// puts in flight at once: enough to keep the server busy, few enough not to time out
const WINDOW = 64;

async function round(): Promise<{ first: number; last: number }> {
  const s = seq++;
  const bytes = peers.map((p) => encodeRecord({ node: p.name, podCIDRs: [p.podCIDR], underlay: p.underlay, vtepMac: p.vtepMac, version: "bench", seq: s, startedAt }));
  const first = Date.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < peers.length; i = next++) await kv.put(peers[i]!.name, bytes[i]!);
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  return { first, last: Date.now() };
}

console.log(JSON.stringify({ ready: true }));
let buf = "";
const decoder = new TextDecoder();
for await (const chunk of Bun.stdin.stream()) {
  buf += decoder.decode(chunk, { stream: true });
  for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
    const cmd = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (cmd === "put") console.log(JSON.stringify(await round()));
    else if (cmd === "exit") {
      await nc.close();
      process.exit(0);
    } else console.log(JSON.stringify({ error: `unknown command ${JSON.stringify(cmd)}` }));
  }
}
await nc.close();
