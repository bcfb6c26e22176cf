// Generated cluster states for the compiler's property tests: services of every kind the
// compiler handles, with slices of ready, terminating and non-local endpoints.
import ipaddr from "ipaddr.js";
import type { IncrementalCompiler } from "./incremental.ts";
import { parseEndpointSlice, parseService } from "./state.ts";

/** IPv6 text in its canonical form, the only one the state reads (compiler/address.ts) */
const v6 = (s: string) => ipaddr.IPv6.parse(s).toRFC5952String();

export type Obj = { kind: string; metadata: { namespace: string; name: string } };
export const keyOf = (o: unknown) => {
  const x = o as Obj;
  return `${x.kind} ${x.metadata.namespace}/${x.metadata.name}`;
};
export const asMap = (objs: unknown[]) => new Map(objs.map((o) => [keyOf(o), o]));

/** Hands the difference between two object lists to the compiler, as a watcher would. */
export function feed(ic: Pick<IncrementalCompiler, "setService" | "setSlice" | "deleteService" | "deleteSlice">, before: Map<string, unknown>, after: Map<string, unknown>): Set<string> {
  const touched = new Set<string>();
  for (const [k, o] of before) {
    if (after.has(k)) continue;
    const x = o as Obj;
    if (x.kind === "Service") ic.deleteService(x.metadata.namespace, x.metadata.name);
    else ic.deleteSlice(x.metadata.namespace, x.metadata.name);
    touched.add(k);
  }
  for (const [k, o] of after) {
    if (JSON.stringify(before.get(k)) === JSON.stringify(o)) continue;
    const x = o as Obj & Record<string, unknown>;
    if (x.kind === "Service") ic.setService(parseService(x)!);
    else ic.setSlice(parseEndpointSlice(x)!);
    touched.add(k);
  }
  return touched;
}

// A small deterministic generator (mulberry32), so that a failure names a seed to replay.
export function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function generate(seed: number): unknown[] {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const objs: unknown[] = [];
  const nSvc = 1 + int(30);
  for (let s = 0; s < nSvc; s++) {
    const dual = r() < 0.3;
    // ports 8, 9, 10, 11 so that numeric and text order differ
    const ports = [...Array(1 + int(4)).keys()].map((i) => ({ name: `p${i}`, port: 11 - i, protocol: ["TCP", "TCP", "UDP", "SCTP"][int(4)], targetPort: r() < 0.5 ? `p${i}` : 8080 + i }));
    const type = ["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"][int(4)];
    objs.push({
      kind: "Service",
      metadata: { name: `s${s}`, namespace: r() < 0.5 ? "default" : "prod" },
      spec: {
        type,
        clusterIPs: dual ? [`10.96.${s}.1`, v6(`fd00:96::${s.toString(16)}:1`)] : [`10.96.${s}.1`],
        externalTrafficPolicy: r() < 0.3 ? "Local" : "Cluster",
        internalTrafficPolicy: r() < 0.2 ? "Local" : "Cluster",
        // a small pool, so that services collide on external addresses now and then
        externalIPs: r() < 0.3 ? [`198.51.100.${int(3)}`] : [],
        sessionAffinity: r() < 0.2 ? "ClientIP" : "None",
        ports: ports.map((p, i) => ({ ...p, nodePort: 30000 + s * 4 + i })),
      },
      status: type === "LoadBalancer" ? { loadBalancer: { ingress: [{ ip: `203.0.113.${s}` }, ...(dual ? [{ ip: v6(`2001:db8::${s.toString(16)}`) }] : [])] } } : {},
    });
    const ns = (objs[objs.length - 1] as { metadata: { namespace: string } }).metadata.namespace;
    for (const fam of dual ? [4, 6] : [4]) {
      for (let k = 0; k < 1 + int(3); k++) {
        objs.push({
          kind: "EndpointSlice",
          metadata: { name: `s${s}-${fam}-${k}`, namespace: ns, labels: { "kubernetes.io/service-name": `s${s}` } },
          addressType: fam === 4 ? "IPv4" : "IPv6",
          ports: ports.map((p, i) => ({ name: p.name, protocol: p.protocol, port: 9000 + i + (r() < 0.2 ? 0 : k) })).filter(() => r() < 0.9),
          endpoints: [...Array(int(40)).keys()].map((e) => ({
            // now and then the same address in two slices of a service
            addresses: [fam === 4 ? `10.${100 + (r() < 0.1 ? 0 : k)}.${s}.${e + 1}` : v6(`fd00:${k}::${s.toString(16)}:${(e + 1).toString(16)}`)],
            conditions: { ready: r() < 0.8, serving: true, terminating: r() < 0.3 },
            nodeName: r() < 0.5 ? "n1" : "n2",
          })),
        });
      }
    }
  }
  return objs;
}

export function shuffle<T>(xs: T[], seed: number): T[] {
  const r = rng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

