// The incremental compiler against the full reference compile: after every step of a random
// sequence of changes, the same tables (ids and rings included), and only the changed
// services recompiled.
import { describe, expect, test } from "bun:test";
import { compile, type Tables } from "./reference/compile.ts";
import { clusterStateFrom, parseEndpointSlice, parseService } from "./state.ts";
import { IncrementalCompiler } from "./incremental.ts";
import { asMap, feed, generate, rng, type Obj } from "./generate.ts";
import { loadCompiler, wasmRings } from "./wasm.ts";

const show = (t: Tables) => JSON.stringify({ f: t.frontends, t: t.targets.map((x) => ({ ...x, ring: [...x.ring] })) });
const opts = { nodeName: "n1", nodeIPs: ["198.18.0.1", "fd00:18::1"], ringFactor: 25 };
const rings = wasmRings(await loadCompiler());

/** A step: each object of `a` kept, dropped or swapped for its namesake in `b`, plus `b`'s new ones. */
function step(a: Map<string, unknown>, b: Map<string, unknown>, seed: number): Map<string, unknown> {
  const r = rng(seed);
  const out = new Map<string, unknown>();
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = r();
    const pick = x < 0.7 ? (a.get(k) ?? (x < 0.2 ? b.get(k) : undefined)) : x < 0.9 ? b.get(k) : undefined;
    if (pick) out.set(k, pick);
  }
  return out;
}


describe("incremental compile equals the full compile", () => {
  for (let seed = 1; seed <= 15; seed++) {
    test(`seed ${seed}: 8 steps of adds, removals and changes`, () => {
      const ic = new IncrementalCompiler(opts, rings);
      let objs = new Map<string, unknown>();
      let ref: Tables | undefined;
      for (let i = 0; i < 8; i++) {
        const next = i === 0 ? asMap(generate(seed)) : step(objs, asMap(generate(seed * 100 + i)), seed * 1000 + i);
        const touched = feed(ic, objs, next);
        const changes = ic.compile();
        ref = compile(clusterStateFrom([...next.values()]).state, { ...opts, previous: ref }, rings);
        expect(show(ic.tables())).toBe(show(ref));
        // only services whose Service or slices were touched are recompiled
        const touchedSvc = new Set([...touched].map((k) => {
          const o = (next.get(k) ?? objs.get(k)) as Obj & { metadata: { labels?: Record<string, string> } };
          return o.kind === "Service" ? `${o.metadata.namespace}/${o.metadata.name}` : `${o.metadata.namespace}/${o.metadata.labels!["kubernetes.io/service-name"]}`;
        }));
        for (const c of changes) expect(touchedSvc.has(c.service)).toBe(true);
        objs = next;
      }
    });
  }

  test("nothing changed: nothing recompiled", () => {
    const ic = new IncrementalCompiler(opts, rings);
    feed(ic, new Map(), asMap(generate(3)));
    expect(ic.compile().length).toBeGreaterThan(0);
    expect(ic.compile()).toEqual([]);
  });

  test("a slice moving to another service recompiles both", () => {
    const ic = new IncrementalCompiler(opts, rings);
    const svc = (name: string) => parseService({ kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP: name === "a" ? "10.96.0.1" : "10.96.0.2", ports: [{ port: 80 }] } })!;
    const slice = (service: string) =>
      parseEndpointSlice({ kind: "EndpointSlice", metadata: { name: "x", namespace: "default", labels: { "kubernetes.io/service-name": service } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: [{ addresses: ["10.244.0.2"] }] })!;
    ic.setService(svc("a"));
    ic.setService(svc("b"));
    ic.setSlice(slice("a"));
    ic.compile();
    expect(ic.tables().targets.map((t) => t.backends.length)).toEqual([1, 0]);
    ic.setSlice(slice("b"));
    expect(ic.compile().map((c) => c.service)).toEqual(["default/a", "default/b"]);
    expect(ic.tables().targets.map((t) => t.backends.length)).toEqual([0, 1]);
  });
});
