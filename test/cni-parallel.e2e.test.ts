// 32 ADDs at once against one IPAM store: the file lock must make them distinct.
import { beforeAll, expect, test } from "bun:test";
import { DiskStore } from "../agent/ipam/disk-store.ts";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { hostLinks, pluginDir, useLab, useTempDir } from "./harness/index.ts";

const N = 32;
const lab = useLab("par");
const tmp = useTempDir("par");
const list: Conflist = { cniVersion: "1.1.0", name: "par", plugins: [{ type: "skein", podCIDRs: ["10.244.3.0/24"], dataDir: `${tmp}/ipam` }] };
const pods = [...Array(N).keys()].map((i) => `p${i}`);
const att = (p: string) => ({ containerId: `ctr-${p}`, netns: lab.path(p), ifname: "eth0" });
let cni: CniRuntime;

beforeAll(() => {
  lab.host("node");
  lab.host("uplink"); // gives the node an address to ping from
  lab.wire({ ns: "node", addr: "198.18.0.1/24" }, { ns: "uplink", addr: "198.18.0.2/24" });
  for (const p of pods) lab.host(p);
  cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
});

test(`${N} parallel ADDs get distinct addresses, all reachable; ${N} parallel DELs empty the store`, async () => {
  const results = (await Promise.all(pods.map((p) => cni.add(list, att(p))))) as Array<{ ips: Array<{ address: string }> }>;
  const ips = results.map((r) => r.ips[0]!.address.split("/")[0]!);
  expect(new Set(ips).size).toBe(N);
  const stored = Object.values(new DiskStore(`${tmp}/ipam`, "par").read().allocations);
  expect(stored).toHaveLength(N);
  expect(new Set(stored.map((a) => a.containerId))).toEqual(new Set(pods.map((p) => `ctr-${p}`)));

  // every pod answers the node, and pod 0 reaches every other pod
  const fromNode = await Promise.all(ips.map((ip) => lab.ping("node", ip)));
  expect(fromNode.every(Boolean)).toBe(true);
  const fromPod0 = await Promise.all(ips.slice(1).map((ip) => lab.ping("p0", ip)));
  expect(fromPod0.every(Boolean)).toBe(true);

  await Promise.all(pods.map((p) => cni.del(list, att(p))));
  expect(Object.keys(new DiskStore(`${tmp}/ipam`, "par").read().allocations)).toEqual([]);
  expect(hostLinks(lab, "node")).toEqual([]);
}, 120_000);
