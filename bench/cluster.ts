// The synthetic clusters the benchmarks share: n ClusterIP services, each with `eps`
// endpoints; `moved` gives one service one different endpoint (the one-endpoint change).
import { clusterStateFrom, type ClusterState } from "../compiler/state.ts";

export const clusterIP = (i: number) => `10.96.${i >> 8}.${i & 255}`;
export const endpointIP = (i: number, e: number) => `10.${64 + e}.${i >> 8}.${i & 255}`;

export function clusterObjects(n: number, eps = 10, moved = -1): unknown[] {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    objs.push({ kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: clusterIP(i), ports: [{ port: 80, targetPort: 8080 }] } });
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: [...Array(eps).keys()].map((e) => ({ addresses: [i === moved && e === 0 ? `10.${64 + eps}.${i >> 8}.${i & 255}` : endpointIP(i, e)], conditions: { ready: true } })),
    });
  }
  return objs;
}

export const cluster = (n: number, eps = 10, moved = -1): ClusterState => clusterStateFrom(clusterObjects(n, eps, moved)).state;

/**
 * The same services as kube-proxy's iptables mode writes them (iptables-restore input, nat
 * table): KUBE-SERVICES with one rule per service port, a KUBE-SVC chain per service with
 * one `statistic random` rule per endpoint, a KUBE-SEP chain per endpoint (hairpin mark,
 * DNAT). The baseline the nftables load is measured against.
 */
export function kubeProxyIptables(n: number, eps = 10): string {
  const out = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"];
  const hash = (s: string) => Bun.hash(s).toString(16).toUpperCase().padStart(16, "0");
  const rules: string[] = [
    "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
  ];
  for (let i = 0; i < n; i++) {
    const svc = `KUBE-SVC-${hash(`s${i}`)}`;
    out.push(`:${svc} - [0:0]`);
    rules.push(`-A KUBE-SERVICES -d ${clusterIP(i)}/32 -p tcp -m comment --comment "default/s${i} cluster IP" -m tcp --dport 80 -j ${svc}`);
    for (let e = 0; e < eps; e++) {
      const sep = `KUBE-SEP-${hash(`s${i}/${e}`)}`;
      const ip = endpointIP(i, e);
      out.push(`:${sep} - [0:0]`);
      const left = eps - e;
      rules.push(`-A ${svc} -m comment --comment "default/s${i} -> ${ip}:8080"${left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(10)}` : ""} -j ${sep}`);
      rules.push(`-A ${sep} -s ${ip}/32 -m comment --comment "default/s${i}" -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m comment --comment "default/s${i}" -m tcp -j DNAT --to-destination ${ip}:8080`);
    }
  }
  return [...out, ...rules, "COMMIT", ""].join("\n");
}
