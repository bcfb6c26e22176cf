import { describe, expect, test } from "bun:test";
import { LIMITS, parseNamespace, parseNetworkPolicy, parsePod, policyStateFrom } from "./state.ts";

const np = (spec: unknown, name = "p") => ({ kind: "NetworkPolicy", metadata: { namespace: "prod", name }, spec });
/** The error a policy spec gets, or "" */
const policyError = (spec: unknown) => policyStateFrom([np(spec)]).errors.join("\n");
const pod = (o: { spec?: unknown; status?: unknown; labels?: unknown; name?: string }) => ({
  kind: "Pod",
  metadata: { namespace: "prod", name: o.name ?? "web-1", labels: o.labels ?? { app: "web" } },
  spec: o.spec ?? { nodeName: "n1", containers: [] },
  status: o.status ?? { phase: "Running", podIP: "10.244.1.5" },
});

describe("parseNetworkPolicy", () => {
  test("reads every field into its checked form", () => {
    const p = parseNetworkPolicy(
      np({
        podSelector: { matchLabels: { tier: "front", app: "web" }, matchExpressions: [{ key: "env", operator: "NotIn", values: ["dev", "ci", "dev"] }] },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            from: [
              { podSelector: {} },
              { namespaceSelector: { matchLabels: { team: "a" } } },
              { podSelector: { matchExpressions: [{ key: "x", operator: "Exists" }] }, namespaceSelector: {} },
              { ipBlock: { cidr: "10.0.0.0/8", except: ["10.2.0.0/16", "10.1.0.0/16"] } },
            ],
            ports: [{ port: 80 }, { protocol: "UDP", port: "dns" }, { protocol: "SCTP", port: 9000, endPort: 9010 }, { protocol: "TCP" }],
          },
          {},
        ],
        egress: [{ to: [{ ipBlock: { cidr: "fd00::/8" } }] }],
      }),
    );
    expect(p).toEqual({
      namespace: "prod",
      name: "p",
      podSelector: {
        requirements: [
          { key: "app", operator: "In", values: ["web"] },
          { key: "tier", operator: "In", values: ["front"] },
          { key: "env", operator: "NotIn", values: ["ci", "dev"] },
        ],
      },
      ingress: [
        {
          peers: [
            { kind: "pods", pods: { requirements: [] } },
            { kind: "pods", namespaces: { requirements: [{ key: "team", operator: "In", values: ["a"] }] } },
            { kind: "pods", pods: { requirements: [{ key: "x", operator: "Exists", values: [] }] }, namespaces: { requirements: [] } },
            { kind: "cidr", cidr: "10.0.0.0/8", except: ["10.2.0.0/16", "10.1.0.0/16"] },
          ],
          ports: [{ protocol: "TCP", port: 80 }, { protocol: "UDP", port: "dns" }, { protocol: "SCTP", port: 9000, endPort: 9010 }, { protocol: "TCP" }],
        },
        { peers: [], ports: [] },
      ],
      egress: [{ peers: [{ kind: "cidr", cidr: "fd00::/8", except: [] }], ports: [] }],
    });
  });

  test("policyTypes: Ingress by default, Egress when there are egress rules; given ones are kept", () => {
    const types = (spec: Record<string, unknown>) => {
      const p = parseNetworkPolicy(np({ podSelector: {}, ...spec }));
      return [p.ingress !== null, p.egress !== null];
    };
    expect(types({})).toEqual([true, false]);
    expect(types({ egress: [] })).toEqual([true, false]);
    expect(types({ egress: [{}] })).toEqual([true, true]);
    expect(types({ policyTypes: [], egress: [{}] })).toEqual([true, true]);
    expect(types({ policyTypes: ["Egress"], ingress: [{}] })).toEqual([false, true]);
    expect(types({ policyTypes: ["Ingress"], egress: [{}] })).toEqual([true, false]);
    expect(types({ policyTypes: ["Ingress", "Ingress"] })).toEqual([true, false]);
  });

  test("host bits of an ipBlock are cleared (a policy from an API server before 1.33)", () => {
    const p = parseNetworkPolicy(np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.1.2.3/8", except: ["10.1.2.3/16"] } }] }] }));
    expect(p.ingress![0]!.peers[0]).toEqual({ kind: "cidr", cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] });
    const q = parseNetworkPolicy(np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "fd00::1/64" } }] }] }));
    expect(q.ingress![0]!.peers[0]).toEqual({ kind: "cidr", cidr: "fd00::/64", except: [] });
    const r = parseNetworkPolicy(np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "FD00:0::/16", except: ["fd00:0001::1/32"] } }] }] }));
    expect(r.ingress![0]!.peers[0]).toEqual({ kind: "cidr", cidr: "fd00::/16", except: ["fd00:1::/32"] });
  });

  const peer = (x: unknown) => ({ podSelector: {}, ingress: [{ from: [x] }] });
  const ports = (x: unknown) => ({ podSelector: {}, ingress: [{ ports: [x] }] });
  const at = "NetworkPolicy prod/p: ";
  const bad: Array<[string, unknown, string]> = [
    ["no spec", undefined, `${at}spec: missing`],
    ["policyTypes value", { policyTypes: ["Both"] }, `${at}spec.policyTypes[0]: "Both" is not one of Ingress, Egress`],
    ["three policyTypes", { policyTypes: ["Ingress", "Egress", "Ingress"] }, `${at}spec.policyTypes: may not specify more than two`],
    ["policyTypes not a list", { policyTypes: "Ingress" }, `${at}spec.policyTypes: "Ingress" is not a list`],
    ["empty peer", peer({}), `${at}spec.ingress[0].from[0]: must specify a peer`],
    ["ipBlock with a selector", peer({ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }), `${at}spec.ingress[0].from[0]: may not specify both ipBlock and another peer`],
    ["unknown peer field", peer({ podSelector: {}, namespaces: {} }), `${at}spec.ingress[0].from[0].namespaces: unknown field`],
    ["ipBlock without cidr", peer({ ipBlock: {} }), `${at}spec.ingress[0].from[0].ipBlock.cidr: required`],
    ["bad cidr", peer({ ipBlock: { cidr: "10.0.0.300/8" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.300/8" is not a valid CIDR`],
    ["leading zero", peer({ ipBlock: { cidr: "010.0.0.0/8" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "010.0.0.0/8" is not a valid CIDR`],
    ["no prefix", peer({ ipBlock: { cidr: "10.0.0.0" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0" is not a valid CIDR`],
    ["prefix too long", peer({ ipBlock: { cidr: "10.0.0.0/33" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a valid IPv4 CIDR`],
    ["IPv4 inside IPv6", peer({ ipBlock: { cidr: "::ffff:10.0.0.0/104" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "::ffff:10.0.0.0/104" is not a valid CIDR`],
    ["IPv6 zone", peer({ ipBlock: { cidr: "fe80::%eth0/64" } }), `${at}spec.ingress[0].from[0].ipBlock.cidr: "fe80::%eth0/64" is not a valid CIDR`],
    ["except outside", peer({ ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }), `${at}spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 must be a strict subset of 10.0.0.0/16`],
    ["except as wide", peer({ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.0.0/16"] } }), `${at}spec.ingress[0].from[0].ipBlock.except[0]: 10.0.0.0/16 must be a strict subset`],
    ["except of the other family", peer({ ipBlock: { cidr: "0.0.0.0/0", except: ["fd00::/8"] } }), `${at}spec.ingress[0].from[0].ipBlock.except[0]: fd00::/8 must be a strict subset of 0.0.0.0/0`],
    ["bad except", peer({ ipBlock: { cidr: "10.0.0.0/8", except: ["x"] } }), `${at}spec.ingress[0].from[0].ipBlock.except[0]: "x" is not a valid CIDR`],
    ["protocol", ports({ protocol: "ICMP" }), `${at}spec.ingress[0].ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP`],
    ["lower case protocol", ports({ protocol: "tcp" }), `${at}spec.ingress[0].ports[0].protocol: "tcp" is not one of`],
    ["port 0", ports({ port: 0 }), `${at}spec.ingress[0].ports[0].port: 0 is not a port (1-65535)`],
    ["port 65536", ports({ port: 65536 }), `${at}spec.ingress[0].ports[0].port: 65536 is not a port`],
    ["fractional port", ports({ port: 80.5 }), `${at}spec.ingress[0].ports[0].port: 80.5 is not a port`],
    ["port name", ports({ port: "HTTP" }), `${at}spec.ingress[0].ports[0].port: "HTTP" is not a port name`],
    ["port name of digits", ports({ port: "8080" }), `${at}spec.ingress[0].ports[0].port: "8080" is not a port name`],
    ["port name too long", ports({ port: "abcdefghijklmnop" }), `${at}spec.ingress[0].ports[0].port: "abcdefghijklmnop" is not a port name`],
    ["endPort with a name", ports({ port: "http", endPort: 90 }), `${at}spec.ingress[0].ports[0].endPort: may not be specified when \`port\` is non-numeric`],
    ["endPort alone", ports({ endPort: 90 }), `${at}spec.ingress[0].ports[0].endPort: may not be specified when \`port\` is not specified`],
    ["endPort below port", ports({ port: 90, endPort: 80 }), `${at}spec.ingress[0].ports[0].endPort: 80 must be greater than or equal to port 90`],
    ["endPort too high", ports({ port: 90, endPort: 70000 }), `${at}spec.ingress[0].ports[0].endPort: 70000 is not a port`],
    ["operator", { podSelector: { matchExpressions: [{ key: "a", operator: "Gt", values: ["1"] }] } }, `${at}spec.podSelector.matchExpressions[0].operator: "Gt" is not one of In, NotIn, Exists, DoesNotExist`],
    ["In without values", { podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }, `${at}spec.podSelector.matchExpressions[0].values: must be non-empty for In`],
    ["NotIn with empty values", { podSelector: { matchExpressions: [{ key: "a", operator: "NotIn", values: [] }] } }, `${at}spec.podSelector.matchExpressions[0].values: must be non-empty for NotIn`],
    ["Exists with values", { podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }, `${at}spec.podSelector.matchExpressions[0].values: must be empty for Exists`],
    ["bad value", { podSelector: { matchExpressions: [{ key: "a", operator: "In", values: ["-x"] }] } }, `${at}spec.podSelector.matchExpressions[0].values[0]: "-x" is not a label value`],
    ["bad key", { podSelector: { matchExpressions: [{ key: "a b", operator: "Exists" }] } }, `${at}spec.podSelector.matchExpressions[0].key: "a b" is not a label key`],
    ["bad key prefix", { podSelector: { matchLabels: { "Example.com/a": "x" } } }, `${at}spec.podSelector.matchLabels[Example.com/a]: "Example.com/a" is not a label key: the prefix must be a DNS subdomain`],
    ["label value too long", { podSelector: { matchLabels: { a: "x".repeat(64) } } }, `${at}spec.podSelector.matchLabels[a]: "${"x".repeat(48)}…" (64 characters) is not a label value`],
    ["label value not a string", { podSelector: { matchLabels: { a: 1 } } }, `${at}spec.podSelector.matchLabels[a]: 1 is not a label value`],
    ["unknown selector field", { podSelector: { matchLabel: {} } }, `${at}spec.podSelector.matchLabel: unknown field`],
    ["rule not an object", { podSelector: {}, egress: ["x"] }, `${at}spec.egress[0]: not an object`],
    ["peer list not a list", { podSelector: {}, egress: [{ to: {} }] }, `${at}spec.egress[0].to: {} is not a list`],
    ["from in an egress rule", { podSelector: {}, egress: [{ from: [] }] }, `${at}spec.egress[0].from: unknown field`],
    ["too many rules", { podSelector: {}, ingress: Array(LIMITS.rules + 1).fill({}) }, `${at}spec.ingress: ${LIMITS.rules + 1} entries: at most ${LIMITS.rules}`],
    ["too many peers", { podSelector: {}, ingress: [{ from: Array(LIMITS.peers + 1).fill({ podSelector: {} }) }] }, `${at}spec.ingress[0].from: ${LIMITS.peers + 1} entries`],
    ["too many ports", { podSelector: {}, ingress: [{ ports: Array(LIMITS.ports + 1).fill({ port: 80 }) }] }, `${at}spec.ingress[0].ports: ${LIMITS.ports + 1} entries`],
    ["too many excepts", peer({ ipBlock: { cidr: "10.0.0.0/8", except: Array(LIMITS.except + 1).fill("10.1.0.0/16") } }), `${at}spec.ingress[0].from[0].ipBlock.except: ${LIMITS.except + 1} entries`],
    ["too many requirements", { podSelector: { matchExpressions: Array(LIMITS.requirements + 1).fill({ key: "a", operator: "Exists" }) } }, `${at}spec.podSelector: ${LIMITS.requirements + 1} entries`],
    ["too many values", { podSelector: { matchExpressions: [{ key: "a", operator: "In", values: Array(LIMITS.values + 1).fill("v") }] } }, `${at}spec.podSelector.matchExpressions[0].values: ${LIMITS.values + 1} entries`],
    ["too many labels", { podSelector: { matchLabels: Object.fromEntries([...Array(LIMITS.labels + 1).keys()].map((i) => [`k${i}`, "v"])) } }, `${at}spec.podSelector.matchLabels: ${LIMITS.labels + 1} entries`],
  ];
  for (const [what, spec, want] of bad.filter(([w]) => !w.startsWith("too many"))) {
    test(`refused: ${what}`, () => {
      expect(policyError(spec)).toStartWith(want);
    });
  }
  // valid Kubernetes past skein's bounds: applied closed (its pods isolated, nothing allowed),
  // every pod of the namespace when the podSelector is what is past them
  for (const [what, spec, want] of bad.filter(([w]) => w.startsWith("too many"))) {
    test(`past skein's bounds, applied closed: ${what}`, () => {
      const r = policyStateFrom([np(spec)]);
      expect(r.errors).toEqual([]);
      const p = r.state.policies[0]!;
      expect(p.closed).toStartWith(want);
      expect(r.closed[0]).toContain("fail closed");
      expect(p.ingress).toEqual([]);
      expect(p.egress).toBeNull();
      if (what.includes("requirements") || what.includes("values") || what.includes("labels")) expect(p.podSelector).toEqual({ requirements: [] });
    });
  }
  test("past skein's bounds in egress: closed both ways the policy names", () => {
    const p = policyStateFrom([{ kind: "NetworkPolicy", metadata: { namespace: "prod", name: "web" }, spec: { podSelector: { matchLabels: { app: "web" } }, egress: Array(LIMITS.rules + 1).fill({}) } }]).state.policies[0]!;
    expect(p).toMatchObject({ ingress: [], egress: [], podSelector: { requirements: [{ key: "app", operator: "In", values: ["web"] }] } });
  });

  test("names: a namespace must be a DNS label, a name a DNS subdomain", () => {
    expect(policyStateFrom([{ kind: "NetworkPolicy", metadata: { namespace: "Prod", name: "p" }, spec: {} }]).errors).toEqual(['NetworkPolicy Prod/p: metadata.namespace: "Prod" is not a valid name']);
    expect(policyStateFrom([{ kind: "NetworkPolicy", metadata: { namespace: "prod", name: "skein:x" }, spec: {} }]).errors).toEqual(['NetworkPolicy prod/skein:x: metadata.name: "skein:x" is not a valid name']);
    expect(policyStateFrom([{ kind: "NetworkPolicy", metadata: { namespace: "prod" }, spec: {} }]).errors).toEqual(["NetworkPolicy prod/?: metadata.name: missing"]);
  });
});

describe("parsePod", () => {
  test("addresses from podIPs, else podIP; named ports of containers and sidecars", () => {
    const p = parsePod(
      pod({
        spec: {
          nodeName: "n1",
          containers: [{ ports: [{ name: "http", containerPort: 8080 }, { containerPort: 9999 }] }, { ports: [{ name: "dns", containerPort: 53, protocol: "UDP" }] }],
          initContainers: [
            { restartPolicy: "Always", ports: [{ name: "proxy", containerPort: 15001 }] },
            { ports: [{ name: "setup", containerPort: 1 }] },
          ],
        },
        status: { phase: "Running", podIP: "10.244.1.5", podIPs: [{ ip: "10.244.1.5" }, { ip: "fd00::5" }] },
      }),
    );
    expect(p).toEqual({
      namespace: "prod",
      name: "web-1",
      nodeName: "n1",
      ips: ["10.244.1.5", "fd00::5"],
      labels: { app: "web" },
      ports: [
        { name: "http", protocol: "TCP", port: 8080 },
        { name: "dns", protocol: "UDP", port: 53 },
        { name: "proxy", protocol: "TCP", port: 15001 },
      ],
    });
    expect(parsePod(pod({ status: { phase: "Running", podIP: "10.244.1.6" } }))!.ips).toEqual(["10.244.1.6"]);
    expect(parsePod(pod({ status: { phase: "Pending" }, spec: {} }))).toMatchObject({ ips: [], nodeName: "" });
  });

  test("host network pods and finished pods are left out", () => {
    expect(parsePod(pod({ spec: { hostNetwork: true, nodeName: "n1" } }))).toBeUndefined();
    expect(parsePod(pod({ status: { phase: "Succeeded", podIP: "10.244.1.5" } }))).toBeUndefined();
    expect(parsePod(pod({ status: { phase: "Failed", podIP: "10.244.1.5" } }))).toBeUndefined();
    expect(policyStateFrom([pod({ status: { phase: "Failed", podIP: "10.244.1.5" } })])).toEqual({ state: { namespaces: [], pods: [], policies: [] }, errors: [], closed: [] });
  });

  const at = "Pod prod/web-1: ";
  const bad: Array<[string, Parameters<typeof pod>[0], string]> = [
    ["a non-canonical address", { status: { podIP: "10.244.01.5" } }, `${at}status.podIP: "10.244.01.5" is not a valid IPv4 address (leading zero)`],
    ["an address in podIPs", { status: { podIPs: [{ ip: "FD00::1" }] } }, `${at}status.podIPs[0].ip: "FD00::1" is not a valid IPv6 address`],
    ["three podIPs", { status: { podIPs: [{ ip: "10.0.0.1" }, { ip: "fd00::1" }, { ip: "fd00::2" }] } }, `${at}status.podIPs: 3 entries: at most 2`],
    ["two IPv4 podIPs", { status: { podIPs: [{ ip: "10.0.0.1" }, { ip: "10.0.0.2" }] } }, `${at}status.podIPs[1].ip: two addresses of one family`],
    ["a label", { labels: { "a/b/c": "x" } }, `${at}metadata.labels[a/b/c]: "a/b/c" is not a label key`],
    ["a port name", { spec: { containers: [{ ports: [{ name: "Web", containerPort: 80 }] }] } }, `${at}spec.containers[0].ports[0].name: "Web" is not a port name`],
    ["a port", { spec: { containers: [{ ports: [{ name: "web", containerPort: 0 }] }] } }, `${at}spec.containers[0].ports[0].containerPort: 0 is not a port`],
    ["a protocol", { spec: { containers: [{ ports: [{ name: "web", containerPort: 80, protocol: "ICMP" }] }] } }, `${at}spec.containers[0].ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP`],
    ["a name twice", { spec: { containers: [{ ports: [{ name: "web", containerPort: 80 }] }, { ports: [{ name: "web", containerPort: 81 }] }] } }, `${at}spec.containers[1].ports[0].name: "web" is used twice in the pod`],
    ["too many containers", { spec: { containers: Array(LIMITS.containers + 1).fill({}) } }, `${at}spec.containers: ${LIMITS.containers + 1} entries`],
    ["a nodeName", { spec: { nodeName: 5 } }, `${at}spec.nodeName: 5 is not a string`],
  ];
  for (const [what, o, want] of bad) {
    test(`refused: ${what}`, () => {
      const { errors } = policyStateFrom([pod(o)]);
      expect(errors.join("\n")).toStartWith(want);
    });
  }
});

describe("parseNamespace", () => {
  test("the name label is added; the isolation annotation is read", () => {
    expect(parseNamespace({ kind: "Namespace", metadata: { name: "prod", labels: { team: "a", "kubernetes.io/metadata.name": "other" } } })).toEqual({
      name: "prod",
      labels: { team: "a", "kubernetes.io/metadata.name": "prod" },
      isolation: false,
    });
    expect(parseNamespace({ kind: "Namespace", metadata: { name: "prod", annotations: { "skein.io/isolation": "namespace", other: "x" } } }).isolation).toBe(true);
  });

  test("an unknown isolation mode, a bad name or labels are refused", () => {
    const { errors } = policyStateFrom([
      { kind: "Namespace", metadata: { name: "a", annotations: { "skein.io/isolation": "app" } } },
      { kind: "Namespace", metadata: { name: "B" } },
      { kind: "Namespace", metadata: { name: "c", labels: { x: "?" } } },
      { kind: "Namespace", metadata: {} },
    ]);
    expect(errors).toEqual([
      'Namespace a: metadata.annotations[skein.io/isolation]: "app" is not a known isolation mode (only "namespace")',
      'Namespace B: metadata.name: "B" is not a valid name',
      'Namespace c: metadata.labels[x]: "?" is not a label value: at most 63 characters, alphanumeric, \'-\', \'_\' or \'.\', starting and ending alphanumeric',
      "Namespace ?: metadata.name: missing",
    ]);
  });
});

describe("policyStateFrom", () => {
  test("every kind read, other kinds ignored, bad objects reported and the rest kept", () => {
    const { state, errors } = policyStateFrom([
      { kind: "Namespace", metadata: { name: "prod" } },
      pod({}),
      np({ podSelector: {} }, "good"),
      np({ podSelector: {}, policyTypes: ["x"] }, "bad"),
      { kind: "Service", metadata: { name: "s" } },
      "junk",
      null,
    ]);
    expect(state.namespaces.map((n) => n.name)).toEqual(["prod"]);
    expect(state.pods.map((p) => p.name)).toEqual(["web-1"]);
    expect(state.policies.map((p) => p.name)).toEqual(["good"]);
    expect(errors).toEqual(['NetworkPolicy prod/bad: spec.policyTypes[0]: "x" is not one of Ingress, Egress', "object 5: not a Kubernetes object", "object 6: not a Kubernetes object"]);
  });
});

describe("a file of objects", () => {
  const pol = (extra: Record<string, unknown> = {}) => ({ kind: "NetworkPolicy", apiVersion: "networking.k8s.io/v1", metadata: { namespace: "prod", name: "p" }, spec: {}, ...extra });
  test("a kind under another apiVersion, a second object of one name and a Pod whose spec is no object are refused by name", () => {
    const r = policyStateFrom([
      pol(),
      pol(),
      pol({ apiVersion: "networking.k8s.io/v2", metadata: { namespace: "prod", name: "q" } }),
      pol({ apiVersion: undefined, metadata: { namespace: "prod", name: "r" } }),
      { kind: "Pod", metadata: { namespace: "prod", name: "x" }, spec: "x", status: 7 },
    ]);
    expect(r.state.policies.map((p) => p.name)).toEqual(["p", "r"]);
    expect(r.errors).toEqual([
      "NetworkPolicy prod/p: metadata.name: a second object of this kind and name in the file: the first one is read",
      'NetworkPolicy prod/q: apiVersion: "networking.k8s.io/v2" is not networking.k8s.io/v1',
      'Pod prod/x: spec: "x" is not an object',
    ]);
  });
});
