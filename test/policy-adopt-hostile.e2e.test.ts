// A restarted agent adopts the policy sets the earlier agent left in the kernel and writes only
// the allow elements that differ (agent/datapath/policy-adopt.ts): here other software changes
// those sets while no agent runs (foreign allow elements of every shape, deleted ones, pod
// addresses moved to other identity chains or to ids past the marks), the policies and
// labels change meanwhile, and the kernel changes between the agent's read and its first
// write. After the restart the kernel must hold
// exactly the policies in force (no foreign element left allowing anything) and traffic must
// follow them, without an error logged. Two nodes of the multi-node underlay, n1's agent
// restarted; the drift check is off (--verify-interval 0), so what the first write leaves is
// what stays.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { buildUnderlay, startCluster, type Cluster } from "../testing/multinode.ts";
import { useLab, useTempDir, waitFor } from "./harness/index.ts";

const tmp = useTempDir("hadopt");
const lab = useLab("hadopt");
let c: Cluster;
const NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";
const PODS = "/api/v1/namespaces/default/pods";
const PORT = 8080;
const T = "inet skein";
const ip = (name: string) => c.pods.get(name)!.ip;
const t0 = Date.now();
const timing: string[] = [];

type Role = "server" | "client" | "other";
// n1: srv, cli, cli2, oth; n2: rsrv, rcli. Pods are labelled as the roles say (labels may change)
const LAYOUT: Array<[node: string, name: string, role: Role]> = [
  ["n1", "srv", "server"],
  ["n1", "cli", "client"],
  ["n1", "cli2", "client"],
  ["n1", "oth", "other"],
  ["n2", "rsrv", "server"],
  ["n2", "rcli", "client"],
];
const roles = new Map<string, Role>(LAYOUT.map(([, n, r]) => [n, r]));

/** servers admit `admit` on TCP 8080; clients may reach only servers and others, on TCP 8080 */
const SRV_IN = (admit: Role[] = ["client"]) => ({
  metadata: { name: "srv-in" },
  spec: { podSelector: { matchLabels: { role: "server" } }, policyTypes: ["Ingress"], ingress: [{ from: admit.map((r) => ({ podSelector: { matchLabels: { role: r } } })), ports: [{ protocol: "TCP", port: PORT }] }] },
});
const CLI_OUT = {
  metadata: { name: "cli-out" },
  spec: { podSelector: { matchLabels: { role: "client" } }, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: { matchLabels: { role: "server" } } }, { podSelector: { matchLabels: { role: "other" } } }], ports: [{ protocol: "TCP", port: PORT }] }] },
};
let srvAdmits: Role[] = ["client"];

const mark = (id: number) => `0x${(id << 16 >>> 0).toString(16).padStart(8, "0")}`;

/** The allow elements the policies in force give, by the ids of the roles. */
function expectedAllow(id: Record<Role, number>): { in: string[]; out: string[] } {
  const el = (a: Role, b: Role) => `${mark(id[a])} . ${mark(id[b])} . tcp . ${PORT}`;
  return { in: srvAdmits.map((r) => el(r, "server")).sort(), out: [el("client", "server"), el("client", "other")].sort() };
}

/** What the policies say, pair by pair. */
function verdict(from: string, proto: "tcp" | "udp", to: string): boolean {
  const f = roles.get(from)!;
  const t = roles.get(to)!;
  if (f === "client" && !(proto === "tcp" && (t === "server" || t === "other"))) return false;
  if (t === "server" && !(proto === "tcp" && srvAdmits.includes(f))) return false;
  return true;
}
const PAIRS: Array<[string, "tcp" | "udp", string]> = [
  ["cli", "tcp", "srv"],
  ["cli2", "tcp", "srv"],
  ["rcli", "tcp", "srv"],
  ["cli", "tcp", "rsrv"],
  ["oth", "tcp", "srv"],
  ["oth", "tcp", "rsrv"],
  ["cli", "tcp", "oth"],
  ["cli", "udp", "oth"],
  ["cli", "udp", "srv"],
  ["srv", "tcp", "oth"],
  ["oth", "tcp", "cli"],
  ["rsrv", "tcp", "cli2"],
];

/** Each pair probed once (an allowed one given three tries): the pairs that disagree with the policies. */
async function wrongPairs(pairs = PAIRS): Promise<string[]> {
  const out = await Promise.all(
    pairs.map(async ([from, proto, to]) => {
      const want = verdict(from, proto, to);
      let r = await lab.connect(from, proto, ip(to), PORT, want ? 1500 : 700);
      for (let n = 1; want && !r.ok && n < 3; n++) r = await lab.connect(from, proto, ip(to), PORT, 1500);
      return r.ok === want ? "" : `${from} -> ${proto} ${to}: ${want ? "allowed but failed" : "denied but reached"}`;
    }),
  );
  return out.filter(Boolean);
}

const nft = (text: string) => lab.exec("n1", ["nft", "-f", "-"], { stdin: text });
async function listSet(kind: "set" | "map", name: string): Promise<string[]> {
  const out = (await lab.exec("n1", ["nft", "list", kind, ...T.split(" "), name])).stdout;
  const m = /elements = \{([^}]*)\}/.exec(out);
  if (!m) return [];
  return m[1]!.split(",").map((s) => s.replace(/counter packets \d+ bytes \d+/, "").replace(/\s+/g, " ").trim()).filter(Boolean).sort();
}
/** Allow elements with the ranges of ids skein writes for adjacent ids (0x00030000-0x00040000) one per id. */
function expandIds(elements: string[]): string[] {
  const field = (f: string): string[] => {
    const m = /^(0x[0-9a-f]{4})0000-(0x[0-9a-f]{4})0000$/.exec(f);
    if (!m || Number(m[2]) - Number(m[1]) > 64) return [f];
    return Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, i) => mark(Number(m[1]) + i));
  };
  return elements.flatMap((e) => {
    const [a, b, ...rest] = e.split(" . ");
    return field(a!).flatMap((x) => field(b!).map((y) => [x, y, ...rest].join(" . ")));
  }).sort();
}

/** pod address -> id, from pol_spod4 */
async function spod4(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const e of await listSet("map", "pol_spod4")) {
    const m = /^(\S+) : goto pols_(\d+)$/.exec(e);
    if (!m) throw new Error(`pol_spod4 element ${e}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/**
 * The kernel's policy as the policies in force say: every pod's address at its role's id, one id
 * per role, distinct and within the marks, its identity chain setting it, and the allow sets
 * exactly those of the policies. The problems found.
 */
async function kernelProblems(): Promise<string[]> {
  const bad: string[] = [];
  const ids = await spod4();
  const id = {} as Record<Role, number>;
  for (const [name, role] of roles) {
    const got = ids.get(ip(name));
    if (got === undefined) bad.push(`${name} (${ip(name)}) not in pol_spod4`);
    else if (id[role] === undefined) id[role] = got;
    else if (id[role] !== got) bad.push(`${role} pods at ids ${id[role]} and ${got}`);
  }
  const used = Object.values(id);
  if (new Set(used).size !== used.length) bad.push(`roles share ids: ${JSON.stringify(id)}`);
  for (const v of used) if (v < 3 || v > 0x7fff) bad.push(`id ${v} out of range`);
  for (const [a, v] of ids) if (![...roles.keys()].some((n) => ip(n) === a) && v !== 1) bad.push(`pol_spod4 holds ${a} : pols_${v}, no pod's`);
  const table = (await lab.exec("n1", ["nft", "list", "table", ...T.split(" ")])).stdout;
  for (const v of new Set(used)) {
    const chain = new RegExp(`chain pols_${v} \\{\\s*meta mark set meta mark & (0x[0-9a-f]+) \\| (0x[0-9a-f]+)\\s*\\}`).exec(table);
    if (!chain || chain[2] !== mark(v)) bad.push(`chain pols_${v}: ${chain?.[0].replace(/\s+/g, " ") ?? "missing"}`);
  }
  const want = expectedAllow(id);
  const gotIn = expandIds(await listSet("set", "pol_allow_in"));
  const gotOut = expandIds(await listSet("set", "pol_allow_out"));
  if (gotIn.join() !== want.in.join()) bad.push(`pol_allow_in holds [${gotIn.join(", ")}], the policies [${want.in.join(", ")}]`);
  if (gotOut.join() !== want.out.join()) bad.push(`pol_allow_out holds [${gotOut.join(", ")}], the policies [${want.out.join(", ")}]`);
  return bad;
}

const agentLog = () => c.agents.get("n1")?.out.text ?? "";
/** log lines at warn or above, but the CRD's, with the ms since the agent's first line */
function complaints(text: string): string[] {
  const lines = text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { level: number; time: number; msg: string; err?: string; error?: string });
  const start = lines[0]?.time ?? 0;
  return lines.filter((j) => j.level >= 40 && !j.msg.includes("SkeinNode CRD")).map((j) => `${j.level} at +${j.time - start} ms: ${j.msg} ${j.err ?? j.error ?? ""}`.trim());
}

interface Restart {
  /** nft text run in n1 while its agent is down */
  tamper?: () => Promise<string> | string;
  /** API changes while it is down */
  api?: () => Promise<void>;
  /** the agent's extra flags */
  flags?: string[];
  /** between the agent's read of the kernel and its first policy write (the API held stopped) */
  between?: () => Promise<void>;
}

/** n1's agent stopped, the kernel and API changed, the agent started; what is wrong after its first write. */
async function restart(what: string, r: Restart): Promise<{ kernel: string[]; traffic: string[]; log: string[]; ms: number }> {
  const s0 = Date.now();
  const text = await r.tamper?.();
  await c.stopAgent("n1");
  const s1 = Date.now();
  const res = text ? await lab.exec("n1", ["nft", "-f", "-"], { stdin: text, allowFail: true }) : undefined;
  if (res && res.exitCode !== 0) {
    await c.startAgent("n1", [], { ready: "cluster state listed" });
    throw new Error(`tamper for ${what} refused: ${res.stderr}\n${text}`);
  }
  await r.api?.();
  const s1b = Date.now();
  if (r.between) {
    const pid = c.apiserver.proc.pid;
    process.kill(pid, "SIGSTOP");
    try {
      await c.startAgent("n1", r.flags ?? [], { ready: "adopted the tables in the kernel" });
      await r.between();
    } finally {
      process.kill(pid, "SIGCONT");
    }
  } else await c.startAgent("n1", r.flags ?? [], { ready: "cluster state listed" });
  const first = await waitFor("n1's agent's first policy write", () => agentLog().split("\n").find((l) => /"msg":"(policy|tables) applied"/.test(l) && l.includes("nftLines")), 10_000, 20).catch(() => undefined);
  const s2 = Date.now();
  const kernel = first ? await kernelProblems() : ["no policy write within 10 s"];
  const s3 = Date.now();
  const traffic = await wrongPairs();
  const log = complaints(agentLog());
  const ms = Date.now() - s0;
  const w = first && (JSON.parse(first) as { msg: string; nftLines: number; time: number });
  const started = (JSON.parse(agentLog().split("\n")[0]!) as { time: number }).time;
  timing.push(`${what}: ${ms} ms (stop ${s1 - s0}, tamper ${s1b - s1}, start to first write ${s2 - s1b}, kernel ${s3 - s2}, traffic ${Date.now() - s3}); first write ${w ? `${w.msg} (${w.nftLines} nft lines) at +${w.time - started} ms` : "none"}`);
  return { kernel, traffic, log, ms };
}

function held(res: { kernel: string[]; traffic: string[]; log: string[] }) {
  expect({ kernel: res.kernel, traffic: res.traffic, log: res.log }).toEqual({ kernel: [], traffic: [], log: [] });
}

beforeAll(async () => {
  const u = await buildUnderlay(lab, { nodes: ["n1", "n2"] });
  c = await startCluster({ underlay: u, dir: `${tmp}/cluster`, agentFlags: () => ["--verify-interval", "0"] });
  for (const [node, name, role] of LAYOUT) await c.addPod(node, name, { labels: { role } });
  await Promise.all(LAYOUT.map(([, name]) => lab.serve(name, { name, tcp: PORT, udp: PORT }, 20_000)));
  await c.api.create(NP, SRV_IN());
  await c.api.create(NP, CLI_OUT);
  await waitFor("the policies in n1's kernel", async () => (await kernelProblems()).length === 0, 15_000, 100);
  timing.push(`setup: ${Date.now() - t0} ms`);
}, 90_000);

afterAll(async () => {
  console.log(`policy adoption against a hostile node (${Date.now() - t0} ms):\n${timing.join("\n")}`);
  if (process.env.HADOPT_DEBUG) console.log(agentLog());
  await c?.stop();
});

/** the id n1's kernel gives a pod's address now */
const idNow = async (pod: string) => (await spod4()).get(ip(pod))!;

describe("a restarted agent adopting policy sets another tool changed", () => {
  test("baseline: the kernel and traffic as the policies say", async () => {
    expect(await kernelProblems()).toEqual([]);
    expect(await wrongPairs()).toEqual([]);
  });

  test("foreign allow elements of every shape (other -> server, ranges in each field, a source mark's top bit) added and one deleted while no agent runs: the policies' elements alone after the restart", async () => {
    held(await restart("foreign elements", {
      tamper: async () => {
        const [o, s, k] = [await idNow("oth"), await idNow("srv"), await idNow("cli")];
        return [
          `add element ${T} pol_allow_in { ${mark(o)} . ${mark(s)} . tcp . ${PORT} }`,
          `add element ${T} pol_allow_in { ${mark(o)} . ${mark(s)} . 7-17 . ${PORT} }`,
          `add element ${T} pol_allow_in { ${mark(2)}-${mark(s)} . ${mark(s)} . udp . ${PORT} }`,
          `add element ${T} pol_allow_in { ${mark(0x60)} . ${mark(2)}-${mark(k)} . tcp . 1-9000 }`,
          `add element ${T} pol_allow_in { 0x80000000 . ${mark(s)} . tcp . ${PORT} }`,
          `add element ${T} pol_allow_in { ${mark(o)} . ${mark(k)} . 0-255 . 0-65535 }`,
          `add element ${T} pol_allow_out { ${mark(k)} . ${mark(o)} . udp . 1-65535 }`,
          `delete element ${T} pol_allow_in { ${mark(k)} . ${mark(s)} . tcp . ${PORT}-${PORT} }`,
          "",
        ].join("\n");
      },
    }));
  }, 30_000);

  test("an allow element with bits outside the identity's (the set is not adopted), addresses of no pod and verdicts other than a goto to a source chain in pol_spod4", async () => {
    held(await restart("junk bits, odd pol_spod4", {
      tamper: async () => {
        const [o, s, k] = [await idNow("oth"), await idNow("srv"), await idNow("cli")];
        return [
          `add element ${T} pol_allow_in { ${mark(o)}-0x0005ffff . ${mark(s)} . tcp . ${PORT} }`,
          `add element ${T} pol_allow_in { ${mark(o) .replace(/0000$/, "0001")} . ${mark(s)} . udp . ${PORT} }`,
          `delete element ${T} pol_spod4 { ${ip("cli2")}, ${ip("oth")} }`,
          `add element ${T} pol_spod4 { 10.244.1.77 : goto pols_${k}, 10.244.2.77 : goto pols_${s}, ${ip("cli2")} : jump pols_${k}, ${ip("oth")} : goto pold_${o} }`,
          "",
        ].join("\n");
      },
    }));
  }, 30_000);

  test("every client moved to a foreign chain pols_9 that marks them as servers, the other pod to the clients' former chain", async () => {
    held(await restart("clients to a forged chain", {
      tamper: async () => {
        const [s, k] = [await idNow("srv"), await idNow("cli")];
        const clients = ["cli", "cli2", "rcli"];
        return [
          `add chain ${T} pols_9`,
          `add rule ${T} pols_9 meta mark set meta mark & 0x0000ffff | ${mark(s)}`,
          `delete element ${T} pol_spod4 { ${[...clients, "oth"].map(ip).join(", ")} }`,
          `add element ${T} pol_spod4 { ${clients.map((p) => `${ip(p)} : goto pols_9`).join(", ")}, ${ip("oth")} : goto pols_${k} }`,
          "",
        ].join("\n");
      },
    }));
  }, 30_000);

  test("the servers and the other pod swapped between their chains, one client at a chain of its own (its identity at two ids)", async () => {
    held(await restart("swap and split", {
      tamper: async () => {
        const [s, o] = [await idNow("srv"), await idNow("oth")];
        return [
          `add chain ${T} pols_10`,
          `add rule ${T} pols_10 meta mark set meta mark & 0x0000ffff | ${mark(10)}`,
          `delete element ${T} pol_spod4 { ${["srv", "rsrv", "oth", "cli2"].map(ip).join(", ")} }`,
          `add element ${T} pol_spod4 { ${ip("srv")} : goto pols_${o}, ${ip("rsrv")} : goto pols_${o}, ${ip("oth")} : goto pols_${s}, ${ip("cli2")} : goto pols_10 }`,
          "",
        ].join("\n");
      },
    }));
  }, 30_000);

  // an id past the marks' must not be kept: the identity would be past the identity limit,
  // and its pods blocked until a later change compiles everything again
  test("pod addresses moved to chains of ids past the marks' (the other pod at pols_40000, the servers at pols_70000)", async () => {
    const moved: Array<[string, number]> = [["oth", 40000], ["srv", 70000], ["rsrv", 70000]];
    const res = await restart("past the marks", {
      tamper: () => [...[40000, 70000].flatMap((id) => [`add chain ${T} pols_${id}`, `add rule ${T} pols_${id} meta mark set meta mark & 0x0000ffff | ${mark(id & 0x7fff)}`]), `delete element ${T} pol_spod4 { ${moved.map(([p]) => ip(p)).join(", ")} }`, `add element ${T} pol_spod4 { ${moved.map(([p, id]) => `${ip(p)} : goto pols_${id}`).join(", ")} }`, ""].join("\n"),
    });
    if (res.kernel.length) {
      const alone = await waitFor("the kernel as the policies say, nothing changed", async () => (await kernelProblems()).length === 0 && "repaired", 2000, 200).catch(() => "still wrong after 2 s");
      // a later change that compiles everything again
      await c.api.create(NP, { metadata: { name: "nobody" }, spec: { podSelector: { matchLabels: { role: "nobody" } }, policyTypes: ["Ingress"] } });
      const later = await waitFor("the kernel as the policies say after a later compile", async () => (await kernelProblems()).length === 0 && "repaired", 5000, 200).catch(() => "still wrong after 5 s");
      await c.api.delete(`${NP}/nobody`);
      timing.push(`  then, nothing changed: ${alone}; after a new NetworkPolicy: ${later}`);
    }
    held(res);
  }, 40_000);

  test("a policy and a label changed while no agent runs, and a foreign element overlapping the one the new policy wants", async () => {
    held(await restart("api changed", {
      tamper: async () => `add element ${T} pol_allow_in { ${mark(await idNow("oth"))} . ${mark(await idNow("srv"))} . tcp . 8000-9000 }\n`,
      api: async () => {
        srvAdmits = ["client", "other"];
        const cur = await c.api.request("GET", `${NP}/srv-in`);
        await c.api.request("PUT", `${NP}/srv-in`, { ...SRV_IN(srvAdmits), metadata: { name: "srv-in", resourceVersion: cur.metadata.resourceVersion } });
        roles.set("cli2", "other");
        await c.api.request("PATCH", `${PODS}/cli2`, { metadata: { labels: { role: "other" } } }, "application/merge-patch+json");
      },
    }));
  }, 30_000);

  // the first write deletes the element it read, which is gone: that transaction is refused,
  // and the policy is written whole instead (no error logged)
  test("the kernel changed between the agent's read and its first write (an element it read deleted, a foreign one added)", async () => {
    let foreign = "";
    const res = await restart("changed under the agent", {
      tamper: async () => ((foreign = `${mark(await idNow("oth"))} . ${mark(await idNow("srv"))} . udp . ${PORT}-${PORT}`), `add element ${T} pol_allow_in { ${foreign} }\n`),
      between: async () => {
        await nft(`delete element ${T} pol_allow_in { ${foreign} }\nadd element ${T} pol_allow_in { ${mark(await idNow("oth"))} . ${mark(await idNow("srv"))} . tcp . 9999 }\n`);
      },
    });
    // the agent hears the change and restores the whole table, as with any change while it runs
    held({ ...res, log: res.log.filter((l) => !l.includes("changed by someone else")) });
  }, 40_000);
});
