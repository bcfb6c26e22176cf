// Hostile: `skein tables --state FILE --apply` is to load the tables "as the agent does",
// and `--nft` to print exactly what the agent loads. Here the agent runs with a Service CIDR
// and a node whose pod CIDR holds one of two backends (the other on another node), and the
// table it loads is compared with `skein tables --apply` of the same objects in a namespace
// of its own. The CLI has no way to give either, and loads svcnet4 empty and every backend
// into hairpin4: the agent refuses unserved Service addresses, the printed table does not.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Lab } from "../../testing/lab.ts";
import { SKEIN, waitFor } from "../harness/index.ts";
import { ApiDriver } from "../../testing/apiserver/driver.ts";

const lab = new Lab(`skhd-tv${Math.random().toString(36).slice(2, 5)}-`, SKEIN);
const tmp = mkdtempSync(`${tmpdir()}/skhd-tv-`);
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

async function listing(ns: string): Promise<string[]> {
  const j = JSON.parse((await lab.exec(ns, ["nft", "-j", "list", "table", "inet", "skein"])).stdout) as { nftables: Array<Record<string, Record<string, unknown>>> };
  return j.nftables
    .filter((o) => !o.metainfo)
    .map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
      return JSON.stringify({ [kind]: rest });
    })
    .sort();
}

beforeAll(async () => {
  lab.host("cp");
  lab.host("node");
  lab.host("cli");
  lab.wire({ ns: "cp", addr: "198.18.2.1/24" }, { ns: "node", addr: "198.18.2.2/24" });
  apiserver = await lab.spawn("cp", [SKEIN, "apiserver", "--dir", tmp, "--listen", "198.18.2.1:6443", "--token", "t", "--unix", `${tmp}/api.sock`], { ready: "serving", what: "skein apiserver" });
  await api.create("/api/v1/nodes", node);
  await api.create("/api/v1/namespaces/default/services", svc);
  await api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice);
  agent = await lab.spawn("node", [SKEIN, "agent", "--kubeconfig", `${tmp}/kubeconfig`, "--node-name", "node", "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16", "--node-file", `${tmp}/node.json`, "--coalesce-ms", "5"], { ready: "tables applied", timeoutMs: 10_000, what: "skein agent" });
  await waitFor("the Service in the agent's table", async () => (await lab.exec("node", ["nft", "list", "map", "inet", "skein", "svc4"])).stdout.includes("10.96.0.10"), 5000, 20);
}, 60_000);

afterAll(() => {
  agent?.proc.kill("SIGKILL");
  apiserver?.proc.kill("SIGKILL");
  lab.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

test("skein tables --apply of the same objects lists as the agent's table", async () => {
  writeFileSync(`${tmp}/state.json`, JSON.stringify([node, svc, slice]));
  await lab.exec("cli", [SKEIN, "tables", "--state", `${tmp}/state.json`, "--node-name", "node", "--node-ip", "198.18.2.2", "--apply"]);
  expect(await listing("cli")).toEqual(await listing("node"));
}, 30_000);
