// Helper of bench/policy.ts, run inside a node namespace of its own (`ip netns exec`): loads
// the policy of a realistic world for one node into `table inet skein` as the agent does
// (libnftables, the skeleton and the policy in one transaction), then changes one pod's labels
// at a time into labels other pods have and applies each change as the agent does (its policy
// compiler, which moves the address, the delta's nft text, one transaction), timed from the
// label change to the kernel holding it. Prints JSON.
// `bun bench/policy-apply.ts PODS POLICIES CHANGES`
import { realisticWorld } from "../compiler/policy/generate.ts";
import { policyStateFrom } from "../compiler/policy/state.ts";
import { policyEngine } from "../compiler/policy/engine.ts";
import { PolicyCompiler } from "../compiler/policy/incremental.ts";
import { loadCompiler } from "../compiler/wasm.ts";
import { openNft } from "../agent/datapath/nft.ts";
import { renderSkeleton } from "../agent/datapath/nft-text.ts";
import { renderPolicyDelta } from "../agent/datapath/policy-text.ts";
import { DEFAULT_MARKS, maxIdentity } from "../agent/datapath/marks.ts";
import type { PodInfo } from "../compiler/policy/types.ts";

const [pods, policies, changes] = process.argv.slice(2).map(Number) as [number, number, number];
const w = realisticWorld({ pods, policies });
const { state, errors } = policyStateFrom(w.objects);
if (errors.length) throw new Error(errors.slice(0, 3).join("\n"));
const node = w.nodes[0]!;
const marks = DEFAULT_MARKS;
const pc = new PolicyCompiler({ nodeName: node.name, podCIDRs: node.podCIDRs, maxIdentity: maxIdentity(marks) }, policyEngine(await loadCompiler()));
for (const n of state.namespaces) pc.setNamespace(n);
for (const p of state.pods) pc.setPod(p);
for (const p of state.policies) pc.setPolicy(p);
const nft = openNft();

let t0 = performance.now();
const first = pc.compile()!.after;
const compileMs = performance.now() - t0;
const text = renderSkeleton(0, { 4: 4096, 6: 4096 }, marks, first);
t0 = performance.now();
nft.run(text);
const loadMs = performance.now() - t0;

// pods that share their labels with other pods (a deployment's replicas), each relabelled
// into another such group of its namespace and back: what a label change most often is (a
// rollout, a canary's label moving). Pods of other nodes and pods of this node apart: a pod of
// this node may change which identities are local, and then the whole compile runs.
const groupOf = (p: PodInfo) => `${p.namespace}|${JSON.stringify(p.labels)}`;
const groups = new Map<string, PodInfo[]>();
for (const p of state.pods) groups.set(groupOf(p), [...(groups.get(groupOf(p)) ?? []), p]);
const replicated = state.pods.filter((p) => groups.get(groupOf(p))!.length > 2);
let prev = first;
function changeRun(which: PodInfo[], n: number) {
  const ms: number[] = [];
  const kinds: Record<string, number> = {};
  for (let i = 0; i < n && which.length; i++) {
    const p = which[(i * 7919) % which.length]!;
    // labels of another group whose pods run the same containers (a label change leaves the
    // containers, and so the named ports, as they are)
    const ports = JSON.stringify(p.ports);
    const other = replicated.find((q) => q.namespace === p.namespace && groupOf(q) !== groupOf(p) && JSON.stringify(q.ports) === ports);
    if (!other) continue;
    const start = performance.now();
    pc.setPod({ ...p, labels: other.labels });
    const next = pc.compile()!.after;
    nft.run(renderPolicyDelta(prev, next, marks));
    ms.push(performance.now() - start);
    kinds[pc.lastKind!] = (kinds[pc.lastKind!] ?? 0) + 1;
    // and back, untimed, so that the next change starts from the world as generated
    pc.setPod(p);
    const back = pc.compile()!.after;
    nft.run(renderPolicyDelta(next, back, marks));
    prev = back;
  }
  return { ms, kinds };
}
const remote = changeRun(replicated.filter((p) => p.nodeName !== node.name), changes);
const local = changeRun(replicated.filter((p) => p.nodeName === node.name), Math.max(1, changes >> 2));
console.log(JSON.stringify({ compileMs, loadMs, lines: text.split("\n").length, identities: first.identities.length, elements: first.allowIngress.length + first.allowEgress.length, pods: first.pods.length, remote, local }));
