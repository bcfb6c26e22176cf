// compiler.wasm against the TypeScript reference, on generated cluster states.
import { describe, expect, test } from "bun:test";
import { compile, referenceRings, type Tables } from "./reference/compile.ts";
import { ringSize } from "./reference/maglev.ts";
import { clusterStateFrom } from "./state.ts";
import { KEY_BYTES, writeBackendKey } from "./keys.ts";
import { EXPECTED_ABI, loadCompiler, wasmRings } from "./wasm.ts";
import { generate, shuffle } from "./generate.ts";

const c = await loadCompiler();

const bytes = (t: Tables) => JSON.stringify({ f: t.frontends, t: t.targets.map((x) => ({ ...x, ring: [...x.ring] })) });
const opts = { nodeName: "n1", nodeIPs: ["198.18.0.1", "fd00:18::1"], ringFactor: 25 };

test("compiler.wasm speaks the ABI this host expects", () => {
  expect(c.abiVersion()).toBe(EXPECTED_ABI);
});

test("a missing compiler.wasm is reported with its path", async () => {
  await expect(loadCompiler("/nonexistent/compiler.wasm")).rejects.toThrow(/compiler\.wasm/);
});

describe("WASM rings equal the reference", () => {
  for (let seed = 1; seed <= 25; seed++) {
    test(`generated cluster state, seed ${seed}, in two orders`, () => {
      const objs = generate(seed);
      const { state } = clusterStateFrom(objs);
      const ref = compile(state, opts, referenceRings);
      const wasm = compile(clusterStateFrom(shuffle(objs, seed + 1000)).state, opts, wasmRings(c));
      expect(ref.targets.some((t) => t.ringSize > 0)).toBe(true);
      expect(bytes(wasm)).toBe(bytes(ref));
    });
  }

  test("large rings: 1,000 backends at ring factor 100", () => {
    // 10.x.y.9 in numeric order is also key order
    const backends = [...Array(1000).keys()].map((i) => ({ ip: `10.${i >> 8}.${i & 255}.9`, port: 80 }));
    const keys = new Uint8Array(backends.length * KEY_BYTES);
    backends.forEach((b, i) => writeBackendKey(keys, i * KEY_BYTES, b.ip, b.port));
    const mk = () => [{ id: 1, service: "x", family: 4 as const, scope: "internal" as const, backends, keys, ringSize: ringSize(1000, 100), ring: new Int32Array(0), affinity: false }];
    const a = mk();
    const b = mk();
    referenceRings(a);
    wasmRings(c)(b);
    expect([...b[0]!.ring]).toEqual([...a[0]!.ring]);
  });
});
