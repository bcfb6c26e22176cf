// The binary as a person meets it.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { SKEIN, useLab, useTempDir, waitFor } from "./harness/index.ts";
import { listNetns } from "../agent/sys/netns.ts";
import { EXPECTED_ABI } from "../compiler/wasm.ts";
import { HOSTILE } from "../compiler/address.case.ts";
import { quote } from "../compiler/address.ts";

const skein = (args: string[], env: Record<string, string> = {}) => {
  const p = Bun.spawnSync([SKEIN, ...args], { env: { PATH: process.env.PATH, ...env } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

test("version prints the version and the CNI versions", () => {
  const r = skein(["version"]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^skein \d+\.\d+\.\d+ \(CNI 0\.4\.0, 1\.0\.0, 1\.1\.0;/);
  expect(JSON.parse(skein(["version", "--json"]).out).cniVersions).toEqual(["0.4.0", "1.0.0", "1.1.0"]);
});

test("the compiler is embedded: a lone copy of the binary loads it", () => {
  const dir = useTempDir("cli");
  copyFileSync(SKEIN, `${dir}/skein`);
  const p = Bun.spawnSync([`${dir}/skein`, "version", "--verbose"], { cwd: dir });
  expect(p.exitCode).toBe(0);
  expect(p.stdout.toString()).toContain(`compiler.wasm ABI ${EXPECTED_ABI}`);
});

test("help lists every subcommand, and each has --help", () => {
  const r = skein(["help"]);
  expect(r.code).toBe(0);
  for (const c of ["agent", "tables", "status", "trace", "cleanup", "demo", "version", "help"]) {
    expect(r.out).toContain(c);
    if (c !== "help") expect(skein([c, "--help"]).code).toBe(0);
  }
});

test.each([[["bogus"]], [["version", "--bogus"]], [["probe", "connect", "tcp", "127.0.0.1", "99999"]], [[]]])("usage errors exit 2: %p", (args) => {
  const r = skein(args);
  expect(r.code).toBe(2);
  expect(r.err + r.out).not.toBe("");
});

test("the agent with no cluster to watch says so and exits, without touching anything", () => {
  const r = skein(["agent", "--node-file", "/nonexistent/node.json"], { HOME: "/nonexistent" });
  expect(r.code).toBe(1);
  expect(r.out + r.err).toContain("no Kubernetes API to watch: give --kubeconfig");
  const bad = skein(["agent", "--cluster-cidr", "10.244.0.0/33"]);
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("--cluster-cidr");
});

test("the overlay's address flags take one host's address only; gossip flags are checked before anything starts", () => {
  for (const flag of ["--public-ip", "--underlay-ip"]) {
    for (const v of ["0.0.0.0", "127.0.0.1", "224.0.0.1", "239.9.9.9", "255.255.255.255", "::1", "ff02::1", "169.254.3.3"]) {
      const r = skein(["agent", "--kubeconfig", "/nonexistent", flag, v]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`${flag}: "${v}" is `);
    }
  }
  const ttl = skein(["agent", "--kubeconfig", "/nonexistent", "--heartbeat-ms", "5000", "--peer-ttl-ms", "5000"]);
  expect(ttl.code).toBe(2);
  expect(ttl.err).toContain("--peer-ttl-ms (5000) must be longer than --heartbeat-ms (5000)");
  const creds = skein(["agent", "--kubeconfig", "/nonexistent", "--nats-token-file", "/nonexistent"]);
  expect(creds.code).toBe(2);
  expect(creds.err).toContain("NATS credentials are given but no server");
  const url = skein(["agent", "--kubeconfig", "/nonexistent", "--nats-url", "nats://user:sekret@127.0.0.1:4222"]);
  expect(url.code).toBe(2);
  expect(url.out + url.err).not.toContain("sekret");
});

describe("addresses and CIDRs on the command line (compiler/address.case.ts)", () => {
  // an API server that only counts connections: a refused flag must stop the agent before it
  // contacts anything
  let connections = 0;
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void (connections++, s.end()), data() {} } });
  afterAll(() => server.stop(true));
  const dir = useTempDir("cliaddr");
  writeFileSync(
    `${dir}/kubeconfig`,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${server.port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`,
  );
  // (no HTTP listener: this agent runs in the test's own namespace until it is killed)
  const agent = (flag: string, v: string) => [SKEIN, "agent", "--kubeconfig", `${dir}/kubeconfig`, "--node-file", `${dir}/node.json`, "--http-listen", "none", "--http-socket", "none", "--health-port", "0", flag, v];
  const FLAGS: Array<[string, (v: string) => string[]]> = [
    ["--service-cidr", (v) => agent("--service-cidr", v)],
    ["--cluster-cidr", (v) => agent("--cluster-cidr", v)],
    ["--nodeport-addresses", (v) => agent("--nodeport-addresses", v)],
    ["--node-ip", (v) => [SKEIN, "tables", "--state", `${dir}/none.yaml`, "--node-ip", v]],
  ];
  // every string of the table (argv holds no NUL), each through one of the flags in turn
  // (agent/cli/index.test.ts runs every value through every flag in-process)
  const values = HOSTILE.map((h) => h.value).filter((v): v is string => typeof v === "string" && !v.includes("\0"));
  const cases = values.map((v, i) => [`${FLAGS[i % FLAGS.length]![0]} ${quote(v)}`, FLAGS[i % FLAGS.length]![0], FLAGS[i % FLAGS.length]![1](v)] as const);

  test.each(cases)("%s: exit 2 naming the flag, nothing contacted", async (_n, flag, argv) => {
    const p = Bun.spawn(argv, { env: { PATH: process.env.PATH }, stdout: "pipe", stderr: "pipe" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    expect(code).toBe(2);
    expect(err).toContain(`${flag}: `);
    expect(err).toMatch(/is not (a valid|an IPv|a network)/);
    // the value is quoted cut short, never repeated whole
    expect(err.length).toBeLessThan(400);
    expect(connections).toBe(0);
    expect(existsSync(`${dir}/node.json`)).toBe(false);
  });

  test("at least 30 values, and the issue's example in words", () => {
    expect(values.length).toBeGreaterThanOrEqual(30);
    const r = skein(["agent", "--kubeconfig", `${dir}/kubeconfig`, "--service-cidr", "010.0.0.0/8"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe('skein agent: --service-cidr: "010.0.0.0/8" is not a valid CIDR (IPv4 address: leading zero)\n');
  });

  test("with valid values the agent does go on to contact its API server (the check above can fail)", async () => {
    const p = Bun.spawn(agent("--service-cidr", "10.96.0.0/16").concat(["--nodeport-addresses", "0.0.0.0/0", "--cluster-cidr", "fd00:10:244::/56"]), { env: { PATH: process.env.PATH }, stdout: "ignore", stderr: "ignore" });
    try {
      await waitFor("a connection to the API server", () => connections > 0, 10_000);
    } finally {
      p.kill();
      await p.exited;
    }
  });
});

test.each([["tables"], ["status"]])("%s without a running agent says so plainly (exit 69)", (c) => {
  const r = skein([c, "--agent", "/nonexistent/skein-agent.sock"]);
  expect(r.code).toBe(69);
  expect(r.err).toContain("no skein agent answers at /nonexistent/skein-agent.sock");
});

test.each([
  [["agent", "--http-listen", "0.0.0.0:9465"], "is not a loopback address: give --http-token-file"],
  [["agent", "--http-listen", "127.0.0.01:9465"], "--http-listen"],
  [["agent", "--health-port", "65536"], "--health-port"],
  [["tables", "--service", "a/b", "--pod", "c/d"], "give --service or --pod, not both"],
  [["tables", "--state", "x.yaml", "--service", "a/b"], "do not go with --state"],
  [["tables", "--nft"], "work on a --state file"],
])("usage errors of the operator flags: %p", (argv, msg) => {
  const r = skein(argv);
  expect(r.code).toBe(2);
  expect(r.err).toContain(msg);
});

test("an unknown CNI_COMMAND is a CNI error, not the CLI", () => {
  const r = skein([], { CNI_COMMAND: "NOPE" });
  expect(r.code).toBe(1);
  expect(JSON.parse(r.out)).toMatchObject({ code: 4 });
});

test("cleanup removes namespaces by prefix, and only those", () => {
  const lab = useLab("clean");
  lab.host("x");
  lab.host("y");
  const other = useLab("keep");
  other.host("z");
  // --namespaces-only: the test runs in the host's own namespace, whose datapath is no test's to touch
  const dry = skein(["cleanup", "--namespaces-only", "--prefix", lab.prefix, "--dry-run"]);
  expect(dry.out).toContain(`would remove network namespace ${lab.name("x")}`);
  expect(listNetns()).toContain(lab.name("x"));
  const r = skein(["cleanup", "--namespaces-only", "--prefix", lab.prefix]);
  expect(r.code).toBe(0);
  expect(listNetns().filter((n) => n.startsWith(lab.prefix))).toEqual([]);
  expect(listNetns()).toContain(other.name("z"));
});

test("tables --state compiles a YAML file, names every rejected object and keeps the rest", () => {
  const dir = useTempDir("tables");
  writeFileSync(`${dir}/state.yaml`, [
    "kind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}",
    "kind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.244.1.2]}]",
    "kind: Service\nmetadata: {name: bad, namespace: default}\nspec: {clusterIP: 10.96.0.11, ports: [{port: 0}]}",
    // two Services on one external address and port: the first by name keeps it
    "kind: Service\nmetadata: {name: ext-a, namespace: default}\nspec: {clusterIP: 10.96.0.12, externalIPs: [203.0.113.9], ports: [{port: 80}]}",
    "kind: Service\nmetadata: {name: ext-b, namespace: default}\nspec: {clusterIP: 10.96.0.13, externalIPs: [203.0.113.9], ports: [{port: 80}]}",
  ].join("\n---\n"));
  {
    const r = skein(["tables", "--state", `${dir}/state.yaml`]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("skipped Service default/bad: spec.ports[0].port: 0 is not a port (1-65535)");
    expect(r.err).toContain("Service default/ext-b: external frontend 203.0.113.9 TCP/80 is already served by Service default/ext-a; left out");
    expect(r.out).toMatch(/10\.96\.0\.10:80\/TCP\s+cluster\s+t3/);
    expect(r.out).toMatch(/10\.96\.0\.13:80\/TCP\s+cluster\s+t2/); // ext-b keeps its ClusterIP
    expect(r.out).toMatch(/default\/web:80\/TCP\s+internal\s+11\s+10\.244\.1\.2:8080/); // default ring factor 10: smallest prime >= 10
    const j = JSON.parse(skein(["tables", "--state", `${dir}/state.yaml`, "--json"]).out);
    const web = j.targets.find((t: { service: string }) => t.service === "default/web:80/TCP");
    expect(web.ring).toHaveLength(11);
    expect(web.backends).toContainEqual({ ip: "10.244.1.2", port: 8080 });
    expect(skein(["tables", "--state", `${dir}/missing.yaml`]).err).toContain("missing.yaml");
  }
});

test("tables --nft uses skein's bits of the marks only; ids the range cannot hold are an error naming the target", () => {
  const dir = useTempDir("marks");
  const objs = (n: number) =>
    Array.from({ length: n }, (_, i) => [
      { kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80 }] } },
      { kind: "EndpointSlice", metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: [{ addresses: [`10.244.${i >> 8}.${i & 255}`] }] },
    ]).flat();
  writeFileSync(`${dir}/few.json`, JSON.stringify(objs(3)));
  writeFileSync(`${dir}/many.json`, JSON.stringify(objs(256)));
  const r = skein(["tables", "--state", `${dir}/few.json`, "--nft", "--mark-mask", "0x000ff000", "--ct-mark-mask", "0x0001ff00"]);
  expect(r.err).toBe("");
  expect(r.out).toContain('add table inet skein { comment "skein marks: packet 0x000ff000 conntrack 0x0001ff00"; }');
  expect(r.out).toMatch(/add rule inet skein t_3 meta mark set meta mark & 0xfff00fff \| 0x00003000 goto ring4_0_11 comment "default\/s\d:80\/TCP internal"/);
  expect(r.out).toContain("dnat ip to meta mark & 0x000ff000 . jhash");
  expect(r.out).toContain("ct mark & 0x00010000 == 0x00010000 masquerade");
  const narrow = skein(["tables", "--state", `${dir}/many.json`, "--nft", "--mark-mask", "0xff000000"]);
  expect(narrow.code).toBe(1);
  expect(narrow.err).toMatch(/^skein: target 256 \(default\/s\d+:80\/TCP internal\) does not fit the packet mark range 0xff000000, which holds ids 1-255: give --mark-mask more bits\n$/);
  expect(narrow.out).toBe("");
  expect(skein(["tables", "--state", `${dir}/many.json`, "--nft", "--mark-mask", "0xffff0000"]).code).toBe(0);
  const bad = skein(["tables", "--state", `${dir}/few.json`, "--ct-mark-mask", "0x0"]);
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("--ct-mark-mask: must be a non-zero 32-bit value");
  // the masquerade flag and 8 bits of policy identities at least
  const few = skein(["tables", "--state", `${dir}/few.json`, "--ct-mark-mask", "0x0000ff00"]);
  expect(few.code).toBe(2);
  expect(few.err).toContain("--ct-mark-mask: 0x0000ff00 has 8 bits; at least 9 are needed");
});
