// The virtual underlay the multi-node tests run on, built from a Lab's namespaces:
//
//   segment a 192.168.50.0/24 (bridge br0): n1 .11, n2 .12, r1 .1, nat's public side .100,
//                                           the control plane cp .5, the outside host out .200
//   segment b 192.168.60.0/24 (bridge br1): r1 .1, n3 .13 (n1/n2 only through r1)
//   segment nat 10.99.0.0/24 (bridge br2):  nat's private side .1, n4 .14, n5 .15
//
// All bridges live in one namespace ("ul"), every other host hangs on one by a veth whose
// own end is eth0 (eth1 for a router's second leg). The routers count what they forward, per
// flow, so that a test can tell which pairs of nodes went through them and which did not.
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { deleteNetns } from "../agent/sys/netns.ts";
import { runAsync } from "../agent/sys/exec.ts";
import { ApiDriver } from "./apiserver/driver.ts";
import type { Lab } from "./lab.ts";

export type Segment = "a" | "b" | "nat";

export const SEGMENTS: Record<Segment, { subnet: string; prefix: string; bridge: string; gateway: string; router: "r1" | "nat" }> = {
  a: { subnet: "192.168.50.0/24", prefix: "192.168.50.", bridge: "br0", gateway: "192.168.50.1", router: "r1" },
  b: { subnet: "192.168.60.0/24", prefix: "192.168.60.", bridge: "br1", gateway: "192.168.60.1", router: "r1" },
  nat: { subnet: "10.99.0.0/24", prefix: "10.99.0.", bridge: "br2", gateway: "10.99.0.1", router: "nat" },
};

/** the NAT router's address on segment a: the public address of every node behind it */
export const NAT_PUBLIC = "192.168.50.100";
export const OUTSIDE_ADDRESS = "192.168.50.200";
export const CONTROL_PLANE_ADDRESS = "192.168.50.5";
export const CLUSTER_CIDR = "10.244.0.0/16";
export const SERVICE_CIDR = "10.96.0.0/16";
import { VXLAN_PORT } from "../agent/sys/devices.ts";
export { VXLAN_PORT };
/** the namespaces (lab short names) of the underlay's fixed hosts */
export const BRIDGE_NS = "ul";
export const R1_NS = "r1";
export const NAT_NS = "nat";
export const OUTSIDE_NS = "out";
export const CONTROL_PLANE_NS = "cp";
/** the nftables table the routers count in (never skein's own `inet skein`) */
export const COUNT_TABLE = "skeinlab";

/** Where a node sits: `index` gives its pod CIDR 10.244.<index>.0/24, `host` its address's
 * last byte, `mtu` its underlay link's MTU (default 1500). */
export interface NodeDef {
  name: string;
  index: number;
  segment: Segment;
  host: number;
  mtu?: number;
}

export const DEFAULT_NODES: Record<string, NodeDef> = {
  n1: { name: "n1", index: 1, segment: "a", host: 11 },
  n2: { name: "n2", index: 2, segment: "a", host: 12 },
  n3: { name: "n3", index: 3, segment: "b", host: 13 },
  n4: { name: "n4", index: 4, segment: "nat", host: 14 },
  n5: { name: "n5", index: 5, segment: "nat", host: 15 },
};

export interface UnderlayNode {
  /** the Node's name, and the lab short name of its namespace */
  name: string;
  ns: string;
  index: number;
  /** 10.244.<index>.0/24 */
  podCIDR: string;
  /** the underlay (tunnel endpoint) address, the Node's InternalIP */
  address: string;
  /** the CIDR of `address`'s interface */
  subnet: string;
  /** the underlay interface inside the node's namespace */
  dev: string;
  mtu: number;
  /** its default route's next hop */
  gateway: string;
  /** the router namespace `gateway` belongs to */
  router: "r1" | "nat";
  segment: Segment;
  /** the NAT's public address, for nodes behind it */
  public?: string;
}

export interface Underlay {
  lab: Lab;
  /** the nodes, in the order they were asked for (and added) */
  nodes: UnderlayNode[];
  /** a node by name; throws for one the underlay does not have */
  node(name: string): UnderlayNode;
  /** attaches another node (default-table name or a NodeDef) after the build */
  addNode(n: string | NodeDef): Promise<UnderlayNode>;
  /** removes a node's namespace (and with it its veth), and what runs inside it */
  removeNode(name: string): void;
  /** points the NAT's UDP 4789 port forward at a node behind it (undefined: none) */
  setPortForward(name: string | undefined): Promise<void>;
  /** the node the port forward points at */
  portForward: string | undefined;
  /** another host on a segment (e.g. more NATS servers): its namespace `ns`, eth0 at
   * <segment prefix><host>, default route via the segment's router; returns the address */
  addHost(ns: string, segment: Segment, host: number): Promise<string>;
  controlPlane: { ns: string; address: string };
  outside: { ns: string; address: string };
}

export interface UnderlayOptions {
  /** names of DEFAULT_NODES or definitions of others (default: n1…n5) */
  nodes?: Array<string | NodeDef>;
  /** the node behind the NAT that UDP 4789 to the public address goes to (default: the first node on segment nat) */
  portForward?: string;
}

const NODE_NAME = /^[a-z][a-z0-9-]{0,11}$/;

function nodeDef(n: string | NodeDef): NodeDef {
  const d = typeof n === "string" ? DEFAULT_NODES[n] : n;
  if (!d) throw new Error(`unknown node ${JSON.stringify(n)}: give a NodeDef for nodes other than ${Object.keys(DEFAULT_NODES).join(", ")}`);
  if (!NODE_NAME.test(d.name)) throw new Error(`node name ${JSON.stringify(d.name)} must match ${NODE_NAME} (it also names a veth)`);
  if (!Number.isInteger(d.index) || d.index < 1 || d.index > 255) throw new Error(`node ${d.name}: index ${d.index} must be 1-255 (pod CIDR 10.244.<index>.0/24)`);
  if (!Number.isInteger(d.host) || d.host < 2 || d.host > 254) throw new Error(`node ${d.name}: host ${d.host} must be 2-254`);
  if (d.mtu !== undefined && (!Number.isInteger(d.mtu) || d.mtu < 1280 || d.mtu > 9000)) throw new Error(`node ${d.name}: mtu ${d.mtu} must be 1280-9000`);
  return d;
}

function underlayNode(d: NodeDef): UnderlayNode {
  const seg = SEGMENTS[d.segment];
  return {
    name: d.name,
    ns: d.name,
    index: d.index,
    podCIDR: `10.244.${d.index}.0/24`,
    address: `${seg.prefix}${d.host}`,
    subnet: seg.subnet,
    dev: "eth0",
    mtu: d.mtu ?? 1500,
    gateway: seg.gateway,
    router: seg.router,
    segment: d.segment,
    ...(d.segment === "nat" ? { public: NAT_PUBLIC } : {}),
  };
}

/** `ip -batch` in one namespace: one exec for all of a host's links, addresses and routes. */
async function ipBatch(lab: Lab, ns: string, lines: string[]): Promise<void> {
  await runAsync(["ip", "-n", lab.name(ns), "-batch", "-"], { stdin: lines.join("\n") + "\n" });
}

async function sysctls(lab: Lab, ns: string, forward: boolean): Promise<void> {
  const v = forward ? "1" : "0";
  await lab.exec(ns, ["sysctl", "-q", "-w", `net.ipv4.ip_forward=${v}`, `net.ipv6.conf.all.forwarding=${v}`]);
}

/** The counting table of a router; with `masquerade`, also the NAT of the nat router. */
function countRules(masquerade?: { out: string; from: string }): string {
  const flow = "type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic; counter; size 65535;";
  const key = "ip saddr . ip daddr . meta l4proto . th dport";
  return `table ip ${COUNT_TABLE} {
  set flows { ${flow} }
  set others { type ipv4_addr . ipv4_addr . inet_proto; flags dynamic; counter; size 65535; }
  set links { type ifname . ifname; flags dynamic; counter; size 64; }
  set local { ${flow} }
  counter port_forward {}
  chain forward {
    type filter hook forward priority 0; policy accept;
    update @links { iifname . oifname }
    meta l4proto { tcp, udp } update @flows { ${key} }
    meta l4proto != { tcp, udp } update @others { ip saddr . ip daddr . meta l4proto }
  }
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto { tcp, udp } update @local { ${key} }
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ${masquerade ? `oifname "${masquerade.out}" ip saddr ${masquerade.from} masquerade` : ""}
  }
}
`;
}

/** Connects `ns` (already created) to a segment's bridge: its eth<leg> gets `address`. */
async function attach(lab: Lab, ns: string, port: string, seg: Segment, address: string, leg = 0, mtu = 1500): Promise<void> {
  const s = SEGMENTS[seg];
  await ipBatch(lab, BRIDGE_NS, [`link add ${port} mtu ${mtu} type veth peer name eth${leg} mtu ${mtu} netns ${lab.name(ns)}`, `link set ${port} master ${s.bridge} up`]);
  await ipBatch(lab, ns, [`addr add ${address}/24 dev eth${leg}`, `link set eth${leg} up`]);
}

async function attachNode(lab: Lab, n: UnderlayNode): Promise<void> {
  lab.host(n.ns);
  await attach(lab, n.ns, `p-${n.name}`, n.segment, n.address, 0, n.mtu);
  await ipBatch(lab, n.ns, [`route add default via ${n.gateway}`]);
  await sysctls(lab, n.ns, true);
}

/**
 * Builds the underlay: the bridge namespace, r1, the NAT router, the control-plane and
 * outside hosts, and the nodes asked for. Everything lives in `lab`'s namespaces, so
 * lab.destroy() takes it all down.
 */
export async function buildUnderlay(lab: Lab, o: UnderlayOptions = {}): Promise<Underlay> {
  const defs = (o.nodes ?? Object.keys(DEFAULT_NODES)).map(nodeDef);
  // names, addresses and pod CIDR indexes in use, so that no two hosts share one
  const taken = new Set<string>([BRIDGE_NS, R1_NS, NAT_NS, OUTSIDE_NS, CONTROL_PLANE_NS, NAT_PUBLIC, OUTSIDE_ADDRESS, CONTROL_PLANE_ADDRESS]);
  const claim = (what: string, keys: string[]) => {
    if (keys.some((k) => taken.has(k))) throw new Error(`${what}: its name, address or index is taken by another host`);
    for (const k of keys) taken.add(k);
  };
  const claimNode = (d: NodeDef) => claim(`node ${d.name}`, [d.name, underlayNode(d).address, `#${d.index}`]);
  defs.forEach(claimNode);
  for (const ns of [BRIDGE_NS, R1_NS, NAT_NS, OUTSIDE_NS, CONTROL_PLANE_NS]) lab.host(ns);
  await ipBatch(
    lab,
    BRIDGE_NS,
    Object.values(SEGMENTS).flatMap((s) => [`link add ${s.bridge} type bridge`, `link set ${s.bridge} up`]),
  );
  const nodes = defs.map(underlayNode);
  const fixed = async (ns: string, port: string, address: string) => {
    await attach(lab, ns, port, "a", address);
    await ipBatch(lab, ns, [`route add default via ${SEGMENTS.a.gateway}`]);
  };
  await Promise.all([
    (async () => {
      await attach(lab, R1_NS, "p-r1a", "a", SEGMENTS.a.gateway, 0);
      await attach(lab, R1_NS, "p-r1b", "b", SEGMENTS.b.gateway, 1);
      await sysctls(lab, R1_NS, true);
      await lab.exec(R1_NS, ["nft", "-f", "-"], { stdin: countRules() });
    })(),
    (async () => {
      await attach(lab, NAT_NS, "p-nat0", "a", NAT_PUBLIC, 0);
      await attach(lab, NAT_NS, "p-nat1", "nat", SEGMENTS.nat.gateway, 1);
      // its upstream is r1, as a home router's is its provider's
      await ipBatch(lab, NAT_NS, [`route add default via ${SEGMENTS.a.gateway}`]);
      await sysctls(lab, NAT_NS, true);
      await lab.exec(NAT_NS, ["nft", "-f", "-"], { stdin: countRules({ out: "eth0", from: SEGMENTS.nat.subnet }) });
    })(),
    fixed(OUTSIDE_NS, "p-out", OUTSIDE_ADDRESS),
    fixed(CONTROL_PLANE_NS, "p-cp", CONTROL_PLANE_ADDRESS),
    ...nodes.map((n) => attachNode(lab, n)),
  ]);
  const u: Underlay = {
    lab,
    nodes,
    portForward: undefined,
    node(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`the underlay has no node ${JSON.stringify(name)} (it has ${nodes.map((x) => x.name).join(", ") || "none"})`);
      return n;
    },
    async addNode(spec) {
      const d = nodeDef(spec);
      claimNode(d);
      const n = underlayNode(d);
      await attachNode(lab, n);
      nodes.push(n);
      return n;
    },
    removeNode(name) {
      const n = u.node(name);
      deleteNetns(lab.name(n.ns));
      nodes.splice(nodes.indexOf(n), 1);
      for (const k of [n.name, n.address, `#${n.index}`]) taken.delete(k);
    },
    async setPortForward(name) {
      const to = name === undefined ? undefined : u.node(name);
      if (to && to.segment !== "nat") throw new Error(`node ${name} is not behind the NAT: the port forward can only point at segment nat`);
      const rule = to ? `add rule ip ${COUNT_TABLE} prerouting iifname "eth0" udp dport ${VXLAN_PORT} counter name port_forward dnat to ${to.address}\n` : "";
      await lab.exec(NAT_NS, ["nft", "-f", "-"], { stdin: `flush chain ip ${COUNT_TABLE} prerouting\n${rule}` });
      u.portForward = to?.name;
    },
    async addHost(ns, segment, host) {
      if (!Number.isInteger(host) || host < 2 || host > 254) throw new Error(`host ${host} must be 2-254`);
      const address = `${SEGMENTS[segment].prefix}${host}`;
      if (!NODE_NAME.test(ns)) throw new Error(`host name ${JSON.stringify(ns)} must match ${NODE_NAME} (it also names a veth)`);
      claim(`host ${ns}`, [ns, address]);
      lab.host(ns);
      await attach(lab, ns, `p-${ns}`, segment, address);
      await ipBatch(lab, ns, [`route add default via ${SEGMENTS[segment].gateway}`]);
      return address;
    },
    controlPlane: { ns: CONTROL_PLANE_NS, address: CONTROL_PLANE_ADDRESS },
    outside: { ns: OUTSIDE_NS, address: OUTSIDE_ADDRESS },
  };
  const forwardTo = o.portForward ?? nodes.find((n) => n.segment === "nat")?.name;
  if (forwardTo !== undefined) await u.setPortForward(forwardTo);
  return u;
}

/** The Node object for the test API server: pod CIDR, InternalIP, and the public address
 * annotation for a node behind the NAT. A number names a node of DEFAULT_NODES. */
export function nodeSpec(n: UnderlayNode | number, extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}): Record<string, unknown> {
  const node = typeof n === "number" ? Object.values(DEFAULT_NODES).find((d) => d.index === n) : undefined;
  const u = typeof n === "number" ? (node ? underlayNode(node) : undefined) : n;
  if (!u) throw new Error(`no default node has index ${n}`);
  const annotations = { ...(u.public ? { "skein.io/public-ip": u.public } : {}), ...extra.annotations };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: u.name, labels: { "kubernetes.io/hostname": u.name, ...extra.labels }, ...(Object.keys(annotations).length ? { annotations } : {}) },
    spec: { podCIDR: u.podCIDR, podCIDRs: [u.podCIDR] },
    status: { addresses: [{ type: "InternalIP", address: u.address }, { type: "Hostname", address: u.name }] },
  };
}

export interface Count {
  packets: number;
  bytes: number;
}

export interface Flow extends Count {
  src: string;
  dst: string;
  /** "tcp", "udp", "icmp", or the protocol number nft printed */
  proto: string;
  /** TCP and UDP only */
  dport?: number;
}

export interface RouterCounters {
  /** what the router forwarded: the source before masquerade, the destination after DNAT */
  forwarded: Flow[];
  /** TCP and UDP addressed to the router itself (e.g. to the public address with no port forward for its port) */
  local: Flow[];
  /** forwarded packets per "<in>><out>" pair of interfaces: on nat eth1>eth0 is outbound, eth0>eth1 inbound, eth1>eth1 between private hosts */
  links: Record<string, Count>;
  /** new flows the UDP 4789 port forward took (a nat hook sees a flow's first packet only) */
  portForward: Count;
}

type NftElem = { elem: { val: unknown; counter?: Count } } | unknown;

function flowsOf(set: { elem?: NftElem[] } | undefined): Flow[] {
  return (set?.elem ?? []).map((e) => {
    const { val, counter } = (e as { elem: { val: { concat: Array<string | number> }; counter?: Count } }).elem;
    const [src, dst, proto, dport] = val.concat;
    return { src: String(src), dst: String(dst), proto: String(proto), ...(dport !== undefined ? { dport: Number(dport) } : {}), packets: counter?.packets ?? 0, bytes: counter?.bytes ?? 0 };
  });
}

/** The counters of a router (`nat` or `r1`), as nft lists them now. */
export async function readCounters(lab: Lab, ns = NAT_NS): Promise<RouterCounters> {
  const j = JSON.parse((await lab.exec(ns, ["nft", "-j", "list", "table", "ip", COUNT_TABLE])).stdout) as { nftables: Array<Record<string, any>> };
  const sets = new Map<string, { elem?: NftElem[] }>(j.nftables.filter((o) => o.set).map((o) => [o.set.name as string, o.set]));
  const links: Record<string, Count> = {};
  for (const e of sets.get("links")?.elem ?? []) {
    const { val, counter } = (e as { elem: { val: { concat: string[] }; counter?: Count } }).elem;
    links[`${val.concat[0]}>${val.concat[1]}`] = { packets: counter?.packets ?? 0, bytes: counter?.bytes ?? 0 };
  }
  const pf = j.nftables.find((o) => o.counter?.name === "port_forward")?.counter;
  return {
    forwarded: [...flowsOf(sets.get("flows")), ...flowsOf(sets.get("others"))],
    local: flowsOf(sets.get("local")),
    links,
    portForward: { packets: pf?.packets ?? 0, bytes: pf?.bytes ?? 0 },
  };
}

/** Packets the router forwarded between `a` and `b` (both directions), optionally of one protocol and destination port. */
export function packetsBetween(c: RouterCounters, a: string, b: string, o: { proto?: string; dport?: number } = {}): number {
  return c.forwarded
    .filter((f) => ((f.src === a && f.dst === b) || (f.src === b && f.dst === a)) && (o.proto === undefined || f.proto === o.proto) && (o.dport === undefined || f.dport === o.dport))
    .reduce((s, f) => s + f.packets, 0);
}

/** A link's packet counters in a namespace (e.g. skein.vxlan on a node: zero when a pair goes direct). */
export async function linkCounters(lab: Lab, ns: string, dev: string): Promise<{ rx: Count; tx: Count }> {
  const [l] = JSON.parse((await lab.exec(ns, ["ip", "-j", "-s", "link", "show", "dev", dev])).stdout) as Array<{ stats64: { rx: Count; tx: Count } }>;
  if (!l) throw new Error(`no link ${dev} in ${lab.name(ns)}`);
  return { rx: { packets: l.stats64.rx.packets, bytes: l.stats64.rx.bytes }, tx: { packets: l.stats64.tx.packets, bytes: l.stats64.tx.bytes } };
}

/** Forgets every flow and zeroes every counter of a router, so that a test counts only what follows. */
export async function resetCounters(lab: Lab, ns = NAT_NS): Promise<void> {
  const t = `ip ${COUNT_TABLE}`;
  await lab.exec(ns, ["nft", "-f", "-"], { stdin: ["flows", "others", "links", "local"].map((s) => `flush set ${t} ${s}`).join("\n") + `\nreset counter ${t} port_forward\n` });
}

// ---- the cluster on the underlay: `skein apiserver` on cp, one `skein agent` per node, pods
// wired by skein's CNI in each node's namespace ----

export type Spawned = Awaited<ReturnType<Lab["spawn"]>>;

export interface ClusterPod {
  /** the Pod's name in namespace default, and the lab short name of its namespace */
  name: string;
  node: string;
  ip: string;
  addresses: string[];
  /** whether a Pod object was registered for it */
  registered: boolean;
}

export interface ClusterOptions {
  underlay: Underlay;
  /** an empty directory of the test's: the API server's files, and per node nodes/<name>/ */
  dir: string;
  /** nodes that get an agent at start (default: every node of the underlay) */
  agents?: string[];
  /** handed to agentFlags: the NATS servers the agents talk to (the caller starts them, e.g. on cp) */
  natsUrls?: string[];
  /** flags of a node's agent beyond the ones every agent gets (gossip, overlay, mode, …) */
  agentFlags?: (node: UnderlayNode, c: { natsUrls: string[] }) => string[];
  /** what a node's agent prints once it is ready (default "tables applied") */
  agentReady?: string;
  agentTimeoutMs?: number;
  /** the Node object registered for a node (default nodeSpec(node)); undefined: not registered */
  nodeObject?: (node: UnderlayNode) => Record<string, unknown> | undefined;
  /** pods wired on each node once its agent is ready: a count per node (pods <node>-p1…) or names per node */
  pods?: number | Record<string, string[]>;
  /** Kubernetes namespaces created besides the ones every cluster has (default, kube-system, …) */
  namespaces?: string[];
  /** labels of every registered Pod (default app=probe) */
  podLabels?: Record<string, string>;
  apiserverFlags?: string[];
  token?: string;
}

export interface Cluster {
  underlay: Underlay;
  lab: Lab;
  /** the API through its Unix socket, as the test's controller and kubelet */
  api: ApiDriver;
  apiserver: Spawned;
  /** https://<cp>:6443, what the agents' kubeconfig points at */
  apiUrl: string;
  kubeconfig: string;
  natsUrls: string[];
  /** the running agents by node name */
  agents: Map<string, Spawned>;
  pods: Map<string, ClusterPod>;
  /** a node's own directory: node.json (the agent's node file), ipam/ (CNI IPAM) */
  nodeDir(node: string): string;
  conflist(node: string): Conflist;
  cni(node: string): CniRuntime;
  /** the agent's full argv (without the binary) for a node, extra flags last */
  agentArgs(node: string, extra?: string[]): string[];
  /** starts a node's agent (it must not run) and resolves once it prints `ready` (default: the
   * cluster's agentReady; an agent that adopts tables equal to its own prints no "tables applied") */
  startAgent(node: string, extra?: string[], o?: { ready?: string }): Promise<Spawned>;
  /** stops a node's agent (SIGTERM, SIGKILL after `timeoutMs`); resolves with its exit code */
  stopAgent(node: string, o?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<number | null>;
  /** wires a pod on a node with skein's CNI (the node's node file must exist) and registers it Running with its address */
  addPod(node: string, name: string, o?: { labels?: Record<string, string>; register?: boolean }): Promise<ClusterPod>;
  /** CNI DEL of a pod, its namespace removed, its Pod object deleted (when registered) */
  removePod(name: string): Promise<void>;
  /** a node added to the underlay, its Node registered, its agent started, its pods wired */
  join(n: string | NodeDef, o?: { pods?: string[] | number; agent?: boolean }): Promise<UnderlayNode>;
  /** stops every agent and the API server (the namespaces stay until the lab is destroyed) */
  stop(): Promise<void>;
}

const CLUSTER_TOKEN = "multinode-token";

async function pollUntil(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/**
 * Starts a cluster on an underlay: `skein apiserver` on the control-plane host, the Node
 * objects, an agent per node (in parallel), then the pods. The caller destroys the lab
 * (useLab does) or calls stop() first for an orderly end.
 */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const u = o.underlay;
  const lab = u.lab;
  const token = o.token ?? CLUSTER_TOKEN;
  const listen = `${u.controlPlane.address}:6443`;
  const natsUrls = o.natsUrls ?? [];
  const agentTimeoutMs = o.agentTimeoutMs ?? 15_000;
  mkdirSync(o.dir, { recursive: true });
  const apiserver = await lab.spawn(
    u.controlPlane.ns,
    [lab.skeinBin, "apiserver", "--dir", o.dir, "--listen", listen, "--token", token, "--unix", `${o.dir}/api.sock`, "--service-cidr", SERVICE_CIDR, "--bookmark-ms", "1000", ...(o.apiserverFlags ?? [])],
    { ready: "serving", what: "skein apiserver", timeoutMs: 10_000 },
  );
  const api = new ApiDriver(`${o.dir}/api.sock`, token);
  const agents = new Map<string, Spawned>();
  const pods = new Map<string, ClusterPod>();
  const cnis = new Map<string, CniRuntime>();
  const nodeDir = (node: string) => `${o.dir}/nodes/${u.node(node).name}`;
  const podLabels = o.podLabels ?? { app: "probe" };

  const register = async (n: UnderlayNode) => {
    const obj = (o.nodeObject ?? nodeSpec)(n);
    if (obj) await api.create("/api/v1/nodes", obj);
  };
  const podNames = (n: UnderlayNode, want: string[] | number | undefined) =>
    typeof want === "number" ? Array.from({ length: want }, (_, k) => `${n.name}-p${k + 1}`) : (want ?? []);

  const c: Cluster = {
    underlay: u,
    lab,
    api,
    apiserver,
    apiUrl: `https://${listen}`,
    kubeconfig: `${o.dir}/kubeconfig`,
    natsUrls,
    agents,
    pods,
    nodeDir,
    conflist(node) {
      const d = nodeDir(node);
      return { cniVersion: "1.1.0", name: "skein", plugins: [{ type: "skein", nodeFile: `${d}/node.json`, dataDir: `${d}/ipam` }] };
    },
    cni(node) {
      const n = u.node(node);
      let r = cnis.get(n.name);
      if (!r) {
        const bin = `${o.dir}/cni-bin`;
        mkdirSync(bin, { recursive: true });
        if (!existsSync(`${bin}/skein`)) symlinkSync(lab.skeinBin, `${bin}/skein`);
        r = new CniRuntime({ path: [bin], hostNetns: lab.path(n.ns) });
        cnis.set(n.name, r);
      }
      return r;
    },
    agentArgs(node, extra = []) {
      const n = u.node(node);
      const d = nodeDir(node);
      return [
        "agent",
        "--kubeconfig", c.kubeconfig,
        "--node-name", n.name,
        "--cluster-cidr", CLUSTER_CIDR,
        "--service-cidr", SERVICE_CIDR,
        "--node-file", `${d}/node.json`,
        "--coalesce-ms", "5",
        ...(o.agentFlags?.(n, { natsUrls }) ?? []),
        ...extra,
      ];
    },
    async startAgent(node, extra = [], so = {}) {
      const n = u.node(node);
      if (agents.has(n.name)) throw new Error(`the agent of ${n.name} runs already`);
      mkdirSync(nodeDir(node), { recursive: true });
      const a = await lab.spawn(n.ns, [lab.skeinBin, ...c.agentArgs(node, extra)], { ready: so.ready ?? o.agentReady ?? "tables applied", timeoutMs: agentTimeoutMs, what: `skein agent of ${n.name}` });
      agents.set(n.name, a);
      return a;
    },
    async stopAgent(node, s = {}) {
      const a = agents.get(u.node(node).name);
      if (!a) throw new Error(`no agent of ${node} runs`);
      agents.delete(u.node(node).name);
      a.proc.kill(s.signal ?? "SIGTERM");
      const timer = setTimeout(() => a.proc.kill("SIGKILL"), s.timeoutMs ?? 5000);
      try {
        return await a.proc.exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async addPod(node, name, p = {}) {
      const n = u.node(node);
      if (pods.has(name)) throw new Error(`pod ${name} exists already`);
      const file = `${nodeDir(node)}/node.json`;
      await pollUntil(`${file} (the agent of ${n.name} writes it once its Node has podCIDRs)`, () => existsSync(file), agentTimeoutMs);
      const r = await lab.pod(name, c.cni(node), c.conflist(node), "pod");
      const pod: ClusterPod = { name, node: n.name, ip: r.ip, addresses: r.addresses, registered: p.register ?? true };
      pods.set(name, pod);
      if (pod.registered) {
        const ips = r.addresses.map((a) => a.split("/")[0]!);
        await api.create("/api/v1/namespaces/default/pods", { metadata: { name, labels: { ...podLabels, ...p.labels } }, spec: { nodeName: n.name, containers: [{ name: "probe", image: "skein-probe" }] } });
        await api.request("PATCH", `/api/v1/namespaces/default/pods/${name}/status`, { status: { phase: "Running", podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), hostIP: n.address } }, "application/merge-patch+json");
      }
      return pod;
    },
    async removePod(name) {
      const p = pods.get(name);
      if (!p) throw new Error(`no pod ${name}`);
      await c.cni(p.node).del(c.conflist(p.node), { containerId: `pod-${name}`, netns: lab.path(name), ifname: "eth0" });
      deleteNetns(lab.name(name));
      pods.delete(name);
      // as the kubelet does once the pod's containers stopped: a bound Pod is deleted gracefully
      // until then
      if (p.registered) await api.delete(`/api/v1/namespaces/default/pods/${name}?gracePeriodSeconds=0`);
    },
    async join(spec, j = {}) {
      const n = await u.addNode(spec);
      await register(n);
      if (j.agent ?? true) {
        await c.startAgent(n.name);
        for (const p of podNames(n, j.pods)) await c.addPod(n.name, p);
      }
      return n;
    },
    async stop() {
      await Promise.all([...agents.keys()].map((n) => c.stopAgent(n)));
      apiserver.proc.kill("SIGTERM");
      await apiserver.proc.exited;
    },
  };

  for (const ns of o.namespaces ?? []) await api.create("/api/v1/namespaces", { metadata: { name: ns } });
  for (const n of u.nodes) await register(n);
  const start = o.agents ?? u.nodes.map((n) => n.name);
  await Promise.all(start.map((n) => c.startAgent(n)));
  for (const n of start.map((x) => u.node(x))) {
    const want = typeof o.pods === "number" ? o.pods : o.pods?.[n.name];
    await Promise.all(podNames(n, want).map((p) => c.addPod(n.name, p)));
  }
  return c;
}

export interface Reach {
  from: string;
  to: string;
  ok: boolean;
  /** the server's answer: "<its name> <source address it saw>" */
  answer: string;
  error: string;
}

/**
 * One probe from every source to every other target (a pod never probes itself), `parallel`
 * at a time: the reachability matrix of a set of pods or hosts whose probe servers answer on
 * `port`. `address` maps a target to the address to connect to.
 */
export async function reachability<T extends { name: string }>(
  lab: Lab,
  o: { from: T[]; to: T[]; address: (t: T) => string; proto: "tcp" | "udp"; port: number; timeoutMs?: number; parallel?: number },
): Promise<Reach[]> {
  const pairs = o.from.flatMap((f) => o.to.filter((t) => t.name !== f.name).map((t) => [f, t] as const));
  const out: Reach[] = new Array(pairs.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < pairs.length; i = next++) {
      const [f, t] = pairs[i]!;
      const r = await lab.connect(f.name, o.proto, o.address(t), o.port, o.timeoutMs ?? 1000);
      out[i] = { from: f.name, to: t.name, ...r };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.parallel ?? 4) }, worker));
  return out;
}
