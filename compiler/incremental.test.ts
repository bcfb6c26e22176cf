// The incremental compiler against the full reference compile: after every step of a random
// sequence of changes, the same tables (ids and rings included), and only the changed
// services recompiled.
import { describe, expect, test } from "bun:test";
import { compile } from "./reference/compile.ts";
import { backendCount, type Tables } from "./tables.ts";
import { clusterStateFrom, parseEndpointSlice, parseService } from "./state.ts";
import { IncrementalCompiler } from "./incremental.ts";
import { asMap, feed, generate, rng, type Obj } from "./generate.ts";
import { loadCompiler, wasmUnits } from "./wasm.ts";

const show = (t: Tables) => JSON.stringify({ f: t.frontends, t: t.targets.map((x) => ({ ...x, ring: [...x.ring] })) });
const opts = { nodeName: "n1", nodeIPs: ["198.18.0.1", "fd00:18::1"], ringFactor: 25 };
const c = await loadCompiler();

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
  let seen = 0;
  for (let seed = 1; seed <= 15; seed++) {
    test(`seed ${seed}: 8 steps of adds, removals and changes`, () => {
      const ic = new IncrementalCompiler(opts, wasmUnits(c, opts));
      let objs = new Map<string, unknown>();
      let ref: Tables | undefined;
      let conflicts = 0;
      for (let i = 0; i < 8; i++) {
        const next = i === 0 ? asMap(generate(seed)) : step(objs, asMap(generate(seed * 100 + i)), seed * 1000 + i);
        const touched = feed(ic, objs, next);
        const changes = ic.compile();
        ref = compile(clusterStateFrom([...next.values()]).state, { ...opts, previous: ref });
        expect(show(ic.tables())).toBe(show(ref));
        expect(ic.conflicts()).toEqual(ref.conflicts);
        conflicts += ref.conflicts.length;
        // only services whose Service or slices were touched are recompiled…
        const touchedSvc = new Set([...touched].map((k) => {
          const o = (next.get(k) ?? objs.get(k)) as Obj & { metadata: { labels?: Record<string, string> } };
          return o.kind === "Service" ? `${o.metadata.namespace}/${o.metadata.name}` : `${o.metadata.namespace}/${o.metadata.labels!["kubernetes.io/service-name"]}`;
        }));
        // and services that gained or lost a shared frontend, with their targets as they were
        for (const c of changes) if (!touchedSvc.has(c.service)) expect(c.after.targets).toBe(c.before.targets);
        objs = next;
      }
      seen += conflicts;
    });
  }

  test("the generated states do collide on frontends", () => expect(seen).toBeGreaterThan(0));

  test("nothing changed: nothing recompiled", () => {
    const ic = new IncrementalCompiler(opts, wasmUnits(c, opts));
    feed(ic, new Map(), asMap(generate(3)));
    expect(ic.compile().length).toBeGreaterThan(0);
    expect(ic.compile()).toEqual([]);
  });

  test("a slice moving to another service recompiles both", () => {
    const ic = new IncrementalCompiler(opts, wasmUnits(c, opts));
    const svc = (name: string) => parseService({ kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP: name === "a" ? "10.96.0.1" : "10.96.0.2", ports: [{ port: 80 }] } })!;
    const slice = (service: string) =>
      parseEndpointSlice({ kind: "EndpointSlice", metadata: { name: "x", namespace: "default", labels: { "kubernetes.io/service-name": service } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: [{ addresses: ["10.244.0.2"] }] })!;
    ic.setService(svc("a"));
    ic.setService(svc("b"));
    ic.setSlice(slice("a"));
    ic.compile();
    expect(ic.tables().targets.map((t) => backendCount(t))).toEqual([1, 0]);
    ic.setSlice(slice("b"));
    expect(ic.compile().map((c) => c.service)).toEqual(["default/a", "default/b"]);
    expect(ic.tables().targets.map((t) => backendCount(t))).toEqual([0, 1]);
  });
});

test("two Services on one external address and port: the first by name serves it, the other takes over when it goes", () => {
  const ic = new IncrementalCompiler(opts, wasmUnits(c, opts));
  const svc = (name: string, clusterIP: string) =>
    parseService({ kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP, externalIPs: ["203.0.113.7"], ports: [{ port: 80 }] } })!;
  ic.setService(svc("b", "10.96.0.2"));
  ic.setService(svc("a", "10.96.0.1"));
  ic.compile();
  const servedBy = () => ic.tables().frontends.filter((f) => f.ip === "203.0.113.7").map((f) => ic.tables().targets.find((t) => t.id === f.target)!.service);
  expect(servedBy()).toEqual(["default/a:80/TCP"]);
  expect(ic.conflicts()).toEqual(["Service default/b: external frontend 203.0.113.7 TCP/80 is already served by Service default/a; left out"]);
  ic.deleteService("default", "a");
  const changes = ic.compile();
  // b was not touched, yet its unit changes: it gains the frontend
  expect(changes.map((c) => [c.service, c.before.frontends.length, c.after.frontends.length])).toEqual([
    ["default/a", 2, 0],
    ["default/b", 1, 2],
  ]);
  expect(servedBy()).toEqual(["default/b:80/TCP"]);
  expect(ic.conflicts()).toEqual([]);
});
