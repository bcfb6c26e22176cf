// The policy compile in compiler.wasm against the TypeScript reference (reference.ts): on
// random worlds using every NetworkPolicy feature, for every node, the same PolicyTables; and
// across a sequence of changes (pods going, coming, relabelled, on a held address, given an
// address of the other family, policies going), each compile given the ids of the last one.
import { describe, expect, test } from "bun:test";
import ipaddr from "ipaddr.js";
import { rng } from "../generate.ts";
import { loadCompiler } from "../wasm.ts";
import { randomWorld, realisticWorld } from "./generate.ts";
import { compilePolicy, identityIds } from "./reference.ts";
import { policyStateFrom } from "./state.ts";
import type { PodInfo, PolicyState } from "./types.ts";
import { wasmPolicyCompiler } from "./wasm.ts";

const exports = await loadCompiler();
const { compile } = wasmPolicyCompiler(exports);

function stateOf(seed: number, isolation: boolean): { state: PolicyState; nodes: Array<{ name: string; podCIDRs: string[] }> } {
  const w = randomWorld(seed, { isolation });
  const { state, errors } = policyStateFrom(w.objects);
  expect(errors).toEqual([]);
  // PolicyOptions hold canonical CIDRs (compiler/address.ts), as the agent reads them
  const canonical = (c: string) => {
    const [a, len] = ipaddr.parseCIDR(c);
    return `${a.kind() === "ipv6" ? (a as ipaddr.IPv6).toRFC5952String() : a.toString()}/${len}`;
  };
  return { state, nodes: w.nodes.map((n) => ({ name: n.name, podCIDRs: n.podCIDRs.map(canonical) })) };
}

/** One change to the state, picked by r: the next state (the given one is left as it was). */
function change(s: PolicyState, r: () => number): PolicyState {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const pods = [...s.pods];
  const policies = [...s.policies];
  const c = Math.floor(r() * 7);
  if (c === 0 && pods.length > 1) pods.splice(pods.indexOf(pick(pods)), 1);
  else if (c === 1) {
    const p = pick(pods);
    pods[pods.indexOf(p)] = { ...p, labels: { ...p.labels, app: pick(["web", "db", "api", "new"]) } };
  } else if (c === 2) {
    // a new pod on another's address with other labels: the address is held by two keys
    const p = pick(pods);
    pods.push({ ...p, name: `${p.name}-again`, labels: { fresh: "1" } } as PodInfo);
  } else if (c === 3 && policies.length) policies.splice(policies.indexOf(pick(policies)), 1);
  else if (c === 4) {
    const p = pick(pods);
    pods.push({ ...p, name: `${p.name}-twin` });
  } else if (c === 5) {
    const p = pick(pods);
    pods[pods.indexOf(p)] = { ...p, ips: [] };
  } else {
    // dual-stack: an address of the other family, inside or outside the world's blocks
    const p = pick(pods);
    const k = pods.indexOf(p);
    const other = p.ips[0]?.includes(":") ? `10.244.${k % 3}.${100 + k}` : ipaddr.IPv6.parse(`fd00:10:244:${k % 3}::${(100 + k).toString(16)}`).toRFC5952String();
    pods[k] = { ...p, ips: [...p.ips, other] };
  }
  return { ...s, pods, policies };
}

describe("compiler.wasm equals the reference", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const isolation = seed % 3 === 0;
    test(`random world ${seed}${isolation ? " with isolation modes" : ""}, every node`, () => {
      const { state, nodes } = stateOf(seed, isolation);
      for (const n of nodes) {
        const opts = { nodeName: n.name, podCIDRs: n.podCIDRs, maxIdentity: seed % 7 === 0 ? 6 : 0x7fff };
        expect(compile(state, opts)).toEqual(compilePolicy(state, opts));
      }
    });
  }

  for (let seed = 100; seed < 120; seed++) {
    test(`random world ${seed}: 12 changes in a row, each compiled with the last one's ids`, () => {
      const r = rng(seed);
      let { state, nodes } = stateOf(seed, seed % 2 === 0);
      const opts = { nodeName: nodes[0]!.name, podCIDRs: nodes[0]!.podCIDRs, maxIdentity: seed % 5 === 0 ? 9 : 0x7fff };
      let prevRef = new Map<string, number>();
      let prevWasm = new Map<string, number>();
      for (let step = 0; step < 12; step++) {
        const ref = compilePolicy(state, opts, prevRef);
        const wasm = compile(state, opts, prevWasm);
        expect(wasm).toEqual(ref);
        prevRef = identityIds(ref);
        prevWasm = identityIds(wasm);
        state = change(state, r);
      }
    });
  }
});

describe("compiler.wasm equals the reference on realistic clusters", () => {
  test("2,000 pods and 800 policies over 20 nodes, for 3 of them, compiled twice", () => {
    const w = realisticWorld({ pods: 2000, policies: 800, nodes: 20, seed: 7 });
    const { state, errors } = policyStateFrom(w.objects);
    expect(errors).toEqual([]);
    for (const n of w.nodes.slice(0, 3)) {
      const opts = { nodeName: n.name, podCIDRs: n.podCIDRs, maxIdentity: 0x7fff };
      const ref = compilePolicy(state, opts);
      expect(ref.allowIngress.length).toBeGreaterThan(100);
      expect(compile(state, opts)).toEqual(ref);
      // again, from what was packed the first time
      expect(compile(state, opts, identityIds(ref))).toEqual(compilePolicy(state, opts, identityIds(ref)));
    }
  });

  test("interned strings started afresh between compiles give the same tables", () => {
    // a limit every compile passes: each starts with a new interner and packs everything again
    const small = wasmPolicyCompiler(exports, { maxStrings: 1 });
    let prev = new Map<string, number>();
    let { state, nodes } = stateOf(44, true);
    const r = rng(44);
    const opts = { nodeName: nodes[0]!.name, podCIDRs: nodes[0]!.podCIDRs, maxIdentity: 0x7fff };
    for (let step = 0; step < 6; step++) {
      const ref = compilePolicy(state, opts, prev);
      expect(small.compile(state, opts, prev)).toEqual(ref);
      prev = identityIds(ref);
      state = change(state, r);
    }
  });
});
