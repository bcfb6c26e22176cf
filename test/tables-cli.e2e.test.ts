// `skein tables --state FILE` against the agent it stands for: `--apply` of the agent's
// inputs (the Node, --service-cidr) makes the agent's table; `--nft --since` prints a delta
// only when nft text can express what the agent does, and says why not otherwise; `--apply
// --since` applies over whatever bank and map sizes the kernel holds. (Found by a hostile
// run: an empty svcnet4 and every backend in hairpin4, deltas nft could not load, and a
// delta after a bank switch refused with ENOENT.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { run } from "../agent/sys/exec.ts";
import { ApiDriver } from "../testing/apiserver/driver.ts";
import { SKEIN, useLab, useTempDir, waitFor, nftListing, spawnApiServer, spawnAgent } from "./harness/index.ts";

const lab = useLab("tables");
const tmp = useTempDir("tables");

const listing = (ns: string) => nftListing(lab, ns);

const tables = (...args: string[]) => run([SKEIN, "tables", ...args], { allowFail: true });

describe("deltas", () => {
  /** `services` ClusterIP Services with `n` endpoints each, as a state file. */
  function state(name: string, n: number, services = 1): string {
    const ips = Array.from({ length: n }, (_, i) => `10.244.0.${i + 1}`);
    const f = `${tmp}/${name}.json`;
    writeFileSync(
      f,
      JSON.stringify(
        Array.from({ length: services }, (_, s) => [
          { kind: "Service", metadata: { name: `web${s}`, namespace: "default" }, spec: { clusterIP: `10.96.${s >> 8}.${s & 255}`, ports: [{ port: 80 }] } },
          { kind: "EndpointSlice", metadata: { name: `web${s}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `web${s}` } }, addressType: "IPv4", ports: [{ port: 8080 }], endpoints: ips.map((a) => ({ addresses: [a] })) },
        ]).flat(),
      ),
    );
    return f;
  }
  let small = "";
  let grown = "";
  let huge = "";
  beforeAll(() => {
    small = state("small", 2); // one ring of 23 slots
    grown = state("grown", 4); // a ring of 41: a ring chain of a size none has yet
    huge = state("huge", 2, 200); // 4600 slots, past the 4096-slot maps: a bank switch
  });

  test("a delta nft text can express loads with nft -f and lists as --apply --since leaves the table", async () => {
    const other = state("other", 2, 3); // the same ring size, two more services
    lab.host("tx");
    lab.host("ax");
    await lab.exec("tx", ["nft", "-f", "-"], { stdin: tables("--state", small, "--nft").stdout });
    const delta = tables("--state", other, "--since", small, "--nft");
    expect(delta.exitCode).toBe(0);
    await lab.exec("tx", ["nft", "-f", "-"], { stdin: delta.stdout });
    await lab.exec("ax", [SKEIN, "tables", "--state", small, "--apply"]);
    await lab.exec("ax", [SKEIN, "tables", "--state", other, "--since", small, "--apply"]);
    expect(await listing("tx")).toEqual(await listing("ax"));
  });

  test("a delta that needs a new ring chain or a bank switch: --nft --since says why there is no text; --apply --since loads it", async () => {
    for (const [later, why, applied] of [
      [grown, /adds ring chain ring4_0_41 \(a ring size no chain has yet\)/, /^applied delta/],
      [huge, /outgrow the ring maps made for the earlier tables \(4096 and 4096\): the agent fills the other bank/, /^applied rebuild/],
    ] as const) {
      const r = tables("--state", later, "--since", small, "--nft");
      expect({ code: r.exitCode, out: r.stdout }).toEqual({ code: 1, out: "" });
      expect(r.stderr).toMatch(why);
      const ns = `s${later === grown ? "g" : "h"}`;
      lab.host(ns);
      await lab.exec(ns, [SKEIN, "tables", "--state", small, "--apply"]);
      expect((await lab.exec(ns, [SKEIN, "tables", "--state", later, "--since", small, "--apply"])).stdout).toMatch(applied);
    }
    // the grown table, loaded as a delta, is the grown table loaded whole
    lab.host("tg");
    await lab.exec("tg", ["nft", "-f", "-"], { stdin: tables("--state", grown, "--nft").stdout });
    expect(await listing("sg")).toEqual(await listing("tg"));
  });

  test("--apply --since over a table an earlier --apply --since switched to bank 1, and back", async () => {
    lab.host("b");
    await lab.exec("b", [SKEIN, "tables", "--state", small, "--apply"]);
    expect((await lab.exec("b", [SKEIN, "tables", "--state", huge, "--since", small, "--apply"])).stdout).toMatch(/^applied rebuild/);
    const back = await lab.exec("b", [SKEIN, "tables", "--state", small, "--since", huge, "--apply"], { allowFail: true });
    expect({ code: back.exitCode, err: back.stderr }).toEqual({ code: 0, err: "" });
    expect((await lab.exec("b", ["nft", "list", "map", "inet", "skein", "be4_1"])).stdout).toContain("10.244.0.2");
  });

  test("--apply --since with nothing of skein's in the namespace is refused, naming why", async () => {
    lab.host("e");
    const r = await lab.exec("e", [SKEIN, "tables", "--state", grown, "--since", small, "--apply"], { allowFail: true });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("holds no table inet skein");
  });
});

describe("the agent's table", () => {
  const api = new ApiDriver(`${tmp}/api.sock`, "t");
  let apiserver: Awaited<ReturnType<typeof lab.spawn>> | undefined;
  let agent: Awaited<ReturnType<typeof lab.spawn>> | undefined;
  const node = { kind: "Node", apiVersion: "v1", metadata: { name: "node" }, spec: { podCIDRs: ["10.244.7.0/24"] }, status: { addresses: [{ type: "InternalIP", address: "198.18.2.2" }] } };
  const svc = { kind: "Service", apiVersion: "v1", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } };
  const slice = {
    kind: "EndpointSlice",
    apiVersion: "discovery.k8s.io/v1",
    metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ port: 8080 }],
    endpoints: [
      { addresses: ["10.244.7.5"], conditions: { ready: true }, nodeName: "node" },
      { addresses: ["10.244.8.5"], conditions: { ready: true }, nodeName: "other" },
    ],
  };

  beforeAll(async () => {
    lab.host("cp");
    lab.host("node");
    lab.wire({ ns: "cp", addr: "198.18.2.1/24" }, { ns: "node", addr: "198.18.2.2/24" });
    apiserver = await spawnApiServer(lab, "cp", tmp, "198.18.2.1:6443", "t");
    await api.create("/api/v1/nodes", node);
    await api.create("/api/v1/namespaces/default/services", svc);
    await api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice);
    agent = await spawnAgent(lab, tmp);
    await waitFor("the Service in the agent's table", async () => (await lab.exec("node", ["nft", "list", "map", "inet", "skein", "svc4"])).stdout.includes("10.96.0.10"), 5000, 20);
  }, 60_000);

  afterAll(() => {
    agent?.proc.kill("SIGKILL");
    apiserver?.proc.kill("SIGKILL");
  });

  test("--apply and --nft of the same objects, with the agent's --service-cidr, list as the agent's table", async () => {
    writeFileSync(`${tmp}/state.json`, JSON.stringify([node, svc, slice]));
    const args = ["--state", `${tmp}/state.json`, "--node-name", "node", "--service-cidr", "10.96.0.0/16"];
    lab.host("cli");
    await lab.exec("cli", [SKEIN, "tables", ...args, "--apply"]);
    lab.host("text");
    await lab.exec("text", ["nft", "-f", "-"], { stdin: tables(...args, "--nft").stdout });
    const agents = await listing("node");
    expect(agents.join("\n")).toContain(String.raw`{\"prefix\":{\"addr\":\"10.96.0.0\",\"len\":16}}`);
    expect(await listing("cli")).toEqual(agents);
    expect(await listing("text")).toEqual(agents);
  }, 30_000);
});
