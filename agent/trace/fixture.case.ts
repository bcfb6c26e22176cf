// A small dual-stack cluster of two nodes for the trace's tests: Services with and without
// endpoints, a NodePort with externalTrafficPolicy Local, pods on both nodes, and a policy
// that lets only app=client reach app=web on port 8080; optionally an isolated namespace
// (skein.io/isolation) with a Service. Kubernetes objects, as a state file
// holds them.
export const NODE_A = "node-a";
export const NODE_B = "node-b";

const node = (name: string, ip: string, ip6: string, cidrs: string[]) => ({ apiVersion: "v1", kind: "Node", metadata: { name }, spec: { podCIDRs: cidrs }, status: { addresses: [{ type: "InternalIP", address: ip }, { type: "InternalIP", address: ip6 }] } });
const pod = (ns: string, name: string, nodeName: string, ips: string[], labels: Record<string, string>) => ({ apiVersion: "v1", kind: "Pod", metadata: { namespace: ns, name, labels }, spec: { nodeName }, status: { podIPs: ips.map((ip) => ({ ip })) } });
const slice = (ns: string, name: string, service: string, type: "IPv4" | "IPv6", port: number, eps: Array<[string, string]>, proto = "TCP") => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { namespace: ns, name, labels: { "kubernetes.io/service-name": service } },
  addressType: type,
  ports: [{ port, protocol: proto }],
  endpoints: eps.map(([ip, n]) => ({ addresses: [ip], nodeName: n, conditions: { ready: true } })),
});

export function cluster(o: { policy?: boolean; egress?: boolean; isolated?: boolean; underlayB?: string } = {}): unknown[] {
  return [
    node(NODE_A, "192.168.50.11", "fd50::11", ["10.244.1.0/24", "fd00:10:244:1::/64"]),
    node(NODE_B, o.underlayB ?? "192.168.50.12", "fd50::12", ["10.244.2.0/24", "fd00:10:244:2::/64"]),
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } },
    pod("default", "client", NODE_A, ["10.244.1.5", "fd00:10:244:1::5"], { app: "client" }),
    pod("default", "other", NODE_A, ["10.244.1.6", "fd00:10:244:1::6"], { app: "other" }),
    pod("default", "web-a", NODE_A, ["10.244.1.10", "fd00:10:244:1::10"], { app: "web" }),
    pod("default", "web-b", NODE_B, ["10.244.2.10", "fd00:10:244:2::10"], { app: "web" }),
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { namespace: "default", name: "web" },
      spec: { type: "NodePort", clusterIP: "10.96.0.10", clusterIPs: ["10.96.0.10", "fd00:96::10"], ipFamilies: ["IPv4", "IPv6"], ports: [{ port: 80, targetPort: 8080, nodePort: 30080, protocol: "TCP" }], externalTrafficPolicy: "Local" },
    },
    slice("default", "web-4", "web", "IPv4", 8080, [["10.244.1.10", NODE_A], ["10.244.2.10", NODE_B]]),
    slice("default", "web-6", "web", "IPv6", 8080, [["fd00:10:244:1::10", NODE_A], ["fd00:10:244:2::10", NODE_B]]),
    { apiVersion: "v1", kind: "Service", metadata: { namespace: "default", name: "empty" }, spec: { clusterIP: "10.96.0.20", ports: [{ port: 53, protocol: "UDP" }] } },
    { apiVersion: "v1", kind: "Service", metadata: { namespace: "default", name: "sticky" }, spec: { clusterIP: "10.96.0.30", sessionAffinity: "ClientIP", ports: [{ port: 80, targetPort: 8080 }] } },
    slice("default", "sticky-1", "sticky", "IPv4", 8080, [["10.244.1.10", NODE_A], ["10.244.2.10", NODE_B]]),
    { apiVersion: "v1", kind: "Service", metadata: { namespace: "default", name: "near" }, spec: { clusterIP: "10.96.0.50", internalTrafficPolicy: "Local", ports: [{ port: 80, targetPort: 8080 }] } },
    slice("default", "near-1", "near", "IPv4", 8080, [["10.244.2.10", NODE_B]]),
    ...(o.isolated
      ? [
          // skein.io/isolation: reachable from its own namespace, and through its Services from anywhere
          { apiVersion: "v1", kind: "Namespace", metadata: { name: "iso", annotations: { "skein.io/isolation": "namespace" } } },
          pod("iso", "db", NODE_B, ["10.244.2.20"], { app: "db" }),
          { apiVersion: "v1", kind: "Service", metadata: { namespace: "iso", name: "db" }, spec: { clusterIP: "10.96.0.40", ports: [{ port: 5432 }] } },
          slice("iso", "db-1", "db", "IPv4", 5432, [["10.244.2.20", NODE_B]]),
        ]
      : []),
    ...(o.egress
      ? [
          {
            apiVersion: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            metadata: { namespace: "default", name: "other-egress" },
            spec: { podSelector: { matchLabels: { app: "other" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.96.0.0/16"] } }], ports: [{ protocol: "UDP", port: 53 }] }] },
          },
        ]
      : []),
    ...(o.policy
      ? [
          {
            apiVersion: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            metadata: { namespace: "default", name: "web-from-client" },
            spec: { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: 8080 }] }] },
          },
        ]
      : []),
  ];
}
