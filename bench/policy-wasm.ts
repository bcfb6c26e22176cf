// The policy compile's time, compiler.wasm against the TypeScript reference in the same run:
// realistic worlds (compiler/policy/generate.ts) of 10,000 pods and 1,000 / 5,000 policies,
// compiled for one node; the median (and least) of several runs after a warm-up, and the
// tables checked equal. NODES=n: spread over n nodes instead of one per 100 pods; BLOCKS=1: a
// distinct ipBlock per policy. The wasm compile is timed twice: as it runs in the agent (pods
// and policies packed when first compiled, kept beside the objects), and a fresh compiler's
// first compile. `bun bench/policy-wasm.ts [pods] [policies...]`
import { loadCompiler } from "../compiler/wasm.ts";
import { realisticWorld } from "../compiler/policy/generate.ts";
import { compilePolicy, identityIds } from "../compiler/policy/reference.ts";
import { policyStateFrom } from "../compiler/policy/state.ts";
import { wasmPolicyCompiler } from "../compiler/policy/wasm.ts";
import { isDeepStrictEqual } from "node:util";
import { timings } from "./stats.ts";

const pods = Number(process.argv[2] ?? 10_000);
const counts = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [1_000, 5_000];
const exports = await loadCompiler();
const { compile } = wasmPolicyCompiler(exports);

/** median and least of `runs` timings, ms */
function time(f: () => void, runs: number): string {
  const t = timings(f, runs);
  return `${t[runs >> 1]!.toFixed(1)} ms (least ${t[0]!.toFixed(1)})`;
}

for (const policies of counts) {
  const w = realisticWorld({ pods, policies, ...(process.env.NODES ? { nodes: Number(process.env.NODES) } : {}) });
  const { state, errors } = policyStateFrom(w.objects);
  if (errors.length) throw new Error(errors.join("\n"));
  // BLOCKS=1: every policy's first ingress rule also admits an address of its own (a /32 each)
  if (process.env.BLOCKS) {
    state.policies = state.policies.map((p, i) =>
      p.ingress?.length ? { ...p, ingress: [{ ...p.ingress[0]!, peers: [...p.ingress[0]!.peers, { kind: "cidr" as const, cidr: `172.16.${i >> 8}.${i & 255}/32`, except: [] }] }, ...p.ingress.slice(1)] } : p,
    );
  }
  const node = w.nodes[0]!;
  const opts = { nodeName: node.name, podCIDRs: node.podCIDRs, maxIdentity: 0x7fff };
  const ref = compilePolicy(state, opts);
  const wasm = compile(state, opts);
  if (!isDeepStrictEqual(ref, wasm)) throw new Error(`${policies} policies: the tables differ`);
  const prev = identityIds(ref);
  for (let i = 0; i < 3; i++) {
    compilePolicy(state, opts, prev);
    compile(state, opts, prev);
  }
  const tRef = time(() => compilePolicy(state, opts, prev), 5);
  // the first compile of a fresh compiler packs every pod and policy; later ones reuse that
  const tFirst = time(() => wasmPolicyCompiler(exports).compile(state, opts, prev), 5);
  const tWasm = time(() => compile(state, opts, prev), 9);
  const local = ref.identities.filter((i) => i.local).length;
  console.log(
    `${pods} pods, ${policies} policies, ${w.nodes.length} nodes: ${ref.identities.length} identities (${local} local), ${ref.allowIngress.length}+${ref.allowEgress.length} elements; ` +
      `reference ${tRef}, wasm ${tWasm}, wasm's first compile (packing every object) ${tFirst}`,
  );
}
