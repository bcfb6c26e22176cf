// Bad input gets the spec's error code and a message naming the problem, and loses nothing:
// a pod added before keeps its address and its connectivity through every case.
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { CniRuntime, type Conflist } from "../agent/cni/runtime.ts";
import { DiskStore } from "../agent/ipam/disk-store.ts";
import { pluginDir, runPlugin, useLab, useTempDir } from "./harness/index.ts";

const lab = useLab("bad");
const tmp = useTempDir("bad");
const base = { cniVersion: "1.1.0", name: "badnet", type: "skein", podCIDRs: ["10.244.4.0/24"], dataDir: `${tmp}/ipam`, nodeFile: `${tmp}/absent-node.json` };
const store = () => new DiskStore(`${tmp}/ipam`, "badnet");
let keptIp = "";
let env: (extra?: Record<string, string>) => Record<string, string>;

beforeAll(async () => {
  lab.host("node");
  lab.host("uplink");
  lab.wire({ ns: "node", addr: "198.18.0.1/24" }, { ns: "uplink", addr: "198.18.0.2/24" });
  lab.host("kept");
  lab.host("victim");
  const cni = new CniRuntime({ path: [pluginDir(tmp)], hostNetns: lab.path("node") });
  const { type: _t, ...plugin } = base;
  const list: Conflist = { cniVersion: "1.1.0", name: "badnet", plugins: [{ type: "skein", ...plugin }] };
  const r = (await cni.add(list, { containerId: "ctr-kept", netns: lab.path("kept"), ifname: "eth0" })) as { ips: Array<{ address: string }> };
  keptIp = r.ips[0]!.address.split("/")[0]!;
  env = (extra = {}) => ({ CNI_CONTAINERID: "ctr-victim", CNI_NETNS: lab.path("victim"), CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent", ...extra });
});

const cases: Array<{ name: string; command?: string; conf: () => unknown; env?: () => Record<string, string>; code: number; msg: RegExp }> = [
  { name: "malformed JSON", conf: () => '{"cniVersion": "1.1.0", "name": ', code: 6, msg: /not valid JSON/ },
  { name: "a JSON array instead of an object", conf: () => "[1,2]", code: 6, msg: /must be a JSON object/ },
  { name: "unknown cniVersion", conf: () => ({ ...base, cniVersion: "9.9.9" }), code: 1, msg: /incompatible CNI version "9\.9\.9": skein speaks 0\.4\.0, 1\.0\.0, 1\.1\.0/ },
  { name: "missing CNI_NETNS on ADD", conf: () => base, env: () => env({ CNI_NETNS: "" }), code: 4, msg: /CNI_NETNS is required for ADD/ },
  { name: "CNI_NETNS that does not exist", conf: () => base, env: () => env({ CNI_NETNS: "/var/run/netns/skt-none" }), code: 4, msg: /CNI_NETNS \/var\/run\/netns\/skt-none does not exist/ },
  { name: "hostile CNI_IFNAME", conf: () => base, env: () => env({ CNI_IFNAME: "../etc" }), code: 4, msg: /CNI_IFNAME "\.\.\/etc" is not a valid interface name/ },
  { name: "podCIDR that is not a CIDR", conf: () => ({ ...base, podCIDRs: ["10.244.4.0/33"] }), code: 7, msg: /podCIDRs\[0\]: "10\.244\.4\.0\/33" is not a valid IPv4 CIDR \(the prefix length must be 0-32\)/ },
  { name: "podCIDR with host bits", conf: () => ({ ...base, podCIDRs: ["10.244.4.7/24"] }), code: 7, msg: /host bits set/ },
  { name: "podCIDR with a leading zero", conf: () => ({ ...base, podCIDRs: ["010.244.4.0/24"] }), code: 7, msg: /podCIDRs\[0\]: "010\.244\.4\.0\/24" is not a valid CIDR \(IPv4 address: leading zero\)/ },
  { name: "podCIDR where the gateway lives", conf: () => ({ ...base, podCIDRs: ["169.254.0.0/16"] }), code: 7, msg: /podCIDRs\[0\]: "169\.254\.0\.0\/16" cannot be a pod CIDR: it overlaps link-local/ },
  { name: "MTU out of range", conf: () => ({ ...base, mtu: 10 }), code: 7, msg: /mtu \(10\)/ },
  { name: "foreign IPAM plugin", conf: () => ({ ...base, ipam: { type: "host-local" } }), code: 2, msg: /unsupported field ipam\.type: "host-local"/ },
  { name: "no pod CIDR yet", conf: () => ({ ...base, podCIDRs: undefined }), code: 11, msg: /no pod CIDR for this node yet: .*absent-node\.json does not exist/ },
  { name: "CHECK of an unknown container", command: "CHECK", conf: () => base, code: 3, msg: /no address is allocated to container ctr-victim/ },
  { name: "GC under cniVersion 1.0.0", command: "GC", conf: () => ({ ...base, cniVersion: "1.0.0" }), code: 1, msg: /GC needs cniVersion 1\.1\.0/ },
  { name: "STATUS before the node has a pod CIDR", command: "STATUS", conf: () => ({ ...base, podCIDRs: undefined }), code: 50, msg: /cannot add pods/ },
];

describe("bad input", () => {
  for (const c of cases) {
    test(`${c.name}: code ${c.code}`, async () => {
      const before = readFileSync(store().path);
      const r = runPlugin({ command: c.command ?? "ADD", conf: c.conf(), env: (c.env ?? (() => env()))(), netnsOfPlugin: lab.path("node") });
      expect(r.exitCode).not.toBe(0);
      expect(r.json?.code).toBe(c.code);
      expect(String(r.json?.msg)).toMatch(c.msg);
      expect(typeof r.json?.cniVersion).toBe("string");
      expect(readFileSync(store().path).equals(before)).toBe(true);
      expect(await lab.ping("node", keptIp)).toBe(true);
    });
  }

  test("an exhausted pod CIDR: code 100, nothing half-made", async () => {
    const conf = { ...base, name: "tiny", podCIDRs: ["10.244.5.0/30"] }; // one assignable address
    lab.host("first");
    const ok = runPlugin({ command: "ADD", conf, env: env({ CNI_CONTAINERID: "ctr-first", CNI_NETNS: lab.path("first") }), netnsOfPlugin: lab.path("node") });
    expect(ok.exitCode).toBe(0);
    const r = runPlugin({ command: "ADD", conf, env: env(), netnsOfPlugin: lab.path("node") });
    expect(r.json?.code).toBe(100);
    expect(String(r.json?.msg)).toMatch(/no free address in pod CIDR 10\.244\.5\.0\/30/);
    const st = runPlugin({ command: "STATUS", conf, env: {}, netnsOfPlugin: lab.path("node") });
    expect(st.json?.code).toBe(50);
    expect((await lab.exec("victim", ["ip", "link", "show", "eth0"], { allowFail: true })).exitCode).not.toBe(0);
  });

  test("a truncated state file: code 5 naming the file, left as it was, nothing lost once restored", async () => {
    const s = store();
    const good = readFileSync(s.path);
    const truncated = good.subarray(0, good.length - 7);
    writeFileSync(s.path, truncated);
    try {
      for (const command of ["ADD", "DEL"]) {
        const r = runPlugin({ command, conf: base, env: env(), netnsOfPlugin: lab.path("node") });
        expect(r.json?.code).toBe(5);
        expect(String(r.json?.msg)).toContain(`IPAM state ${s.path} is corrupt`);
        expect(readFileSync(s.path).equals(truncated)).toBe(true);
      }
      expect((await lab.exec("victim", ["ip", "link", "show", "eth0"], { allowFail: true })).exitCode).not.toBe(0);
    } finally {
      writeFileSync(s.path, good);
    }
    expect(Object.values(s.read().allocations).map((a) => a.ip)).toContain(keptIp);
  });
});
