// The policy compile in compiler.wasm on small states whose tables were worked out by hand
// from POLICY.md "The compile" (the property tests against compiler/policy/reference.ts are in
// wasm-reference.test.ts).
import { describe, expect, test } from "bun:test";
import { loadCompiler } from "../wasm.ts";
import { wasmPolicyCompiler } from "./wasm.ts";
import type { AllowElement, PodInfo, Policy, PolicyPort, PolicyState, Selector } from "./types.ts";

const { compile } = wasmPolicyCompiler(await loadCompiler());

const sel = (labels: Record<string, string> = {}): Selector => ({
  requirements: Object.keys(labels)
    .sort()
    .map((key) => ({ key, operator: "In" as const, values: [labels[key]!] })),
});
const pod = (namespace: string, name: string, nodeName: string, ips: string[], labels: Record<string, string>, ports: PodInfo["ports"] = []): PodInfo => ({ namespace, name, nodeName, ips, labels, ports });
const ns = (name: string, labels: Record<string, string> = {}, isolation = false) => ({ name, labels: { ...labels, "kubernetes.io/metadata.name": name }, isolation });
const el = (src: number, srcLast: number, dst: number, dstLast: number, proto: number, protoLast: number, port: number, portLast: number, policies: string[]): AllowElement => ({ src, srcLast, dst, dstLast, proto, protoLast, port, portLast, policies });
const ALL = [0, 255, 0, 65535] as const;
const opts = { nodeName: "n1", podCIDRs: [] as string[], maxIdentity: 1000 };

describe("hand-worked tables", () => {
  test("pods and ipBlock peers, named ports, a podCIDR, egress to everything", () => {
    const state: PolicyState = {
      namespaces: [ns("prod", { env: "prod" })],
      pods: [pod("prod", "web", "n1", ["10.0.0.5"], { app: "web" }, [{ name: "http", protocol: "TCP", port: 8080 }]), pod("prod", "db", "n2", ["10.0.1.5", "fd00::5"], { app: "db" })],
      policies: [
        {
          namespace: "prod",
          name: "web",
          podSelector: sel({ app: "web" }),
          ingress: [
            {
              peers: [
                { kind: "pods", pods: sel({ app: "db" }) },
                { kind: "cidr", cidr: "192.168.0.0/16", except: ["192.168.1.0/24"] },
              ],
              ports: [
                { protocol: "TCP", port: "http" },
                { protocol: "UDP", port: 53 },
              ],
            },
          ],
          egress: [{ peers: [], ports: [] }],
        },
      ],
    };
    const t = compile(state, { ...opts, podCIDRs: ["10.0.0.0/24"] });
    const block = "192.168.0.0/16 except 192.168.1.0/24";
    // this node's identity (web) first, then the others in key order
    expect(t.identities).toEqual([
      { id: 3, key: "pod|prod|app=web|http/TCP/8080|", name: "pod prod app=web", local: true, ingressBy: ["prod/web"], egressBy: ["prod/web"] },
      { id: 4, key: `cidr|${block}`, name: `cidr ${block}`, local: false, ingressBy: [], egressBy: [] },
      { id: 5, key: "pod|prod|app=db||", name: "pod prod app=db", local: false, ingressBy: [], egressBy: [] },
    ]);
    expect(t.pods).toEqual([
      { family: 4, ip: "10.0.0.5", id: 3 },
      { family: 4, ip: "10.0.1.5", id: 5 },
      { family: 6, ip: "fd00::5", id: 5 },
    ]);
    // the pod CIDR is blocked as a range; the pod in it is found first by the datapath
    expect(t.ranges).toEqual([
      { family: 4, first: "10.0.0.0", last: "10.0.0.255", id: 2 },
      { family: 4, first: "192.168.0.0", last: "192.168.0.255", id: 4 },
      { family: 4, first: "192.168.2.0", last: "192.168.255.255", id: 4 },
    ]);
    expect(t.isolatedIngress).toEqual([2, 3]);
    expect(t.isolatedEgress).toEqual([2, 3]);
    expect(t.allowIngress).toEqual([el(4, 5, 3, 3, 6, 6, 8080, 8080, ["prod/web"]), el(4, 5, 3, 3, 17, 17, 53, 53, ["prod/web"])]);
    // WORLD, then every identity in use as one run of destinations
    expect(t.allowEgress).toEqual([el(3, 3, 0, 0, ...ALL, ["prod/web"]), el(3, 3, 3, 5, ...ALL, ["prod/web"])]);
    expect(t.localAddresses).toEqual(["10.0.0.5"]);
    expect(t.generated).toEqual([]);
    expect(t.problems).toEqual([]);
  });

  test("isolation modes: generated policies, sources through a Service", () => {
    const state: PolicyState = {
      namespaces: [ns("a", {}, true)],
      pods: [pod("a", "x", "n1", ["10.1.0.1"], { "skein.io/app": "x" }), pod("a", "plain", "n1", ["10.1.0.2"], {}), pod("b", "other", "n2", ["10.2.0.3"], {})],
      policies: [],
    };
    const t = compile(state, opts);
    const app: Policy = {
      namespace: "a",
      name: "skein:app=x",
      podSelector: { requirements: [{ key: "skein.io/app", operator: "In", values: ["x"] }] },
      ingress: [{ peers: [{ kind: "pods", pods: { requirements: [{ key: "skein.io/app", operator: "In", values: ["x"] }] } }], ports: [] }],
      egress: null,
      generated: "app-isolation",
      viaService: true,
    };
    const iso: Policy = {
      namespace: "a",
      name: "skein:isolation",
      podSelector: { requirements: [{ key: "skein.io/app", operator: "DoesNotExist", values: [] }] },
      ingress: [{ peers: [{ kind: "pods", pods: { requirements: [] } }], ports: [] }],
      egress: null,
      generated: "namespace-isolation",
      viaService: true,
    };
    expect(t.generated).toEqual([app, iso]);
    // "pod|a|skein..." sorts before "pod|a|||": "s" < "|"
    expect(t.identities.map((i) => [i.id, i.key, i.local, i.ingressBy, i.egressBy])).toEqual([
      [3, "pod|a|skein.io/app=x||", true, ["a/skein:app=x"], []],
      [4, "pod|a|||", true, ["a/skein:isolation"], []],
      [5, "pod|b|||", false, [], []],
    ]);
    expect(t.isolatedIngress).toEqual([3, 4]);
    expect(t.isolatedEgress).toEqual([]);
    expect(t.ranges).toEqual([]);
    expect(t.allowIngress).toEqual([el(1, 1, 3, 3, ...ALL, ["a/skein:app=x"]), el(1, 1, 4, 4, ...ALL, ["a/skein:isolation"]), el(3, 3, 3, 3, ...ALL, ["a/skein:app=x"]), el(3, 4, 4, 4, ...ALL, ["a/skein:isolation"])]);
    expect(t.allowEgress).toEqual([]);
  });

  test("overlapping port ranges of three policies cut into disjoint pieces", () => {
    const ingress = (ports: PolicyPort[]) => [{ peers: [{ kind: "pods" as const, pods: sel({ r: "s" }) }], ports }];
    const p = (name: string, ports: PolicyPort[]): Policy => ({ namespace: "n", name, podSelector: sel({ r: "d" }), ingress: ingress(ports), egress: null });
    const state: PolicyState = {
      namespaces: [ns("n")],
      pods: [pod("n", "d", "n1", ["10.0.0.1"], { r: "d" }), pod("n", "s", "n2", ["10.0.0.2"], { r: "s" }), pod("n", "s2", "n2", ["10.0.0.3"], { r: "s", x: "1" })],
      policies: [
        p("p3", []),
        // a port inside another of the same policy: the cuts it makes are merged away again
        p("p1", [
          { protocol: "TCP", port: 80, endPort: 90 },
          { protocol: "TCP", port: 88, endPort: 89 },
        ]),
        p("p2", [
          { protocol: "TCP", port: 85, endPort: 100 },
          { protocol: "UDP" },
        ]),
      ],
    };
    const t = compile(state, opts);
    // "r=s,x=1|" sorts before "r=s|" (',' < '|'): 4 and 5 are the two sources, alike, one run
    expect(t.identities.map((i) => i.key)).toEqual(["pod|n|r=d||", "pod|n|r=s,x=1||", "pod|n|r=s||"]);
    const e = (proto: number, protoLast: number, port: number, portLast: number, ...names: string[]) => el(4, 5, 3, 3, proto, protoLast, port, portLast, names.map((x) => `n/${x}`));
    expect(t.allowIngress).toEqual([
      e(0, 5, 0, 65535, "p3"),
      e(6, 6, 0, 79, "p3"),
      e(6, 6, 80, 84, "p1", "p3"),
      e(6, 6, 85, 90, "p1", "p2", "p3"),
      e(6, 6, 91, 100, "p2", "p3"),
      e(6, 6, 101, 65535, "p3"),
      e(7, 16, 0, 65535, "p3"),
      e(17, 17, 0, 65535, "p2", "p3"),
      e(18, 255, 0, 65535, "p3"),
    ]);
  });

  const three: PolicyState = {
    namespaces: [ns("n")],
    pods: [pod("n", "a", "n1", ["10.0.0.1"], { l: "a" }), pod("n", "b", "n1", ["10.0.0.2"], { l: "b" }), pod("n", "c", "n1", ["10.0.0.3"], { l: "c" })],
    policies: [{ namespace: "n", name: "deny", podSelector: sel(), ingress: [], egress: null }],
  };

  test("past maxIdentity, pods are blocked and the limit is a problem", () => {
    const t = compile(three, { ...opts, maxIdentity: 4 });
    expect(t.identities.map((i) => [i.id, i.key, i.ingressBy])).toEqual([
      [3, "pod|n|l=a||", ["n/deny"]],
      [4, "pod|n|l=b||", ["n/deny"]],
    ]);
    expect(t.pods.map((p) => p.id)).toEqual([3, 4, 2]);
    expect(t.isolatedIngress).toEqual([2, 3, 4]);
    expect(t.isolatedEgress).toEqual([2]);
    expect(t.allowIngress).toEqual([]);
    expect(t.problems).toEqual(["identity limit: 3 identities needed, the mark bits hold 2; this node's pods past it are blocked, other addresses judged by their ipBlocks alone"]);
  });

  test("ids are kept from the previous compile; new keys take the lowest ids it did not hold, in key order", () => {
    const t = compile(three, opts, new Map([
      ["pod|n|l=c||", 3],
      ["gone", 4],
    ]));
    expect(t.identities.map((i) => [i.key, i.id])).toEqual([
      ["pod|n|l=c||", 3],
      ["pod|n|l=a||", 5],
      ["pod|n|l=b||", 6],
    ]);
  });

  test("a named port no pod has is a problem of its field", () => {
    const state: PolicyState = {
      namespaces: [ns("n")],
      pods: [pod("n", "d", "n1", ["10.0.0.1"], { r: "d" }), pod("n", "s", "n2", ["10.0.0.2"], { r: "s" }, [{ name: "http", protocol: "TCP", port: 80 }])],
      policies: [
        {
          namespace: "n",
          name: "p",
          podSelector: sel({ r: "d" }),
          ingress: [{ peers: [], ports: [{ protocol: "TCP", port: "metrics" }] }],
          egress: [
            { peers: [{ kind: "pods", pods: sel({ r: "s" }) }], ports: [{ protocol: "TCP", port: "http" }] },
            { peers: [{ kind: "pods", pods: sel({ r: "s" }) }], ports: [{ protocol: "UDP", port: "http" }] },
          ],
        },
      ],
    };
    const t = compile(state, opts);
    expect(t.problems).toHaveLength(2);
    expect(t.problems[0]).toStartWith("NetworkPolicy n/p: spec.egress[1].ports[0].port: ");
    expect(t.problems[1]).toStartWith("NetworkPolicy n/p: spec.ingress[0].ports[0].port: ");
    expect(t.allowIngress).toEqual([]);
    expect(t.allowEgress).toEqual([el(3, 3, 4, 4, 6, 6, 80, 80, ["n/p"])]);
  });
});
