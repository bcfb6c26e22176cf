// compiler.wasm against the TypeScript reference, on generated cluster states.
import { describe, expect, test } from "bun:test";
import { compile, referenceRings, type Tables } from "./reference/compile.ts";
import { ringSize } from "./reference/maglev.ts";
import { clusterStateFrom } from "./state.ts";
import { KEY_BYTES, writeBackendKey } from "./keys.ts";
import { EXPECTED_ABI, loadCompiler, wasmRings } from "./wasm.ts";

const c = await loadCompiler();

// A small deterministic generator (mulberry32), so that a failure names a seed to replay.
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generate(seed: number): unknown[] {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const objs: unknown[] = [];
  const nSvc = 1 + int(30);
  for (let s = 0; s < nSvc; s++) {
    const dual = r() < 0.3;
    const ports = [...Array(1 + int(3)).keys()].map((i) => ({ name: `p${i}`, port: 80 + i, protocol: r() < 0.3 ? "UDP" : "TCP", targetPort: r() < 0.5 ? `p${i}` : 8080 + i }));
    objs.push({
      kind: "Service",
      metadata: { name: `s${s}`, namespace: r() < 0.5 ? "default" : "prod" },
      spec: {
        type: r() < 0.2 ? "NodePort" : "ClusterIP",
        clusterIPs: dual ? [`10.96.${s}.1`, `fd00:96::${s.toString(16)}:1`] : [`10.96.${s}.1`],
        externalTrafficPolicy: r() < 0.3 ? "Local" : "Cluster",
        sessionAffinity: r() < 0.2 ? "ClientIP" : "None",
        ports: ports.map((p, i) => ({ ...p, nodePort: 30000 + s * 4 + i })),
      },
    });
    const ns = (objs[objs.length - 1] as { metadata: { namespace: string } }).metadata.namespace;
    for (const fam of dual ? [4, 6] : [4]) {
      for (let k = 0; k < 1 + int(3); k++) {
        objs.push({
          kind: "EndpointSlice",
          metadata: { name: `s${s}-${fam}-${k}`, namespace: ns, labels: { "kubernetes.io/service-name": `s${s}` } },
          addressType: fam === 4 ? "IPv4" : "IPv6",
          ports: ports.map((p, i) => ({ name: p.name, protocol: p.protocol, port: 9000 + i + k })),
          endpoints: [...Array(int(40)).keys()].map((e) => ({
            addresses: [fam === 4 ? `10.${100 + k}.${s}.${e + 1}` : `fd00:${k}::${s.toString(16)}:${(e + 1).toString(16)}`],
            conditions: { ready: r() < 0.8, serving: true, terminating: r() < 0.3 },
            nodeName: r() < 0.5 ? "n1" : "n2",
          })),
        });
      }
    }
  }
  return objs;
}

function shuffle<T>(xs: T[], seed: number): T[] {
  const r = rng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

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
