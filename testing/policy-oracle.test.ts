// Cases written from the Kubernetes NetworkPolicy documentation (URLs in policy-oracle.ts);
// each cites the rule it checks. "Concept" is the concept page, "API" the v1 API reference.
import { describe, expect, test } from "bun:test";
import { allowed, formatMatrix, matrix, type NetworkPolicy, type Pod, type Protocol, type Source, type World } from "./policy-oracle.ts";

const ref = (s: string) => {
  const [namespace, name] = s.split("/") as [string, string];
  return { namespace, name };
};

const PODS: Pod[] = [
  {
    namespace: "default", name: "db", labels: { role: "db" }, ip: "10.244.1.10", node: "n1",
    containerPorts: [{ name: "redis", port: 6379, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }],
  },
  { namespace: "default", name: "frontend", labels: { role: "frontend" }, ip: "10.244.1.11", node: "n1" },
  { namespace: "default", name: "client", labels: { role: "client" }, ip: "10.244.2.12", node: "n2" },
  { namespace: "default", name: "other", labels: { role: "other", tier: "back" }, ip: "10.244.2.13", node: "n2" },
  { namespace: "x", name: "client", labels: { role: "client" }, ip: "10.244.1.21", node: "n1" },
  { namespace: "x", name: "frontend", labels: { role: "frontend" }, ip: "10.244.2.20", node: "n2" },
  { namespace: "y", name: "client", labels: { role: "client" }, ip: "10.244.2.30", node: "n2" },
  { namespace: "y", name: "web", labels: { role: "web" }, ip: "10.244.1.31", node: "n1", containerPorts: [{ name: "http", port: 80 }] },
  { namespace: "z", name: "web", labels: { role: "web" }, ip: "10.244.2.40", node: "n2", containerPorts: [{ name: "http", port: 8080, protocol: "TCP" }] },
  { namespace: "z", name: "bare", ip: "10.244.1.41", node: "n1" },
  { namespace: "z", name: "svc", labels: { role: "svc" }, ip: "10.0.0.7", node: "n2" },
  { namespace: "z", name: "v6", labels: { role: "v6" }, ip: "fd00::5", node: "n2" },
];

function world(...policies: NetworkPolicy[]): World {
  return {
    namespaces: [
      { name: "default" },
      { name: "x", labels: { project: "myproject" } },
      { name: "y", labels: { user: "alice" } },
      { name: "z" },
    ],
    pods: PODS,
    policies,
    nodes: [{ name: "n1", ip: "192.168.0.1" }, { name: "n2", ip: "192.168.0.2" }],
  };
}

function policy(namespace: string, name: string, spec: NetworkPolicy["spec"]): NetworkPolicy {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace, name }, spec };
}

const src = (s: string): Source => (s.includes("/") ? ref(s) : s.startsWith("host:") ? { host: s.slice(5) } : { ip: s });
const can = (w: World, from: string, to: string, port: number, proto: Protocol = "TCP") => allowed(w, src(from), ref(to), proto, port).allowed;

// The concept page's own example, verbatim.
const testNetworkPolicy = policy("default", "test-network-policy", {
  podSelector: { matchLabels: { role: "db" } },
  policyTypes: ["Ingress", "Egress"],
  ingress: [{
    from: [
      { ipBlock: { cidr: "172.17.0.0/16", except: ["172.17.1.0/24"] } },
      { namespaceSelector: { matchLabels: { project: "myproject" } } },
      { podSelector: { matchLabels: { role: "frontend" } } },
    ],
    ports: [{ protocol: "TCP", port: 6379 }],
  }],
  egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/24" } }], ports: [{ protocol: "TCP", port: 5978 }] }],
});

const denyIngress = policy("default", "default-deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
const denyEgress = policy("default", "default-deny-egress", { podSelector: {}, policyTypes: ["Egress"] });
const denyAll = policy("default", "default-deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
const allowAllIngress = policy("default", "allow-all-ingress", { podSelector: {}, ingress: [{}], policyTypes: ["Ingress"] });
const allowAllEgress = policy("default", "allow-all-egress", { podSelector: {}, egress: [{}], policyTypes: ["Egress"] });

describe("no policies", () => {
  test("by default pods are non-isolated and accept traffic from any source (Concept: isolated and non-isolated pods)", () => {
    const w = world();
    expect(allowed(w, ref("x/client"), ref("default/db"), "TCP", 1).allowed).toBe(true);
    expect(can(w, "8.8.8.8", "y/web", 443, "UDP")).toBe(true);
    expect(allowed(w, ref("x/client"), ref("default/db"), "TCP", 1).why).toContain("not isolated");
  });
});

describe("the concept page's test-network-policy", () => {
  const w = world(testNetworkPolicy);
  test("allows TCP 6379 from role=frontend pods in the policy's namespace (podSelector peer)", () => {
    expect(can(w, "default/frontend", "default/db", 6379)).toBe(true);
    expect(allowed(w, ref("default/frontend"), ref("default/db"), "TCP", 6379).why).toContain("allowed by default/test-network-policy");
  });
  test("allows TCP 6379 from any pod of a project=myproject namespace (namespaceSelector peer)", () => {
    expect(can(w, "x/client", "default/db", 6379)).toBe(true);
    expect(can(w, "x/frontend", "default/db", 6379)).toBe(true);
  });
  test("denies pods matching neither selector: y/client's namespace lacks project=myproject, default/client lacks role=frontend", () => {
    expect(can(w, "y/client", "default/db", 6379)).toBe(false);
    expect(can(w, "default/client", "default/db", 6379)).toBe(false);
    expect(allowed(w, ref("y/client"), ref("default/db"), "TCP", 6379).why).toContain("ingress of default/db isolated by default/test-network-policy");
  });
  test("a rule allows traffic matching both from and ports: another TCP port is denied to an allowed peer", () => {
    expect(can(w, "default/frontend", "default/db", 6380)).toBe(false);
  });
  test("protocol is part of the port match: UDP 6379 is denied where TCP 6379 is allowed", () => {
    expect(can(w, "default/frontend", "default/db", 6379, "UDP")).toBe(false);
  });
  test("ipBlock 172.17.0.0/16 except 172.17.1.0/24 admits 172.17.0.0-172.17.0.255 and 172.17.2.0-172.17.255.255 only", () => {
    expect(can(w, "172.17.0.5", "default/db", 6379)).toBe(true);
    expect(can(w, "172.17.0.255", "default/db", 6379)).toBe(true);
    expect(can(w, "172.17.1.0", "default/db", 6379)).toBe(false);
    expect(can(w, "172.17.1.255", "default/db", 6379)).toBe(false);
    expect(can(w, "172.17.2.0", "default/db", 6379)).toBe(true);
    expect(can(w, "172.17.255.255", "default/db", 6379)).toBe(true);
    expect(can(w, "172.18.0.1", "default/db", 6379)).toBe(false);
  });
  test("egress from role=db pods is allowed to 10.0.0.0/24 on TCP 5978 only", () => {
    expect(can(w, "default/db", "z/svc", 5978)).toBe(true);
    expect(can(w, "default/db", "z/svc", 5979)).toBe(false);
    expect(can(w, "default/db", "z/svc", 5978, "UDP")).toBe(false);
    expect(allowed(w, ref("default/db"), ref("z/svc"), "TCP", 5979).why).toContain("egress of default/db isolated by default/test-network-policy");
  });
  test("egress isolation of role=db covers destinations outside 10.0.0.0/24, pods included", () => {
    expect(can(w, "default/db", "default/frontend", 5978)).toBe(false);
  });
  test("pods the policy does not select keep accepting and sending everything (Concept: other pods continue to accept all traffic)", () => {
    expect(can(w, "y/client", "default/frontend", 9999)).toBe(true);
    expect(can(w, "default/frontend", "y/client", 9999, "UDP")).toBe(true);
  });
  test("traffic from the node where the pod runs is always allowed (Concept: exception to IP blocks; kubelet probes)", () => {
    expect(can(w, "host:n1", "default/db", 9999)).toBe(true);
    expect(allowed(w, { host: "n1" }, ref("default/db"), "TCP", 9999).why).toContain("always allowed");
  });
  test("a host on another node is an ordinary address: n2's 192.168.0.2 is not in any allowed ipBlock", () => {
    expect(can(w, "host:n2", "default/db", 6379)).toBe(false);
  });
});

describe("default policies (Concept: default policies)", () => {
  test("default deny ingress isolates every pod of the namespace for ingress", () => {
    const w = world(denyIngress);
    expect(can(w, "default/frontend", "default/other", 80)).toBe(false);
    expect(can(w, "x/client", "default/db", 6379)).toBe(false);
    expect(allowed(w, ref("x/client"), ref("default/db"), "TCP", 6379).why).toContain("isolated by default/default-deny-ingress");
  });
  test("default deny ingress does not change egress: default pods still reach other namespaces", () => {
    expect(can(world(denyIngress), "default/frontend", "x/client", 80)).toBe(true);
  });
  test("a policy with no policyTypes and no rules defaults to Ingress only (Concept: Ingress will always be set)", () => {
    const w = world(policy("default", "bare", { podSelector: {} }));
    expect(can(w, "x/client", "default/db", 80)).toBe(false);
    expect(can(w, "default/db", "x/client", 80)).toBe(true);
  });
  test("default deny egress isolates egress only; ingress to the namespace stays open", () => {
    const w = world(denyEgress);
    expect(can(w, "default/frontend", "x/client", 80)).toBe(false);
    expect(can(w, "default/frontend", "default/db", 6379)).toBe(false);
    expect(can(w, "x/client", "default/frontend", 80)).toBe(true);
    expect(allowed(w, ref("default/frontend"), ref("x/client"), "TCP", 80).why).toContain("egress of default/frontend isolated by default/default-deny-egress");
  });
  test("default deny all blocks ingress and egress of the namespace's pods", () => {
    const w = world(denyAll);
    expect(can(w, "default/frontend", "default/other", 80)).toBe(false);
    expect(can(w, "x/client", "default/other", 80)).toBe(false);
    expect(can(w, "default/frontend", "x/client", 80)).toBe(false);
    expect(can(w, "x/client", "y/web", 80)).toBe(true);
  });
  test("allow all ingress admits everything even with a default deny beside it (policies are additive)", () => {
    const w = world(denyIngress, allowAllIngress);
    expect(can(w, "x/client", "default/other", 80)).toBe(true);
    expect(can(w, "8.8.8.8", "default/db", 53, "UDP")).toBe(true);
    expect(allowed(w, ref("x/client"), ref("default/other"), "TCP", 80).why).toContain("allowed by default/allow-all-ingress");
  });
  test("allow all egress admits everything a default deny egress blocked", () => {
    const w = world(denyEgress, allowAllEgress);
    expect(can(w, "default/frontend", "x/client", 80)).toBe(true);
    expect(can(w, "default/frontend", "z/svc", 5000, "SCTP")).toBe(true);
  });
});

describe("policyTypes defaults (API: spec.policyTypes)", () => {
  test("no policyTypes but an egress section: the policy isolates both directions", () => {
    const w = world(policy("default", "egress-only-rules", { podSelector: {}, egress: [{ to: [{ podSelector: {} }] }] }));
    expect(can(w, "default/frontend", "default/db", 80)).toBe(false); // ingress isolated, no ingress rule
    expect(can(w, "default/frontend", "x/client", 80)).toBe(false); // egress only within the namespace
    expect(can(w, "x/client", "default/db", 80)).toBe(false);
  });
  test("no policyTypes and an ingress section only: egress is not isolated", () => {
    const w = world(policy("default", "ingress-only", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }));
    expect(can(w, "default/frontend", "default/db", 80)).toBe(true);
    expect(can(w, "default/frontend", "x/client", 80)).toBe(true);
    expect(can(w, "x/client", "default/frontend", 80)).toBe(false);
  });
  test("policyTypes [Egress] with an ingress section: the ingress section has no effect", () => {
    const w = world(policy("default", "egress-typed", { podSelector: {}, policyTypes: ["Egress"], ingress: [{ from: [{ podSelector: {} }] }] }));
    expect(can(w, "x/client", "default/db", 80)).toBe(true);
    expect(can(w, "default/db", "x/client", 80)).toBe(false);
  });
  test("an empty ingress list under policyTypes [Ingress] allows no traffic (API: if this field is empty ... does not allow any traffic)", () => {
    const w = world(policy("default", "empty-ingress", { podSelector: { matchLabels: { role: "db" } }, policyTypes: ["Ingress"], ingress: [] }));
    expect(can(w, "default/frontend", "default/db", 6379)).toBe(false);
    expect(can(w, "default/frontend", "default/other", 6379)).toBe(true);
  });
});

describe("rules: from/to and ports (API: NetworkPolicyIngressRule, NetworkPolicyEgressRule)", () => {
  const only = (rule: object) => world(policy("default", "p", { podSelector: { matchLabels: { role: "db" } }, ingress: [rule] }));
  test("an empty from array matches all sources, like a missing one", () => {
    for (const w of [only({ from: [], ports: [{ port: 6379 }] }), only({ ports: [{ port: 6379 }] })]) {
      expect(can(w, "y/client", "default/db", 6379)).toBe(true);
      expect(can(w, "203.0.113.9", "default/db", 6379)).toBe(true);
      expect(can(w, "y/client", "default/db", 6380)).toBe(false);
    }
  });
  test("an empty ports array matches all ports and protocols, like a missing one", () => {
    for (const w of [only({ from: [{ podSelector: {} }], ports: [] }), only({ from: [{ podSelector: {} }] })]) {
      expect(can(w, "default/client", "default/db", 1)).toBe(true);
      expect(can(w, "default/client", "default/db", 65535, "UDP")).toBe(true);
      expect(can(w, "default/client", "default/db", 9, "SCTP")).toBe(true);
      expect(can(w, "x/client", "default/db", 1)).toBe(false);
    }
  });
  test("a port entry with a protocol and no port matches every port of that protocol only (API: port not provided matches all)", () => {
    const w = only({ ports: [{ protocol: "UDP" }] });
    expect(can(w, "x/client", "default/db", 53, "UDP")).toBe(true);
    expect(can(w, "x/client", "default/db", 40000, "UDP")).toBe(true);
    expect(can(w, "x/client", "default/db", 53, "TCP")).toBe(false);
  });
  test("protocol defaults to TCP (API: NetworkPolicyPort.protocol)", () => {
    const w = only({ ports: [{ port: 7000 }] });
    expect(can(w, "x/client", "default/db", 7000, "TCP")).toBe(true);
    expect(can(w, "x/client", "default/db", 7000, "UDP")).toBe(false);
    expect(can(w, "x/client", "default/db", 7000, "SCTP")).toBe(false);
  });
  test("SCTP and TCP on one port are distinct: allowing SCTP 9000 does not allow TCP or UDP 9000 (Concept: SCTP support)", () => {
    const w = only({ ports: [{ protocol: "SCTP", port: 9000 }] });
    expect(can(w, "x/client", "default/db", 9000, "SCTP")).toBe(true);
    expect(can(w, "x/client", "default/db", 9000, "TCP")).toBe(false);
    expect(can(w, "x/client", "default/db", 9000, "UDP")).toBe(false);
  });
  test("several ports in one rule are alternatives; peers and ports of one rule are both required", () => {
    const w = only({ from: [{ podSelector: { matchLabels: { role: "frontend" } } }], ports: [{ port: 80 }, { protocol: "UDP", port: 53 }] });
    expect(can(w, "default/frontend", "default/db", 80)).toBe(true);
    expect(can(w, "default/frontend", "default/db", 53, "UDP")).toBe(true);
    expect(can(w, "default/frontend", "default/db", 53, "TCP")).toBe(false);
    expect(can(w, "default/client", "default/db", 80)).toBe(false);
  });
  test("endPort 32000-32768 admits the inclusive range only (Concept: targeting a range of ports)", () => {
    const w = world(policy("default", "multi-port-egress", {
      podSelector: { matchLabels: { role: "db" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/24" } }], ports: [{ protocol: "TCP", port: 32000, endPort: 32768 }] }],
    }));
    expect(can(w, "default/db", "z/svc", 32000)).toBe(true);
    expect(can(w, "default/db", "z/svc", 32400)).toBe(true);
    expect(can(w, "default/db", "z/svc", 32768)).toBe(true);
    expect(can(w, "default/db", "z/svc", 31999)).toBe(false);
    expect(can(w, "default/db", "z/svc", 32769)).toBe(false);
    expect(can(w, "default/db", "z/svc", 32000, "UDP")).toBe(false);
  });
});

describe("named ports (API: port can be a numerical or named port on a pod)", () => {
  const webIngress = (port: NetworkPolicy["spec"]) => world(policy("y", "p", port), policy("z", "p", port));
  test("an ingress named port resolves per selected pod: http is 80 on y/web and 8080 on z/web", () => {
    const w = webIngress({ podSelector: { matchLabels: { role: "web" } }, ingress: [{ ports: [{ port: "http" }] }] });
    expect(can(w, "x/client", "y/web", 80)).toBe(true);
    expect(can(w, "x/client", "y/web", 8080)).toBe(false);
    expect(can(w, "x/client", "z/web", 8080)).toBe(true);
    expect(can(w, "x/client", "z/web", 80)).toBe(false);
  });
  test("an egress named port resolves against the destination pod's containerPorts", () => {
    const w = world(policy("default", "egress-http", { podSelector: { matchLabels: { role: "frontend" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] }));
    expect(can(w, "default/frontend", "y/web", 80)).toBe(true);
    expect(can(w, "default/frontend", "y/web", 8080)).toBe(false);
    expect(can(w, "default/frontend", "z/web", 8080)).toBe(true);
    expect(can(w, "default/frontend", "default/db", 80)).toBe(false); // db has no port named http
  });
  test("a named port resolves only on the rule's protocol: dns is UDP 53 on db", () => {
    const udp = world(policy("default", "dns-udp", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ ports: [{ protocol: "UDP", port: "dns" }] }] }));
    expect(can(udp, "x/client", "default/db", 53, "UDP")).toBe(true);
    expect(can(udp, "x/client", "default/db", 53, "TCP")).toBe(false);
    const tcp = world(policy("default", "dns-tcp", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ ports: [{ port: "dns" }] }] }));
    expect(can(tcp, "x/client", "default/db", 53, "UDP")).toBe(false);
    expect(can(tcp, "x/client", "default/db", 53, "TCP")).toBe(false);
  });
  test("a named port no pod has matches nothing, so the isolated pod admits nothing through that rule", () => {
    const w = world(policy("default", "nosuch", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ ports: [{ port: "nosuch" }] }] }));
    expect(can(w, "x/client", "default/db", 6379)).toBe(false);
    expect(allowed(w, ref("x/client"), ref("default/db"), "TCP", 6379).why).toContain("isolated by default/nosuch");
  });
});

describe("peers (Concept: behavior of to and from selectors)", () => {
  const from = (...peers: object[]) => world(policy("default", "p", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ from: peers }] }));
  test("namespaceSelector and podSelector in one peer: role=client pods in user=alice namespaces only", () => {
    const w = from({ namespaceSelector: { matchLabels: { user: "alice" } }, podSelector: { matchLabels: { role: "client" } } });
    expect(can(w, "y/client", "default/db", 1)).toBe(true);
    expect(can(w, "y/web", "default/db", 1)).toBe(false);
    expect(can(w, "x/client", "default/db", 1)).toBe(false);
    expect(can(w, "default/client", "default/db", 1)).toBe(false);
  });
  test("the same selectors as two peers: any pod of user=alice namespaces, or role=client pods of the policy's namespace", () => {
    const w = from({ namespaceSelector: { matchLabels: { user: "alice" } } }, { podSelector: { matchLabels: { role: "client" } } });
    expect(can(w, "y/client", "default/db", 1)).toBe(true);
    expect(can(w, "y/web", "default/db", 1)).toBe(true);
    expect(can(w, "default/client", "default/db", 1)).toBe(true);
    expect(can(w, "x/client", "default/db", 1)).toBe(false);
  });
  test("a podSelector peer alone selects in the policy's own namespace; an empty one selects all of that namespace's pods", () => {
    const w = from({ podSelector: {} });
    expect(can(w, "default/other", "default/db", 1)).toBe(true);
    expect(can(w, "x/client", "default/db", 1)).toBe(false);
  });
  test("an empty namespaceSelector selects every pod of every namespace, but no address outside the pods", () => {
    const w = from({ namespaceSelector: {} });
    expect(can(w, "z/bare", "default/db", 1)).toBe(true);
    expect(can(w, "x/client", "default/db", 1)).toBe(true);
    expect(can(w, "172.17.0.5", "default/db", 1)).toBe(false);
  });
  test("a namespace is selectable by name through kubernetes.io/metadata.name (Concept: targeting a namespace by its name)", () => {
    const w = from({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } });
    expect(can(w, "z/web", "default/db", 1)).toBe(true);
    expect(can(w, "y/web", "default/db", 1)).toBe(false);
  });
  test("matchExpressions In and NotIn; NotIn also matches pods without the key (Labels: set-based requirements)", () => {
    const inW = from({ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "role", operator: "In", values: ["frontend", "client"] }] } });
    expect(can(inW, "x/frontend", "default/db", 1)).toBe(true);
    expect(can(inW, "y/client", "default/db", 1)).toBe(true);
    expect(can(inW, "y/web", "default/db", 1)).toBe(false);
    expect(can(inW, "z/bare", "default/db", 1)).toBe(false);
    const notIn = from({ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "role", operator: "NotIn", values: ["frontend", "client"] }] } });
    expect(can(notIn, "y/web", "default/db", 1)).toBe(true);
    expect(can(notIn, "z/bare", "default/db", 1)).toBe(true);
    expect(can(notIn, "x/frontend", "default/db", 1)).toBe(false);
  });
  test("matchExpressions Exists and DoesNotExist", () => {
    const exists = from({ podSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] } });
    expect(can(exists, "default/other", "default/db", 1)).toBe(true);
    expect(can(exists, "default/client", "default/db", 1)).toBe(false);
    const absent = from({ namespaceSelector: { matchExpressions: [{ key: "user", operator: "DoesNotExist" }] } });
    expect(can(absent, "x/client", "default/db", 1)).toBe(true);
    expect(can(absent, "y/client", "default/db", 1)).toBe(false);
  });
  test("matchLabels and matchExpressions are ANDed", () => {
    const w = from({ podSelector: { matchLabels: { role: "other" }, matchExpressions: [{ key: "tier", operator: "In", values: ["front"] }] } });
    expect(can(w, "default/other", "default/db", 1)).toBe(false);
    const w2 = from({ podSelector: { matchLabels: { role: "other" }, matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }] } });
    expect(can(w2, "default/other", "default/db", 1)).toBe(true);
  });
  test("a policy's podSelector selects only pods in the policy's namespace", () => {
    const w = world(policy("x", "deny-x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }));
    expect(can(w, "y/client", "default/frontend", 80)).toBe(true);
    expect(can(w, "y/client", "x/frontend", 80)).toBe(false);
    expect(can(w, "x/client", "y/web", 80)).toBe(false);
  });
  test("a label change moves a pod in or out of a selection (the oracle reads labels as given)", () => {
    const w = from({ podSelector: { matchLabels: { role: "frontend" } } });
    expect(can(w, "default/client", "default/db", 1)).toBe(false);
    const relabelled = { ...w, pods: w.pods.map((p) => (p.namespace === "default" && p.name === "client" ? { ...p, labels: { role: "frontend" } } : p)) };
    expect(can(relabelled, "default/client", "default/db", 1)).toBe(true);
  });
});

describe("ipBlock (API: IPBlock; Concept: ipBlock)", () => {
  const from = (...peers: object[]) => world(policy("default", "p", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ from: peers }] }));
  test("an ipBlock matches pod addresses too (the oracle's stated choice), except included", () => {
    const w = from({ ipBlock: { cidr: "10.244.2.0/24", except: ["10.244.2.40/32"] } });
    expect(can(w, "x/frontend", "default/db", 1)).toBe(true); // 10.244.2.20
    expect(can(w, "z/web", "default/db", 1)).toBe(false); // 10.244.2.40, excepted
    expect(can(w, "x/client", "default/db", 1)).toBe(false); // 10.244.1.21
  });
  test("an egress ipBlock with except judges the destination pod's address", () => {
    const w = world(policy("default", "e", { podSelector: { matchLabels: { role: "db" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "10.244.0.0/16", except: ["10.244.1.0/24"] } }] }] }));
    expect(can(w, "default/db", "x/frontend", 80)).toBe(true);
    expect(can(w, "default/db", "y/web", 80)).toBe(false);
    expect(can(w, "default/db", "z/svc", 80)).toBe(false);
  });
  test("IPv6 blocks match IPv6 addresses and never IPv4 ones", () => {
    const w = world(policy("z", "v6", { podSelector: { matchLabels: { role: "v6" } }, ingress: [{ from: [{ ipBlock: { cidr: "2001:db8::/32", except: ["2001:db8:1::/48"] } }, { ipBlock: { cidr: "0.0.0.0/0" } }] }] }));
    expect(can(w, "2001:db8::1", "z/v6", 1)).toBe(true);
    expect(can(w, "2001:db8:1::1", "z/v6", 1)).toBe(false);
    expect(can(w, "2001:db9::1", "z/v6", 1)).toBe(false);
    expect(can(w, "198.51.100.1", "z/v6", 1)).toBe(true);
  });
  test("a host on another node is allowed when its address is in an allowed ipBlock", () => {
    const w = from({ ipBlock: { cidr: "192.168.0.0/24" } });
    expect(can(w, "host:n2", "default/db", 10250)).toBe(true);
    expect(can(world(denyAll), "host:n2", "default/db", 10250)).toBe(false);
  });
});

describe("both ends and the union (Concept: two sorts of pod isolation; policies are additive)", () => {
  test("the source's egress and the destination's ingress must both allow the connection", () => {
    const egressOk = policy("default", "egress-to-x", { podSelector: { matchLabels: { role: "frontend" } }, policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: { matchLabels: { project: "myproject" } } }] }] });
    const ingressShut = policy("x", "deny-in", { podSelector: {}, policyTypes: ["Ingress"] });
    expect(can(world(egressOk), "default/frontend", "x/client", 80)).toBe(true);
    const both = world(egressOk, ingressShut);
    expect(can(both, "default/frontend", "x/client", 80)).toBe(false);
    expect(allowed(both, ref("default/frontend"), ref("x/client"), "TCP", 80).why).toContain("ingress of x/client isolated by x/deny-in");
    const ingressOk = policy("x", "in-from-default", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "default" } } }] }] });
    expect(can(world(egressOk, ingressShut, ingressOk), "default/frontend", "x/client", 80)).toBe(true);
    expect(can(world(denyEgress, ingressOk), "default/frontend", "x/client", 80)).toBe(false);
  });
  test("two policies on one pod add up rule by rule, not as a cross product of their peers and ports", () => {
    const a = policy("default", "a", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: "frontend" } } }], ports: [{ port: 6379 }] }] });
    const b = policy("default", "b", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: [{ port: 80 }] }] });
    const w = world(a, b);
    expect(can(w, "default/frontend", "default/db", 6379)).toBe(true);
    expect(can(w, "default/client", "default/db", 80)).toBe(true);
    expect(can(w, "default/frontend", "default/db", 80)).toBe(false);
    expect(can(w, "default/client", "default/db", 6379)).toBe(false);
    expect(allowed(w, ref("default/client"), ref("default/db"), "TCP", 80).why).toContain("allowed by default/b");
    const c = policy("default", "c", { podSelector: { matchLabels: { role: "db" } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: "frontend" } } }] }] });
    expect(allowed(world(a, b, c), ref("default/frontend"), ref("default/db"), "TCP", 6379).why).toContain("allowed by default/a, default/c");
  });
  test("a pod cannot block access to itself (Concept: exception to other pods)", () => {
    const w = world(denyAll);
    expect(can(w, "default/db", "default/db", 6379)).toBe(true);
    expect(allowed(w, ref("default/db"), ref("default/db"), "UDP", 53).why).toContain("itself");
  });
  test("a node reaches its own pods under default deny all; pods' egress to that node is not this oracle's question", () => {
    const w = world(denyAll);
    expect(can(w, "host:n1", "default/db", 8080)).toBe(true);
    expect(can(w, "host:n2", "default/other", 8080)).toBe(true);
    expect(can(w, "host:n1", "default/other", 8080)).toBe(false);
  });
});

describe("input the API server rejects is an error naming the policy and field", () => {
  const bad = (spec: object) => () => can(world(policy("default", "bad", spec as NetworkPolicy["spec"])), "x/client", "y/web", 80);
  test("unknown protocol", () => {
    expect(bad({ podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP", port: 1 }] }] })).toThrow("NetworkPolicy default/bad: spec.ingress[0].ports[0].protocol");
  });
  test("invalid CIDR, including in a rule evaluation would not reach", () => {
    expect(bad({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] })).toThrow("spec.ingress[0].from[0].ipBlock.cidr");
    expect(bad({ podSelector: {}, ingress: [{}, { from: [{ ipBlock: { cidr: "10.0.0" } }] }] })).toThrow("spec.ingress[1].from[0].ipBlock.cidr");
  });
  test("except outside its cidr", () => {
    expect(bad({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/24", except: ["10.0.1.0/25"] } }] }] })).toThrow("spec.egress[0].to[0].ipBlock.except[0]");
  });
  test("unknown selector operator, ipBlock beside a selector, endPort with a named port, unknown policyType", () => {
    expect(bad({ podSelector: { matchExpressions: [{ key: "a", operator: "Gt", values: ["1"] }] } })).toThrow("spec.podSelector.matchExpressions[0].operator");
    expect(bad({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] })).toThrow("may not specify both");
    expect(bad({ podSelector: {}, ingress: [{ ports: [{ port: "http", endPort: 90 }] }] })).toThrow("spec.ingress[0].ports[0].endPort");
    expect(bad({ podSelector: {}, policyTypes: ["Sideways"] })).toThrow("spec.policyTypes[0]");
  });
});

describe("matrix", () => {
  test("the full matrix under the concept page's example, rows sources and columns destinations", () => {
    const pods = ["default/db", "default/frontend", "x/client", "y/client", "z/svc"].map(ref);
    const m = matrix(world(testNetworkPolicy), pods, "TCP", 6379);
    expect(m.keys).toEqual(["default/db", "default/frontend", "x/client", "y/client", "z/svc"]);
    // db's egress is limited to 10.0.0.0/24 on 5978; its ingress admits frontend and project=myproject on 6379.
    expect(formatMatrix(m)).toBe(
      [
        "                 01234",
        "default/db       .XXXX",
        "default/frontend ....." ,
        "x/client         .....",
        "y/client         X....",
        "z/svc            X....",
      ].join("\n"),
    );
    expect(m.why[3]![0]).toContain("ingress of default/db isolated by default/test-network-policy");
  });
});
