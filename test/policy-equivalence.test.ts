// The compile and the datapath's lookups against the independent oracle
// (testing/policy-oracle.ts): in random worlds using every NetworkPolicy feature, every
// connection between pods, and from outside addresses to pods, is decided as the oracle
// decides. Ingress is decided on the destination's node, egress on the source's: a
// connection crossing nodes passes when both nodes' tables let it.
import { describe, expect, test } from "bun:test";
import { allowed, type NetworkPolicy, type Pod, type Protocol, type World } from "../testing/policy-oracle.ts";
import { rng } from "../compiler/generate.ts";
import { externalAddresses, PROBE_PORTS, randomWorld, type GeneratedWorld } from "../compiler/policy/generate.ts";
import { compilePolicy, identityIds } from "../compiler/policy/reference.ts";
import { policyStateFrom } from "../compiler/policy/state.ts";
import type { PolicyTables } from "../compiler/policy/types.ts";
import { verdict } from "../compiler/policy/verdict.ts";

type O = Record<string, any>;

/** The oracle's world of the same objects; skein's isolation modes become the NetworkPolicies
 * they stand for (the via-Service admission aside, which the oracle has no notion of). */
function oracleWorld(g: GeneratedWorld): World {
  const objs = g.objects as O[];
  const namespaces = objs.filter((o) => o.kind === "Namespace").map((o) => ({ name: o.metadata.name, labels: o.metadata.labels }));
  const pods: Pod[] = objs
    .filter((o) => o.kind === "Pod")
    .map((o) => ({
      namespace: o.metadata.namespace,
      name: o.metadata.name,
      labels: o.metadata.labels,
      ip: o.status.podIP,
      node: o.spec.nodeName,
      containerPorts: [...o.spec.containers, ...(o.spec.initContainers ?? []).filter((c: O) => c.restartPolicy === "Always")]
        .flatMap((c: O) => c.ports ?? [])
        .map((p: O) => ({ name: p.name, port: p.containerPort, protocol: p.protocol })),
    }));
  const policies = objs.filter((o) => o.kind === "NetworkPolicy") as unknown as NetworkPolicy[];
  const ingressOnly = (namespace: string, name: string, podSelector: O, from: O) => ({
    metadata: { namespace, name },
    spec: { podSelector, policyTypes: ["Ingress"], ingress: [{ from: [from] }] },
  });
  for (const o of objs) {
    if (o.kind === "Namespace" && o.metadata.annotations?.["skein.io/isolation"] === "namespace") {
      policies.push(ingressOnly(o.metadata.name, "skein-isolation", { matchExpressions: [{ key: "skein.io/app", operator: "DoesNotExist" }] }, { podSelector: {} }));
    }
  }
  const apps = new Set(pods.flatMap((p) => (p.labels?.["skein.io/app"] ? [`${p.namespace}/${p.labels["skein.io/app"]}`] : [])));
  for (const a of apps) {
    const [ns, app] = a.split("/") as [string, string];
    const sel = { matchLabels: { "skein.io/app": app } };
    policies.push(ingressOnly(ns, `skein-app-${app}`, sel, { podSelector: sel }));
  }
  return { namespaces, pods, policies };
}

const PROTOCOLS: Protocol[] = ["TCP", "UDP", "SCTP"];

/** Every mismatch between the tables and the oracle in one world (at most a few). */
function mismatches(seed: number, isolation: boolean): string[] {
  const g = randomWorld(seed, { isolation });
  const { state, errors } = policyStateFrom(g.objects);
  if (errors.length) return [`seed ${seed}: the generator made objects refused: ${errors.join("; ")}`];
  const world = oracleWorld(g);
  const tables = new Map<string, PolicyTables>();
  let previous = new Map<string, number>();
  for (const n of g.nodes) {
    // each node's compile starts from the last one's ids: ids differ, decisions may not
    const t = compilePolicy(state, { nodeName: n.name, podCIDRs: n.podCIDRs, maxIdentity: 1 << 15 }, previous);
    tables.set(n.name, t);
    previous = identityIds(t);
  }
  const r = rng(seed * 7 + 1);
  const out: string[] = [];
  const sources: ({ pod: Pod } | { ip: string })[] = [...world.pods.map((pod) => ({ pod })), ...externalAddresses(g.family).map((ip) => ({ ip }))];
  for (const s of sources) {
    for (const d of world.pods) {
      for (let k = 0; k < 3; k++) {
        const proto = PROTOCOLS[Math.floor(r() * 3)]!;
        const port = PROBE_PORTS[Math.floor(r() * PROBE_PORTS.length)]!;
        const want = allowed(world, "pod" in s ? { namespace: s.pod.namespace, name: s.pod.name } : { ip: s.ip }, d, proto, port);
        const c = { src: "pod" in s ? s.pod.ip : s.ip, dst: d.ip, proto, port };
        const at = new Set(["pod" in s ? s.pod.node! : d.node!, d.node!]);
        const got = [...at].map((n) => ({ n, v: verdict(tables.get(n)!, c) }));
        const ok = got.every((x) => x.v.allowed);
        if (ok !== want.allowed) {
          const from = "pod" in s ? `${s.pod.namespace}/${s.pod.name} (${s.pod.ip} on ${s.pod.node})` : s.ip;
          out.push(`seed ${seed}${isolation ? " (isolation)" : ""}: ${from} → ${d.namespace}/${d.name} (${d.ip} on ${d.node}) ${proto}/${port}: oracle ${want.allowed} (${want.why}); tables ${got.map((x) => `${x.n}: ${x.v.why}`).join(" | ")}`);
          if (out.length >= 3) return out;
        }
      }
    }
  }
  return out;
}

describe("the compile's tables decide as the oracle", () => {
  test("random worlds, IPv4 and IPv6, every feature", () => {
    const bad: string[] = [];
    for (let seed = 1; seed <= 100 && bad.length < 3; seed++) bad.push(...mismatches(seed, false));
    expect(bad).toEqual([]);
  });

  test("random worlds with isolation modes (as the policies they stand for)", () => {
    const bad: string[] = [];
    for (let seed = 1001; seed <= 1030 && bad.length < 3; seed++) bad.push(...mismatches(seed, true));
    expect(bad).toEqual([]);
  });
});
