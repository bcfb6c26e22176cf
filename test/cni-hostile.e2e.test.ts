// Hostile calls, as a buggy or compromised runtime would make them: whatever they ask, the
// plugin never harms what is already on the node (its routes, links, other pods, the IPAM
// state) and answers with the spec's error code.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { hostVethName } from "../agent/cni/plan.ts";
import { DiskStore } from "../agent/ipam/disk-store.ts";
import { inNetns, run } from "../agent/sys/exec.ts";
import { hostLinks, runPlugin, SKEIN, useLab, useTempDir, waitFor, type PluginRun } from "./harness/index.ts";

const lab = useLab("hostile");
const tmp = useTempDir("hostile");
const NODE_IP = "198.18.0.1";
const UPLINK_IP = "198.18.0.2";
const net = (name: string, cidr: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0",
  name,
  type: "skein",
  podCIDRs: [cidr],
  dataDir: `${tmp}/${name}`,
  nodeFile: `${tmp}/absent-node.json`,
  masquerade: false,
  ...extra,
});
const store = (c: { name: string; dataDir: string }) => new DiskStore(c.dataDir, c.name);
const held = (c: { name: string; dataDir: string }, containerId?: string) =>
  Object.values(store(c).read().allocations).filter((a) => containerId === undefined || a.containerId === containerId);
const env = (pod: string, extra: Record<string, string> = {}) => ({ CNI_CONTAINERID: `ctr-${pod}`, CNI_NETNS: lab.path(pod), CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent", ...extra });
const plugin = (command: string, conf: unknown, e: Record<string, string>) => runPlugin({ command, conf, env: e, netnsOfPlugin: lab.path("node") });
const ipv4Of = (r: PluginRun) => String((r.json?.ips as Array<{ address: string }>)[0]!.address).split("/")[0]!;

/** Runs the plugin without blocking the test, so that many can run at once. */
async function pluginAsync(command: string, conf: unknown, e: Record<string, string>, timeoutMs = 30_000): Promise<PluginRun> {
  const p = Bun.spawn(inNetns(lab.path("node"), [SKEIN]), { stdin: Buffer.from(JSON.stringify(conf)), stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH, CNI_COMMAND: command, ...e }, timeout: timeoutMs });
  const [stdout, exitCode] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  let json: Record<string, unknown> | undefined;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { exitCode, stdout, json };
}

/** What the node has that a hostile call must leave alone: its routes and its links. */
function nodeState(): string {
  const ip = (args: string[]) => run(["ip", "-n", lab.name("node"), ...args]).stdout;
  return [ip(["-4", "route", "show"]), ip(["-6", "route", "show"]), ip(["-o", "link", "show"]).replace(/^\d+: /gm, "").replace(/ +link\/.*$/gm, "")].join("\n");
}

/** The pod namespace's interfaces other than loopback, with their global addresses. */
function podInterfaces(pod: string): Array<{ name: string; addrs: string[] }> {
  const j = JSON.parse(run(["ip", "-n", lab.name(pod), "-j", "addr", "show"]).stdout) as Array<{ ifname: string; addr_info?: Array<{ local: string; scope: string }> }>;
  return j.filter((l) => l.ifname !== "lo").map((l) => ({ name: l.ifname, addrs: (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => a.local) }));
}

beforeAll(() => {
  lab.host("node");
  lab.host("uplink");
  lab.wire({ ns: "node", addr: `${NODE_IP}/24` }, { ns: "uplink", addr: `${UPLINK_IP}/24` });
  run(["ip", "-n", lab.name("node"), "route", "add", "default", "via", UPLINK_IP]);
});

describe("CNI_NETNS naming the node's own namespace", () => {
  const conf = net("ownns", "10.244.20.0/24");
  const bind = `${tmp}/ns-bind`;
  let sleeper = 0;

  beforeAll(async () => {
    const { proc } = await lab.spawn("node", ["sleep", "120"]);
    sleeper = proc.pid;
    symlinkSync(lab.path("node"), `${tmp}/ns-link`);
    writeFileSync(bind, "");
    run(["mount", "--bind", lab.path("node"), bind]);
  });
  afterAll(() => {
    run(["umount", "-l", bind], { allowFail: true });
  });

  const paths: Array<[string, () => string]> = [
    ["its named path", () => lab.path("node")],
    ["/proc/self/ns/net of the plugin itself", () => "/proc/self/ns/net"],
    ["/proc/PID/ns/net of another process in it", () => `/proc/${sleeper}/ns/net`],
    ["a symlink to it", () => `${tmp}/ns-link`],
    ["a bind mount of it", () => bind],
  ];
  for (const [what, path] of paths) {
    test(`${what}: ADD and CHECK refused with code 4, DEL harmless; the node's routes and links untouched`, () => {
      const before = nodeState();
      expect(before).toContain(`default via ${UPLINK_IP}`);
      const e = env("none", { CNI_NETNS: path() });
      for (const command of ["ADD", "CHECK"]) {
        const r = plugin(command, conf, e);
        expect(r.exitCode).not.toBe(0);
        expect(r.json?.code).toBe(4);
        expect(String(r.json?.msg)).toMatch(/^CNI_NETNS .* is the node's own network namespace/);
        expect(nodeState()).toBe(before);
      }
      expect(plugin("DEL", conf, e).exitCode).toBe(0);
      expect(nodeState()).toBe(before);
      expect(held(conf)).toEqual([]);
    });
  }
});

// A race shows only now and then: the rounds make a run without serialization fail nearly always.
const ROUNDS = 4;
test(`20 concurrent ADDs of one container (${ROUNDS} rounds): one succeeds, the others are refused; one interface, recorded; DEL leaves nothing`, async () => {
  const conf = net("twenty", "10.244.21.0/24");
  for (let round = 0; round < ROUNDS; round++) {
    const pod = `twenty${round}`;
    lab.host(pod);
    const runs = await Promise.all([...Array(20)].map(() => pluginAsync("ADD", conf, env(pod))));
    const ok = runs.filter((r) => r.exitCode === 0);
    expect(ok).toHaveLength(1);
    for (const r of runs.filter((x) => x.exitCode !== 0)) {
      expect(r.json?.code).toBe(4);
      expect(String(r.json?.msg)).toMatch(new RegExp(`CNI_IFNAME eth0 already exists in .*: container ctr-${pod} is already attached`));
    }
    const ip = ipv4Of(ok[0]!);
    expect(podInterfaces(pod)).toEqual([{ name: "eth0", addrs: [ip] }]);
    expect(held(conf).map((a) => [a.containerId, a.ip])).toEqual([[`ctr-${pod}`, ip]]);
    expect(await lab.ping("node", ip)).toBe(true);

    expect((await pluginAsync("DEL", conf, env(pod))).exitCode).toBe(0);
    expect(held(conf)).toEqual([]);
    expect(readdirSync(`${conf.dataDir}/containers`)).toEqual([]);
    expect(podInterfaces(pod)).toEqual([]);
    expect(hostLinks(lab, "node")).not.toContain(hostVethName(`ctr-${pod}`, "eth0"));
  }
}, 90_000);

test("two networks over one pod CIDR, ADDs at the same instant (10 rounds): never both; the one wired keeps its route", async () => {
  for (let round = 0; round < 10; round++) {
    const nets = [net(`race${round}a`, "10.244.30.0/24"), net(`race${round}b`, "10.244.30.0/24")];
    const pods = nets.map((_, k) => `race${round}${k}`);
    pods.forEach((p) => lab.host(p));
    const runs = await Promise.all(nets.map((c, k) => pluginAsync("ADD", c, env(pods[k]!))));
    const ok = runs.filter((r) => r.exitCode === 0);
    expect(ok).toHaveLength(1);
    expect(runs.find((r) => r.exitCode !== 0)?.json?.code).toBe(103);
    expect(await lab.ping("node", ipv4Of(ok[0]!))).toBe(true);
    for (const [k, c] of nets.entries()) expect((await pluginAsync("DEL", c, env(pods[k]!))).exitCode).toBe(0);
  }
}, 90_000);

describe("a second network over the same pod CIDR", () => {
  const first = net("ovfirst", "10.244.22.0/24");
  const others: Array<[string, ReturnType<typeof net>]> = [
    ["another network name, same data directory", { ...first, name: "ovname" }],
    ["the same network name, another data directory", { ...first, dataDir: `${tmp}/ovdir` }],
  ];
  let oldIp = "";

  beforeAll(() => {
    lab.host("old");
    const r = plugin("ADD", first, env("old"));
    expect(r.exitCode).toBe(0);
    oldIp = ipv4Of(r);
  });

  test("the same container id and interface in another network: ADD refused (code 4), the old pod's link untouched", async () => {
    lab.host("dup");
    const linksBefore = hostLinks(lab, "node");
    const r = plugin("ADD", net("ovdup", "10.244.28.0/24"), env("old", { CNI_NETNS: lab.path("dup") }));
    expect(r.json?.code).toBe(4);
    expect(String(r.json?.msg)).toMatch(/^host interface sk[0-9a-f]{13} of container ctr-old eth0 already exists, wired to another namespace/);
    expect(hostLinks(lab, "node")).toEqual(linksBefore);
    expect(podInterfaces("dup")).toEqual([]);
    expect(await lab.ping("node", oldIp)).toBe(true);
  });

  for (const [i, [what, second]] of others.entries()) {
    test(`${what}: ADD refused (code 103), nothing of it left; the old pod keeps its route through the newcomer's DEL`, async () => {
      const pod = `new${i}`;
      lab.host(pod);
      const linksBefore = hostLinks(lab, "node");
      const r = plugin("ADD", second, env(pod));
      expect(r.exitCode).not.toBe(0);
      expect(r.json?.code).toBe(103);
      expect(String(r.json?.msg)).toMatch(new RegExp(`address ${oldIp.replaceAll(".", "\\.")} allocated by network ${second.name} .* is already routed to sk[0-9a-f]{13} on this node`));
      expect(held(second, `ctr-${pod}`)).toEqual([]);
      expect(podInterfaces(pod)).toEqual([]);
      expect(hostLinks(lab, "node")).toEqual(linksBefore);
      expect(await lab.ping("node", oldIp)).toBe(true);

      expect(plugin("DEL", second, env(pod)).exitCode).toBe(0);
      expect(await lab.ping("node", oldIp)).toBe(true);
      expect(await lab.ping("old", NODE_IP)).toBe(true);
      expect(held(first, "ctr-old").map((a) => a.ip)).toEqual([oldIp]);
    });
  }
});

test("GC without cni.dev/valid-attachments: code 7 naming the field, every pod kept", async () => {
  const conf = net("gcmiss", "10.244.23.0/24");
  lab.host("gckept");
  const r = plugin("ADD", conf, env("gckept"));
  expect(r.exitCode).toBe(0);
  const gc = runPlugin({ command: "GC", conf, env: {}, netnsOfPlugin: lab.path("node") });
  expect(gc.exitCode).not.toBe(0);
  expect(gc.json?.code).toBe(7);
  expect(String(gc.json?.msg)).toMatch(/cni\.dev\/valid-attachments is missing/);
  expect(held(conf, "ctr-gckept").map((a) => a.ip)).toEqual([ipv4Of(r)]);
  expect(await lab.ping("node", ipv4Of(r))).toBe(true);
  expect(plugin("DEL", conf, env("gckept")).exitCode).toBe(0);
});

test("no command leaves a container's lock file behind: a CHECK of an unknown container, a failed ADD, an ADD, a DEL", () => {
  const conf = net("nolocks", "10.244.39.0/24");
  const locks = () => readdirSync(`${conf.dataDir}/containers`);
  lab.host("nl1");
  expect(plugin("CHECK", conf, env("nl1")).json?.code).toBe(3);
  expect(locks()).toEqual([]);
  expect(plugin("ADD", conf, env("nl1", { CNI_NETNS: `${tmp}/no-such-ns` })).json?.code).toBe(4);
  expect(locks()).toEqual([]);
  expect(plugin("ADD", conf, env("nl1")).exitCode).toBe(0);
  expect(locks()).toEqual([]);
  expect(plugin("CHECK", conf, env("nl1")).exitCode).toBe(0);
  expect(plugin("DEL", conf, env("nl1")).exitCode).toBe(0);
  expect(locks()).toEqual([]);
});

test("GC removes the lock files of the containers it does not keep", () => {
  const conf = net("gclocks", "10.244.29.0/24");
  for (const p of ["gl1", "gl2"]) {
    lab.host(p);
    expect(plugin("ADD", conf, env(p)).exitCode).toBe(0);
    // as a plugin killed while holding it leaves it
    writeFileSync(`${conf.dataDir}/containers/ctr-${p}.lock`, "");
  }
  const locks = () => readdirSync(`${conf.dataDir}/containers`).sort();
  expect(locks()).toEqual(["ctr-gl1.lock", "ctr-gl2.lock"]);
  const gc = runPlugin({ command: "GC", conf: { ...conf, "cni.dev/valid-attachments": [{ containerID: "ctr-gl2", ifname: "eth0" }] }, env: {}, netnsOfPlugin: lab.path("node") });
  expect(gc.exitCode).toBe(0);
  expect(locks()).toEqual(["ctr-gl2.lock"]);
  expect(plugin("DEL", conf, env("gl2")).exitCode).toBe(0);
  expect(locks()).toEqual([]);
});

describe("reads are bounded", () => {
  test("an endless stdin: code 6 within a few seconds, not a plugin running until killed", async () => {
    const writer = Bun.spawn(["yes", '{"cniVersion": "1.1.0"}'], { stdout: "pipe", stderr: "ignore" });
    try {
      const t0 = performance.now();
      const p = Bun.spawn(inNetns(lab.path("node"), [SKEIN]), { stdin: writer.stdout, stdout: "pipe", stderr: "ignore", env: { PATH: process.env.PATH, CNI_COMMAND: "ADD", ...env("none") }, timeout: 20_000 });
      const [stdout, exitCode] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(exitCode).toBe(1);
      const j = JSON.parse(stdout) as { code: number; msg: string };
      expect(j.code).toBe(6);
      expect(j.msg).toMatch(/network configuration on stdin is larger than 1 MiB/);
    } finally {
      writer.kill("SIGKILL");
    }
  }, 30_000);

  test("a node file past its limit: code 5 naming the file and the limit", () => {
    const file = `${tmp}/big-node.json`;
    // Valid JSON (trailing whitespace), so only the size can be the reason to refuse it.
    writeFileSync(file, `{"podCIDRs": ["10.244.24.0/24"]}${" ".repeat(70 * 1024)}`);
    lab.host("bignode");
    const r = plugin("ADD", { ...net("bignode", "10.244.24.0/24"), podCIDRs: undefined, nodeFile: file }, env("bignode"));
    expect(r.json?.code).toBe(5);
    expect(String(r.json?.msg)).toBe(`node file ${file} is larger than 64 KiB: refused`);
    expect(podInterfaces("bignode")).toEqual([]);
  });

  test("an IPAM state past its limit: code 5 naming the file and the limit, left as it was", () => {
    const conf = net("bigstate", "10.244.25.0/24");
    mkdirSync(conf.dataDir, { recursive: true });
    const path = store(conf).path;
    writeFileSync(path, "");
    truncateSync(path, 17 * 1024 * 1024); // sparse: costs no disk
    lab.host("bigstate");
    for (const command of ["ADD", "DEL"]) {
      const r = plugin(command, conf, env("bigstate"));
      expect(r.json?.code).toBe(5);
      expect(String(r.json?.msg)).toMatch(new RegExp(`IPAM state ${path} is corrupt \\(larger than 16 MiB\\)`));
    }
    expect(Bun.file(path).size).toBe(17 * 1024 * 1024);
    expect(podInterfaces("bigstate")).toEqual([]);
  });
});

describe("DEL under a configuration that no longer validates", () => {
  const conf = net("delbad", "10.244.26.0/24");
  const ips: Record<string, string> = {};

  beforeAll(() => {
    for (const p of ["d1", "d2"]) {
      lab.host(p);
      const r = plugin("ADD", conf, env(p));
      expect(r.exitCode).toBe(0);
      ips[p] = ipv4Of(r);
    }
  });

  test("an invalid field: the host veth and the addresses are released, exit 0; other pods untouched", async () => {
    const r = plugin("DEL", { ...conf, mtu: 10, ipam: { type: "host-local" } }, env("d1"));
    expect(r.exitCode).toBe(0);
    expect(held(conf, "ctr-d1")).toEqual([]);
    expect(podInterfaces("d1")).toEqual([]);
    expect(hostLinks(lab, "node")).not.toContain(hostVethName("ctr-d1", "eth0"));
    expect(hostLinks(lab, "node")).toContain(hostVethName("ctr-d2", "eth0"));
    expect(held(conf, "ctr-d2").map((a) => a.ip)).toEqual([ips.d2!]);
    expect(await lab.ping("node", ips.d2!)).toBe(true);
    // Repeated: what is gone stays gone, and that is success.
    expect(plugin("DEL", { ...conf, mtu: 10 }, env("d1")).exitCode).toBe(0);
  });

  test("a configuration that is not JSON: the host veth goes; the error says the addresses could not be released", () => {
    const r = plugin("DEL", '{"cniVersion": "1.1.0", "name": ', env("d2"));
    expect(r.exitCode).not.toBe(0);
    expect(r.json?.code).toBe(6);
    expect(String(r.json?.msg)).toMatch(/^DEL of container ctr-d2 eth0 under an invalid configuration \(.*not valid JSON.*\): removed host interface sk[0-9a-f]{13}; cannot release its addresses: the configuration is not JSON/);
    expect(podInterfaces("d2")).toEqual([]);
    expect(hostLinks(lab, "node")).not.toContain(hostVethName("ctr-d2", "eth0"));
    expect(held(conf, "ctr-d2")).toHaveLength(1);
    expect(plugin("DEL", conf, env("d2")).exitCode).toBe(0);
    expect(held(conf)).toEqual([]);
  });
});

test("a netlink failure during ADD: code 5, one line, no stack; nothing left behind", () => {
  const conf = net("nlfail", "10.244.27.0/24", { podCIDRs: ["10.244.27.0/24", "fd00:10:244:27::/64"] });
  lab.host("noipv6");
  // The pod's namespace refuses IPv6 addresses: the ADD fails half-way, in the pod.
  run(["ip", "netns", "exec", lab.name("noipv6"), "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
  const r = plugin("ADD", conf, env("noipv6"));
  expect(r.exitCode).not.toBe(0);
  expect(r.json?.code).toBe(5);
  expect(String(r.json?.msg)).toMatch(/^add address fd00:10:244:27::[0-9a-f:]+\/128: (EACCES|errno 13)$/);
  expect(r.json?.details).toBeUndefined();
  expect(held(conf)).toEqual([]);
  expect(podInterfaces("noipv6")).toEqual([]);
  expect(hostLinks(lab, "node")).not.toContain(hostVethName("ctr-noipv6", "eth0"));
});

/** The node still has its default route and no pod interface landed in it. */
function nodeIntact(): boolean {
  const routes = run(["ip", "-n", lab.name("node"), "-4", "route", "show"]).stdout;
  const eth0 = run(["ip", "-n", lab.name("node"), "link", "show", "dev", "eth0"], { allowFail: true }).exitCode === 0;
  return routes.includes(`default via ${UPLINK_IP}`) && !eth0;
}

/** Runs the plugin with a time limit and says how long it took: a hang is a failure, not a stuck test. */
async function timed(command: string, conf: unknown, e: Record<string, string>): Promise<PluginRun & { ms: number }> {
  const t0 = performance.now();
  const r = await pluginAsync(command, conf, e, 10_000);
  return { ...r, ms: performance.now() - t0 };
}

describe("CNI_NETNS that is not what it says", () => {
  test("SKEIN_NETLINK=off and a newline in CNI_NETNS: ADD refused with code 4; no command of it runs in the node", () => {
    const conf = net("inject", "10.244.32.0/24");
    lab.host("inj");
    mkdirSync(`${tmp}/inj`);
    // Both names exist, so that the `ip -batch` line up to the newline would work and the
    // rest would run as a command of its own.
    symlinkSync(lab.path("inj"), `${tmp}/inj/ns`);
    symlinkSync(lab.path("inj"), `${tmp}/inj/ns\nroute del default`);
    const before = nodeState();
    const r = plugin("ADD", conf, env("inj", { CNI_NETNS: `${tmp}/inj/ns\nroute del default`, SKEIN_NETLINK: "off" }));
    expect(r.json?.code).toBe(4);
    expect(String(r.json?.msg)).toMatch(/^CNI_NETNS ".*\\nroute del default" holds whitespace or control characters$/);
    expect(nodeState()).toBe(before);
    expect(podInterfaces("inj")).toEqual([]);
    expect(held(conf)).toEqual([]);
  });

  test("a symlink swapped between a pod's namespace and the node's during ADD (30 ADD+DEL): nothing lands in the node, its default route stays", async () => {
    const conf = net("swap", "10.244.33.0/24");
    lab.host("swappod");
    const d = `${tmp}/swap`;
    mkdirSync(d);
    const link = `${d}/ns`;
    symlinkSync(lab.path("swappod"), link);
    const before = nodeState();
    // rename over the link: it always exists, and names one namespace or the other
    const script = `end=$((SECONDS+60)); while [ $SECONDS -lt $end ]; do ln -sfn ${lab.path("swappod")} ${d}/a; mv -Tf ${d}/a ${link}; ln -sfn ${lab.path("node")} ${d}/b; mv -Tf ${d}/b ${link}; done`;
    const swapper = Bun.spawn(["bash", "-c", script], { stdout: "ignore", stderr: "ignore" });
    let wired = 0;
    try {
      for (let i = 0; i < 30; i++) {
        const r = await pluginAsync("ADD", conf, env("swappod", { CNI_NETNS: link }));
        if (r.exitCode === 0) wired++;
        else expect(r.json?.code).toBe(4);
        expect(nodeIntact()).toBe(true);
        expect((await pluginAsync("DEL", conf, env("swappod", { CNI_NETNS: link }))).exitCode).toBe(0);
        expect(nodeState()).toBe(before);
      }
    } finally {
      swapper.kill("SIGKILL");
      await swapper.exited;
    }
    expect(podInterfaces("swappod")).toEqual([]);
    expect(held(conf)).toEqual([]);
    console.log(`swapped symlink: ${wired} of 30 ADDs wired the pod, the others were refused`);
  }, 90_000);

  test("a FIFO, a directory, a regular file: ADD and CHECK refused at once with code 4", async () => {
    const conf = net("notns", "10.244.34.0/24");
    const fifo = `${tmp}/ns-fifo`;
    run(["mkfifo", fifo]);
    writeFileSync(`${tmp}/ns-file`, "");
    for (const path of [fifo, tmp, `${tmp}/ns-file`]) {
      for (const command of ["ADD", "CHECK"]) {
        const r = await timed(command, conf, env("none", { CNI_NETNS: path }));
        expect(r.ms).toBeLessThan(5000);
        expect(r.json?.code).toBe(4);
        expect(String(r.json?.msg)).toBe(`CNI_NETNS ${path} is not a network namespace (such as /var/run/netns/NAME or /proc/PID/ns/net)`);
      }
    }
    expect(held(conf)).toEqual([]);
  }, 60_000);
});

describe("FIFOs where the plugin reads its files", () => {
  test("a node file that is a FIFO, or a directory: code 5 at once, naming the file", async () => {
    lab.host("fifonode");
    for (const [what, file] of [["fifo", `${tmp}/node-fifo`], ["dir", `${tmp}/node-dir`]] as const) {
      if (what === "fifo") run(["mkfifo", file]);
      else mkdirSync(file);
      const r = await timed("ADD", { ...net(`fifonode${what}`, "10.244.35.0/24"), podCIDRs: undefined, nodeFile: file }, env("fifonode"));
      expect(r.ms).toBeLessThan(5000);
      expect(r.json?.code).toBe(5);
      expect(String(r.json?.msg)).toBe(`node file ${file} is not a regular file: refused`);
    }
    expect(podInterfaces("fifonode")).toEqual([]);
  }, 30_000);

  test("an IPAM state or a container lock file that is a FIFO: code 5 at once, left in place; other containers are not held up", async () => {
    const conf = net("fifostate", "10.244.36.0/24");
    mkdirSync(`${conf.dataDir}/containers`, { recursive: true });
    const state = store(conf).path;
    run(["mkfifo", state]);
    lab.host("fifo1");
    for (const command of ["ADD", "DEL", "ADD"]) {
      const r = await timed(command, conf, env("fifo1"));
      expect(r.ms).toBeLessThan(5000);
      expect(r.json?.code).toBe(5);
      expect(String(r.json?.msg)).toMatch(new RegExp(`^IPAM state ${state} is corrupt \\(not a regular file\\)`));
    }
    expect(podInterfaces("fifo1")).toEqual([]);
    rmSync(state);

    const lock = `${conf.dataDir}/containers/ctr-fifo2.lock`;
    run(["mkfifo", lock]);
    lab.host("fifo2");
    const r = await timed("ADD", conf, env("fifo2"));
    expect(r.ms).toBeLessThan(5000);
    expect(r.json?.code).toBe(5);
    expect(podInterfaces("fifo2")).toEqual([]);
    const ok = await timed("ADD", conf, env("fifo1"));
    expect(ok.exitCode).toBe(0);
    expect((await pluginAsync("DEL", conf, env("fifo1"))).exitCode).toBe(0);
  }, 60_000);
});

test("an unprivileged process holding a lock on the node namespace's own file stalls no ADD", async () => {
  const conf = net("stall", "10.244.37.0/24");
  lab.host("stall");
  const { proc } = await lab.spawn("node", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "flock", "/proc/self/ns/net", "-c", "echo held; exec sleep 60"], { ready: "held" });
  try {
    const r = await timed("ADD", conf, env("stall"));
    expect(r.exitCode).toBe(0);
    expect(r.ms).toBeLessThan(5000);
    expect(await lab.ping("node", ipv4Of(r))).toBe(true);
    expect((await pluginAsync("DEL", conf, env("stall"))).exitCode).toBe(0);
  } finally {
    proc.kill("SIGKILL");
  }
}, 30_000);

describe("a pod CIDR over the node's own IPv4 addresses", () => {
  test("inside a subnet connected to the node (its router's address is there): ADD refused with code 103; the node's routes untouched", async () => {
    const conf = net("connected", "198.18.0.0/24");
    lab.host("conn");
    const before = nodeState();
    const r = plugin("ADD", conf, env("conn"));
    expect(r.json?.code).toBe(103);
    expect(String(r.json?.msg)).toMatch(/^address 198\.18\.0\.\d+ allocated by network connected .* is already inside 198\.18\.0\.0\/24, a subnet connected to \S+ on this node/);
    expect(nodeState()).toBe(before);
    expect(podInterfaces("conn")).toEqual([]);
    expect(held(conf)).toEqual([]);
    expect(await lab.ping("node", UPLINK_IP)).toBe(true);
  });

  test("an address of the node (local table only, no connected route): ADD refused with code 103", async () => {
    const conf = net("localaddr", "10.244.38.0/30");
    lab.host("local");
    // every assignable address of the /30 is the node's: whichever ADD picks, it is taken
    const addrs = ["10.244.38.1/32", "10.244.38.2/32"];
    for (const a of addrs) run(["ip", "-n", lab.name("node"), "addr", "add", a, "dev", "lo"]);
    try {
      const before = nodeState();
      const r = plugin("ADD", conf, env("local"));
      expect(r.json?.code).toBe(103);
      expect(String(r.json?.msg)).toMatch(/^address 10\.244\.38\.[12] allocated by network localaddr .* is already an address of this node/);
      expect(nodeState()).toBe(before);
      expect(podInterfaces("local")).toEqual([]);
      expect(held(conf)).toEqual([]);
    } finally {
      for (const a of addrs) run(["ip", "-n", lab.name("node"), "addr", "del", a, "dev", "lo"], { allowFail: true });
    }
  });
});

describe("a second attachment of one pod (another network, another interface)", () => {
  for (const mode of ["netlink", "ip"] as const) {
    test(`${mode}: the pod keeps the first one's routes through the second's ADD, CHECK and DEL`, async () => {
      const k = mode === "ip" ? 1 : 0;
      const first = net(`multi${k}a`, `10.244.${40 + 2 * k}.0/24`, { podCIDRs: [`10.244.${40 + 2 * k}.0/24`, `fd00:10:244:${40 + 2 * k}::/64`] });
      const second = net(`multi${k}b`, `10.244.${41 + 2 * k}.0/24`, { podCIDRs: [`10.244.${41 + 2 * k}.0/24`, `fd00:10:244:${41 + 2 * k}::/64`] });
      const pod = `multi${k}`;
      lab.host(pod);
      const e = (ifname: string) => env(pod, { CNI_IFNAME: ifname, ...(mode === "ip" ? { SKEIN_NETLINK: "off" } : {}) });
      const routes = () => ["-4", "-6"].map((f) => run(["ip", "-n", lab.name(pod), f, "route", "show"]).stdout).join("");
      const one = plugin("ADD", first, e("eth0"));
      expect(one.exitCode).toBe(0);
      // each result lists the routes its ADD installed: the first both defaults, the second none
      expect(one.json?.routes).toEqual([{ dst: "0.0.0.0/0", gw: "169.254.1.1" }, { dst: "::/0", gw: "fe80::1" }]);
      const before = routes();
      expect(before).toContain("default via 169.254.1.1 dev eth0");
      expect(before).toContain("default via fe80::1 dev eth0");
      const r = plugin("ADD", second, e("eth1"));
      expect(r.json?.msg).toBeUndefined();
      expect(r.exitCode).toBe(0);
      expect(r.json?.routes).toEqual([]);
      expect(routes()).toContain("default via 169.254.1.1 dev eth0");
      expect(routes()).toContain("default via fe80::1 dev eth0");
      expect(routes()).not.toMatch(/default .*dev eth1/);
      expect(plugin("CHECK", second, e("eth1")).exitCode).toBe(0);
      expect(plugin("CHECK", first, e("eth0")).exitCode).toBe(0);
      expect(plugin("DEL", second, e("eth1")).exitCode).toBe(0);
      expect(routes()).toBe(before);
      expect(await lab.ping(pod, NODE_IP)).toBe(true);
      expect(plugin("DEL", first, e("eth0")).exitCode).toBe(0);
    });
  }
});

test("GC and DEL of one network leave another network's attachment of the same container id and interface wired", async () => {
  const a = net("gnA", "10.244.44.0/24");
  const b = net("gnB", "10.244.45.0/24");
  const e = (pod: string) => env(pod, { CNI_CONTAINERID: "ctr-gc1" });
  lab.host("gcA");
  expect(plugin("ADD", a, e("gcA")).exitCode).toBe(0);
  // the pod goes without a DEL: network A's allocation is stale, its link gone with the namespace
  run(["ip", "netns", "del", lab.name("gcA")]);
  await waitFor("the stale link to go", () => !hostLinks(lab, "node").includes(hostVethName("ctr-gc1", "eth0")), 5000);
  lab.host("gcB");
  const rb = plugin("ADD", b, e("gcB"));
  expect(rb.exitCode).toBe(0);
  const ipB = ipv4Of(rb);

  const gc = runPlugin({ command: "GC", conf: { ...a, "cni.dev/valid-attachments": [] }, env: {}, netnsOfPlugin: lab.path("node") });
  expect(gc.exitCode).toBe(0);
  expect(held(a)).toEqual([]);
  expect(podInterfaces("gcB")).toEqual([{ name: "eth0", addrs: [ipB] }]);
  expect(await lab.ping("node", ipB)).toBe(true);

  expect(plugin("DEL", a, e("gcB")).exitCode).toBe(0);
  expect(podInterfaces("gcB")).toEqual([{ name: "eth0", addrs: [ipB] }]);
  expect(await lab.ping("node", ipB)).toBe(true);

  expect(plugin("DEL", b, e("gcB")).exitCode).toBe(0);
  expect(podInterfaces("gcB")).toEqual([]);
  expect(held(b)).toEqual([]);
});
