// Runs the agent in this process and this network namespace until SIGTERM or SIGINT. The
// tables stay in the kernel when it stops.
import pino from "pino";
import { Datapath } from "../datapath/datapath.ts";
import { openNft } from "../datapath/nft.ts";
import { Netlink } from "../sys/netlink.ts";
import { readTable } from "../datapath/adopt.ts";
import { Agent, type AgentOptions } from "./agent.ts";
import { KubeClient, loadKubeConfig } from "../watch/kube.ts";
import type { Marks } from "../datapath/marks.ts";

export async function runAgent(o: AgentOptions & { kubeconfig?: string; logLevel: string; marks: Marks }): Promise<number> {
  const log = pino({ level: o.logLevel, base: { node: o.nodeName } });
  // the cluster first: without one the agent stops before it looks at the kernel at all
  let kube: KubeClient;
  try {
    kube = new KubeClient(loadKubeConfig(o.kubeconfig));
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    return 1;
  }
  const nl = Netlink.openNetfilter();
  const datapath = new Datapath(openNft(), { send: (b) => nl.sendBatch(b) }, o.serviceCIDRs, undefined, o.marks);
  // the tables an earlier agent left keep serving until the new ones are whole
  let found: ReturnType<typeof readTable>;
  try {
    found = readTable(undefined, o.marks);
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot read the nftables state of this node");
    return 1;
  }
  if (found?.ok) {
    datapath.adopt(found.model, found.stale);
    log.info({ bank: found.model.bank, targets: found.model.chains.size }, "adopted the tables in the kernel; they serve until the new ones replace them in one transaction");
  } else if (found) log.warn({ why: found.why }, "the table in the kernel cannot be adopted: it will be replaced cold");
  const agent = new Agent(o, { log, datapath, kube, found: found ? (found.ok ? "adopted" : "replace") : undefined });
  const done = Promise.withResolvers<number>();
  const stop = (signal: string) => {
    log.info({ signal }, "stopping");
    agent.stop().then(
      () => done.resolve(0),
      () => done.resolve(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  try {
    await agent.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    return 1;
  }
  const code = await done.promise;
  nl.close();
  return code;
}
