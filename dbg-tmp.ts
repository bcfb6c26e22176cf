import pino from "pino";
import { NatsCluster } from "./testing/nats.ts";
import { GossipBus } from "./agent/gossip/bus.ts";
import { parseNatsConfig } from "./agent/gossip/config.ts";
const c = await NatsCluster.start();
const bus = GossipBus.start({ config: parseNatsConfig({ servers: c.urls }), bucket: "b", replicas: 1, ttlMs: 5000, heartbeatMs: 500, retryMs: 100,
  record: () => ({ node: "n1", podCIDRs: ["10.244.1.0/24"], underlay: "1.2.3.4", vtepMac: "02:00:00:00:00:01", version: "1", seq: 0, startedAt: 1 }),
  log: pino({ level: "debug" }), onPut(k) { console.log("put", k) }, onDelete() {}, onLive(l) { console.log("live", l) } });
await Bun.sleep(1000);
console.log("stopping");
const t = setTimeout(() => { console.log("stop hung"); process.exit(1) }, 5000);
(bus as any).nc.closed().then(() => console.log("nc closed"));
await bus.stop();
clearTimeout(t);
console.log("stopped");
await c.close();
