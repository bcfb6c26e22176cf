// Gossip past one NATS server: three nodes' agents on a three-server NATS cluster (routes
// between the servers, the bucket replicated three times). Losing a server loses no record,
// and the agents go on converging: a node joins and one leaves while it is down.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { resolve } from "node:path";
import { inNetns, runAsync } from "../agent/sys/exec.ts";
import { buildUnderlay, nodeSpec, startCluster, type Cluster } from "../testing/multinode.ts";
import { NatsCluster } from "../testing/nats.ts";
import { useLab, useTempDir, waitFor } from "./harness/index.ts";

const lab = useLab("nc");
const tmp = useTempDir("nc");
let c: Cluster;
let nats: NatsCluster;
const KV = resolve(import.meta.dir, "fixtures/nats-kv.ts");

beforeAll(async () => {
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2", "n3"] });
  nats = await NatsCluster.start({ servers: 3, netns: lab.path("cp"), host: u.controlPlane.address });
  c = await startCluster({
    underlay: u,
    dir: tmp,
    pods: 1,
    natsUrls: nats.urls,
    agentFlags: (_n, x) => ["--nats-url", x.natsUrls.join(","), "--gossip-replicas", "3", "--heartbeat-ms", "500", "--peer-ttl-ms", "3000"],
  });
}, 120_000);

afterAll(async () => {
  await c?.stop();
  await nats?.close();
});

/** The keys of the bucket, as a client of server `i` sees them. */
async function keys(i: number): Promise<string[]> {
  const r = await runAsync(inNetns(lab.path("cp"), [process.execPath, KV, nats.urls[i]!, "skein-nodes", "keys"]), { timeoutMs: 15_000 });
  return JSON.parse(r.stdout) as string[];
}

const routes = async (node: string) => (JSON.parse((await lab.exec(node, ["ip", "-j", "route", "show", "proto", "0x56"])).stdout || "[]") as Array<{ dst: string }>).map((r) => r.dst).sort();
const cidr = (n: string) => c.underlay.node(n).podCIDR;

test("with one of three servers killed, every record is still there, a joining node is programmed everywhere and a killed one dropped everywhere", async () => {
  for (const n of ["n1", "n2", "n3"]) await waitFor(`${n} programmed`, async () => (await routes(n)).length === 2, 10_000, 100);
  await waitFor("three records on every server", async () => (await Promise.all([0, 1, 2].map(keys))).every((k) => k.join() === "n1,n2,n3"), 10_000, 200);

  await nats.kill(0);
  // every record survives on the other two (the bucket has three replicas); a stream whose
  // leader was the killed server answers once the other two have elected one
  const t = performance.now();
  for (const i of [1, 2]) await waitFor(`the records through server ${i}`, async () => (await keys(i).catch((): string[] => [])).join() === "n1,n2,n3", 40_000, 200);
  console.log(`with server 0 killed, the bucket answered through the others after ${(performance.now() - t).toFixed(0)} ms`);

  // a node joins while server 0 is gone: its agent and every other find a live server
  const n4 = await c.underlay.addNode({ name: "n4", index: 4, segment: "b", host: 14 });
  await c.api.create("/api/v1/nodes", nodeSpec(n4));
  const t0 = performance.now();
  await c.startAgent("n4");
  await Promise.all(["n1", "n2", "n3"].map((n) => waitFor(`${n} routes to n4`, async () => (await routes(n)).includes(n4.podCIDR), 5000, 50)));
  const ms = performance.now() - t0;
  console.log(`with a server down, n4 was programmed on every node ${ms.toFixed(0)} ms after its agent started`);
  expect(ms).toBeLessThan(2000);
  expect(await routes("n4")).toEqual([cidr("n1"), cidr("n2"), cidr("n3")].sort());
  await waitFor("n4's record on the live servers", async () => (await keys(1).catch((): string[] => [])).includes("n4"), 40_000, 200);

  // and one leaves: its record expires, every node drops it
  await c.stopAgent("n3", { signal: "SIGKILL" });
  await Promise.all(["n1", "n2", "n4"].map((n) => waitFor(`${n} drops n3`, async () => !(await routes(n)).includes(cidr("n3")), 8000, 100)));

  // the killed server comes back and catches up
  await nats.start(0);
  await waitFor("server 0 has the records again", async () => (await keys(0).catch((): string[] => [])).join() === "n1,n2,n4", 40_000, 200);
}, 150_000);
