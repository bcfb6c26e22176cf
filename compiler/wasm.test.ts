// compiler.wasm against the TypeScript reference, on generated cluster states: the same
// units, byte for byte (frontends, backends, keys, rings), whatever the order of the input.
import { describe, expect, test } from "bun:test";
import { compile, referenceUnits, unitsOf } from "./reference/compile.ts";
import { backendCount, type Tables } from "./tables.ts";
import { clusterStateFrom, parseEndpointSlice, parseService } from "./state.ts";
import { EXPECTED_ABI, loadCompiler, wasmUnits } from "./wasm.ts";
import { generate, shuffle } from "./generate.ts";

const c = await loadCompiler();

const bytes = (t: Pick<Tables, "frontends" | "targets">) => JSON.stringify({ f: t.frontends, t: t.targets.map((x) => ({ ...x, keys: [...x.keys], ring: [...x.ring] })) });
const opts = { nodeName: "n1", nodeIPs: ["198.18.0.1", "fd00:18::1"], ringFactor: 25 };

test("compiler.wasm speaks the ABI this host expects", () => {
  expect(c.abiVersion()).toBe(EXPECTED_ABI);
});

test("a missing compiler.wasm is reported with its path", async () => {
  await expect(loadCompiler("/nonexistent/compiler.wasm")).rejects.toThrow(/compiler\.wasm/);
});

describe("the compile in compiler.wasm equals the reference", () => {
  for (let seed = 1; seed <= 25; seed++) {
    test(`generated cluster state, seed ${seed}, in two orders`, () => {
      const objs = generate(seed);
      const ref = compile(clusterStateFrom(objs).state, opts);
      const wasm = compile(clusterStateFrom(shuffle(objs, seed + 1000)).state, opts, wasmUnits(c, opts));
      expect(ref.targets.some((t) => t.ringSize > 0)).toBe(true);
      expect(bytes(wasm)).toBe(bytes(ref));
      expect(wasm.conflicts).toEqual(ref.conflicts);
    });
  }

  const svc = (name: string, spec: Record<string, unknown>) => parseService({ kind: "Service", metadata: { namespace: "default", name }, spec })!;
  const slice = (name: string, service: string, endpoints: unknown[], ports: unknown[], addressType = "IPv4") =>
    parseEndpointSlice({ kind: "EndpointSlice", metadata: { namespace: "default", name, labels: { "kubernetes.io/service-name": service } }, addressType, ports, endpoints })!;
  const same = (batch: Parameters<ReturnType<typeof referenceUnits>["units"]>[0], o = opts) => {
    const ref = referenceUnits(o).units(batch);
    const wasm = unitsOf(wasmUnits(c, o), batch);
    expect(wasm.map(bytes)).toEqual(ref.map(bytes));
    return wasm;
  };

  test("large rings: 1,000 backends at ring factor 100, merge-sorted", () => {
    // addresses listed in reverse key order, one endpoint with many addresses
    const addrs = [...Array(1000).keys()].reverse().map((i) => `10.${i >> 8}.${i & 255}.9`);
    const u = same([{ service: svc("big", { clusterIP: "10.96.0.1", ports: [{ port: 80 }] }), slices: [slice("big-a", "big", [{ addresses: addrs.slice(0, 1) }, { addresses: addrs.slice(1) }], [{ port: 8080 }])] }], { ...opts, ringFactor: 100 });
    expect(backendCount(u[0]!.targets[0]!)).toBe(1000);
    // a slot indexes 1,000 backends: two bytes each
    expect(u[0]!.targets[0]!.ring).toBeInstanceOf(Uint16Array);
    expect(u[0]!.targets[0]!.ringSize).toBeGreaterThanOrEqual(100_000);
  });

  test("a whole-cluster compile runs in several calls, with the module's memory bounded, and the same units", async () => {
    const batch = [...Array(3000).keys()].map((i) => ({
      service: svc(`s${i}`, { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80 }] }),
      slices: [slice(`s${i}-a`, `s${i}`, [...Array(10).keys()].map((e) => ({ addresses: [`10.${64 + e}.${i >> 8}.${i & 255}`] })), [{ port: 8080 }])],
    }));
    const fresh = await loadCompiler();
    const before = fresh.memory.buffer.byteLength;
    const u = unitsOf(wasmUnits(fresh, opts), batch);
    expect(u.map(bytes)).toEqual(referenceUnits(opts).units(batch).map(bytes));
    expect(u[0]!.targets[0]!.ring).toBeInstanceOf(Uint8Array);
    // about 240k input words: four calls, none needing more than about 2 MB
    expect(fresh.memory.buffer.byteLength - before).toBeLessThan(3 << 20);
  });

  test("many ports, no endpoints, headless and an empty batch", () => {
    const ports = [...Array(40).keys()].map((i) => ({ name: `p${i}`, port: 1000 - i * 7, protocol: ["TCP", "UDP", "SCTP"][i % 3], nodePort: 30000 + i }));
    const u = same([
      { service: svc("wide", { type: "NodePort", clusterIPs: ["10.96.0.2", "fd00::2"], externalIPs: ["192.0.2.1"], ports }), slices: [] },
      { service: svc("headless", { clusterIP: "None", ports: [{ port: 80 }] }), slices: [] },
    ]);
    expect(u[0]!.targets.length).toBe(80);
    expect(u[1]).toEqual({ frontends: [], targets: [] });
    expect(wasmUnits(c, opts).units([])).toEqual([]);
  });

  test("duplicates across slices, draining endpoints, slices of the other family and without the port", () => {
    const s = svc("d", { clusterIPs: ["10.96.0.3"], ports: [{ name: "web", port: 80, targetPort: "http" }], internalTrafficPolicy: "Local", externalIPs: ["192.0.2.3"] });
    const port = [{ name: "web", port: 8080 }];
    same([
      {
        service: s,
        slices: [
          slice("d-a", "d", [{ addresses: ["10.1.0.2"], nodeName: "n1" }, { addresses: ["10.1.0.3"], nodeName: "n2" }], port),
          slice("d-b", "d", [{ addresses: ["10.1.0.2"], nodeName: "n1" }, { addresses: ["10.1.0.4"], conditions: { ready: false, serving: true, terminating: true }, nodeName: "n1" }], port),
          slice("d-c", "d", [{ addresses: ["10.1.0.5"] }], [{ name: "other", port: 9 }]),
          slice("d-d", "d", [{ addresses: ["fd00::5"] }], port, "IPv6"),
        ],
      },
      { service: svc("e", { clusterIPs: ["10.96.0.4"], ports: [{ port: 80 }] }), slices: [slice("e-a", "e", [{ addresses: ["10.1.0.6"], conditions: { ready: false, serving: true, terminating: true } }, { addresses: ["10.1.0.7"], conditions: { ready: false, serving: false, terminating: true } }], [{ port: 80 }])] },
    ]);
  });
});
