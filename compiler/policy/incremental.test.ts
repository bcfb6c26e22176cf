// The agent's policy compiler against the whole compile: after any sequence of changes, the
// tables it holds are those the reference compile makes of the same state with the ids of the
// tables before, whether it compiled or moved addresses between identities (a label change).
import { describe, expect, test } from "bun:test";
import { rng } from "../generate.ts";
import { PolicyCompiler } from "./incremental.ts";
import { compilePolicy } from "./reference.ts";
import { withServiceSources } from "./via-service.ts";
import type { NamespaceInfo, Policy, PodInfo, PolicyOptions, PolicyTables, Selector } from "./types.ts";

const OPTS: PolicyOptions = { nodeName: "n1", podCIDRs: ["10.244.1.0/24"], maxIdentity: 32767 };
const sel = (k: string, ...values: string[]): Selector => ({ requirements: [{ key: k, operator: "In", values: [...values].sort() }] });

function world(seed: number) {
  const r = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const namespaces: NamespaceInfo[] = ["a", "b"].map((name) => ({ name, labels: { "kubernetes.io/metadata.name": name, team: pick(["x", "y"]) }, isolation: r() < 0.2 }));
  const pods: PodInfo[] = [];
  for (let i = 0; i < 24; i++) {
    const node = i % 3 === 0 ? "n2" : "n1";
    const labels: Record<string, string> = { app: pick(["web", "db", "cache"]) };
    if (r() < 0.5) labels.tier = pick(["front", "back"]);
    if (r() < 0.15) labels["skein.io/app"] = pick(["shop", "blog"]);
    pods.push({ namespace: pick(["a", "b"]), name: `p${i}`, nodeName: node, ips: [`10.244.${node === "n1" ? 1 : 2}.${10 + i}`], labels, ports: r() < 0.5 ? [{ name: "http", protocol: "TCP", port: 8080 + (i % 2) }] : [] });
  }
  const policies: Policy[] = [];
  for (let i = 0; i < 5; i++) {
    const ns = pick(["a", "b"]);
    policies.push({
      namespace: ns,
      name: `pol${i}`,
      podSelector: r() < 0.2 ? { requirements: [] } : sel("app", pick(["web", "db", "cache"])),
      ingress: r() < 0.8 ? [{ peers: [{ kind: "pods", pods: sel("app", pick(["web", "db"])), ...(r() < 0.4 ? { namespaces: { requirements: [] } } : {}) }], ports: r() < 0.5 ? [{ protocol: "TCP", port: pick<number | string>([80, "http"]) }] : [] }] : null,
      egress: r() < 0.4 ? [{ peers: r() < 0.5 ? [{ kind: "cidr", cidr: "10.244.0.0/16", except: ["10.244.2.0/24"] }] : [], ports: [] }] : null,
    });
  }
  return { r, pick, namespaces, pods, policies };
}

const NODES = [{ name: "n1", podCIDRs: ["10.244.1.0/24"] }, { name: "n2", podCIDRs: ["10.244.2.0/24"] }];
const full = (pc: PolicyCompiler, before: PolicyTables | undefined) => withServiceSources(compilePolicy(pc.state(), OPTS, new Map((before?.identities ?? []).map((i) => [i.key, i.id]))), NODES, OPTS.nodeName);

describe("the agent's policy compiler", () => {
  test("label changes: moved or compiled, always the tables the whole compile makes", () => {
    let moved = 0;
    let compiled = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const w = world(seed);
      const pc = new PolicyCompiler(OPTS, compilePolicy);
      pc.setNodes(NODES);
      for (const n of w.namespaces) pc.setNamespace(n);
      for (const p of w.pods) pc.setPod(p);
      for (const p of w.policies) pc.setPolicy(p);
      let before = pc.compile()!.after;
      for (let step = 0; step < 12; step++) {
        // one to three pods relabelled, mostly to labels other pods have
        for (let k = 0; k < 1 + Math.floor(w.r() * 3); k++) {
          const p = w.pick(w.pods);
          const labels = w.r() < 0.8 ? { ...w.pick(w.pods).labels } : { app: "new", v: String(step) };
          const next = { ...p, labels };
          w.pods[w.pods.indexOf(p)] = next;
          pc.setPod(next);
        }
        const change = pc.compile();
        const want = full(pc, before);
        const got = change?.after ?? before;
        try {
          expect(got).toEqual(want);
        } catch (e) {
          throw new Error(`seed ${seed} step ${step} (${pc.lastKind}): ${(e as Error).message}`);
        }
        if (change) pc.lastKind === "moved" ? moved++ : compiled++;
        before = got;
      }
    }
    // both paths were taken, or the test would show nothing of one of them
    expect(moved).toBeGreaterThan(20);
    expect(compiled).toBeGreaterThan(20);
  });

  test("anything but a label change compiles everything", () => {
    const w = world(7);
    const pc = new PolicyCompiler(OPTS, compilePolicy);
    for (const p of w.pods) pc.setPod(p);
    pc.compile();
    pc.setPod({ ...w.pods[0]!, ips: ["10.244.1.200"] });
    pc.compile();
    expect(pc.lastKind).toBe("full");
    pc.setPolicy(w.policies[0]!);
    pc.compile();
    expect(pc.lastKind).toBe("full");
    expect(pc.compile()).toBeUndefined();
  });
});

describe("adopting the ids a table in the kernel holds", () => {
  const fill = (pc: PolicyCompiler, w: ReturnType<typeof world>, order: PodInfo[]) => {
    pc.setNodes(NODES);
    for (const n of w.namespaces) pc.setNamespace(n);
    for (const p of order) pc.setPod(p);
    for (const p of w.policies) pc.setPolicy(p);
  };
  const idsOf = (t: PolicyTables) => new Map(t.pods.map((p) => [p.ip, p.id]));
  const kernelOf = (t: PolicyTables, pods = idsOf(t)) => ({ pods, ranges: new Map(t.ranges.map((r) => [r.first, r.id])) });

  test("a restarted agent's first compile gives every identity the id the kernel has its addresses at, whatever order it saw them in", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = world(seed);
      // the earlier agent saw the pods one by one, in reverse, with a policy first: other ids
      const before = new PolicyCompiler(OPTS, compilePolicy);
      before.setNodes(NODES);
      for (const n of w.namespaces) before.setNamespace(n);
      before.setPolicy(w.policies[0]!);
      for (const p of [...w.pods].reverse()) {
        before.setPod(p);
        before.compile();
      }
      for (const p of w.policies) before.setPolicy(p);
      const inKernel = before.compile()?.after ?? before.tables()!;
      const fresh = new PolicyCompiler(OPTS, compilePolicy);
      fill(fresh, w, w.pods);
      const cold = fresh.compile()!.after;
      const restarted = new PolicyCompiler(OPTS, compilePolicy);
      restarted.adoptIds(kernelOf(inKernel));
      fill(restarted, w, w.pods);
      const after = restarted.compile()!.after;
      expect([seed, after]).toEqual([seed, inKernel]);
      // without the kernel's ids the order decides them, and they differ
      if (seed === 1) expect(idsOf(cold)).not.toEqual(idsOf(inKernel));
    }
  });

  test("an identity whose addresses the kernel has at different ids, at one the marks cannot hold, or not at all, gets a free id; only the first compile adopts ids", () => {
    const w = world(3);
    const pc = new PolicyCompiler(OPTS, compilePolicy);
    fill(pc, w, w.pods);
    const t = pc.compile()!.after;
    const [a, b] = t.identities.filter((i) => t.pods.filter((p) => p.id === i.id).length >= 2);
    const kernel = idsOf(t);
    // a's addresses split between two ids; b's at an id below FIRST_ID
    const aIps = t.pods.filter((p) => p.id === a!.id).map((p) => p.ip);
    kernel.set(aIps[0]!, 900);
    for (const p of t.pods.filter((p) => p.id === b!.id)) kernel.set(p.ip, 1);
    // c's at an id the mark bits cannot hold
    const c = t.identities.find((i) => i !== a && i !== b && t.pods.some((p) => p.id === i.id))!;
    for (const p of t.pods.filter((p) => p.id === c.id)) kernel.set(p.ip, OPTS.maxIdentity + 1);
    const restarted = new PolicyCompiler(OPTS, compilePolicy);
    restarted.adoptIds(kernelOf(t, kernel));
    fill(restarted, w, w.pods);
    const after = restarted.compile()!.after;
    const idOf = (key: string) => after.identities.find((i) => i.key === key)!.id;
    for (const i of t.identities) if (i !== a && i !== b && i !== c) expect([i.key, idOf(i.key)]).toEqual([i.key, i.id]);
    expect(idOf(a!.key)).not.toBe(900);
    expect(idOf(c.key)).toBeLessThanOrEqual(OPTS.maxIdentity);
    // and none of the three takes an id the kernel holds: its allow elements judge those ids until the replace is in
    const held = new Set([...kernel.values(), ...t.ranges.map((r) => r.id)]);
    for (const i of [a!, b!, c]) expect([i.key, held.has(idOf(i.key))]).toEqual([i.key, false]);
    expect(idOf(b!.key)).toBeGreaterThanOrEqual(3);
    expect(new Set(after.identities.map((i) => i.id)).size).toBe(after.identities.length);
    // only the first compile: a later one keeps its own ids
    restarted.setPod({ ...w.pods[0]!, labels: { app: "other" } });
    const next = restarted.compile()!.after;
    for (const i of after.identities) if (next.identities.some((x) => x.key === i.key)) expect(next.identities.find((x) => x.key === i.key)!.id).toBe(i.id);
  });
});
