// The policy datapath with real packets: a node namespace whose pods are wired in the routed
// model by plain `ip` (veth, /32 and /128 routes, the gateway pinned to the host side's MAC,
// as the skein CNI does), the skeleton and a hand-made PolicyTables (agent/datapath/policy.case.ts)
// loaded by nft, TCP and UDP connections that must pass or not, a delta and an atomic replace,
// the counters, and packets with forged sources from a raw socket (testing/raw-send.ts).
import { beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { useLab, waitFor } from "./harness/index.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { listTable, structureDrift } from "../agent/datapath/adopt.ts";
import { DEFAULT_MARKS } from "../agent/datapath/marks.ts";
import { REF_TABLE, renderReference, renderSkeleton } from "../agent/datapath/nft-text.ts";
import { countersByPolicy, readPolicyCounters, BLOCKED_POLICY } from "../agent/datapath/policy-counters.ts";
import { renderPolicy, renderPolicyDelta, renderPolicyReplace } from "../agent/datapath/policy-text.ts";
import { POD, policyTables } from "../agent/datapath/policy.case.ts";

const lab = useLab("poldp");
const RAW_SEND = resolve(import.meta.dir, "../testing/raw-send.ts");
const HOST_MAC = "ee:ee:ee:ee:ee:ee";
/** not in the tables: an address of the pod CIDR no known pod holds (BLOCKED) */
const E = ["10.244.0.9", "fd00:244::9"] as const;
const O = ["10.245.0.2", "fd00:245::2"] as const;
const EXT = ["192.0.2.2", "2001:db8:2::2"] as const; // in the ipBlock: identity 6
const WLD = ["198.51.100.2", "2001:db8:51::2"] as const; // WORLD
const CAP = { 4: 4096, 6: 4096 };

const ipIn = (ns: string, ...args: string[]) => lab.exec(ns, ["ip", ...args]);
const nft = (text: string) => lab.exec("node", ["nft", "-f", "-"], { stdin: text });

/** A pod in the routed model: its addresses on eth0, its default routes through gateways
 * pinned to the host side's fixed MAC, and the node's routes to it. */
async function wirePod(name: string, [v4, v6]: readonly [string, string], hostMac = HOST_MAC): Promise<void> {
  lab.host(name);
  await ipIn("node", "link", "add", `pod${name}`, "type", "veth", "peer", "name", "eth0", "netns", lab.name(name));
  await ipIn("node", "link", "set", `pod${name}`, "address", hostMac, "up");
  await ipIn(name, "addr", "add", `${v4}/32`, "dev", "eth0");
  await ipIn(name, "-6", "addr", "add", `${v6}/128`, "dev", "eth0", "nodad");
  await ipIn(name, "link", "set", "eth0", "up");
  await ipIn(name, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link");
  await ipIn(name, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0");
  await ipIn(name, "neigh", "add", "169.254.1.1", "lladdr", hostMac, "dev", "eth0", "nud", "permanent");
  await ipIn(name, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0");
  await ipIn(name, "-6", "neigh", "add", "fe80::1", "lladdr", hostMac, "dev", "eth0", "nud", "permanent");
  await ipIn("node", "route", "add", `${v4}/32`, "dev", `pod${name}`);
  await ipIn("node", "-6", "route", "add", `${v6}/128`, "dev", `pod${name}`);
}

/** An outside host on a link of its own, routing the pod CIDR through the node. */
async function wireOutside(name: string, [v4, v6]: readonly [string, string], [n4, n6]: [string, string]): Promise<void> {
  lab.host(name);
  const { ifA, ifB } = lab.wire({ ns: "node", addr: `${n4}/24` }, { ns: name, addr: `${v4}/24` });
  await ipIn("node", "-6", "addr", "add", `${n6}/64`, "dev", ifA, "nodad");
  await ipIn(name, "-6", "addr", "add", `${v6}/64`, "dev", ifB, "nodad");
  await ipIn(name, "route", "add", "10.244.0.0/24", "via", n4);
  await ipIn(name, "-6", "route", "add", "fd00:244::/112", "via", n6);
}

type Check = [from: string, proto: "tcp" | "udp", host: string, port: number, reaches: boolean];

/**
 * The checks, a few at a time (each is a process; the machine is shared), the result as one
 * table so that a failure shows all of them. A connection that must pass gets three tries
 * within its deadline (a loaded machine can be slow to answer); one that must not, one.
 */
async function reach(checks: Check[]): Promise<void> {
  const got: string[] = [];
  for (let i = 0; i < checks.length; i += 8) {
    got.push(...(await Promise.all(checks.slice(i, i + 8).map(async ([from, proto, host, port, want]) => {
      let r = await lab.connect(from, proto, host, port, want ? 3000 : 1500);
      for (let n = 1; want && !r.ok && n < 3; n++) r = await lab.connect(from, proto, host, port, 3000);
      return `${from} -> ${proto} [${host}]:${port} ${r.ok ? "reaches" : `does not reach${want ? ` (${r.error})` : ""}`}`;
    }))));
  }
  expect(got).toEqual(checks.map(([from, proto, host, port, want]) => `${from} -> ${proto} [${host}]:${port} ${want ? "reaches" : "does not reach"}`));
}

/** `inet skein` as nft lists it: no handles, elements sorted and without their counters. */
async function listing(): Promise<string[]> {
  const j = JSON.parse((await lab.exec("node", ["nft", "-j", "list", "table", "inet", "skein"])).stdout) as { nftables: Array<Record<string, Record<string, unknown>>> };
  return j.nftables
    .filter((o) => !o.metainfo)
    .map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e: { elem?: { val: unknown } }) => JSON.stringify(e.elem ? e.elem.val : e)).sort();
      return JSON.stringify({ [kind]: rest });
    })
    .sort();
}

/** The Services of the test (a plain DNAT table, not skein's service datapath): 10.96.0.10
 * goes to c, 10.96.0.11 to b; b reaching itself through it is a hairpin. */
const SERVICES = `table ip svc {
  chain pre {
    type nat hook prerouting priority -100; policy accept;
    ip daddr 10.96.0.10 tcp dport 80 dnat to ${POD.c[0]}:80
    ip daddr 10.96.0.11 tcp dport 80 dnat to ${POD.b[0]}:80
  }
}
`;
const HAIRPIN = `add element inet skein hairpin4 { ${POD.b[0]} . ${POD.b[0]} }\n`;

beforeAll(async () => {
  lab.host("node");
  // the kernel's own reverse-path filter off, as many nodes run it: what drops forged
  // sources below is skein's rule
  for (const k of ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]) await lab.exec("node", ["sysctl", "-qw", k]);
  for (const [n, ips] of Object.entries(POD)) await wirePod(n, ips);
  await wirePod("e", E);
  // a pod another CNI wired: its host side has a MAC of its own (and an address outside
  // skein's pod CIDR: WORLD to policy)
  await wirePod("o", O, "02:00:00:00:00:01");
  await wireOutside("ext", EXT, ["192.0.2.1", "2001:db8:2::1"]);
  await wireOutside("wld", WLD, ["198.51.100.1", "2001:db8:51::1"]);
  // the node's default routes lead to the outside world: a forged foreign source is routed there
  await ipIn("node", "route", "add", "default", "via", WLD[0]);
  await ipIn("node", "-6", "route", "add", "default", "via", WLD[1]);
  await nft(SERVICES);
  const servers: Array<[string, { tcp?: number; udp?: number }]> = [
    ["a", { tcp: 80 }], ["b", { tcp: 80 }], ["b", { tcp: 8080 }], ["c", { tcp: 80, udp: 53 }], ["c", { tcp: 8080 }],
    ["d", { tcp: 80 }], ["e", { tcp: 80 }], ["ext", { tcp: 80 }], ["wld", { tcp: 80 }], ["wld", { tcp: 8080 }],
  ];
  await Promise.all(servers.map(([ns, o]) => lab.serve(ns, { name: ns, ...o }, 20_000)));
}, 60_000);

// forged packets from b to d: neither is isolated that way, so only anti-spoofing can stop them
// (c's address: c may send to d; a foreign address is WORLD, which may too)
const SPOOF = { 4: { local: POD.c[0], foreign: "203.0.113.9", own: POD.b[0], to: POD.d[0] }, 6: { local: POD.c[1], foreign: "2001:db8:99::9", own: POD.b[1], to: POD.d[1] } } as const;
const COUNT = `table inet count {
  counter local {}
  counter foreign {}
  counter own {}
  chain pre {
    type filter hook prerouting priority -400; policy accept;
    th dport 9999 ip saddr ${O[0]} counter name own
    th dport 9999 ip6 saddr ${O[1]} counter name own
    th dport 9999 ip saddr ${SPOOF[4].local} counter name local
    th dport 9999 ip6 saddr ${SPOOF[6].local} counter name local
    th dport 9999 ip saddr ${SPOOF[4].foreign} counter name foreign
    th dport 9999 ip6 saddr ${SPOOF[6].foreign} counter name foreign
    th dport 9999 ip saddr ${SPOOF[4].own} counter name own
    th dport 9999 ip6 saddr ${SPOOF[6].own} counter name own
  }
}
`;

async function arrived(): Promise<Record<string, number>> {
  const j = JSON.parse((await lab.exec("d", ["nft", "-j", "list", "counters", "table", "inet", "count"])).stdout) as { nftables: Array<{ counter?: { name: string; packets: number } }> };
  return Object.fromEntries(j.nftables.filter((o) => o.counter).map((o) => [o.counter!.name, o.counter!.packets]));
}

const rawSend = (from: string, proto: "udp" | "tcp", src: string, dst: string, count = 1) => lab.exec(from, [process.execPath, RAW_SEND, proto, src, dst, "9999", String(count)]);

/** Sends forged packets (a pod's address, a foreign one) then the sender's own, until the own
 * ones arrive at d: everything sent before them has had its chance to arrive too. */
async function forge(family: 4 | 6, proto: "udp" | "tcp", from = "b"): Promise<Record<string, number>> {
  await lab.exec("d", ["nft", "-f", "-"], { stdin: `table inet count\ndelete table inet count\n${COUNT}` });
  const s = SPOOF[family];
  const own = from === "o" ? O[family === 4 ? 0 : 1] : s.own;
  await rawSend(from, proto, s.local, s.to, 3);
  await rawSend(from, proto, s.foreign, s.to, 3);
  return waitFor(`${from}'s own ${proto} packets at d`, async () => {
    await rawSend(from, proto, own, s.to);
    const c = await arrived();
    return c.own! > 0 && c;
  }, 10_000, 100);
}

describe("the policy datapath in namespaces", () => {
  test("without skein's table, forged sources reach the receiver (the check below is not the kernel's)", async () => {
    const c = await forge(4, "udp");
    expect(c.local).toBe(3);
    expect(c.foreign).toBe(3);
  }, 30_000);

  test("the skeleton and the policy: who reaches whom", async () => {
    await nft(renderSkeleton(0, CAP, DEFAULT_MARKS));
    await nft(HAIRPIN + renderPolicy(policyTables(), DEFAULT_MARKS));
    const [a4, a6] = POD.a;
    const [b4, b6] = POD.b;
    const [c4] = POD.c;
    const [d4] = POD.d;
    await reach([
      // an allowed pair, both families; another port, another source: denied
      ["a", "tcp", b4, 80, true],
      ["a", "tcp", b6, 80, true],
      ["a", "tcp", b4, 8080, false],
      ["c", "tcp", b4, 80, false],
      ["c", "tcp", b6, 80, false],
      // a port range (8000-8100), past a's egress through its all-protocols element
      ["a", "tcp", c4, 8080, true],
      ["a", "tcp", c4, 80, false],
      // UDP: b may send any port to c; a's egress allows it but c's ingress does not
      ["b", "udp", c4, 53, true],
      ["a", "udp", c4, 53, false],
      // egress to the ipBlock's identity allowed, to WORLD not (a); to WORLD on TCP 80 only (d)
      ["a", "tcp", EXT[0], 80, true],
      ["a", "tcp", EXT[1], 80, true],
      ["a", "tcp", WLD[0], 80, false],
      ["a", "tcp", WLD[1], 80, false],
      ["d", "tcp", WLD[0], 80, true],
      ["d", "tcp", WLD[1], 80, true],
      ["d", "tcp", WLD[0], 8080, false],
      // ingress from the ipBlock's range (any protocol) but not from WORLD
      ["ext", "tcp", b4, 80, true],
      ["ext", "tcp", b6, 80, true],
      ["wld", "tcp", b4, 80, false],
      ["wld", "tcp", b6, 80, false],
      // replies pass: d may reach a (an element over identities 3-7), a may not open to d
      ["d", "tcp", a4, 80, true],
      ["d", "tcp", a6, 80, true],
      ["a", "tcp", d4, 80, false],
      // nothing isolates c's egress or d's ingress
      ["c", "tcp", d4, 80, true],
      // through a Service (DNAT) c admits anyone; b directly it does not (TCP)
      ["b", "tcp", "10.96.0.10", 80, true],
      ["b", "tcp", c4, 80, false],
      // b through a Service to itself (a hairpin); c through it to b is still c to b
      ["b", "tcp", "10.96.0.11", 80, true],
      ["c", "tcp", "10.96.0.11", 80, false],
      // an address of the pod CIDR that no known pod holds is blocked both ways
      ["e", "tcp", EXT[0], 80, false],
      ["ext", "tcp", E[0], 80, false],
      ["ext", "tcp", E[1], 80, false],
      // the node reaches its pods whatever their policy (kubelet probes)
      ["node", "tcp", b4, 8080, true],
      ["node", "tcp", E[0], 80, true],
    ]);
    // ICMP from the ipBlock's range: its ingress element is for every protocol
    expect(await lab.ping("ext", b4)).toBe(true);
    expect(await lab.ping("wld", b4, 1)).toBe(false);
  }, 60_000);

  test.each([
    [4, "udp"],
    [4, "tcp"],
    [6, "udp"],
    [6, "tcp"],
  ] as const)("IPv%d %s: a pod's packets with another local pod's source, or a foreign one, are dropped", async (family, proto) => {
    const c = await forge(family, proto);
    expect({ local: c.local, foreign: c.foreign }).toEqual({ local: 0, foreign: 0 });
  }, 30_000);

  test.each([4, 6] as const)("IPv%d: a pod another CNI wired cannot send with a local pod's source either (by address and route, not by interface)", async (family) => {
    const c = await forge(family, "udp", "o");
    // a foreign source from it is not skein's to judge: its interface is not known as a pod's
    expect({ local: c.local, foreign: c.foreign }).toEqual({ local: 0, foreign: 3 });
  }, 30_000);

  test("a connection conntrack does not track is dropped, not let past the ingress check (whose identity lives in the conntrack mark)", async () => {
    await nft(`table inet untracked {\n  chain pre {\n    type filter hook prerouting priority -350; policy accept;\n    ip saddr ${POD.c[0]} ip daddr ${POD.b[0]} notrack\n    ip saddr ${POD.b[0]} ip daddr ${POD.c[0]} notrack\n  }\n}\n`);
    try {
      await reach([["c", "tcp", POD.b[0], 80, false]]);
    } finally {
      await nft("delete table inet untracked\n");
    }
  }, 30_000);

  test("counters: an allowed connection counts on the policies of its elements, a denied one on the policies isolating its destination, a blocked address on skein:blocked", async () => {
    const nl = Netlink.openNetfilter(lab.path("node"));
    try {
      const read = () => countersByPolicy(policyTables(), readPolicyCounters(nl, DEFAULT_MARKS));
      const before = read();
      const get = (m: Map<string, { allowedPackets: number; droppedPackets: number }>, p: string) => m.get(p) ?? { allowedPackets: 0, droppedPackets: 0 };
      await reach([
        ["a", "tcp", POD.b[0], 80, true],
        ["c", "tcp", POD.b[0], 80, false],
        ["e", "tcp", POD.d[0], 80, false],
      ]);
      const after = read();
      const d = (p: string) => ({ allowed: get(after, p).allowedPackets - get(before, p).allowedPackets, dropped: get(after, p).droppedPackets - get(before, p).droppedPackets });
      // one SYN opened a → b, allowed at a's egress and at b's ingress
      expect(d("ns/b-in").allowed).toBe(1);
      expect(d("ns/a-out").allowed).toBe(1);
      expect(d("ns/b-in").dropped).toBeGreaterThanOrEqual(1); // c's SYN and its retries
      expect(d(BLOCKED_POLICY).dropped).toBeGreaterThanOrEqual(1);
      expect(d("ns/c-in")).toEqual({ allowed: 0, dropped: 0 });
    } finally {
      nl.close();
    }
  }, 30_000);

  test("a delta moving d into b's identity takes effect for new connections, and leaves what a fresh load does", async () => {
    await nft(renderPolicyDelta(policyTables(), policyTables(true), DEFAULT_MARKS));
    await reach([
      ["a", "tcp", POD.d[0], 80, true],
      ["a", "tcp", POD.d[1], 80, true],
      ["c", "tcp", POD.d[0], 80, false],
      // d's egress is b's now: not isolated
      ["d", "tcp", WLD[0], 8080, true],
    ]);
    const viaDelta = await listing();
    await nft(renderSkeleton(0, CAP, DEFAULT_MARKS, policyTables(true)) + HAIRPIN);
    expect(await listing()).toEqual(viaDelta);
    expect(viaDelta.join("\n")).not.toContain("pols_7");
  }, 30_000);

  test("a replace over a table whose policy is other, in one transaction, leaves what a fresh load does", async () => {
    // the table holds the moved tables and an identity chain the new ones do not have
    await nft("add chain inet skein pols_9\nadd rule inet skein pols_9 meta mark set 9\nadd element inet skein pol_srange4 { 198.18.0.0/16 : goto pols_9 }\n");
    const nl = Netlink.openNetfilter(lab.path("node"));
    let chains: string[];
    try {
      chains = listTable(nl, "skein", false)!.terse.filter((x) => x.chain).map((x) => x.chain.name as string);
    } finally {
      nl.close();
    }
    expect(chains).toContain("pols_9");
    await nft(renderPolicyReplace(policyTables(), DEFAULT_MARKS, chains));
    await reach([
      ["c", "tcp", POD.d[0], 80, true],
      ["a", "tcp", POD.d[0], 80, false],
    ]);
    const replaced = await listing();
    await nft(renderSkeleton(0, CAP, DEFAULT_MARKS, policyTables()) + HAIRPIN);
    expect(await listing()).toEqual(replaced);
    // the drift check knows the policy's chains and sets as skein's, and its fixed chains as
    // the reference table (renderReference) holds them
    const ref = renderReference(DEFAULT_MARKS);
    await nft(ref.load);
    const nl2 = Netlink.openNetfilter(lab.path("node"));
    try {
      const reference = listTable(nl2, REF_TABLE, false)!;
      await nft(ref.drop);
      expect(structureDrift(listTable(nl2)!, reference)).toEqual([]);
      await nft("add rule inet skein pol_ingress accept\n");
      expect(structureDrift(listTable(nl2)!, reference)).toEqual(["base chain pol_ingress does not hold skein's rules (6 rules, skein's are 5)"]);
    } finally {
      nl2.close();
    }
  }, 30_000);
});
