// `skein trace` as a person meets it: what it is given is read strictly (a usage error, exit
// 2, naming the argument, never echoing a huge value back); offline it prints numbered steps
// without colours when its output is no terminal; without --state and no agent it says so
// (exit 69).
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { cluster } from "../agent/trace/fixture.case.ts";
import { SKEIN, builtSkein, useLab, useTempDir } from "./harness/index.ts";

const skein = (args: string[]) => {
  const p = Bun.spawnSync([builtSkein(), ...args], { env: { PATH: process.env.PATH } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

test("hostile sources and destinations are usage errors naming the argument", () => {
  const cases: Array<[string, string, RegExp]> = [
    // the whole table is read by parseQuery in agent/trace/explain.test.ts; a few here
    ...["010.0.0.1", "10.0.0.1/24", "１.２.３.４", "1.".repeat(5000) + "1", "FD00::1"].map((v) => [v, "10.96.0.1:80", /^skein trace: source: /] as [string, string, RegExp]),
    ["10.0.0.1", "10.96.0.1", /destination: .*has no port/],
    ["10.0.0.1", "10.96.0.1:0", /not a port/],
    ["10.0.0.1", "10.96.0.1:99999", /not a port/],
    ["10.0.0.1", "10.96.0.1:80/icmp", /protocol "icmp" is not tcp, udp or sctp/],
    ["10.0.0.1", "fd00::1:80", /brackets/],
    ["fd00::1", "10.96.0.1:80", /one family/],
    ["10.0.0.1:65536", "10.96.0.1:80", /source: .*not a port/],
  ];
  for (const [src, dst, why] of cases) {
    const r = skein(["trace", src, dst]);
    expect({ src: src.slice(0, 30), code: r.code }).toEqual({ src: src.slice(0, 30), code: 2 });
    expect(r.err).toMatch(why);
    expect(r.err.length).toBeLessThan(400);
  }
});

test("offline: numbered steps, no colours off a terminal, --json parses; flags are checked", () => {
  const dir = useTempDir("tracecli");
  writeFileSync(`${dir}/state.json`, JSON.stringify(cluster({ policy: true })));
  const base = ["trace", "--state", `${dir}/state.json`, "--node-name", "node-a", "--underlay-subnet", "192.168.50.0/24"];
  const r = skein([...base, "10.244.1.6:40000", "10.96.0.10:80"]);
  expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: "" });
  expect(r.out).not.toContain("\x1b[");
  for (const n of [1, 2, 3, 4]) expect(r.out).toMatch(new RegExp(`^${n}\\. `, "m"));
  expect(r.out).toMatch(/=> DROPPED: dropped by NetworkPolicy: ingress on node node-b \(isolated by default\/web-from-client/);
  const j = JSON.parse(skein([...base, "--json", "10.244.1.5", "10.96.0.20:53/udp"]).out);
  expect(j).toMatchObject({ node: "node-a", mode: "offline", outcome: "rejected" });
  expect(skein([...base, "--underlay-subnet", "192.168.50.1/24", "10.0.0.1", "10.96.0.1:80"]).code).toBe(2);
  expect(skein([...base, "--underlay-ip", "127.0.0.1", "10.0.0.1", "10.96.0.1:80"]).err).toContain("skein trace: --underlay-ip");
  expect(skein([...base, "--agent", "/x.sock", "10.0.0.1", "10.96.0.1:80"])).toMatchObject({ code: 2, err: expect.stringContaining("not with --state") });
  expect(skein(["trace", "--node-name", "n1", "--service-cidr", "10.96.0.0/16", "10.0.0.1", "10.96.0.1:80"])).toMatchObject({ code: 2, err: expect.stringContaining("--node-name, --service-cidr: only with --state") });
});

test("without --state and no agent in this network namespace: says so, exit 69", async () => {
  const lab = useLab("tracecli");
  lab.host("h");
  const r = await lab.exec("h", [SKEIN, "trace", "10.0.0.1", "10.96.0.1:80"], { allowFail: true });
  expect(r.exitCode).toBe(69);
  expect(r.stderr).toContain("no skein agent answers");
});
