// Bad NetworkPolicies beside good ones (issue 15, "Bad input"): an invalid CIDR, an except
// outside its cidr, an unknown protocol are each reported naming the policy and the field,
// and left out; a named port no pod has is valid and reported as a problem of its policy. What
// the datapath does is exactly what the valid policies say, no stricter and no looser: the
// whole matrix is probed with real connections against the oracle given the valid ones alone.
// (That an invalid update keeps the version in force through the agent is
// agent/loop/agent.test.ts's and test/policy-failclosed.e2e.test.ts's.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { expected, OfflineApplier, PolicyLab, policy, wireOffline, type Fixture, type Scene } from "../testing/policy-lab.ts";
import { builtSkein, useLab, useTempDir } from "./harness/index.ts";

const lab = useLab("polbad");
const tmp = useTempDir("polbad");
let pl: PolicyLab;
let applier: OfflineApplier;

// each would change the matrix if it were read one way or another: deny everything in z, or
// open x back up, or isolate y/b
const BAD = [
  policy("z", "bad-cidr", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] }),
  policy("z", "bad-cidr-zeros", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "010.0.0.0/8" } }] }] }),
  policy("x", "except-outside", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["192.168.0.0/16"] } }] }] }),
  policy("y", "unknown-protocol", { podSelector: { matchLabels: { pod: "b" } }, ingress: [{ ports: [{ protocol: "ICMP", port: 80 }] }] }),
];
// valid: x denies ingress; y/a admits only a named port no pod has (so nothing but its node)
const VALID: Scene = {
  policies: [
    policy("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }),
    policy("y", "nameless-port", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: "no-such-port" }] }] }),
  ],
};

beforeAll(async () => {
  const fx: Fixture = await wireOffline(lab);
  applier = new OfflineApplier(lab, () => fx, builtSkein(), tmp, { objects: () => BAD, refused: true });
  pl = new PolicyLab(lab, fx, applier);
  await pl.startProbers();
}, 60_000);
afterAll(() => pl?.stopProbers());

test("the datapath enforces the valid policies alone, and each bad one is reported by policy and field", async () => {
  await pl.scene(VALID, "valid policies beside bad ones");
  for (const said of applier.said.values()) {
    expect(said).toContain("NetworkPolicy z/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr");
    expect(said).toContain("NetworkPolicy z/bad-cidr-zeros: spec.ingress[0].from[0].ipBlock.cidr");
    expect(said).toContain("NetworkPolicy x/except-outside: spec.ingress[0].from[0].ipBlock.except[0]");
    expect(said).toContain("NetworkPolicy y/unknown-protocol: spec.ingress[0].ports[0].protocol");
    // valid, in force, and a problem worth saying
    expect(said).toMatch(/NetworkPolicy y\/nameless-port: spec\.ingress\[0\]\.ports\[0\]\.port: .*no-such-port/);
  }
  // the oracle, given only the valid policies, has cells both ways: the check above was not vacuous
  const cells = expected(pl.fx, VALID);
  expect(cells.some((c) => c.expect)).toBe(true);
  expect(cells.some((c) => !c.expect)).toBe(true);
}, 60_000);
