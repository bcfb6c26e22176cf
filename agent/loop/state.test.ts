// What the agent reads of its Node, against the shared table of hostile values
// (compiler/address.case.ts): a refused Node is reported by name and field, and what was read
// from it before stays in force.
import { describe, expect, test } from "bun:test";
import { HOSTILE, UNUSABLE_POD_CIDRS, VALID_ADDRESSES, VALID_POD_CIDRS } from "../../compiler/address.case.ts";
import { quote } from "../../compiler/address.ts";
import { ClusterStore, keep, type NodeInfo } from "./state.ts";
import type { WatchEvent } from "../watch/watcher.ts";

const compiler = { setService() {}, setSlice() {}, deleteService() {}, deleteSlice() {}, counts: () => ({ services: 0, slices: 0 }) };
const policy = { setPod() {}, deletePod() {}, setNamespace() {}, deleteNamespace() {}, setPolicy() {}, deletePolicy() {}, counts: () => ({ pods: 0, namespaces: 0, policies: 0 }) };
const GOOD = { metadata: { name: "n1" }, spec: { podCIDRs: ["10.244.3.0/24", "fd00:10:244:3::/64"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }, { type: "Hostname", address: "n1" }] } };

function store() {
  const seen: Array<NodeInfo | undefined> = [];
  const rejects: string[] = [];
  const s = new ClusterStore(compiler, "n1", policy, { onNode: (n) => seen.push(n), onReject: (what, m) => rejects.push(`${what} | ${m}`) });
  const node = (o: Record<string, unknown>) => s.apply({ kind: "Node", op: "set", object: o as WatchEvent["object"] });
  return { s, seen, rejects, node };
}

// each field of a Node skein reads, as a function putting a value there
const fields: Array<[string, (v: unknown) => Record<string, unknown>]> = [
  ["spec.podCIDRs[0]", (v) => ({ ...GOOD, spec: { podCIDRs: [v] } })],
  ["spec.podCIDRs[1]", (v) => ({ ...GOOD, spec: { podCIDRs: ["10.244.3.0/24", v] } })],
  ["spec.podCIDR", (v) => ({ ...GOOD, spec: { podCIDR: v } })],
  ["status.addresses[0].address", (v) => ({ ...GOOD, status: { addresses: [{ type: "InternalIP", address: v }] } })],
  ["status.addresses[1].address", (v) => ({ ...GOOD, status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }, { type: "ExternalIP", address: v }] } })],
];
const cidrField = (f: string) => f.startsWith("spec.");
const GOOD_INFO = { name: "n1", podCIDRs: ["10.244.3.0/24", "fd00:10:244:3::/64"], addresses: ["192.0.2.10"], internalIPs: ["192.0.2.10"] };

describe("Node fields", () => {
  const cases = fields.flatMap(([field, put]) => [
    // (a null podCIDR is JSON's way of leaving the field out, as Kubernetes reads it)
    ...HOSTILE.filter((h) => !(field === "spec.podCIDR" && h.value === null)).map((h) => [`${field} = ${quote(h.value)}`, field, put(h.value)] as const),
    // pod CIDRs that read as CIDRs but cannot work
    ...(cidrField(field) ? UNUSABLE_POD_CIDRS.map(([c]) => [`${field} = ${c} (cannot work)`, field, put(c)] as const) : []),
  ]);

  test.each(cases)("%s is refused, naming the Node and the field; what was read before stays", (_n, field, bad) => {
    const { s, seen, rejects, node } = store();
    expect(node(GOOD)).toBe(true);
    const before = s.node;
    expect(before).toEqual(GOOD_INFO);
    expect(node(bad)).toBe(false);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]!.startsWith(`Node default/n1 | Node n1: ${field}: `)).toBe(true);
    expect(s.rejected.get("Node default/n1")).toBeDefined();
    // not handed on: no node file is written from it, the NodePort addresses stay
    expect(seen).toHaveLength(1);
    expect(s.node).toBe(before);
  });

  test("the table holds at least 30 hostile values for every field", () => {
    for (const [field] of fields) expect(cases.filter((c) => c[1] === field).length).toBeGreaterThanOrEqual(30);
  });

  test("pod CIDRs that cannot work say why", () => {
    for (const [c, why] of UNUSABLE_POD_CIDRS) {
      const { rejects, node } = store();
      node({ ...GOOD, spec: { podCIDRs: [c] } });
      expect(rejects[0]).toMatch(why);
    }
  });

  test("two pod CIDRs of one family are refused", () => {
    const { rejects, node } = store();
    node({ ...GOOD, spec: { podCIDRs: ["10.244.3.0/24", "10.244.4.0/24"] } });
    expect(rejects).toEqual(["Node default/n1 | Node n1: spec.podCIDRs: at most one pod CIDR per address family, not 10.244.3.0/24, 10.244.4.0/24"]);
  });

  test("valid values are read as they are; a good update after a refused one is taken", () => {
    for (const c of VALID_POD_CIDRS) {
      const { s, node } = store();
      expect(node({ ...GOOD, spec: { podCIDR: c } })).toBe(true);
      expect(s.node!.podCIDRs).toEqual([c]);
    }
    for (const a of VALID_ADDRESSES) {
      const { s, node } = store();
      node({ ...GOOD, status: { addresses: [{ type: "ExternalIP", address: a }, { type: "Hostname", address: "not-an-address" }] } });
      expect(s.node!.addresses).toEqual([a]);
    }
    const { s, rejects, node } = store();
    node({ ...GOOD, spec: { podCIDRs: ["010.244.3.0/24"] } });
    expect(s.node).toBeUndefined();
    expect(rejects).toHaveLength(1);
    expect(node(GOOD)).toBe(true);
    expect(s.node!.podCIDRs).toEqual(GOOD.spec.podCIDRs);
    expect(s.rejected.size).toBe(0);
  });

  test("another Node's fields are read as strictly (they route pods to it), and never touch this node's", () => {
    const { s, rejects, seen, node } = store();
    node(GOOD);
    expect(node({ metadata: { name: "n2" }, spec: { podCIDRs: ["010.0.0.0/8"] } })).toBe(false);
    expect(rejects).toEqual(['Node default/n2 | Node n2: spec.podCIDRs[0]: "010.0.0.0/8" is not a valid CIDR (IPv4 address: leading zero)']);
    expect(seen).toHaveLength(1);
    expect(s.node).toEqual(GOOD_INFO);
  });
});

describe("every Node, for the pod network", () => {
  function all() {
    const seen: Array<[string, NodeInfo | undefined]> = [];
    const self: Array<NodeInfo | undefined> = [];
    const s = new ClusterStore(compiler, "n1", policy, { onNode: (n) => self.push(n), onNodes: (name, n) => seen.push([name, n]) });
    const node = (o: Record<string, unknown>, op: "set" | "delete" = "set") => s.apply({ kind: "Node", op, object: o as WatchEvent["object"] });
    return { s, seen, self, node };
  }

  test("other Nodes are held and handed on, without recompiling anything; this one also as the node's own", () => {
    const { s, seen, self, node } = all();
    const other = { metadata: { name: "n2", labels: { "skein.io/site": "east" }, annotations: { "skein.io/public-ip": "203.0.113.9", other: "x" } }, spec: { podCIDRs: ["10.244.4.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.11" }] } };
    expect(node(other)).toBe(false);
    expect(node(GOOD)).toBe(true);
    expect(seen.map(([n]) => n)).toEqual(["n2", "n1"]);
    expect(s.nodes.get("n2")).toEqual({ name: "n2", podCIDRs: ["10.244.4.0/24"], addresses: ["192.0.2.11"], internalIPs: ["192.0.2.11"], publicIP: "203.0.113.9", site: "east" });
    expect(self).toEqual([GOOD_INFO]);
    expect(node(other, "delete")).toBe(false);
    expect(s.nodes.has("n2")).toBe(false);
    expect(seen.at(-1)).toEqual(["n2", undefined]);
  });

  test("a refused Node keeps what was read of it before, and is not handed on", () => {
    const { s, seen, node } = all();
    const other = { metadata: { name: "n2" }, spec: { podCIDRs: ["10.244.4.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "192.0.2.11" }] } };
    node(other);
    node({ ...other, spec: { podCIDRs: ["10.244.04.0/24"] } });
    expect(seen).toHaveLength(1);
    expect(s.nodes.get("n2")!.podCIDRs).toEqual(["10.244.4.0/24"]);
    expect(s.rejected.get("Node default/n2")).toContain("spec.podCIDRs[0]");
  });
});

describe("the public-address annotation", () => {
  const withPublic = (v: unknown) => ({ ...GOOD, metadata: { name: "n1", annotations: { "skein.io/public-ip": v } } });
  const values = [...HOSTILE.filter((h) => h.value !== null && h.value !== undefined).map((h) => h.value), "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "ff02::1"];
  test.each(values.map((v) => [quote(v), v] as const))("%s is left out and reported naming the field; the rest of the Node is taken", (_n, v) => {
    const { s, seen, rejects, node } = store();
    expect(node(withPublic(v))).toBe(true);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]!.startsWith("Node default/n1 | Node n1: metadata.annotations[skein.io/public-ip]: ")).toBe(true);
    expect(s.node!.publicIP).toBeUndefined();
    expect(s.node!.podCIDRs).toEqual(GOOD_INFO.podCIDRs);
    expect(seen).toHaveLength(1);
  });
  test("a good one is taken", () => {
    const { s, rejects, node } = store();
    node(withPublic("203.0.113.9"));
    expect(rejects).toEqual([]);
    expect(s.node!.publicIP).toBe("203.0.113.9");
  });
});

describe("NetworkPolicies skein cannot apply as written", () => {
  const np = (ingress: unknown[]) => ({ metadata: { name: "p", namespace: "prod", resourceVersion: "1" }, spec: { podSelector: { matchLabels: { app: "web" } }, ingress } });
  function setup() {
    const handed: unknown[] = [];
    const said: string[] = [];
    const pol = { ...policy, setPolicy: (p: unknown) => void handed.push(p) };
    const s = new ClusterStore(compiler, "n1", pol, { onReject: (w, m, kept) => said.push(`reject ${kept} ${w}`), onClosed: (w) => said.push(`closed ${w}`) });
    const apply = (o: Record<string, unknown>) => s.apply({ kind: "NetworkPolicy", op: "set", object: keep("NetworkPolicy", o) });
    return { handed, said, apply };
  }
  const tooMany = Array(300).fill({ ports: [{ port: 80 }] });

  test("with no earlier version: applied closed (its pods isolated, nothing allowed), and said so", () => {
    const { handed, said, apply } = setup();
    expect(apply(np(tooMany))).toBe(true);
    expect(handed).toMatchObject([{ name: "p", ingress: [], closed: expect.stringContaining("spec.ingress: 300 entries") }]);
    expect(said).toEqual(["closed NetworkPolicy prod/p"]);
  });

  test("with an earlier version in force: that version stays", () => {
    const { handed, said, apply } = setup();
    expect(apply(np([{ ports: [{ port: 80 }] }]))).toBe(true);
    expect(apply(np(tooMany))).toBe(false);
    expect(handed.length).toBe(1);
    expect(said).toEqual(["reject true NetworkPolicy prod/p"]);
    // a refused (invalid) update says the same; with nothing in force it says so
    const other = setup();
    expect(other.apply(np([{ ports: [{ protocol: "ICMP" }] }]))).toBe(false);
    expect(other.said).toEqual(["reject false NetworkPolicy prod/p"]);
  });
});

describe("what a refusal names the object by (the Event's involvedObject)", () => {
  test("kind, namespace, name, uid and resourceVersion; the uid is held of refused objects only", () => {
    const refs: unknown[] = [];
    const s = new ClusterStore(compiler, "n1", policy, { onReject: (_w, _m, _k, ref) => refs.push(ref), onClosed: (_w, _m, ref) => refs.push(ref) });
    const apply = (kind: WatchEvent["kind"], o: Record<string, unknown>) => {
      const kept = keep(kind, o);
      s.apply({ kind, op: "set", object: kept });
      return kept;
    };
    const meta = (name: string) => ({ name, namespace: "shop", uid: `${name}-uid`, resourceVersion: "7" });
    const good = apply("Service", { metadata: meta("ok"), spec: { clusterIP: "10.96.0.1", ports: [{ port: 80 }] } });
    expect(good.metadata.uid).toBeUndefined();
    apply("Service", { metadata: meta("bad"), spec: { clusterIP: "10.96.0.010", ports: [{ port: 80 }] } });
    apply("NetworkPolicy", { metadata: meta("big"), spec: { podSelector: {}, ingress: Array(300).fill({ ports: [{ port: 80 }] }) } });
    apply("Node", { ...GOOD, metadata: { name: "n2", uid: "n2-uid", resourceVersion: "9" }, spec: { podCIDRs: ["10.244.300.0/24"] } });
    expect(refs).toEqual([
      { kind: "Service", namespace: "shop", name: "bad", uid: "bad-uid", resourceVersion: "7" },
      { kind: "NetworkPolicy", namespace: "shop", name: "big", uid: "big-uid", resourceVersion: "7" },
      { kind: "Node", name: "n2", uid: "n2-uid", resourceVersion: "9" },
    ]);
    // this node's uid: the owner of its SkeinNode
    apply("Node", { ...GOOD, metadata: { name: "n1", uid: "n1-uid" } });
    expect(s.node?.uid).toBe("n1-uid");
  });
});
