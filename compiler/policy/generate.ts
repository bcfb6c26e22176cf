// Generated Namespaces, Pods and NetworkPolicies (as the API server hands them out) for the
// policy compile's tests and benchmark:
//   - randomWorld: small worlds using every feature, for property tests (reference against
//     the oracle, wasm against the reference);
//   - realisticWorld: a cluster shaped like real ones, for the compile's speed.
import ipaddr from "ipaddr.js";
import { rng } from "../generate.ts";

export interface NodeInfo {
  name: string;
  podCIDRs: string[];
}

export interface GeneratedWorld {
  /** Kubernetes objects: Namespaces, Pods, NetworkPolicies */
  objects: Record<string, unknown>[];
  nodes: NodeInfo[];
  family: 4 | 6;
}

const v6 = (s: string) => ipaddr.IPv6.parse(s).toRFC5952String();

/** Addresses of one family: node n's pod CIDR and its k-th address, and fixed outside ones. */
function plan(family: 4 | 6) {
  return family === 4
    ? {
        podCidr: (n: number) => `10.244.${n}.0/24`,
        podIp: (n: number, k: number) => `10.244.${n}.${10 + k}`,
        // blocks overlapping pod CIDRs, external ranges, and everything
        cidrs: ["10.0.0.0/8", "10.244.0.0/16", "10.244.1.0/25", "192.168.0.0/16", "0.0.0.0/0", "10.245.0.0/16"],
        // excepts per cidr above (index), to pick from: strict subsets of it
        except: [["10.244.1.0/24", "10.245.0.0/16"], ["10.244.0.0/24", "10.244.2.0/25"], ["10.244.1.0/26"], ["192.168.1.0/24"], ["10.0.0.0/8", "192.168.0.0/16"], ["10.245.1.0/24"]],
        external: ["192.168.1.5", "192.168.7.9", "10.245.1.3", "10.245.9.9", "8.8.8.8", "10.3.0.1"],
        host: (ip: string) => `${ip}/32`,
      }
    : {
        podCidr: (n: number) => `${v6(`fd00:10:244:${n}::`)}/64`,
        podIp: (n: number, k: number) => v6(`fd00:10:244:${n}::${(10 + k).toString(16)}`),
        cidrs: ["fd00::/16", "fd00:10:244::/48", "fd00:10:244:1::/65", "2001:db8::/32", "::/0", "fd00:10:245::/48"],
        except: [["fd00:10:244:1::/64", "fd00:10:245::/48"], ["fd00:10:244::/64", "fd00:10:244:2::/65"], ["fd00:10:244:1::/66"], ["2001:db8:1::/48"], ["fd00::/16", "2001:db8::/32"], ["fd00:10:245:1::/64"]],
        external: ["2001:db8:1::5", "2001:db8:7::9", "fd00:10:245:1::3", "fd00:10:245:9::9", "2001:4860::8888", "fd00:3::1"],
        host: (ip: string) => `${ip}/128`,
      };
}

const NAMED_PORTS = [
  { name: "http", containerPort: 80, protocol: "TCP" },
  { name: "http", containerPort: 8080, protocol: "TCP" },
  { name: "dns", containerPort: 53, protocol: "UDP" },
  { name: "dns", containerPort: 53, protocol: "TCP" },
  { name: "sig", containerPort: 9000, protocol: "SCTP" },
  { name: "metrics", containerPort: 9090, protocol: "TCP" },
];
/** The ports worth probing in a random world: every port its policies and pods name, and
 * ports just outside them. */
export const PROBE_PORTS = [53, 54, 79, 80, 81, 443, 8080, 9000, 9090];

/**
 * A small world using every NetworkPolicy feature: 3-4 namespaces with labels (some isolated
 * when `isolation`), pods on 2-3 nodes with labels and named ports (some in sidecars), and
 * policies with pod/namespace selectors alone and together, ipBlocks with excepts that
 * sometimes hold pod addresses, named ports, endPort, every protocol and policyTypes mix.
 */
export function randomWorld(seed: number, opts: { isolation?: boolean } = {}): GeneratedWorld {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const family: 4 | 6 = seed % 2 ? 6 : 4;
  const a = plan(family);
  const objects: Record<string, unknown>[] = [];
  const nsNames = ["default", "x", "y", "z"].slice(0, 3 + int(2));
  for (const n of nsNames) {
    const labels: Record<string, string> = {};
    if (r() < 0.6) labels.team = pick(["red", "blue"]);
    if (r() < 0.4) labels.env = pick(["prod", "dev"]);
    const annotations = opts.isolation && r() < 0.3 ? { "skein.io/isolation": "namespace" } : undefined;
    objects.push({ kind: "Namespace", metadata: { name: n, labels, ...(annotations ? { annotations } : {}) } });
  }
  const nodes: NodeInfo[] = [...Array(2 + int(2)).keys()].map((n) => ({ name: `n${n}`, podCIDRs: [a.podCidr(n)] }));
  const podIps: string[] = [];
  const nPods = 8 + int(7);
  for (let k = 0; k < nPods; k++) {
    const node = int(nodes.length);
    const labels: Record<string, string> = {};
    if (r() < 0.8) labels.app = pick(["web", "db", "api"]);
    if (r() < 0.5) labels.tier = pick(["front", "back"]);
    if (opts.isolation && r() < 0.25) labels["skein.io/app"] = pick(["shop", "blog"]);
    const ports = NAMED_PORTS.filter(() => r() < 0.3);
    // one name per pod, as Kubernetes wants
    const named = ports.filter((p, i) => ports.findIndex((q) => q.name === p.name) === i);
    const sidecar = named.length > 1 && r() < 0.5 ? named.pop() : undefined;
    const ip = a.podIp(node, k);
    podIps.push(ip);
    objects.push({
      kind: "Pod",
      metadata: { namespace: pick(nsNames), name: `p${k}`, labels },
      spec: {
        nodeName: nodes[node]!.name,
        containers: [{ name: "main", ports: [...named.map((p) => ({ ...p })), { containerPort: 7777 }] }],
        ...(sidecar ? { initContainers: [{ name: "side", restartPolicy: "Always", ports: [{ ...sidecar }] }, { name: "init", ports: [{ name: "unused", containerPort: 1 }] }] } : {}),
      },
      status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
    });
  }
  const selector = (keys: string[], values: Record<string, string[]>) => {
    const c = int(6);
    if (c === 0) return {};
    const key = pick(keys);
    if (c <= 2) return { matchLabels: { [key]: pick(values[key]!) } };
    const op = pick(["In", "NotIn", "Exists", "DoesNotExist"]);
    const vals = op === "In" || op === "NotIn" ? values[key]!.filter(() => r() < 0.6).concat(pick(values[key]!)) : undefined;
    return { matchExpressions: [{ key, operator: op, ...(vals ? { values: vals } : {}) }], ...(r() < 0.3 ? { matchLabels: { [pick(keys)]: pick(values[pick(keys)]!) } } : {}) };
  };
  const podKeys = ["app", "tier"];
  const podValues = { app: ["web", "db", "api"], tier: ["front", "back"] };
  const nsKeys = ["team", "env", "kubernetes.io/metadata.name"];
  const nsValues = { team: ["red", "blue"], env: ["prod", "dev"], "kubernetes.io/metadata.name": nsNames };
  const peer = () => {
    const c = int(7);
    if (c === 0) return { podSelector: selector(podKeys, podValues) };
    if (c === 1) return { namespaceSelector: selector(nsKeys, nsValues) };
    if (c === 2) return { podSelector: selector(podKeys, podValues), namespaceSelector: selector(nsKeys, nsValues) };
    if (c === 3) return { ipBlock: { cidr: a.host(pick(podIps)) } };
    const i = int(a.cidrs.length);
    const except = a.except[i]!.filter(() => r() < 0.5);
    // an except holding one pod address now and then
    const inside = podIps.filter((ip) => ipaddr.parse(ip).match(ipaddr.parseCIDR(a.cidrs[i]!)));
    if (inside.length && r() < 0.4) except.push(a.host(pick(inside)));
    return { ipBlock: { cidr: a.cidrs[i], ...(except.length || r() < 0.2 ? { except } : {}) } };
  };
  const port = () => {
    const c = int(6);
    const protocol = r() < 0.6 ? undefined : pick(["TCP", "UDP", "SCTP"]);
    const p: Record<string, unknown> = protocol ? { protocol } : {};
    if (c === 0) return p;
    if (c <= 2) return { ...p, port: pick(["http", "dns", "sig", "metrics", "nosuch"]) };
    const n = pick([53, 80, 443, 8080, 9000]);
    if (c === 3) return { ...p, port: n, endPort: n + pick([0, 1, 100]) };
    return { ...p, port: n };
  };
  const rules = (peersField: string) =>
    [...Array(int(3)).keys()].map(() => {
      const rule: Record<string, unknown> = {};
      const np = int(4);
      if (np > 0 || r() < 0.3) rule[peersField] = [...Array(np).keys()].map(peer);
      const nq = int(3);
      if (nq > 0 || r() < 0.3) rule.ports = [...Array(nq).keys()].map(port);
      return rule;
    });
  const nPol = 1 + int(5);
  for (let k = 0; k < nPol; k++) {
    const spec: Record<string, unknown> = { podSelector: selector(podKeys, podValues) };
    const types = pick([undefined, ["Ingress"], ["Egress"], ["Ingress", "Egress"], []]);
    if (types) spec.policyTypes = types;
    if (r() < 0.8) spec.ingress = rules("from");
    if (r() < 0.6) spec.egress = rules("to");
    objects.push({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: pick(nsNames), name: `pol${k}` }, spec });
  }
  return { objects, nodes, family };
}

/** The external addresses a random world of `family` probes from. */
export const externalAddresses = (family: 4 | 6) => plan(family).external;

/**
 * A cluster shaped like real ones: namespaces of apps with tiers (front, back, db), each app a
 * deployment (or two during a rollout) of pods spread over the nodes, with named ports per
 * tier. Policies, spread over the apps: a default deny per namespace, and per app policies
 * admitting a few apps of its namespace (and now and then of other namespaces by team) on a
 * few ports, numeric or named, some ipBlocks, some egress to DNS and to address ranges.
 */
export function realisticWorld(o: { pods: number; policies: number; nodes?: number; seed?: number }): GeneratedWorld {
  const r = rng(o.seed ?? 1);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const nNodes = o.nodes ?? Math.max(2, Math.ceil(o.pods / 100));
  const appsPerNs = 10;
  const podsPerApp = 20;
  const nApps = Math.max(1, Math.ceil(o.pods / podsPerApp));
  const nNs = Math.max(1, Math.ceil(nApps / appsPerNs));
  const objects: Record<string, unknown>[] = [];
  const teams = ["payments", "search", "platform", "data", "web"];
  objects.push({ kind: "Namespace", metadata: { name: "kube-system", labels: { team: "platform" } } });
  for (let n = 0; n < nNs; n++) objects.push({ kind: "Namespace", metadata: { name: `ns${n}`, labels: { team: teams[n % teams.length]!, env: n % 3 ? "prod" : "staging" } } });
  const tiers = ["front", "back", "db"] as const;
  const tierPorts = {
    front: [{ name: "http", containerPort: 8080 }, { name: "metrics", containerPort: 9090 }],
    back: [{ name: "grpc", containerPort: 9000 }, { name: "metrics", containerPort: 9090 }],
    db: [{ name: "postgres", containerPort: 5432 }],
  };
  const perNode = new Array<number>(nNodes).fill(0);
  const nodes: NodeInfo[] = [...Array(nNodes).keys()].map((n) => ({ name: `node${n}`, podCIDRs: [`10.${64 + (n >> 8)}.${n & 255}.0/24`] }));
  let made = 0;
  for (let a = 0; a < nApps && made < o.pods; a++) {
    const ns = `ns${Math.floor(a / appsPerNs)}`;
    const tier = tiers[a % 3]!;
    const hashes = r() < 0.1 ? ["6d4cf56db6", "7b9f8c5d4f"] : ["6d4cf56db6"];
    for (let k = 0; k < podsPerApp && made < o.pods; k++, made++) {
      const node = int(nNodes);
      const slot = perNode[node]!++;
      const ip = `10.${64 + (node >> 8)}.${node & 255}.${2 + (slot % 250)}`;
      objects.push({
        kind: "Pod",
        metadata: { namespace: ns, name: `app${a}-${k}`, labels: { app: `app${a}`, tier, "pod-template-hash": pick(hashes) } },
        spec: { nodeName: nodes[node]!.name, containers: [{ name: "main", ports: tierPorts[tier] }] },
        status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
      });
    }
  }
  for (let p = 0; p < o.policies; p++) {
    const a = p % nApps;
    const nsIdx = Math.floor(a / appsPerNs);
    const ns = `ns${nsIdx}`;
    if (p < nNs) {
      objects.push({ kind: "NetworkPolicy", metadata: { namespace: `ns${p}`, name: "default-deny" }, spec: { podSelector: {}, policyTypes: ["Ingress"] } });
      continue;
    }
    const tier = tiers[a % 3]!;
    const fromApps = [...new Set([...Array(1 + int(3)).keys()].map(() => `app${nsIdx * appsPerNs + int(appsPerNs)}`))];
    const from: Record<string, unknown>[] = [{ podSelector: { matchExpressions: [{ key: "app", operator: "In", values: fromApps }] } }];
    if (r() < 0.3) from.push({ namespaceSelector: { matchLabels: { team: pick(teams) } }, podSelector: { matchLabels: { tier: "front" } } });
    if (r() < 0.15) from.push({ ipBlock: { cidr: `192.168.${int(256)}.0/24` } });
    // the cluster's network but its pods (10.64.0.0/10) or services (10.96.0.0/12)
    if (r() < 0.05) from.push({ ipBlock: { cidr: "10.0.0.0/8", except: [pick(["10.64.0.0/10", "10.96.0.0/12"])] } });
    const ports = tierPorts[tier].filter(() => r() < 0.7).map((x) => (r() < 0.5 ? { port: x.name } : { protocol: "TCP", port: x.containerPort }));
    if (r() < 0.1) ports.push({ protocol: "TCP", port: 30000, endPort: 30100 } as never);
    const spec: Record<string, unknown> = {
      podSelector: { matchLabels: r() < 0.8 ? { app: `app${a}` } : { app: `app${a}`, tier } },
      ingress: [{ from, ...(ports.length ? { ports } : {}) }],
    };
    if (r() < 0.2) {
      spec.policyTypes = ["Ingress", "Egress"];
      spec.egress = [
        { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] },
        { to: [{ podSelector: { matchLabels: { tier: "db" } } }], ports: [{ port: "postgres" }] },
        ...(r() < 0.3 ? [{ to: [{ ipBlock: { cidr: `172.${16 + int(16)}.0.0/16` } }], ports: [{ protocol: "TCP", port: 443 }] }] : []),
      ];
    }
    objects.push({ kind: "NetworkPolicy", metadata: { namespace: ns, name: `app${a}-allow-${p}` }, spec });
  }
  return { objects, nodes, family: 4 };
}
