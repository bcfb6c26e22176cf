import { describe, expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { compilePolicy } from "../../compiler/policy/reference.ts";
import { policyStateFrom } from "../../compiler/policy/state.ts";
import { verdict } from "../../compiler/policy/verdict.ts";
import { withServiceSources } from "../../compiler/policy/via-service.ts";
import { targetBackends } from "../../compiler/tables.ts";
import { planOverlay, type Mode } from "../overlay/plan.ts";
import { vtepMacFor } from "../gossip/record.ts";
import { explain, type BackendStep, type FrontendStep, type PolicyStep, type RouteStep, type TraceInput, type TraceResult } from "./explain.ts";
import { ringSlot } from "./jhash.ts";
import { parseQuery } from "./query.ts";
import { renderTrace } from "./render.ts";
import { cluster, NODE_A, NODE_B } from "./fixture.case.ts";
import { HOSTILE } from "../../compiler/address.case.ts";

const CIDRS: Record<string, string[]> = { [NODE_A]: ["10.244.1.0/24", "fd00:10:244:1::/64"], [NODE_B]: ["10.244.2.0/24", "fd00:10:244:2::/64"] };
const nodes = Object.entries(CIDRS).map(([name, podCIDRs]) => ({ name, podCIDRs }));

/** What node `node`'s agent would hold of `objects`, the peers planned as the agent plans them. */
function inputOf(objects: unknown[], o: { node?: string; mode?: Mode; subnet?: string; live?: boolean } = {}): TraceInput {
  const node = o.node ?? NODE_A;
  const nodeIPs = node === NODE_A ? ["192.168.50.11", "fd50::11"] : ["192.168.50.12", "fd50::12"];
  const tables = compile(clusterStateFrom(objects).state, { nodeName: node, nodeIPs, ringFactor: 10 });
  const ps = policyStateFrom(objects).state;
  const policyOf = (n: string) => withServiceSources(compilePolicy(ps, { nodeName: n, podCIDRs: CIDRS[n]!, maxIdentity: 4000 }), nodes, n);
  const other = node === NODE_A ? NODE_B : NODE_A;
  const plan = planOverlay(
    { name: node, podCIDRs: CIDRS[node]!, underlay: nodeIPs[0]!, underlaySubnet: o.subnet ?? "192.168.50.0/24", underlayDev: "eth0", underlayMtu: 1500, mode: o.mode ?? "auto", vtepMac: vtepMacFor(node) },
    [{ name: other, podCIDRs: CIDRS[other]!, underlay: other === NODE_A ? "192.168.50.11" : "192.168.50.12", vtepMac: vtepMacFor(other) }],
  );
  return {
    node,
    mode: o.live ? "live" : "offline",
    nodeIPs,
    tables,
    ringFactor: 10,
    policy: ps.policies.length || ps.namespaces.some((n) => n.isolation) ? policyOf(node) : undefined,
    ...(o.live ? {} : { peerPolicies: { [other]: policyOf(other) } }),
    podCIDRs: CIDRS[node]!,
    peers: plan.paths,
    clusterCIDRs: [...CIDRS[NODE_A]!, ...CIDRS[NODE_B]!],
    serviceCIDRs: ["10.96.0.0/16", "fd00:96::/112"],
    pods: ps.pods,
    services: clusterStateFrom(objects).state.services,
  };
}

const step = <K extends TraceResult["steps"][number]["kind"]>(r: TraceResult, kind: K) => r.steps.find((s) => s.kind === kind) as Extract<TraceResult["steps"][number], { kind: K }> | undefined;
const trace = (input: TraceInput, src: string, dst: string) => explain(input, parseQuery(src, dst));

describe("frontend and backend", () => {
  const input = inputOf(cluster());
  for (const [fam, src, dst] of [[4, "10.244.1.5", "10.96.0.10:80"], [6, "fd00:10:244:1::5", "[fd00:96::10]:80"]] as const) {
    test(`IPv${fam}: a ClusterIP with a source port names the frontend, every candidate with its share of the ring, and the backend the kernel's hash picks`, () => {
      for (const sport of [1, 1234, 40000, 65535]) {
        const r = trace(input, fam === 4 ? `${src}:${sport}` : `[${src}]:${sport}`, dst);
        const f = step(r, "frontend")!;
        expect(f).toMatchObject({ result: "translated", hook: "prerouting", frontend: { kind: "cluster", service: "default/web:80/TCP", scope: "internal" } });
        const b = step(r, "backend")!;
        const t = input.tables.targets.find((x) => x.id === f.frontend!.target)!;
        expect(b.candidates.map((c) => c.slots).reduce((x, y) => x + y)).toBe(t.ringSize);
        expect(b.candidates.map((c) => c.where.pod)).toEqual(["default/web-a", "default/web-b"]);
        const slot = ringSlot(src, sport, t.ringSize);
        expect(b.chosen).toMatchObject({ slot, ip: targetBackends(t)[t.ring[slot]!]!.ip, port: 8080 });
        expect(r.destination).toMatchObject({ ip: b.chosen!.ip, port: 8080 });
        expect(r.outcome).toBe("delivered");
      }
    });
  }

  test("without a source port: the candidates, none chosen, and the trace says the source port decides", () => {
    const r = trace(input, "10.244.1.5", "10.96.0.10:80");
    const b = step(r, "backend")!;
    expect(b.chosen).toBeUndefined();
    expect(b.candidates).toHaveLength(2);
    expect(b.lines.join("\n")).toContain("the source port decides");
    expect(r.summary).toContain("the source port decides");
  });

  test("sessionAffinity ClientIP hashes the address alone: a backend is chosen without a port, the same for every port", () => {
    const picks = new Set(["10.244.1.5", "10.244.1.5:1", "10.244.1.5:50000"].map((s) => step(trace(input, s, "10.96.0.30:80"), "backend")!.chosen?.ip));
    expect(picks.size).toBe(1);
    expect([...picks][0]).toBeDefined();
    expect(step(trace(input, "10.244.1.5", "10.96.0.30:80"), "backend")!.hash).toBe("saddr");
  });

  test("no endpoints, and an unserved address of the Service range: rejected, TCP reset or ICMP", () => {
    const r = trace(input, "10.244.1.5", "10.96.0.20:53/udp");
    expect(r.outcome).toBe("rejected");
    expect(step(r, "frontend")).toMatchObject({ result: "rejected", frontend: { service: "default/empty:53/UDP" } });
    expect(step(r, "frontend")!.lines.join("\n")).toContain("ICMP port unreachable");
    expect(r.steps).toHaveLength(1);
    const s = trace(input, "fd00:10:244:1::5", "[fd00:96::99]:80");
    expect(s.outcome).toBe("rejected");
    expect(step(s, "frontend")!.lines[0]).toContain("Service range fd00:96::/112");
    expect(step(s, "frontend")!.lines[0]).toContain("TCP reset");
  });

  test("a NodePort with externalTrafficPolicy Local: only this node's endpoint, the client address kept; the node's own packets go through nat output", () => {
    const r = trace(input, "203.0.113.9:5000", "192.168.50.11:30080");
    expect(step(r, "frontend")).toMatchObject({ result: "translated", frontend: { kind: "nodeport", scope: "external", masquerade: false } });
    expect(step(r, "backend")!.candidates.map((c) => c.ip)).toEqual(["10.244.1.10"]);
    expect(step(r, "route")!.snat).toBeUndefined();
    expect(r.source.kind).toBe("outside");
    const b = inputOf(cluster(), { node: NODE_B });
    const own = trace(b, "192.168.50.12:5000", "192.168.50.12:30080");
    expect(step(own, "frontend")).toMatchObject({ hook: "output" });
    expect(step(own, "backend")!.candidates.map((c) => c.ip)).toEqual(["10.244.2.10"]);
  });

  test("internalTrafficPolicy Local: this node's endpoints only; none here is a rejection that says why", () => {
    const a = trace(input, "10.244.1.5", "10.96.0.50:80");
    expect(a.outcome).toBe("rejected");
    expect(step(a, "frontend")!.lines.join("\n")).toMatch(/internalTrafficPolicy Local[^]*no endpoints on this node/);
    const b = trace(inputOf(cluster(), { node: NODE_B }), "10.244.2.5:7", "10.96.0.50:80");
    expect(step(b, "backend")!.chosen).toMatchObject({ ip: "10.244.2.10" });
  });

  test("an address no Service serves, outside the Service range: untranslated", () => {
    const r = trace(input, "10.244.1.5", "10.244.2.10:8080");
    expect(step(r, "frontend")!.result).toBe("none");
    expect(step(r, "backend")).toBeUndefined();
    expect(r.destination).toMatchObject({ kind: "peer-pod", node: NODE_B, pod: "default/web-b" });
  });
});

describe("policy", () => {
  const input = inputOf(cluster({ policy: true }));

  test("allowed and denied name the policy; the verdict agrees with compiler/policy/verdict.ts on the node that judges", () => {
    const ok = trace(input, "10.244.1.5", "10.244.1.10:8080");
    const side = step(ok, "policy")!.sides.find((s) => s.direction === "ingress")!;
    expect(side).toMatchObject({ node: NODE_A, result: "allowed", isolatedBy: ["default/web-from-client"], allowedBy: ["default/web-from-client"] });
    const no = trace(input, "10.244.1.6", "10.244.1.10:8080");
    expect(no.outcome).toBe("dropped");
    expect(step(no, "policy")!.sides.find((s) => s.direction === "ingress")).toMatchObject({ result: "denied", isolatedBy: ["default/web-from-client"], allowedBy: [] });
    expect(no.summary).toContain("default/web-from-client");
    const port = trace(input, "10.244.1.5", "10.244.1.10:9090");
    expect(port.outcome).toBe("dropped");
    for (const [r, src, dst, p] of [[ok, "10.244.1.5", "10.244.1.10", 8080], [no, "10.244.1.6", "10.244.1.10", 8080], [port, "10.244.1.5", "10.244.1.10", 9090]] as const) {
      expect(r.outcome === "delivered").toBe(verdict(input.policy!, { src, dst, proto: "TCP", port: p }).allowed);
    }
  });

  test("IPv6 through a ClusterIP to the other node: ingress is judged there, with that node's tables when known, else undecided", () => {
    // a source port whose hash picks the backend on node B
    const q = (s: string) => `[fd00:10:244:1::${s}]`;
    let sport = 1;
    const pickB = (inp: TraceInput, who: string) => {
      for (sport = 1; sport < 200; sport++) if (step(trace(inp, `${q(who)}:${sport}`, "[fd00:96::10]:80"), "backend")!.chosen!.ip === "fd00:10:244:2::10") return trace(inp, `${q(who)}:${sport}`, "[fd00:96::10]:80");
      throw new Error("no port picks node B");
    };
    const denied = pickB(input, "6");
    expect(denied.outcome).toBe("dropped");
    expect(step(denied, "policy")!.sides.find((s) => s.direction === "ingress")).toMatchObject({ node: NODE_B, result: "denied" });
    const allowed = pickB(input, "5");
    expect(allowed.outcome).toBe("delivered");
    const live = pickB(inputOf(cluster({ policy: true }), { live: true }), "6");
    expect(live.outcome).toBe("undecided");
    expect(step(live, "policy")!.sides.find((s) => s.direction === "ingress")).toMatchObject({ node: NODE_B, result: "unknown" });
  });

  test("egress is judged on the source's node: denied names the policy isolating it, allowed the one allowing it (ipBlock identities)", () => {
    const e = inputOf(cluster({ egress: true }));
    const no = trace(e, "10.244.1.6", "8.8.8.8:443");
    expect(no.outcome).toBe("dropped");
    expect(step(no, "policy")!.sides[0]).toMatchObject({ direction: "egress", node: NODE_A, result: "denied", isolatedBy: ["default/other-egress"], dstIdentity: expect.stringContaining("WORLD") });
    const ok = trace(e, "10.244.1.6", "10.1.2.3:53/udp");
    expect(step(ok, "policy")!.sides[0]).toMatchObject({ direction: "egress", result: "allowed", allowedBy: ["default/other-egress"], dstIdentity: expect.stringContaining("10.0.0.0/8") });
    expect(ok.outcome).toBe("delivered");
    // the port decides too
    expect(trace(e, "10.244.1.6", "10.1.2.3:53/tcp").outcome).toBe("dropped");
    // and the client, whom no egress policy selects, goes anywhere
    expect(trace(e, "10.244.1.5", "8.8.8.8:443").outcome).toBe("delivered");
  });

  test("an address of this node's pod CIDRs that no pod holds is BLOCKED (fail closed)", () => {
    const r = trace(input, "10.244.1.5", "10.244.1.99:80");
    expect(r.outcome).toBe("dropped");
    const s = step(r, "policy")!.sides.find((x) => x.result === "denied")!;
    expect(s.dstIdentity).toBe("BLOCKED");
    expect(s.lines.join("\n")).toContain("fail closed");
  });

  test("an isolated namespace's Service from another node: the source becomes this node's Service source address, which the backend's node reads as VIA_SERVICE; the pod itself stays closed", () => {
    const iso = inputOf(cluster({ isolated: true }));
    const r = trace(iso, "10.244.1.5:1000", "10.96.0.40:5432");
    expect(r.outcome).toBe("delivered");
    expect(step(r, "route")).toMatchObject({ how: "direct", peer: NODE_B });
    expect(step(r, "route")!.snat).toContain("10.244.1.1");
    const ingress = step(r, "policy")!.sides.find((s) => s.direction === "ingress")!;
    expect(ingress).toMatchObject({ node: NODE_B, src: "10.244.1.1", srcIdentity: expect.stringContaining("VIA_SERVICE"), result: "allowed" });
    const direct = trace(iso, "10.244.1.5:1000", "10.244.2.20:5432");
    expect(direct.outcome).toBe("dropped");
  });

  test("a pod reaching itself through a Service: hairpin, accepted before any policy, masqueraded", () => {
    let r: TraceResult | undefined;
    for (let sport = 1; sport < 200 && !r; sport++) {
      const t = trace(input, `10.244.1.10:${sport}`, "10.96.0.10:80");
      if (step(t, "backend")!.chosen!.ip === "10.244.1.10") r = t;
    }
    expect(r!.outcome).toBe("delivered");
    expect(step(r!, "policy")).toMatchObject({ sides: [], lines: [expect.stringContaining("hairpin")] });
    expect(step(r!, "route")!.snat).toContain("hairpin");
  });

  test("a packet from another node's pod: its egress is that node's to judge (unknown to a live agent), ingress is judged here", () => {
    const b = inputOf(cluster({ policy: true }), { node: NODE_B, live: true });
    const r = trace(b, "10.244.1.6:5", "10.244.2.10:8080");
    expect(r.source).toMatchObject({ kind: "peer-pod", node: NODE_A, pod: "default/other" });
    expect(step(r, "policy")!.sides.map((s) => [s.direction, s.node, s.result])).toEqual([["egress", NODE_A, "unknown"], ["ingress", NODE_B, "denied"]]);
    expect(r.outcome).toBe("dropped");
    expect(r.notes.join("\n")).toContain(`a pod of node ${NODE_A}`);
  });

  test("an isolated namespace's Service from the same node: the Service's DNAT admits it as VIA_SERVICE; the pod address itself does not", () => {
    const b = inputOf(cluster({ isolated: true }), { node: NODE_B });
    const r = trace(b, "10.244.2.10:1000", "10.96.0.40:5432");
    expect(r.outcome).toBe("delivered");
    const ingress = step(r, "policy")!.sides.find((s) => s.direction === "ingress")!;
    expect(ingress).toMatchObject({ node: NODE_B, result: "allowed", allowedBy: ["iso/skein:isolation"] });
    expect(ingress.lines.join("\n")).toContain("VIA_SERVICE");
    expect(step(r, "route")!.snat).toBeUndefined();
    expect(trace(b, "10.244.2.10:1000", "10.244.2.20:5432").outcome).toBe("dropped");
  });

  test("the node's own packets and traffic to the node are not policed", () => {
    const r = trace(input, "192.168.50.11", "10.244.1.10:9999");
    expect(step(r, "policy")!.sides.map((s) => s.result)).toEqual(["not-policed", "not-policed"]);
    expect(r.outcome).toBe("delivered");
  });
});

describe("route", () => {
  test("direct on a shared subnet, VXLAN otherwise (and always for IPv6 over an IPv4 underlay); no route for a peer the plan refuses", () => {
    const direct = trace(inputOf(cluster()), "10.244.1.5", "10.244.2.10:8080");
    expect(step(direct, "route")).toMatchObject({ how: "direct", peer: NODE_B, cidr: "10.244.2.0/24", endpoint: "192.168.50.12" });
    const vx = trace(inputOf(cluster(), { mode: "vxlan" }), "10.244.1.5", "10.244.2.10:8080");
    expect(step(vx, "route")).toMatchObject({ how: "vxlan", endpoint: "192.168.50.12" });
    expect(step(vx, "route")!.lines[0]).toContain("skein.vxlan");
    const v6 = trace(inputOf(cluster()), "fd00:10:244:1::5", "[fd00:10:244:2::10]:8080");
    expect(step(v6, "route")).toMatchObject({ how: "vxlan", cidr: "fd00:10:244:2::/64" });
    const none = trace(inputOf(cluster(), { mode: "direct", subnet: "192.168.50.10/31" }), "10.244.1.5", "10.244.2.10:8080");
    expect(step(none, "route")!.how).toBe("no-route");
    expect(none.outcome).toBe("undecided");
  });

  test("out of the cluster: a pod's packets are masqueraded, the node's are not; into the tunnel from outside the pod network: masqueraded", () => {
    const input = inputOf(cluster());
    expect(step(trace(input, "10.244.1.5", "1.1.1.1:443"), "route")).toMatchObject({ how: "outside", snat: expect.stringContaining("skein_cni") });
    expect(step(trace(input, "fd00:10:244:1::5", "[2001:db8::1]:443"), "route")).toMatchObject({ how: "outside", snat: expect.stringContaining("skein_cni") });
    expect(step(trace(input, "192.168.50.11", "1.1.1.1:443"), "route")!.snat).toBeUndefined();
    const peer = trace(input, "10.244.1.5", "192.168.50.12:10250");
    expect(peer.destination).toMatchObject({ kind: "outside", node: NODE_B });
    expect(step(peer, "route")!.lines[0]).toContain("node-b's own address");
    expect(step(trace(inputOf(cluster(), { mode: "vxlan" }), "192.168.50.11", "10.244.2.10:8080"), "route")!.snat).toContain("skein.vxlan");
  });

  test("to this node's own pod and to the node", () => {
    const input = inputOf(cluster());
    expect(step(trace(input, "10.244.1.5", "10.244.1.10:8080"), "route")!.how).toBe("local-pod");
    expect(step(trace(input, "10.244.1.5", "192.168.50.11:22"), "route")!.how).toBe("this-node");
  });
});

describe("render and JSON", () => {
  const input = inputOf(cluster({ policy: true }));
  test("numbered steps; colours only when asked; the result survives JSON", () => {
    const r = trace(input, "10.244.1.6:40000", "10.96.0.10:80");
    const plain = renderTrace(r, { color: false });
    expect(plain).not.toContain("\x1b[");
    expect(plain).toMatch(/^1\. Service frontend: /m);
    expect(plain).toMatch(/^2\. backend: /m);
    expect(plain).toMatch(/^3\. NetworkPolicy: /m);
    expect(plain).toMatch(/^4\. route: /m);
    expect(renderTrace(r, { color: true })).toContain("\x1b[");
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });
});

describe("query", () => {
  test("reads SRC[:PORT] and DST:PORT[/PROTO] strictly", () => {
    expect(parseQuery("10.0.0.1", "10.96.0.1:80")).toEqual({ src: "10.0.0.1", dst: "10.96.0.1", dport: 80, proto: "TCP" });
    expect(parseQuery("[fd00::1]:5", "[fd00::2]:53/udp")).toEqual({ src: "fd00::1", sport: 5, dst: "fd00::2", dport: 53, proto: "UDP" });
    expect(parseQuery("fd00::1", "[fd00::2]:80/sctp").proto).toBe("SCTP");
    for (const [s, d, why] of [
      ["10.0.0.1", "10.96.0.1", /no port/],
      ["10.0.0.1", "10.96.0.1:0", /not a port/],
      ["10.0.0.1", "10.96.0.1:65536", /not a port/],
      ["10.0.0.1", "10.96.0.1:080", /not a port/],
      ["10.0.0.1", "10.96.0.1:80/icmp", /not tcp, udp or sctp/],
      ["10.0.0.1", "10.96.0.1:80/TCP", /not tcp, udp or sctp/],
      ["010.0.0.1", "10.96.0.1:80", /leading zero/],
      ["10.0.0.1:x", "10.96.0.1:80", /not a port/],
      ["10.0.0.1", "fd00::2:80", /brackets/],
      ["[10.0.0.1]:5", "10.96.0.1:80", /IPv6/],
      ["fd00::1", "10.96.0.1:80", /one family/],
      ["FD00::1", "[fd00::2]:80", /canonical/],
      ["1".repeat(100), "10.96.0.1:80", /too long/],
      ["", "10.96.0.1:80", /missing/],
    ] as const) expect(() => parseQuery(s, d)).toThrow(why);
  });

  test("every hostile address of compiler/address.case.ts is refused as source and as destination, the message bounded", () => {
    for (const h of HOSTILE) {
      // (a value that is no string reaches the destination only as text)
      for (const [s, d, what] of [[h.value, "10.96.0.1:80", "source"], ...(typeof h.value === "string" ? [["10.0.0.1", `${h.value}:80`, "destination"]] : [])] as const) {
        let msg = "";
        try {
          parseQuery(s as string, d as string);
        } catch (e) {
          msg = (e as Error).message;
        }
        expect({ v: String(h.value).slice(0, 20), what, ok: msg.startsWith(`${what}:`) }).toEqual({ v: String(h.value).slice(0, 20), what, ok: true });
        expect(msg.length).toBeLessThan(300);
      }
    }
  });
});
