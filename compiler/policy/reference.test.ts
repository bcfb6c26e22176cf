import { describe, expect, test } from "bun:test";
import { realisticWorld } from "./generate.ts";
import { compilePolicy, identityIds, pieces } from "./reference.ts";
import { policyStateFrom } from "./state.ts";
import { BLOCKED, FIRST_ID, VIA_SERVICE, WORLD, type PodInfo, type Policy, type PolicyOptions, type PolicyRule, type PolicyState } from "./types.ts";
import { verdict } from "./verdict.ts";

const OPTS: PolicyOptions = { nodeName: "n1", podCIDRs: ["10.244.1.0/24"], maxIdentity: 1000 };
const pod = (name: string, ip: string, labels: Record<string, string>, o: Partial<PodInfo> = {}): PodInfo => ({
  namespace: "prod",
  name,
  nodeName: "n1",
  ips: [ip],
  labels,
  ports: [],
  ...o,
});
const sel = (labels: Record<string, string>) => ({ requirements: Object.entries(labels).map(([key, v]) => ({ key, operator: "In" as const, values: [v] })) });
const policy = (name: string, podSelector: Record<string, string>, ingress: PolicyRule[] | null, egress: PolicyRule[] | null = null, namespace = "prod"): Policy => ({
  namespace,
  name,
  podSelector: sel(podSelector),
  ingress,
  egress,
});
const from = (labels: Record<string, string>, ports: PolicyRule["ports"] = []): PolicyRule => ({ peers: [{ kind: "pods", pods: sel(labels) }], ports });
const state = (s: Partial<PolicyState>): PolicyState => ({ namespaces: [], pods: [], policies: [], ...s });
const idOf = (t: ReturnType<typeof compilePolicy>, ip: string) => t.pods.find((p) => p.ip === ip)!.id;

describe("identities", () => {
  test("pods alike share one identity; keys, names, local, addresses in numeric order", () => {
    const t = compilePolicy(
      state({
        pods: [
          pod("a", "10.244.1.10", { app: "web", tier: "front" }, { ports: [{ name: "metrics", protocol: "TCP", port: 9090 }, { name: "http", protocol: "TCP", port: 80 }] }),
          pod("b", "10.244.2.9", { tier: "front", app: "web" }, { nodeName: "n2", ports: [{ name: "http", protocol: "TCP", port: 80 }, { name: "metrics", protocol: "TCP", port: 9090 }] }),
          pod("c", "10.244.1.9", {}, { ips: ["10.244.1.9", "fd00::9"] }),
          pod("pending", "", {}, { ips: [] }),
        ],
      }),
      OPTS,
    );
    expect(t.identities).toEqual([
      { id: 3, key: "pod|prod|app=web,tier=front|http/TCP/80,metrics/TCP/9090|", name: "pod prod app=web,tier=front", local: true, ingressBy: [], egressBy: [] },
      { id: 4, key: "pod|prod|||", name: "pod prod ", local: true, ingressBy: [], egressBy: [] },
    ]);
    expect(t.pods).toEqual([
      { family: 4, ip: "10.244.1.9", id: 4 },
      { family: 4, ip: "10.244.1.10", id: 3 },
      { family: 4, ip: "10.244.2.9", id: 3 },
      { family: 6, ip: "fd00::9", id: 4 },
    ]);
    expect(t.localAddresses).toEqual(["10.244.1.9", "10.244.1.10", "fd00::9"]);
    // no policy: nothing isolated, no range, nothing blocked
    expect([t.ranges, t.isolatedIngress, t.isolatedEgress, t.allowIngress, t.allowEgress, t.problems]).toEqual([[], [], [], [], [], []]);
  });

  test("ranges: the address space cut by blocks and this node's pod CIDRs, merged, WORLD left out", () => {
    const t = compilePolicy(
      state({
        pods: [pod("a", "10.1.0.5", { app: "web" }, { nodeName: "n2" }), pod("b", "10.244.1.5", { app: "db" })],
        policies: [
          policy("p", { app: "db" }, [
            { peers: [{ kind: "cidr", cidr: "10.0.0.0/8", except: ["10.1.0.0/16", "10.0.0.0/16"] }], ports: [] },
            { peers: [{ kind: "cidr", cidr: "fd00::/64", except: [] }], ports: [] },
          ]),
        ],
      }),
      { ...OPTS, podCIDRs: ["10.244.1.0/24", "fd00:1::/64"] },
    );
    const block = "10.0.0.0/8 except 10.0.0.0/16,10.1.0.0/16";
    // the identity of this node's pod (b) first, then the others in key order
    expect(t.identities.map((i) => [i.id, i.key, i.name])).toEqual([
      [3, "pod|prod|app=db||10.0.0.0/8 except 10.0.0.0/16,10.1.0.0/16", `pod prod app=db in ${block}`],
      [4, `cidr|${block}`, `cidr ${block}`],
      [5, "cidr|fd00::/64", "cidr fd00::/64"],
      [6, "pod|prod|app=web||", "pod prod app=web"],
    ]);
    expect(t.ranges).toEqual([
      { family: 4, first: "10.2.0.0", last: "10.244.0.255", id: 4 },
      { family: 4, first: "10.244.1.0", last: "10.244.1.255", id: BLOCKED },
      { family: 4, first: "10.244.2.0", last: "10.255.255.255", id: 4 },
      { family: 6, first: "fd00::", last: "fd00::ffff:ffff:ffff:ffff", id: 5 },
      { family: 6, first: "fd00:1::", last: "fd00:1::ffff:ffff:ffff:ffff", id: BLOCKED },
    ]);
    expect(t.isolatedIngress).toEqual([BLOCKED, 3]);
    expect(t.isolatedEgress).toEqual([BLOCKED]);
    // the pod 10.1.0.5 is in an except: its connections are from WORLD's side of the block
    expect(verdict(t, { src: "10.1.0.5", dst: "10.244.1.5", proto: "TCP", port: 80 }).allowed).toBe(false);
    expect(verdict(t, { src: "10.3.0.1", dst: "10.244.1.5", proto: "TCP", port: 80 }).allowed).toBe(true);
    expect(verdict(t, { src: "fd00::1", dst: "10.244.1.5", proto: "TCP", port: 80 }).why).toContain("5 (cidr fd00::/64)");
  });

  test("excepts of a block are written sorted by address, then prefix, without repeats", () => {
    const t = compilePolicy(
      state({ policies: [policy("p", {}, [{ peers: [{ kind: "cidr", cidr: "10.0.0.0/8", except: ["10.2.0.0/16", "10.1.0.0/24", "10.1.0.0/16", "10.2.0.0/16"] }], ports: [] }])] }),
      { ...OPTS, podCIDRs: [] },
    );
    expect(t.identities.map((i) => i.key)).toEqual(["cidr|10.0.0.0/8 except 10.1.0.0/16,10.1.0.0/24,10.2.0.0/16"]);
  });

  test("ids: kept across compiles; new keys take the lowest ids the previous compile did not hold, in key order; ids of keys gone are free a compile later", () => {
    const pods = [pod("a", "10.244.1.1", { app: "a" }), pod("b", "10.244.1.2", { app: "b" }), pod("c", "10.244.1.3", { app: "c" })];
    const t1 = compilePolicy(state({ pods }), OPTS);
    expect(t1.identities.map((i) => [i.key, i.id])).toEqual([
      ["pod|prod|app=a||", 3],
      ["pod|prod|app=b||", 4],
      ["pod|prod|app=c||", 5],
    ]);
    // b gone, 0 and d new: 0 sorts first and takes 6 (b's 4 was held a moment ago), d takes 7
    const t2 = compilePolicy(state({ pods: [pod("z", "10.244.1.9", { app: "0" }), pods[0]!, pods[2]!, pod("d", "10.244.1.4", { app: "d" })] }), OPTS, identityIds(t1));
    expect(t2.identities.map((i) => [i.key, i.id]).sort((x, y) => (x[1] as number) - (y[1] as number))).toEqual([
      ["pod|prod|app=a||", 3],
      ["pod|prod|app=c||", 5],
      ["pod|prod|app=0||", 6],
      ["pod|prod|app=d||", 7],
    ]);
    // a compile later, 4 is free again
    const t2b = compilePolicy(state({ pods: [pod("z", "10.244.1.9", { app: "0" }), pods[0]!, pods[2]!, pod("d", "10.244.1.4", { app: "d" }), pod("e", "10.244.1.5", { app: "e" })] }), OPTS, identityIds(t2));
    expect(t2b.identities.find((i) => i.key === "pod|prod|app=e||")!.id).toBe(4);
    // the same state again: the same tables
    expect(compilePolicy(state({ pods: [pod("z", "10.244.1.9", { app: "0" }), pods[0]!, pods[2]!, pod("d", "10.244.1.4", { app: "d" })] }), OPTS, identityIds(t2))).toEqual(t2);
    // previous entries that cannot be ids are not taken
    const t3 = compilePolicy(state({ pods }), OPTS, new Map([["pod|prod|app=a||", 1], ["pod|prod|app=b||", 7], ["pod|prod|app=c||", 7]]));
    expect(t3.identities.map((i) => [i.key, i.id])).toEqual([
      ["pod|prod|app=a||", 3],
      ["pod|prod|app=c||", 4],
      ["pod|prod|app=b||", 7],
    ]);
  });

  test("past maxIdentity: this node's pods past it are blocked; another node's address falls back to its ipBlocks", () => {
    const pods = [pod("a", "10.244.1.1", { app: "a" }), pod("b", "10.244.1.2", { app: "b" }), pod("c", "10.244.2.3", { app: "c" }, { nodeName: "n2" })];
    const t = compilePolicy(state({ pods }), { ...OPTS, maxIdentity: FIRST_ID + 1 });
    expect(t.identities.map((i) => i.id)).toEqual([3, 4]);
    // c is left to the ranges (no block holds it: WORLD), so a and b still reach it
    expect(t.pods.map((p) => [p.ip, p.id])).toEqual([
      ["10.244.1.1", 3],
      ["10.244.1.2", 4],
    ]);
    expect(t.problems).toEqual(["identity limit: 3 identities needed, the mark bits hold 2; this node's pods past it are blocked, other addresses judged by their ipBlocks alone"]);
    expect(t.isolatedIngress).toEqual([]);
    expect(verdict(t, { src: "10.244.1.1", dst: "10.244.2.3", proto: "TCP", port: 80 }).allowed).toBe(true);
    // three pods of this node past two ids: the third is blocked both ways
    const mine = [...pods.slice(0, 2), pod("d", "10.244.1.4", { app: "d" })];
    const t2 = compilePolicy(state({ pods: mine }), { ...OPTS, maxIdentity: FIRST_ID + 1 });
    expect(t2.pods.map((p) => p.id)).toEqual([3, 4, BLOCKED]);
    expect(t2.isolatedIngress).toEqual([BLOCKED]);
    expect(t2.isolatedEgress).toEqual([BLOCKED]);
    expect(verdict(t2, { src: "10.244.1.4", dst: "10.244.1.1", proto: "TCP", port: 80 }).allowed).toBe(false);
    expect(verdict(t2, { src: "10.244.1.1", dst: "10.244.1.2", proto: "TCP", port: 80 }).allowed).toBe(true);
  });

  test("past maxIdentity, this node's pods keep ids: many distinct pods elsewhere cannot get them blocked", () => {
    // namespace "aaa" sorts first: by key order alone its pods would take every id
    const flood = [0, 1, 2].map((i) => pod(`f${i}`, `10.244.2.${10 + i}`, { app: `f${i}` }, { namespace: "aaa", nodeName: "n2" }));
    const mine = pod("m", "10.244.1.5", { app: "mine" });
    const limit = { ...OPTS, maxIdentity: FIRST_ID + 1 };
    const t = compilePolicy(state({ pods: [...flood, mine] }), limit);
    expect(t.pods.find((p) => p.ip === "10.244.1.5")!.id).toBe(3);
    // the flood's pods past the limit are left to the ranges, not blocked: nothing is
    expect(t.pods.map((p) => p.ip)).toEqual(["10.244.1.5", "10.244.2.10"]);
    // a local pod arriving once the flood holds every id takes one from it: the remote key
    // last in key order gives its id up
    const t2 = compilePolicy(state({ pods: [...flood, mine, pod("n", "10.244.1.6", { app: "new" })] }), limit, new Map([["pod|aaa|app=f0||", 3], ["pod|aaa|app=f1||", 4]]));
    expect(t2.pods.map((p) => [p.ip, p.id])).toEqual([
      ["10.244.1.5", 4],
      ["10.244.1.6", 3],
    ]);
    expect(t2.problems).toEqual(["identity limit: 5 identities needed, the mark bits hold 2; this node's pods past it are blocked, other addresses judged by their ipBlocks alone"]);
    expect(t2.isolatedIngress).toEqual([]);
  });

  test("an address two pods claim with different keys is blocked", () => {
    const t = compilePolicy(state({ pods: [pod("a", "10.244.1.1", { app: "a" }), pod("b", "10.244.1.1", { app: "b" }), pod("c", "10.244.1.2", { app: "a" }), pod("d", "10.244.1.2", { app: "a" })] }), OPTS);
    expect(t.pods).toEqual([
      { family: 4, ip: "10.244.1.1", id: BLOCKED },
      { family: 4, ip: "10.244.1.2", id: 3 },
    ]);
    expect(t.problems).toEqual(["address 10.244.1.1: held by pods prod/a, prod/b; blocked"]);
  });
});

describe("unknown addresses of this node's pod CIDRs", () => {
  const s = state({ pods: [pod("a", "10.244.1.1", { app: "a" }), pod("o", "10.244.2.1", { app: "o" }, { nodeName: "n2" })], policies: [policy("p", { app: "x" }, [])] });
  test("are blocked both ways once a policy exists", () => {
    const t = compilePolicy(s, OPTS);
    expect(t.ranges).toEqual([{ family: 4, first: "10.244.1.0", last: "10.244.1.255", id: BLOCKED }]);
    expect(verdict(t, { src: "10.244.1.77", dst: "10.244.1.1", proto: "TCP", port: 80 }).allowed).toBe(false);
    expect(verdict(t, { src: "10.244.1.1", dst: "10.244.1.77", proto: "UDP", port: 53 }).allowed).toBe(false);
    // another node's pod CIDR is that node's to police
    expect(verdict(t, { src: "10.244.2.77", dst: "10.244.1.1", proto: "TCP", port: 80 }).allowed).toBe(true);
    expect(verdict(t, { src: "10.244.2.1", dst: "10.244.1.1", proto: "TCP", port: 80 }).allowed).toBe(true);
  });
  test("are not blocked while no policy exists", () => {
    const t = compilePolicy({ ...s, policies: [] }, OPTS);
    expect(t.ranges).toEqual([]);
    expect(verdict(t, { src: "10.244.1.77", dst: "10.244.1.1", proto: "TCP", port: 80 }).allowed).toBe(true);
  });
});

describe("elements", () => {
  test("pieces: boxes cut into disjoint pieces carrying the policies covering them, equal neighbours merged", () => {
    expect(pieces([[6, 6, 80, 90, "p1"], [6, 6, 85, 100, "p2"]])).toEqual([
      { proto: 6, protoLast: 6, port: 80, portLast: 84, policies: ["p1"] },
      { proto: 6, protoLast: 6, port: 85, portLast: 90, policies: ["p1", "p2"] },
      { proto: 6, protoLast: 6, port: 91, portLast: 100, policies: ["p2"] },
    ]);
    expect(pieces([[0, 255, 0, 65535, "all"], [6, 6, 80, 80, "web"], [17, 17, 53, 53, "all"]])).toEqual([
      { proto: 0, protoLast: 5, port: 0, portLast: 65535, policies: ["all"] },
      { proto: 6, protoLast: 6, port: 0, portLast: 79, policies: ["all"] },
      { proto: 6, protoLast: 6, port: 80, portLast: 80, policies: ["all", "web"] },
      { proto: 6, protoLast: 6, port: 81, portLast: 65535, policies: ["all"] },
      { proto: 7, protoLast: 255, port: 0, portLast: 65535, policies: ["all"] },
    ]);
    // touching ranges of one policy become one; protocols alike merge; gaps stay gaps
    expect(pieces([[6, 6, 80, 89, "p"], [6, 6, 90, 99, "p"], [17, 17, 80, 99, "p"], [132, 132, 80, 99, "p"], [6, 6, 200, 200, "p"]])).toEqual([
      { proto: 6, protoLast: 6, port: 80, portLast: 99, policies: ["p"] },
      { proto: 6, protoLast: 6, port: 200, portLast: 200, policies: ["p"] },
      { proto: 17, protoLast: 17, port: 80, portLast: 99, policies: ["p"] },
      { proto: 132, protoLast: 132, port: 80, portLast: 99, policies: ["p"] },
    ]);
    expect(pieces([[6, 6, 80, 80, "p"], [7, 7, 80, 80, "p"]])).toEqual([{ proto: 6, protoLast: 7, port: 80, portLast: 80, policies: ["p"] }]);
  });

  test("ingress merges runs of consecutive sources, egress runs of consecutive destinations; named ports per destination", () => {
    const pods = [
      pod("db", "10.244.1.1", { app: "db" }, { ports: [{ name: "sql", protocol: "TCP", port: 5432 }] }),
      pod("w1", "10.244.2.1", { app: "w1" }, { nodeName: "n2" }),
      pod("w2", "10.244.2.2", { app: "w2" }, { nodeName: "n2" }),
      pod("w3", "10.244.2.3", { app: "w3" }, { nodeName: "n2" }),
      pod("w4", "10.244.2.4", { app: "w4" }, { nodeName: "n2", ports: [{ name: "sql", protocol: "TCP", port: 3306 }] }),
    ];
    const w = (n: number) => ({ kind: "pods" as const, pods: sel({ app: `w${n}` }) });
    const t = compilePolicy(
      state({
        pods,
        policies: [
          policy("in", { app: "db" }, [{ peers: [w(1), w(2), w(4)], ports: [{ protocol: "TCP", port: "sql" }, { protocol: "UDP", port: 53, endPort: 60 }] }]),
          policy("out", { app: "db" }, null, [{ peers: [w(1), w(2), w(3), w(4)], ports: [{ protocol: "TCP", port: "sql" }] }, { peers: [w(1), w(2)], ports: [{ protocol: "TCP", port: 8080 }] }]),
        ],
      }),
      OPTS,
    );
    const [db, w1, w2, w3, w4] = ["10.244.1.1", "10.244.2.1", "10.244.2.2", "10.244.2.3", "10.244.2.4"].map((ip) => idOf(t, ip));
    expect([db, w1, w2, w3, w4]).toEqual([3, 4, 5, 6, 7]);
    const e = (src: number, srcLast: number, dst: number, dstLast: number, proto: number, port: number, portLast: number, pol: string) => ({
      src, srcLast, dst, dstLast, proto, protoLast: proto, port, portLast, policies: [pol],
    });
    expect(t.allowIngress).toEqual([e(4, 5, 3, 3, 6, 5432, 5432, "prod/in"), e(4, 5, 3, 3, 17, 53, 60, "prod/in"), e(7, 7, 3, 3, 6, 5432, 5432, "prod/in"), e(7, 7, 3, 3, 17, 53, 60, "prod/in")]);
    // w3 has no sql port (w1, w2 neither): only the 8080 rule reaches w1, w2; w4's sql is 3306
    expect(t.allowEgress).toEqual([e(3, 3, 4, 5, 6, 8080, 8080, "prod/out"), e(3, 3, 7, 7, 6, 3306, 3306, "prod/out")]);
    expect(t.identities.find((i) => i.id === db)).toMatchObject({ local: true, ingressBy: ["prod/in"], egressBy: ["prod/out"] });
    expect(t.identities.find((i) => i.id === w1)).toMatchObject({ local: false, ingressBy: [], egressBy: [] });
    expect(verdict(t, { src: "10.244.2.4", dst: "10.244.1.1", proto: "TCP", port: 5432 }).allowed).toBe(true);
    expect(verdict(t, { src: "10.244.2.3", dst: "10.244.1.1", proto: "TCP", port: 5432 }).allowed).toBe(false);
    expect(verdict(t, { src: "10.244.1.1", dst: "10.244.2.4", proto: "TCP", port: 3306 }).allowed).toBe(true);
    expect(verdict(t, { src: "10.244.1.1", dst: "10.244.2.4", proto: "TCP", port: 5432 }).allowed).toBe(false);
    expect(verdict(t, { src: "10.244.1.1", dst: "8.8.8.8", proto: 6, port: 443 }).allowed).toBe(false);
  });

  test("a rule without peers admits WORLD and every identity in use, not BLOCKED; without ports every protocol", () => {
    const t = compilePolicy(state({ pods: [pod("a", "10.244.1.1", { app: "a" }), pod("b", "10.244.2.1", { app: "b" }, { nodeName: "n2" })], policies: [policy("all", { app: "a" }, [{ peers: [], ports: [] }])] }), OPTS);
    expect(t.allowIngress).toEqual([{ src: WORLD, srcLast: WORLD, dst: 3, dstLast: 3, proto: 0, protoLast: 255, port: 0, portLast: 65535, policies: ["prod/all"] }, { src: 3, srcLast: 4, dst: 3, dstLast: 3, proto: 0, protoLast: 255, port: 0, portLast: 65535, policies: ["prod/all"] }]);
  });

  test("namespace selectors see Namespace labels, or only the name label of a namespace without object", () => {
    const pods = [pod("db", "10.244.1.1", { app: "db" }), pod("x", "10.244.2.1", {}, { namespace: "dev", nodeName: "n2" }), pod("y", "10.244.2.2", {}, { namespace: "ci", nodeName: "n2" })];
    const t = compilePolicy(
      state({
        namespaces: [{ name: "dev", labels: { env: "dev", "kubernetes.io/metadata.name": "dev" }, isolation: false }],
        pods,
        policies: [
          policy("p", { app: "db" }, [
            { peers: [{ kind: "pods", namespaces: sel({ env: "dev" }) }], ports: [{ protocol: "TCP", port: 1 }] },
            { peers: [{ kind: "pods", namespaces: sel({ "kubernetes.io/metadata.name": "ci" }) }], ports: [{ protocol: "TCP", port: 2 }] },
          ]),
        ],
      }),
      OPTS,
    );
    const can = (src: string, port: number) => verdict(t, { src, dst: "10.244.1.1", proto: "TCP", port }).allowed;
    expect([can("10.244.2.1", 1), can("10.244.2.1", 2), can("10.244.2.2", 1), can("10.244.2.2", 2)]).toEqual([true, false, false, true]);
  });
});

describe("isolation modes", () => {
  const s = state({
    namespaces: [{ name: "prod", labels: { "kubernetes.io/metadata.name": "prod" }, isolation: true }],
    pods: [
      pod("a", "10.244.1.1", {}),
      pod("b", "10.244.2.1", {}, { nodeName: "n2" }),
      pod("shop", "10.244.1.2", { "skein.io/app": "shop" }),
      pod("shop2", "10.244.2.2", { "skein.io/app": "shop" }, { nodeName: "n2" }),
      pod("out", "10.244.2.3", {}, { namespace: "other", nodeName: "n2" }),
      pod("blog", "10.244.2.4", { "skein.io/app": "blog" }, { namespace: "other", nodeName: "n2" }),
    ],
  });
  const t = compilePolicy(s, OPTS);

  test("generated policies are listed as compiled", () => {
    expect(t.generated).toEqual([
      {
        namespace: "other",
        name: "skein:app=blog",
        podSelector: { requirements: [{ key: "skein.io/app", operator: "In", values: ["blog"] }] },
        ingress: [{ peers: [{ kind: "pods", pods: { requirements: [{ key: "skein.io/app", operator: "In", values: ["blog"] }] } }], ports: [] }],
        egress: null,
        generated: "app-isolation",
        viaService: true,
      },
      {
        namespace: "prod",
        name: "skein:app=shop",
        podSelector: { requirements: [{ key: "skein.io/app", operator: "In", values: ["shop"] }] },
        ingress: [{ peers: [{ kind: "pods", pods: { requirements: [{ key: "skein.io/app", operator: "In", values: ["shop"] }] } }], ports: [] }],
        egress: null,
        generated: "app-isolation",
        viaService: true,
      },
      {
        namespace: "prod",
        name: "skein:isolation",
        podSelector: { requirements: [{ key: "skein.io/app", operator: "DoesNotExist", values: [] }] },
        ingress: [{ peers: [{ kind: "pods", pods: { requirements: [] } }], ports: [] }],
        egress: null,
        generated: "namespace-isolation",
        viaService: true,
      },
    ]);
  });

  test("same namespace (or app) admitted, others only through a Service; egress free; hairpin allowed", () => {
    const go = (src: string, dst: string, viaService = false) => verdict(t, { src, dst, proto: "TCP", port: 80, viaService }).allowed;
    expect(go("10.244.2.1", "10.244.1.1")).toBe(true); // prod → prod
    expect(go("10.244.2.3", "10.244.1.1")).toBe(false); // other → prod
    expect(go("10.244.2.3", "10.244.1.1", true)).toBe(true); // other → prod's Service
    expect(go("8.8.8.8", "10.244.1.1", true)).toBe(true);
    expect(go("10.244.2.2", "10.244.1.2")).toBe(true); // shop → shop
    expect(go("10.244.2.1", "10.244.1.2")).toBe(false); // prod (no app) → shop
    expect(go("10.244.2.1", "10.244.1.2", true)).toBe(true);
    expect(go("10.244.1.1", "10.244.2.3")).toBe(true); // egress is not isolated
    expect(go("10.244.1.2", "10.244.1.2", true)).toBe(true);
    expect(verdict(t, { src: "10.244.1.1", dst: "10.244.1.2", proto: "TCP", port: 80, viaService: true, hairpin: true }).why).toContain("hairpin");
    const shop = idOf(t, "10.244.1.2");
    expect(t.allowIngress.filter((e) => e.dst === shop && e.src === VIA_SERVICE)).toEqual([{ src: VIA_SERVICE, srcLast: VIA_SERVICE, dst: shop, dstLast: shop, proto: 0, protoLast: 255, port: 0, portLast: 65535, policies: ["prod/skein:app=shop"] }]);
  });
});

describe("problems", () => {
  test("a named port no pod it could apply to has, per direction; sorted and unique", () => {
    const pods = [
      pod("db", "10.244.1.1", { app: "db" }, { ports: [{ name: "sql", protocol: "TCP", port: 5432 }] }),
      pod("web", "10.244.1.2", { app: "web" }, { ips: [], ports: [{ name: "http", protocol: "TCP", port: 80 }] }),
    ];
    const t = compilePolicy(
      state({
        pods,
        policies: [
          policy("in", { app: "db" }, [from({}, [{ protocol: "TCP", port: "sql" }, { protocol: "UDP", port: "sql" }, { protocol: "TCP", port: "http" }])]),
          policy("out", { app: "db" }, null, [
            from({ app: "web" }, [{ protocol: "TCP", port: "http" }, { protocol: "TCP", port: "sql" }]),
            { peers: [], ports: [{ protocol: "TCP", port: "sql" }, { protocol: "TCP", port: "nope" }] },
            { peers: [{ kind: "cidr", cidr: "10.244.1.1/32", except: [] }], ports: [{ protocol: "TCP", port: "sql" }, { protocol: "TCP", port: "http" }] },
          ]),
          // says nothing of egress: its egress rules are not looked at
          { ...policy("quiet", { app: "db" }, [], null), egress: null },
        ],
      }),
      OPTS,
    );
    expect(t.problems).toEqual([
      'NetworkPolicy prod/in: spec.ingress[0].ports[1].port: no pod the policy selects has a UDP port named "sql"',
      'NetworkPolicy prod/in: spec.ingress[0].ports[2].port: no pod the policy selects has a TCP port named "http"',
      'NetworkPolicy prod/out: spec.egress[0].ports[1].port: no pod the rule\'s peers match has a TCP port named "sql"',
      'NetworkPolicy prod/out: spec.egress[1].ports[1].port: no pod the rule\'s peers match has a TCP port named "nope"',
      'NetworkPolicy prod/out: spec.egress[2].ports[1].port: no pod the rule\'s peers match has a TCP port named "http"',
    ]);
  });
});

test("a realistic cluster compiles to the same tables twice, and ids carried over leave them unchanged", () => {
  const w = realisticWorld({ pods: 600, policies: 120, seed: 3 });
  const { state: s, errors } = policyStateFrom(w.objects);
  expect(errors).toEqual([]);
  const opts = { nodeName: w.nodes[0]!.name, podCIDRs: w.nodes[0]!.podCIDRs, maxIdentity: 32767 };
  const a = compilePolicy(s, opts);
  expect(a.allowIngress.length).toBeGreaterThan(0);
  expect(a.allowEgress.length).toBeGreaterThan(0);
  expect(compilePolicy(s, opts, identityIds(a))).toEqual(a);
  // elements of one direction never overlap
  const meet = (a0: number, a1: number, b0: number, b1: number) => a0 <= b1 && b0 <= a1;
  for (const set of [a.allowIngress, a.allowEgress]) {
    for (let i = 0; i < set.length; i++) {
      for (let j = i + 1; j < set.length; j++) {
        const x = set[i]!;
        const y = set[j]!;
        if (meet(x.src, x.srcLast, y.src, y.srcLast) && meet(x.dst, x.dstLast, y.dst, y.dstLast) && meet(x.proto, x.protoLast, y.proto, y.protoLast) && meet(x.port, x.portLast, y.port, y.portLast)) {
          throw new Error(`overlap: ${JSON.stringify(x)} ${JSON.stringify(y)}`);
        }
      }
    }
  }
});
