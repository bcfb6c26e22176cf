// NetworkPolicy fails closed (issue 15 point 5), on the truth-table lab's two nodes and nine
// pods (testing/policy-lab.ts) with an agent per node:
//   - a pod wired on a node whose Pod object the agents do not have, or have without an
//     address, is blocked both ways while any policy exists, and open when none does; once its
//     address arrives, it is reachable as its policies say;
//   - a NetworkPolicy update the agent refuses leaves the version before it in force;
//   - past the identities the conntrack mark bits hold, the pods left over are blocked, and
//     the limit is logged.
// Every expectation is the oracle's table (testing/policy-oracle.ts), with the cells of a
// blocked pod turned to "not reached" but for its own node's host and itself.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Cluster } from "../testing/multinode.ts";
import { DEFAULT_MARKS, hex32, maxIdentity, parseMask, MIN_CT_MARK_BITS } from "../agent/datapath/marks.ts";
import { LIMITS } from "../compiler/policy/state.ts";
import { FIRST_ID } from "../compiler/policy/types.ts";
import { expected, LAB_NODES, PolicyLab, policy, type Fixture, type Scene } from "../testing/policy-lab.ts";
import { addFillerPods, SceneWriter, startPolicyCluster, withBlocked } from "../testing/policy-faults.ts";
import { builtSkein, useLab, useTempDir } from "./harness/index.ts";

const PROTOCOLS = ["TCP", "UDP"] as const;
const ns = (name: string) => ({ matchLabels: { ns: name } });
const pod = (name: string) => ({ matchLabels: { pod: name } });
const DEADLINE = 10_000;

const log: string[] = [];
afterAll(() => console.log(`policy fail closed:\n${log.join("\n")}`));

describe("fail closed, through the API server and an agent per node", () => {
  const lab = useLab("polfc");
  const tmp = useTempDir("polfc");
  let c: Cluster;
  let fx: Fixture;
  let pl: PolicyLab;
  let w: SceneWriter;
  const t0 = performance.now();

  /** Checks a table, and logs how long it took to hold. */
  const check = async (cells: ReturnType<typeof expected>, what: string) => {
    await pl.check(cells, what, DEADLINE);
    log.push(`${pl.last.ms.toFixed(0).padStart(5)} ms, ${String(pl.last.rounds.length).padStart(2)} rounds: ${what}`);
  };
  const table = (s: Scene) => expected(fx, s, { protocols: PROTOCOLS });

  beforeAll(async () => {
    builtSkein();
    ({ c, fx } = await startPolicyCluster(lab, tmp));
    w = new SceneWriter(c, fx);
    pl = new PolicyLab(lab, fx, w);
    await pl.startProbers();
    log.push(`${(performance.now() - t0).toFixed(0).padStart(5)} ms: cluster, 9 pods and 11 probers`);
  }, 60_000);
  afterAll(async () => {
    pl?.stopProbers();
    await c?.stop();
    log.push(`${(performance.now() - t0).toFixed(0).padStart(5)} ms: the whole file`);
  });

  test("a pod whose Pod object is missing or has no address is blocked both ways while a policy exists, open when none does, and as its policies say once its address arrives", async () => {
    // x/c sits on n1; the policy is y's, so that what blocks x/c is only that its address is unknown
    const xc = fx.pod("x/c");
    expect(xc.node).toBe("n1");
    const s: Scene = { policies: [policy("y", "from-x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns("x") }] }] })] };
    const blocked = (why: string) => withBlocked(table(s), fx, ["x/c"], why);
    // and it would be reached, from x/a (same node) and y/a (other node) alike, were it not blocked
    for (const from of ["x/a", "y/a"]) expect([from, table(s).find((x) => x.from === from && x.to === "x/c")!.expect]).toEqual([from, true]);
    expect(table(s).some((x) => x.from === "x/c" && x.to.startsWith("y/") && x.expect)).toBe(true);

    w.hold = { "x/c": "no-status" };
    await w.apply(s);
    await check(blocked("its Pod has no status.podIPs"), "x/c's Pod object without an address, a policy in y: x/c blocked both ways");

    w.hold = {};
    await w.apply(s);
    await check(table(s), "x/c's address arrives: reachable as the policies say (it may reach y)");

    w.hold = { "x/c": "absent" };
    await w.apply(s);
    await check(blocked("no Pod object holds its address"), "x/c's Pod object deleted while it runs: blocked both ways again");

    await w.apply({});
    await check(table({}), "no policy at all: x/c, still without a Pod object, is not blocked");

    w.hold = {};
    await w.apply({});
    await check(table({}), "x/c's Pod object back, no policy");
  }, 90_000);

  test("a NetworkPolicy update the agent refuses leaves the version before it in force, and is logged naming the policy and field", async () => {
    const v1: Scene = { policies: [policy("x", "from-y", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns("y") }] }] })] };
    // what the refused version means, were it taken: z admitted instead of y
    const meant: Scene = { policies: [policy("x", "from-y", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns("z") }] }] })] };
    await w.apply(v1);
    await check(table(v1), "x admits y (version 1)");
    // the three outcomes differ on cells the table probes: y to x reached only with version 1
    // kept, z to x only if the refused version were taken, both if the policy were dropped
    const at = (t: ReturnType<typeof table>, from: string) => t.find((x) => x.from === from && x.to === "x/a" && x.proto === "TCP" && x.port === 80)!.expect;
    expect([at(table(v1), "y/b"), at(table(v1), "z/b")]).toEqual([true, false]);
    expect([at(table(meant), "y/b"), at(table(meant), "z/b")]).toEqual([false, true]);
    expect([at(table({}), "y/b"), at(table({}), "z/b")]).toEqual([true, true]);

    // one rule past the agent's bound on the rules of a policy (compiler/policy/state.ts LIMITS):
    // kube-apiserver has no such bound, so the update is stored, and each agent must refuse it
    const rules = LIMITS.rules + 1;
    const logged = LAB_NODES.map((n) => c.agents.get(n)!.out.text.length);
    const path = "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies/from-y";
    await c.api.replace(path, (o) => ({ ...o, spec: { ...o.spec, ingress: Array.from({ length: rules }, () => ({ from: [{ namespaceSelector: ns("z") }] })) } }));
    expect((await c.api.request("GET", path)).spec.ingress.length).toBe(rules);
    const refusal = `NetworkPolicy x/from-y: spec.ingress: ${rules} entries: at most ${LIMITS.rules}`;
    for (const [i, n] of LAB_NODES.entries()) {
      const a = c.agents.get(n)!;
      expect([n, await a.out.until(refusal, DEADLINE, logged[i])]).toEqual([n, "found"]);
      const line = a.out.text.slice(logged[i]).split("\n").find((l) => l.includes(refusal))!;
      expect(JSON.parse(line)).toMatchObject({ level: 40, object: "NetworkPolicy x/from-y" });
      expect(line).toContain("the earlier version stays in force");
    }
    // the refusal is in: the table is still version 1's, round after round
    for (let k = 1; k <= 3; k++) await check(table(v1), `version 1 still in force after the refused update (check ${k} of 3)`);

    // and the next valid version goes in
    await w.apply(meant);
    await check(table(meant), "a valid version 3 (z instead of y) replaces version 1");
  }, 90_000);

  test("past the identities the conntrack mark bits hold, a node's own pods left over are blocked both ways, other nodes' pods are not, and the limit is logged", async () => {
    // the narrowest conntrack range an agent takes: the masquerade flag and 8 identity bits
    const ctMark = 0xff800000;
    expect(parseMask("0xff800000", MIN_CT_MARK_BITS)).toBe(ctMark);
    const holds = maxIdentity({ mark: DEFAULT_MARKS.mark, ctMark }) - FIRST_ID + 1;
    expect(holds).toBe(253);
    // ids go to new identities of the node's own pods first, in the order of their keys
    // (pod|<namespace>|<labels>|…), then to the others': on n1, where the fillers are (pods
    // that run nowhere, said to be n1's), its x pods first, then the fillers, which take every
    // id left, then its y and z pods, past the limit: blocked. n2 gives its own pods ids first
    // and leaves the others past the limit to their ipBlocks (none here): nothing blocked there.
    const fillers = holds - 3 + 7;
    const s: Scene = { policies: [policy("x", "a-from-b", { podSelector: pod("a"), ingress: [{ from: [{ podSelector: pod("b") }] }] })] };
    await w.apply(s);
    await check(table(s), "x/a admits only x/b, before the fillers");
    await addFillerPods(c, "y0fill", fillers, LAB_NODES[0]);
    // a fresh agent gives ids anew, in key order: restarted with the narrow range
    await Promise.all(LAB_NODES.map((n) => c.stopAgent(n)));
    const agents = await Promise.all(LAB_NODES.map((n) => c.startAgent(n, ["--ct-mark-mask", hex32(ctMark)], { ready: "cluster state listed" })));
    const needed = 9 + fillers;
    const problem = `identity limit: ${needed} identities needed, the mark bits hold ${holds}; this node's pods past it are blocked, other addresses judged by their ipBlocks alone`;
    for (const [i, a] of agents.entries()) {
      expect([LAB_NODES[i], await a.out.until(problem, DEADLINE)]).toEqual([LAB_NODES[i], "found"]);
      const line = a.out.text.split("\n").find((l) => l.includes(problem))!;
      expect(JSON.parse(line)).toMatchObject({ level: 40 });
    }
    const over = fx.pods.filter((p) => p.namespace !== "x" && p.node === LAB_NODES[0]).map((p) => p.key);
    expect(over.length).toBeGreaterThan(1);
    // and n2's pods are past the limit at n1 too: there they have no identity, so what only
    // their labels gave them at n1's isolated pods (x/a admits x/b) is lost: stricter, never looser
    const xa = fx.pod("x/a");
    expect(xa.node).toBe(LAB_NODES[0]);
    const remote = new Set(fx.pods.filter((p) => p.node !== LAB_NODES[0]).map((p) => p.key));
    const want = withBlocked(table(s), fx, over, "past the identity limit").map((cell) =>
      cell.to === "x/a" && remote.has(cell.from) ? { ...cell, expect: false, why: `${cell.from} has no identity at x/a's node (past the identity limit there)` } : cell,
    );
    expect(want.filter((cell, i) => cell.expect !== table(s)[i]!.expect && cell.to === "x/a").length).toBeGreaterThan(0);
    await check(want, `${needed} identities, ${holds} ids: n1's y and z pods blocked both ways, n2's pods without their labels at n1, the rest as the policy says`);
  }, 90_000);
});
