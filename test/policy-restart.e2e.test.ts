// An agent restart never opens an allow-all window (issue 15 point 5, and its "Must show":
// restart the agent with policies in force while probing every 100 ms: no denied connection
// gets through, no allowed one fails). On the truth-table lab's two nodes and nine pods
// (testing/policy-lab.ts), with a scene of allowed and denied pairs over TCP and UDP, ingress
// and egress, same-node and cross-node, and a namespace in isolation mode: a round of new
// connections starts every 100 ms while n1's agent is stopped by SIGTERM and started again,
// then n2's by SIGKILL, and established flows exchange all the while. The agents saw the pods
// arrive one by one, so the ids a cold compile gives their identities are not those in the
// kernel (the lab's nine and 300 Pod objects of pods that run nowhere): the restarted agent
// must keep the kernel's ids, since the allow sets switch a moment after the address maps in
// the transaction that replaces the policy (agent/datapath/policy-adopt.ts).
// Every expectation is the oracle's (testing/policy-oracle.ts).
import { VIA_SERVICE } from "../compiler/policy/types.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Lab } from "../testing/lab.ts";
import type { Cluster } from "../testing/multinode.ts";
import { agrees, type Cell, expected, type Fixture, PolicyLab, policy, type ProberClient, type Scene } from "../testing/policy-lab.ts";
import { addFillerPods, SceneWriter, startPolicyCluster } from "../testing/policy-faults.ts";
import { builtSkein, useLab, useTempDir, waitFor } from "./harness/index.ts";

/** a round of new connections starts this often */
const EVERY_MS = 100;
/** how long a probe the policies allow may take before it counts as failed (a loaded machine is
 * slow, not a drop), and how long one they deny is given to get through */
const ALLOWED_MS = 1000;
const DENIED_MS = 300;
/** rounds probed before the restart, with the agent down, and after its first sync */
const ROUNDS_BEFORE = 20;
const ROUNDS_DOWN = 10;
const ROUNDS_AFTER = 20;
/** Pod objects of pods that run nowhere (testing/policy-faults.ts addFillerPods): identities besides the lab's nine */
const FILLERS = 300;
/** which agent restarts how */
const RESTARTS = [
  { node: "n1", signal: "SIGTERM" },
  { node: "n2", signal: "SIGKILL" },
] as const;

const ns = (name: string) => ({ matchLabels: { ns: name } });
const pod = (name: string) => ({ matchLabels: { pod: name } });

/**
 * y admits x only, on TCP 80 and UDP 81; x/c (on n1) may only reach y; z is in namespace
 * isolation (only z reaches z); x admits everyone.
 */
const SCENE: Scene = {
  isolated: ["z"],
  policies: [
    policy("y", "from-x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns("x") }], ports: [{ protocol: "TCP", port: 80 }, { protocol: "UDP", port: 81 }] }] }),
    policy("x", "c-out-to-y", { podSelector: pod("c"), policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: ns("y") }] }] }),
  ],
};

/**
 * The cells probed each round: of the whole table (TCP and UDP, ports 80 and 81), one per kind
 * of cell among those that pass `node` — protocol, source namespace (or host), destination
 * namespace, same node or not, allowed or not (so both of y's ports, as it allows one per
 * protocol) — so that every kind a restart could open or close is probed every round, without
 * the load of the whole table ten times a second (on a loaded machine that load alone makes
 * allowed probes miss their second).
 */
function probed(fx: Fixture, cells: Cell[], node: string): Cell[] {
  const nodeOf = (k: string) => (k.startsWith("host ") ? k.slice(5) : fx.pod(k).node);
  const kinds = new Map<string, Cell>();
  for (const c of cells) {
    if (c.from === c.to) continue;
    const from = nodeOf(c.from);
    const to = nodeOf(c.to);
    if (from !== node && to !== node) continue;
    const k = `${c.proto} ${c.from.startsWith("host ") ? "host" : c.from.split("/")[0]}>${c.to.split("/")[0]} ${from === to ? "same" : "cross"} ${c.expect}`;
    if (!kinds.has(k)) kinds.set(k, c);
  }
  return [...kinds.values()];
}

interface Flow {
  name: string;
  from: string;
  to: string;
  proto: "tcp" | "udp";
  port: number;
}

/** Established flows, open before the restarts: cross-node and same-node on both nodes, TCP and UDP, each allowed. */
const FLOWS: Flow[] = [
  { name: "x/a>y/a tcp/80", from: "x/a", to: "y/a", proto: "tcp", port: 80 },
  { name: "z/a>z/c tcp/81", from: "z/a", to: "z/c", proto: "tcp", port: 81 },
  { name: "x/a>y/b udp/81", from: "x/a", to: "y/b", proto: "udp", port: 81 },
  { name: "y/a>x/c tcp/80", from: "y/a", to: "x/c", proto: "tcp", port: 80 },
  { name: "x/b>y/c tcp/80", from: "x/b", to: "y/c", proto: "tcp", port: 80 },
];

type Outcome = { ok: boolean; answer?: string; error?: string };

/** The identity chain each pod address of a node's table jumps to (map pol_spod4): which ids a restart moved. */
async function identityChains(lab: Lab, node: string): Promise<Map<string, string>> {
  const j = JSON.parse((await lab.exec(node, ["nft", "-j", "list", "map", "inet", "skein", "pol_spod4"])).stdout) as { nftables: Array<{ map?: { elem?: unknown[] } }> };
  const out = new Map<string, string>();
  for (const e of j.nftables.find((o) => o.map)?.map?.elem ?? []) {
    const m = /"(\d+\.\d+\.\d+\.\d+)".*"target":\s*"(pols_\d+)"/.exec(JSON.stringify(e));
    // the nodes' Service source addresses (VIA_SERVICE, pols_1) are not pods'
    if (m && m[2] !== `pols_${VIA_SERVICE}`) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** Rounds of probes every EVERY_MS, and exchanges on the open flows, until stopped; everything that disagrees with the oracle is kept. */
class Probing {
  phase = "before";
  rounds = 0;
  probes = 0;
  echoes = 0;
  readonly perPhase = new Map<string, number>();
  readonly bad: string[] = [];
  /** disagreements per phase and kind ("denied reached", "allowed failed", "flow failed") */
  readonly badKinds = new Map<string, number>();
  private stopped = false;
  private readonly t0 = performance.now();
  private readonly running: Promise<void>[] = [];

  constructor(
    readonly pl: PolicyLab,
    readonly cells: Cell[],
    readonly flows: Array<Flow & { prober: ProberClient; answer: string }>,
  ) {
    this.running.push(this.roundLoop(), ...flows.map((f) => this.flowLoop(f)));
  }

  private at = () => `+${(performance.now() - this.t0).toFixed(0)} ms, ${this.phase}`;

  private count(at: string, kind: string): void {
    const k = `${at.replace(/^[^,]*, /, "")}: ${kind}`;
    this.badKinds.set(k, (this.badKinds.get(k) ?? 0) + 1);
  }

  /** What disagreed, counted per phase and kind, then the first disagreements themselves. */
  report(): string {
    if (!this.bad.length) return "";
    return `${this.bad.length} probes and exchanges disagreed with the policies in force (${[...this.badKinds].map(([k, n]) => `${k} ${n}`).join("; ")}):\n${this.bad.slice(0, 30).join("\n")}`;
  }

  private async roundLoop(): Promise<void> {
    const allowed = this.cells.flatMap((c, i) => (c.expect ? [i] : []));
    const denied = this.cells.flatMap((c, i) => (c.expect ? [] : [i]));
    const inFlight = new Set<Promise<void>>();
    let next = performance.now();
    while (!this.stopped) {
      const n = ++this.rounds;
      const at = this.at();
      this.perPhase.set(this.phase, (this.perPhase.get(this.phase) ?? 0) + 1);
      const round = Promise.all([this.pl.observe(this.cells, ALLOWED_MS, allowed), this.pl.observe(this.cells, DENIED_MS, denied)]).then(([a, d]) => {
        for (const [i, o] of [...a, ...d]) {
          this.probes++;
          const c = this.cells[i]!;
          if (!agrees(c, o)) this.count(at, c.expect ? "allowed failed" : "denied reached");
          if (!agrees(c, o)) this.bad.push(`round ${n} (${at}): ${c.proto}/${c.port} ${c.from} -> ${c.to} (${c.ip}): expected ${c.expect ? "reached" : "not reached"} [${c.why}], ${o.ok ? `reached: "${o.answer}"` : `not reached: ${o.error}`}`);
        }
      });
      inFlight.add(round);
      void round.finally(() => inFlight.delete(round));
      next += EVERY_MS;
      // a round that started late does not make the next ones bunch up
      next = Math.max(next, performance.now());
      await Bun.sleep(next - performance.now());
    }
    await Promise.all(inFlight);
  }

  private async flowLoop(f: Flow & { prober: ProberClient; answer: string }): Promise<void> {
    while (!this.stopped) {
      const start = performance.now();
      const at = this.at();
      const r = (await f.prober.request<{ result: Outcome }>({ op: "echo", flow: f.name, timeoutMs: ALLOWED_MS } as never)).result;
      this.echoes++;
      if (!r.ok || r.answer !== f.answer) this.count(at, "flow failed");
      if (!r.ok || r.answer !== f.answer) this.bad.push(`flow ${f.name} (${at}): expected the answer "${f.answer}", ${r.ok ? `got "${r.answer}"` : `failed: ${r.error}`}`);
      await Bun.sleep(Math.max(0, start + EVERY_MS - performance.now()));
    }
  }

  /** Waits (with a deadline) until `n` more rounds started in the current phase. */
  async roundsMore(n: number): Promise<void> {
    const want = this.rounds + n;
    await waitFor(`${n} more probe rounds (${this.phase})`, () => this.rounds >= want, n * EVERY_MS * 5 + 5000, 10);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  summary(): string {
    return `${this.rounds} rounds of ${this.cells.length} new connections (${this.probes} probes; rounds ${[...this.perPhase].map(([p, n]) => `${p} ${n}`).join(", ")}), ${this.echoes} exchanges on ${this.flows.length} open flows`;
  }
}

const log: string[] = [];
afterAll(() => console.log(`policy agent restart:\n${log.join("\n")}`));

describe("an agent restart with policies in force, probed every 100 ms", () => {
  const lab = useLab("polrst");
  const tmp = useTempDir("polrst");
  let c: Cluster;
  let pl: PolicyLab;
  let table: Cell[];
  let flows: ConstructorParameters<typeof Probing>[2];
  const totals = { rounds: 0, probes: 0, echoes: 0 };
  const t0 = performance.now();

  beforeAll(async () => {
    builtSkein();
    const started = await startPolicyCluster(lab, tmp);
    c = started.c;
    const w = new SceneWriter(c, started.fx);
    // the agents see the pods arrive one by one, in the reverse of their keys' order: a restarted
    // agent, which lists them all at once, gives their identities other ids
    w.reversePods = true;
    await w.apply({});
    pl = new PolicyLab(lab, started.fx, w);
    await pl.startProbers();
    await pl.scene(SCENE, "the policies in force");
    // and many more identities, so that a restart moves hundreds of addresses to other ids in
    // the one transaction that replaces the policy
    await addFillerPods(c, "y0fill", FILLERS);
    await pl.check(expected(pl.fx, SCENE, { protocols: ["TCP", "UDP"] }), "the policies in force, with the filler pods", 10_000);
    table = expected(pl.fx, SCENE, { protocols: ["TCP", "UDP"] });
    flows = await Promise.all(
      FLOWS.map(async (f) => {
        const prober = pl.probers.get(f.from)!;
        const to = pl.fx.pod(f.to);
        const r = (await prober.request<{ result: Outcome }>({ op: "open", flow: f.name, proto: f.proto, ip: to.ip, port: f.port, timeoutMs: ALLOWED_MS } as never)).result;
        const answer = `${f.to} ${pl.fx.pod(f.from).ip}`;
        if (!r.ok || r.answer !== answer) throw new Error(`flow ${f.name}: expected "${answer}" on opening, ${r.ok ? `got "${r.answer}"` : `failed: ${r.error}`}`);
        return { ...f, prober, answer };
      }),
    );
    log.push(`${(performance.now() - t0).toFixed(0).padStart(5)} ms: cluster, 9 pods (and ${FILLERS} Pod objects running nowhere), 11 probers, policies in force, ${flows.length} flows open`);
  }, 60_000);
  afterAll(async () => {
    pl?.stopProbers();
    await c?.stop();
    log.push(`${(performance.now() - t0).toFixed(0).padStart(5)} ms: the whole file`);
  });

  test("the rounds cover what a restart could open or close, on either node", () => {
    for (const { node } of RESTARTS) {
      const cells = probed(pl.fx, table, node);
      const has = (f: (x: Cell) => boolean) => cells.some(f);
      const on = (k: string) => !k.startsWith("host ") && pl.fx.pod(k).node === node;
      for (const proto of ["TCP", "UDP"] as const) {
        for (const allowed of [true, false]) {
          expect([node, proto, allowed, "same node", has((x) => x.proto === proto && x.expect === allowed && on(x.from) && on(x.to))]).toEqual([node, proto, allowed, "same node", true]);
          expect([node, proto, allowed, "cross node", has((x) => x.proto === proto && x.expect === allowed && on(x.from) !== on(x.to) && !x.from.startsWith("host "))]).toEqual([node, proto, allowed, "cross node", true]);
        }
      }
      // denied by namespace isolation and by an ingress policy, at this node's pods; allowed within the isolated namespace
      expect([node, has((x) => !x.expect && x.to.startsWith("z/") && !x.from.startsWith("z/") && on(x.to))]).toEqual([node, true]);
      expect([node, has((x) => !x.expect && x.to.startsWith("y/") && on(x.to))]).toEqual([node, true]);
      // and by port: x may reach y on TCP 80 and UDP 81 only
      expect([node, has((x) => !x.expect && x.from.startsWith("x/") && x.to.startsWith("y/")), has((x) => x.expect && x.from.startsWith("x/") && x.to.startsWith("y/"))]).toEqual([node, true, true]);
      expect([node, has((x) => x.expect && x.from.startsWith("z/") && x.to.startsWith("z/"))]).toEqual([node, true]);
    }
    // denied by an egress policy (x/c's, on n1)
    expect(probed(pl.fx, table, "n1").some((x) => !x.expect && x.from === "x/c" && !x.to.startsWith("y/"))).toBe(true);
    // established flows through each node, same-node and cross-node
    for (const { node } of RESTARTS) {
      const at = (k: string) => pl.fx.pod(k).node === node;
      expect([node, FLOWS.some((f) => at(f.from) && at(f.to)), FLOWS.some((f) => at(f.from) !== at(f.to))]).toEqual([node, true, true]);
    }
  });

  for (const { node, signal } of RESTARTS) {
    test(`${node}'s agent stopped by ${signal} and started again: no denied connection gets through, no allowed one fails, open flows go on`, async () => {
      const cells = probed(pl.fx, table, node);
      const probing = new Probing(pl, cells, flows);
      try {
        probing.phase = "before";
        await probing.roundsMore(ROUNDS_BEFORE);
        const before = await identityChains(lab, node);
        expect(before.size).toBe(9 + FILLERS);
        probing.phase = "stopping";
        const code = await c.stopAgent(node, { signal });
        // SIGKILL: killed, no exit code of its own (Bun reports 128 + 9)
        expect(code).toBe(signal === "SIGTERM" ? 0 : 137);
        probing.phase = "down";
        await probing.roundsMore(ROUNDS_DOWN);
        probing.phase = "starting";
        const a = await c.startAgent(node, [], { ready: "cluster state listed" });
        // its first sync: the policy of the tables it adopted replaced whole ("policy applied"),
        // or, were they not adopted, the whole table made new ("tables applied")
        const synced = await waitFor("the restarted agent's first sync", () => /"msg":"(policy|tables) applied"/.exec(a.out.text)?.[1], 10_000, 20).then((what) => `${what} applied`, (e: Error) => e.message);
        probing.phase = "after";
        await probing.roundsMore(ROUNDS_AFTER);
        await probing.stop();
        const after = await identityChains(lab, node);
        const moved = [...before].filter(([ip, chain]) => after.get(ip) !== chain).length;
        totals.rounds += probing.rounds;
        totals.probes += probing.probes;
        totals.echoes += probing.echoes;
        log.push(`${node} ${signal}: ${probing.summary()}; ${moved} of ${before.size} pod addresses moved to another identity id; the new agent: ${a.out.text.split("\n").filter((l) => /adopted|replaced|tables applied|policy applied/.test(l)).map((l) => JSON.parse(l) as { msg: string; nftLines?: number }).map((j) => (j.nftLines === undefined ? j.msg : `${j.msg} (${j.nftLines} nft lines)`)).join(" | ")}`);
        expect(probing.report()).toBe("");
        expect(synced).toMatch(/^(policy|tables) applied$/);
        // the kernel's ids kept: nothing the restart needs to rewrite
        expect(moved).toBe(0);
      } finally {
        await probing.stop();
      }
    }, 60_000);
  }

  test("after the restarts: the open flows still answer, and the whole table holds", async () => {
    log.push(`in all: ${totals.rounds} rounds, ${totals.probes} probes, ${totals.echoes} exchanges on open flows`);
    for (const f of flows) {
      const r = (await f.prober.request<{ result: Outcome }>({ op: "echo", flow: f.name, timeoutMs: ALLOWED_MS } as never)).result;
      expect([f.name, r]).toEqual([f.name, { ok: true, answer: f.answer }]);
    }
    await pl.check(table, "the whole table after the restarts", 10_000);
  }, 60_000);
});
