// `skein tables --state FILE`: compiles a file of Kubernetes objects (a JSON list, a List
// object, or YAML documents) and prints the datapath tables: readable, --json, or --nft (the
// table as one nft transaction; with --since, the delta's steps). --apply loads them into the
// current network namespace the way the agent does (with --since: as a delta over the tables
// of that earlier file, which the kernel must hold, in the bank and maps it lists). Given the
// agent's inputs (the Node of --node-name in the file, --service-cidr, the mark ranges) it
// makes the agent's table. Each service is compiled by the embedded compiler.wasm.
import { closeSync, openSync } from "node:fs";
import { readFdBounded } from "../sys/bounded-read.ts";
import { parseAllDocuments } from "yaml";
import { compile } from "../../compiler/reference/compile.ts";
import type { Tables } from "../../compiler/tables.ts";
import { loadCompiler, wasmUnits } from "../../compiler/wasm.ts";
import { clusterStateFrom, type Service } from "../../compiler/state.ts";
import { fits, model, ringCapacity, ringMap, ringSlots } from "../datapath/model.ts";
import { renderFull } from "../datapath/nft-text.ts";
import { IDENTITY_CHAIN, renderPolicyDelta } from "../datapath/policy-text.ts";
import { planDelta, renderPlan } from "../datapath/plan.ts";
import { DEFAULT_MARKS, type Marks } from "../datapath/marks.ts";
import { inCidrs } from "../../compiler/keys.ts";
import { nodeInfo } from "../loop/state.ts";
import { policyStateFrom } from "../../compiler/policy/state.ts";
import { policyEngine } from "../../compiler/policy/engine.ts";
import { withServiceSources } from "../../compiler/policy/via-service.ts";
import { maxIdentity } from "../datapath/marks.ts";
import { readablePolicy } from "../datapath/readable-policy.ts";
import { readableServices } from "../datapath/readable-services.ts";
import { tablesJson } from "../datapath/tables-view.ts";
import type { PolicyTables } from "../../compiler/policy/types.ts";

export interface TablesOptions {
  state: string;
  /** with --nft: print the delta from the tables of this earlier state file instead */
  since?: string;
  json?: boolean;
  nft?: boolean;
  apply?: boolean;
  nodeName: string;
  /** NodePort addresses; none given: the Node's, as the agent takes them */
  nodeIp: string[];
  /** the agent's --service-cidr: unserved addresses there are refused */
  serviceCidr?: string[];
  ringFactor: number;
  /** skein's bits of the packet and conntrack marks (default: the agent's) */
  marks?: Marks;
}

/**
 * The most read of a --state file: a state of tens of thousands of objects is a few tens of
 * MiB; an endless source (/dev/zero, a pipe that never ends) must end in an error, not in
 * the memory running out.
 */
export const MAX_STATE_FILE = 256 * 1024 * 1024;

export function readObjects(path: string): unknown[] {
  // opened blocking: a pipe (--state /dev/stdin) is read to its end, within the limit
  const fd = openSync(path, "r");
  let bytes: Buffer;
  try {
    bytes = readFdBounded(fd, MAX_STATE_FILE, `--state ${path}`);
  } finally {
    closeSync(fd);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path} is not UTF-8`);
  }
  let docs: unknown[];
  if (/^\s*[[{]/.test(text)) {
    try {
      docs = [JSON.parse(text)];
    } catch (e) {
      throw new Error(`${path} is not valid JSON: ${(e as Error).message}`);
    }
  } else {
    const parsed = parseAllDocuments(text);
    const bad = parsed.find((d) => d.errors.length);
    if (bad) throw new Error(`${path} is not valid YAML: ${bad.errors[0]!.message}`);
    docs = parsed.map((d) => d.toJS());
  }
  const out: unknown[] = [];
  for (const d of docs) {
    if (d === null || d === undefined) continue;
    if (Array.isArray(d)) out.push(...d);
    else if (typeof d === "object" && Array.isArray((d as { items?: unknown }).items)) out.push(...(d as { items: unknown[] }).items);
    else out.push(d);
  }
  return out;
}

/** Why nft text cannot express the delta from `prev` to `next` the way the agent makes it, or undefined. */
function textlessDelta(before: Tables, tables: Tables, plan: ReturnType<typeof planDelta>): string | undefined {
  const cap = ringCapacity(ringSlots(before));
  const slots = ringSlots(tables);
  if (!fits(slots, cap))
    return `the rings (${slots[4]} IPv4 and ${slots[6]} IPv6 slots) outgrow the ring maps made for the earlier tables (${cap[4]} and ${cap[6]}): the agent fills the other bank's maps and switches to them in one transaction, which --apply --since does`;
  const added = plan.before.addChains.map(([name]) => name);
  if (added.length)
    return `the delta adds ring chain${added.length > 1 ? "s" : ""} ${added.join(", ")} (a ring size no chain has yet), which the agent adds over netlink: nft 1.0.6 refuses a rule that looks up a ring map an earlier transaction made ("conflicting protocols"); --apply --since loads it`;
  return undefined;
}

/** What the agent would hold, compiled from a state file: its service tables and this
 * node's policy tables, with what was refused on the way (`skein tables` and `skein trace`). */
export interface CompiledState {
  objects: unknown[];
  tables: Tables;
  policy: PolicyTables;
  /** the --node-name Node, read as the agent reads it */
  node?: ReturnType<typeof nodeInfo>;
  nodeIPs: string[];
  podCIDRs: string[];
  /** every Node's name and pod CIDRs in the file */
  nodes: Array<{ name: string; podCIDRs: string[] }>;
  /** compiles the policy for another node of the file (its ingress verdicts) */
  policyFor(nodeName: string): PolicyTables;
  /** the Services as compiled (their traffic policies) */
  services: Service[];
  /** every pod of the file with its addresses and node */
  pods: Array<{ namespace: string; name: string; nodeName: string; ips: string[] }>;
  before?: Tables;
  policyBefore?: PolicyTables;
  /** objects skipped, frontends left out, policies closed or with problems: each a line */
  errors: number;
}

export async function compileState(o: Pick<TablesOptions, "state" | "since" | "nodeName" | "nodeIp" | "ringFactor" | "marks">, err: (s: string) => void, cmd = "tables"): Promise<CompiledState> {
  const objects = readObjects(o.state);
  const { state, errors } = clusterStateFrom(objects);
  for (const e of errors) err(`skein ${cmd}: skipped ${e}\n`);
  // the agent takes this node's pod CIDRs (hairpins) and NodePort addresses from its Node
  const node = o.nodeName ? objects.find((x): x is Record<string, unknown> => !!x && typeof x === "object" && (x as { kind?: unknown }).kind === "Node" && (x as { metadata?: { name?: unknown } }).metadata?.name === o.nodeName) : undefined;
  const info = node ? nodeInfo(node) : undefined;
  const nodeIPs = o.nodeIp.length ? o.nodeIp : (info?.addresses ?? []);
  const podCIDRs = info?.podCIDRs ?? [];
  const copts = { nodeName: o.nodeName, nodeIPs, ringFactor: o.ringFactor };
  const wasm = await loadCompiler();
  const units = wasmUnits(wasm, copts);
  // The earlier state compiles first, so that targets keep their ids into the new tables.
  const before = o.since ? compile(clusterStateFrom(readObjects(o.since)).state, copts, units) : undefined;
  const tables = compile(state, { ...copts, previous: before }, units);
  for (const c of tables.conflicts) err(`skein ${cmd}: ${c}\n`);
  const marks = o.marks ?? DEFAULT_MARKS;
  // policy for this node's pods (spec.nodeName), from the Pods, Namespaces and
  // NetworkPolicies in the file
  const ps = policyStateFrom(objects);
  // both readers see every object: what both refuse (not an object, a wrong apiVersion, a
  // second of one name) is said once
  for (const e of ps.errors) if (!errors.includes(e)) err(`skein ${cmd}: skipped ${e}\n`);
  for (const c of ps.closed) err(`skein ${cmd}: ${c}\n`);
  const engine = policyEngine(wasm);
  const popts = { nodeName: o.nodeName, podCIDRs, maxIdentity: maxIdentity(marks) };
  const policyBefore = o.since ? engine(policyStateFrom(readObjects(o.since)).state, popts, new Map()) : undefined;
  // every Node's pod CIDRs in the file: where connections through a Service come from
  const nodes = objects.flatMap((x) => {
    if (!x || typeof x !== "object" || (x as { kind?: unknown }).kind !== "Node") return [];
    try {
      const n = nodeInfo(x as Record<string, unknown>);
      return [{ name: n.name, podCIDRs: n.podCIDRs }];
    } catch {
      return [];
    }
  });
  const policy: PolicyTables = withServiceSources(engine(ps.state, popts, new Map((policyBefore?.identities ?? []).map((i) => [i.key, i.id]))), nodes, o.nodeName);
  for (const p of policy.problems) err(`skein ${cmd}: ${p}\n`);
  const policyFor = (name: string) => withServiceSources(engine(ps.state, { ...popts, nodeName: name, podCIDRs: nodes.find((n) => n.name === name)?.podCIDRs ?? [] }, new Map()), nodes, name);
  return { objects, tables, policy, node: info, nodeIPs, podCIDRs, nodes, policyFor, services: state.services, pods: ps.state.pods, before, policyBefore, errors: errors.length + ps.errors.length + ps.closed.length + tables.conflicts.length };
}

/** Returns the exit code: 1 when some object was rejected or some frontend left out (why is on stderr). */
export async function tablesCommand(o: TablesOptions, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { tables, policy, podCIDRs, before, policyBefore, errors } = await compileState(o, err);
  const serviceCIDRs = o.serviceCidr ?? [];
  const marks = o.marks ?? DEFAULT_MARKS;
  const hairpin = podCIDRs.length ? inCidrs(podCIDRs) : undefined;
  if (o.apply) {
    const { Datapath } = await import("../datapath/datapath.ts");
    const { openNft } = await import("../datapath/nft.ts");
    const { listTable, adoptedModel } = await import("../datapath/adopt.ts");
    const { Netlink } = await import("../sys/netlink.ts");
    const nl = Netlink.openNetfilter();
    try {
      const dp = new Datapath(openNft(), { send: (b) => nl.sendBatch(b) }, serviceCIDRs, undefined, marks);
      dp.setLocalCIDRs(podCIDRs);
      dp.policy(policy, false);
      if (before) {
        // the earlier tables are in the kernel in whatever bank, and with whatever map sizes,
        // the loads before left them
        const listing = listTable(nl, undefined, false);
        if (!listing) throw new Error("--since: this network namespace holds no table inet skein to apply a delta to");
        const found = adoptedModel(listing.terse, listing.sets, listing.comment, marks);
        if (!found.ok) throw new Error(`--since: the table in this network namespace is not one to apply a delta to: ${found.why}`);
        const bank = found.model.bank;
        const size = (fam: 4 | 6) => listing.ringMapSizes?.get(ringMap(fam, bank)) ?? 0;
        const policyChains = listing.terse.flatMap((x) => (x.chain && IDENTITY_CHAIN.test(x.chain.name) ? [x.chain.name as string] : []));
        dp.assume(before, { bank, capacity: { 4: size(4), 6: size(6) }, policyChains });
      }
      const r = dp.sync(tables);
      // a table that existed takes the policy as a replace of its policy part
      if (before) dp.policy(policy);
      out(o.json ? JSON.stringify(r) + "\n" : `applied ${r.kind}: ${r.lines} lines of nft, ${r.ringOps} ring operations over netlink, ${r.ms.toFixed(1)} ms\n`);
    } finally {
      nl.close();
    }
  } else if (o.nft && before) {
    const plan = planDelta(model(before, 0, hairpin, marks), model(tables, 0, hairpin, marks));
    const why = textlessDelta(before, tables, plan);
    if (why) {
      err(`skein tables: --nft --since: no nft text for this delta: ${why}; --nft alone prints the whole new table\n`);
      return 1;
    }
    out(renderPlan(plan) + (policyBefore ? `# 4. policy (nft)\n${renderPolicyDelta(policyBefore, policy, marks)}` : ""));
  } else if (o.nft) out(renderFull(tables, 0, marks, { hairpin, serviceCIDRs }, policy));
  else if (o.json) out(JSON.stringify(tablesJson(tables, policy, true)) + "\n");
  else out(readableServices(tables) + "\n" + readablePolicy(policy));
  return errors ? 1 : 0;
}
