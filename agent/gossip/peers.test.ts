import { describe, expect, test } from "bun:test";
import { MAX_UNKNOWN_KEPT, PeerBook, REFUSED_LOG_EVERY_MS, type Level, type NodeFacts } from "./peers.ts";
import { encodeRecord, vtepMacFor, type NodeRecord } from "./record.ts";

const TTL = 10_000;

const facts = (i: number, extra: Partial<NodeFacts> = {}): NodeFacts => ({
  name: `n${i}`,
  podCIDRs: [`10.244.${i}.0/24`],
  internalIPs: [`192.168.50.${10 + i}`],
  // the record's underlay (below) is the Node's second address: a fallback to the Node facts
  // and a record are told apart by it
  addresses: [`192.168.50.${10 + i}`, `192.168.60.${10 + i}`],
  ...extra,
});

const record = (i: number, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  node: `n${i}`,
  podCIDRs: [`10.244.${i}.0/24`],
  underlay: `192.168.60.${10 + i}`,
  vtepMac: `02:00:00:00:00:0${i}`,
  version: "0.1.0",
  seq: 1,
  startedAt: 1000,
  ...extra,
});

function book() {
  const lines: { level: Level; obj: Record<string, unknown>; msg: string }[] = [];
  // no grace after becoming live (its own test below): a Node without a record is no peer at once
  const b = new PeerBook({ self: "n1", ttlMs: TTL, graceMs: 0, log: (level, obj, msg) => lines.push({ level, obj, msg }) });
  return { b, lines };
}

const names = (b: PeerBook) => b.peers().map((p) => `${p.name}:${p.source}`);

describe("Node facts alone (gossip not live)", () => {
  test("every other Node with podCIDRs and an InternalIP is a peer, sorted, self left out", () => {
    const { b } = book();
    for (const i of [3, 1, 2]) b.setNode(`n${i}`, facts(i));
    b.setNode("n4", facts(4, { podCIDRs: [] }));
    b.setNode("n5", facts(5, { internalIPs: [] }));
    b.setNode("n6", facts(6, { publicIP: "203.0.113.6", site: "east" }));
    expect(b.peers()).toEqual([
      { name: "n2", podCIDRs: ["10.244.2.0/24"], underlay: "192.168.50.12", vtepMac: vtepMacFor("n2"), source: "node" },
      { name: "n3", podCIDRs: ["10.244.3.0/24"], underlay: "192.168.50.13", vtepMac: vtepMacFor("n3"), source: "node" },
      { name: "n6", podCIDRs: ["10.244.6.0/24"], underlay: "192.168.50.16", vtepMac: vtepMacFor("n6"), public: "203.0.113.6", site: "east", source: "node" },
    ]);
  });
  test("Node fields that do not read strictly are left out and logged", () => {
    const { b, lines } = book();
    b.setNode("n2", facts(2, { podCIDRs: ["10.244.2.1/24"] }));
    b.setNode("n3", facts(3, { internalIPs: ["010.0.0.1", "192.168.50.13"], publicIP: "1.2.3" }));
    expect(b.peers()).toEqual([{ name: "n3", podCIDRs: ["10.244.3.0/24"], underlay: "192.168.50.13", vtepMac: vtepMacFor("n3"), source: "node" }]);
    expect(lines.filter((l) => l.msg === "Node field ignored").map((l) => l.obj.field)).toEqual(["spec.podCIDRs", "status.addresses", "metadata.annotations[skein.io/public-ip]"]);
  });
  test("a valid record wins over the Node facts", () => {
    const { b } = book();
    b.setNode("n2", facts(2, { publicIP: "203.0.113.2" }));
    expect(b.put("n2", encodeRecord(record(2, { site: "west" })), 0)).toEqual({ ok: true });
    expect(b.peers()).toEqual([{ name: "n2", podCIDRs: ["10.244.2.0/24"], underlay: "192.168.60.12", vtepMac: "02:00:00:00:00:02", public: "203.0.113.2", site: "west", source: "gossip" }]);
  });
});

describe("live gossip", () => {
  test("a Node without a record is no peer while live, and is again when gossip is lost", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setNode("n3", facts(3));
    b.put("n3", encodeRecord(record(3)), 0);
    b.setLive(true, 0);
    expect(names(b)).toEqual(["n3:gossip"]);
    b.setLive(false, 1);
    expect(names(b)).toEqual(["n2:node", "n3:gossip"]);
  });
  test("expiry only while live; a fresh ttl on becoming live", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setNode("n3", facts(3));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    b.put("n3", encodeRecord(record(3)), 5_000);
    expect(b.expire(TTL - 1)).toEqual([]);
    expect(b.expire(TTL)).toEqual(["n2"]);
    expect(names(b)).toEqual(["n3:gossip"]);
    // gossip lost: nothing expires, however long (n2's agent went while it was live: it stays gone)
    b.setLive(false, TTL + 1);
    expect(b.expire(100 * TTL)).toEqual([]);
    expect(names(b)).toEqual(["n3:gossip"]);
    // back: n3 gets a fresh ttl from now, not from its last put
    b.setLive(true, 100 * TTL);
    expect(b.expire(100 * TTL + TTL - 1)).toEqual([]);
    expect(names(b)).toEqual(["n3:gossip"]);
    expect(b.expire(101 * TTL)).toEqual(["n3"]);
    expect(names(b)).toEqual([]);
  });
  test("a refresh resets the ttl", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2, { seq: 1 })), 0);
    b.put("n2", encodeRecord(record(2, { seq: 2 })), TTL - 1);
    expect(b.expire(TTL + 5)).toEqual([]);
    expect(b.expire(2 * TTL - 1)).toEqual(["n2"]);
  });
  test("delete removes the record at once", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    b.delete("n2");
    expect(names(b)).toEqual([]);
    // deleted while live: its agent left; losing the bus does not bring it back
    b.setLive(false, 1);
    expect(names(b)).toEqual([]);
  });
});

describe("hostile records", () => {
  test("garbage is refused, logged, and does not remove the record accepted before", () => {
    const { b, lines } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    const r = b.put("n2", new Uint8Array([1, 2, 3]), 1);
    expect(r.ok).toBe(false);
    expect(lines.some((l) => l.level === "warn" && l.msg === "node record refused" && String(l.obj.why).includes('"n2"'))).toBe(true);
    expect(names(b)).toEqual(["n2:gossip"]);
    expect(b.peers()[0]!.underlay).toBe("192.168.60.12");
  });
  test("a value larger than 4 KiB is refused", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    const r = b.put("n2", new Uint8Array(5000), 0);
    expect(r).toEqual({ ok: false, why: expect.stringContaining("more than 4096") });
  });
  test("a record under another node's key is refused", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setNode("n3", facts(3));
    b.setLive(true, 0);
    expect(b.put("n3", encodeRecord(record(2)), 0)).toEqual({ ok: false, why: expect.stringContaining("is not the key") });
    expect(names(b)).toEqual([]);
  });
  test("a record claiming another node's podCIDRs is refused", () => {
    const { b, lines } = book();
    b.setNode("n2", facts(2));
    b.setNode("n3", facts(3));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    const r = b.put("n3", encodeRecord(record(3, { podCIDRs: ["10.244.2.0/24"] })), 0);
    expect(r).toEqual({ ok: false, why: expect.stringContaining("field podCIDRs") });
    expect(names(b)).toEqual(["n2:gossip"]);
    expect(lines.some((l) => l.msg === "node record refused" && l.obj.key === "n3")).toBe(true);
  });
  test("a record for an unknown node is kept out, then accepted when its Node appears", () => {
    const { b } = book();
    b.setLive(true, 0);
    expect(b.put("n7", encodeRecord(record(7)), 0)).toEqual({ ok: false, why: expect.stringContaining("no Node of that name") });
    expect(names(b)).toEqual([]);
    b.setNode("n7", facts(7));
    expect(names(b)).toEqual(["n7:gossip"]);
    expect(b.peers()[0]!.underlay).toBe("192.168.60.17");
  });
  test("a record whose Node then changes podCIDRs is refused, and accepted again when they match", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    expect(names(b)).toEqual(["n2:gossip"]);
    b.setNode("n2", facts(2, { podCIDRs: ["10.244.99.0/24"] }));
    expect(names(b)).toEqual([]);
    b.setNode("n2", facts(2));
    expect(names(b)).toEqual(["n2:gossip"]);
  });
  test("a refused record is re-checked when its Node changes to match it", () => {
    const { b } = book();
    b.setNode("n2", facts(2, { podCIDRs: ["10.244.99.0/24"] }));
    b.setLive(true, 0);
    expect(b.put("n2", encodeRecord(record(2)), 0).ok).toBe(false);
    expect(names(b)).toEqual([]);
    b.setNode("n2", facts(2));
    expect(names(b)).toEqual(["n2:gossip"]);
  });
  test("an accepted record is re-checked even when a newer refused one waits", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    b.put("n2", encodeRecord(record(2, { podCIDRs: ["10.244.98.0/24"] })), 1);
    // the accepted one stays until it expires
    expect(names(b)).toEqual(["n2:gossip"]);
    b.setNode("n2", facts(2, { podCIDRs: ["10.244.97.0/24"] }));
    expect(names(b)).toEqual([]);
    b.setNode("n2", facts(2, { podCIDRs: ["10.244.98.0/24"] }));
    expect(names(b)).toEqual(["n2:gossip"]);
  });
  test("a Node removed takes its peer; its record comes back with the Node", () => {
    const { b } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    b.setNode("n2", undefined);
    expect(names(b)).toEqual([]);
    b.setNode("n2", facts(2));
    expect(names(b)).toEqual(["n2:gossip"]);
  });
  test("memory for records of unknown names is bounded: the oldest go first", () => {
    const { b } = book();
    b.setLive(true, 0);
    for (let i = 0; i < 1000; i++) b.put(`x${i}`, encodeRecord({ ...record(2), node: `x${i}` }), i);
    // only the newest MAX_UNKNOWN_KEPT wait for their Node
    b.setNode("x0", { ...facts(2), name: "x0" });
    b.setNode("x999", { ...facts(2), name: "x999" });
    expect(names(b)).toEqual(["x999:gossip"]);
    const kept = (b as unknown as { unknown: Map<string, unknown> }).unknown.size;
    expect(kept).toBe(MAX_UNKNOWN_KEPT - 1);
  });
  test("refused records expire like accepted ones", () => {
    const { b } = book();
    b.setLive(true, 0);
    b.put("n7", encodeRecord(record(7)), 0);
    b.expire(TTL);
    b.setNode("n7", facts(7));
    expect(names(b)).toEqual([]);
  });
});

describe("grace after becoming live", () => {
  test("Nodes known only from the API stay peers for one ttl after gossip becomes live, then go unless their record came", () => {
    const b = new PeerBook({ self: "n1", ttlMs: TTL });
    b.setNode("n2", facts(2));
    b.setNode("n3", facts(3));
    expect(names(b)).toEqual(["n2:node", "n3:node"]);
    b.setLive(true, 1000);
    // the bus came back (or a server lost its state): n2 and n3 have not put their records yet
    expect(names(b)).toEqual(["n2:node", "n3:node"]);
    expect(b.put("n3", encodeRecord(record(3)), 1500)).toEqual({ ok: true });
    expect(b.expire(1000 + TTL - 1)).toEqual([]);
    expect(names(b)).toEqual(["n2:node", "n3:gossip"]);
    expect(b.expire(1000 + TTL)).toEqual(["n2"]);
    expect(names(b)).toEqual(["n3:gossip"]);
    // lost again: n2 had no record through the grace, so its agent is taken as gone
    b.setLive(false, 1000 + TTL);
    expect(names(b)).toEqual(["n3:gossip"]);
  });
});

describe("gone agents stay gone", () => {
  test("a Node whose record expired or was deleted while live does not come back from its Node object when the bus is lost; a new Node does; a new record brings it back", () => {
    const { b } = book();
    for (const i of [2, 3]) b.setNode(`n${i}`, facts(i));
    b.setLive(true, 0);
    b.put("n2", encodeRecord(record(2)), 0);
    b.put("n3", encodeRecord(record(3)), 0);
    b.put("n3", encodeRecord(record(3)), TTL);
    expect(b.expire(TTL)).toEqual(["n2"]);
    b.delete("n3");
    expect(names(b)).toEqual([]);
    b.setLive(false, TTL);
    b.setNode("n4", facts(4));
    expect(names(b)).toEqual(["n4:node"]);
    b.setLive(true, 2 * TTL);
    expect(b.put("n2", encodeRecord(record(2)), 2 * TTL)).toEqual({ ok: true });
    expect(names(b)).toEqual(["n2:gossip"]);
    // a Node deleted and made again is a new node
    b.setLive(false, 2 * TTL);
    b.setNode("n3", undefined);
    b.setNode("n3", facts(3));
    expect(names(b)).toEqual(["n2:gossip", "n3:node", "n4:node"]);
  });
});

describe("a record cannot point a node's traffic elsewhere", () => {
  test("an underlay address that is none of the Node's addresses is refused, naming the field; the record accepted before stays", () => {
    const { b, lines } = book();
    b.setNode("n2", facts(2));
    b.setLive(true, 0);
    expect(b.put("n2", encodeRecord(record(2)), 0)).toEqual({ ok: true });
    const r = b.put("n2", encodeRecord(record(2, { underlay: "192.168.50.200" })), 1);
    expect(r).toEqual({ ok: false, why: 'node record "n2": field underlay: 192.168.50.200 is none of the Node\'s addresses (192.168.50.12, 192.168.60.12)' });
    expect(b.peers().map((p) => p.underlay)).toEqual(["192.168.60.12"]);
    expect(lines.some((l) => l.msg === "node record refused" && String(l.obj.why).includes("field underlay"))).toBe(true);
  });

  test("refusals are logged once per key and reason a minute, with the count of those between", () => {
    const { b, lines } = book();
    b.setNode("n2", facts(2));
    const bad = encodeRecord(record(2, { podCIDRs: ["10.244.99.0/24"] }));
    for (let i = 0; i < 1000; i++) b.put("n2", bad, i);
    for (let i = 0; i < 1000; i++) b.put("junk", new Uint8Array([0xff, i & 0xff]), i);
    const refused = () => lines.filter((l) => l.msg.startsWith("node record refused"));
    expect(refused()).toHaveLength(2);
    b.put("n2", bad, REFUSED_LOG_EVERY_MS + 5);
    expect(refused()).toHaveLength(3);
    expect(refused().at(-1)!.obj.refusedSinceLastLine).toBe(999);
    // another reason is said at once
    b.put("n2", encodeRecord(record(2, { underlay: "192.168.50.201" })), REFUSED_LOG_EVERY_MS + 6);
    expect(refused()).toHaveLength(4);
  });
});
