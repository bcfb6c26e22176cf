// `skein tables --nft` prints exactly what the agent loads: the printed text, loaded by nft
// alone into a fresh namespace, gives the same table as `skein tables --apply` (the agent's
// path: nft text for the skeleton and targets, netlink batches for the ring chains and ring
// slots) gives in another. Compared twice: as nft lists it (JSON), and as the kernel dumps
// it (every chain, rule and set message, attribute for attribute, handles left out).
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { SKEIN, useLab, useTempDir, nftListing } from "./harness/index.ts";
import { run } from "../agent/sys/exec.ts";
import { Netlink } from "../agent/sys/netlink.ts";
import { NFT_MSG } from "../agent/sys/nftdump.ts";
import { attrs } from "../agent/sys/nftmsg.ts";

const lab = useLab("nfttext");
const dir = useTempDir("nfttext");

const svc = (name: string, spec: Record<string, unknown>) => ({ kind: "Service", metadata: { name, namespace: "default" }, spec });
const slice = (name: string, addressType: string, port: number, ips: string[]) => ({
  kind: "EndpointSlice",
  metadata: { name: `${name}-1`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
  addressType,
  ports: [{ port }],
  endpoints: ips.map((a) => ({ addresses: [a] })),
});
// every kind of ring chain (each family, with and without affinity, several ring sizes),
// a NodePort (a masquerading target chain), a service without endpoints, a UDP port
const objects = [
  svc("web", { clusterIP: "10.96.0.10", ports: [{ port: 80 }, { name: "dns", port: 53, protocol: "UDP" }] }),
  slice("web", "IPv4", 8080, ["10.244.0.5", "10.244.1.7"]),
  svc("sticky", { type: "NodePort", clusterIP: "10.96.0.11", sessionAffinity: "ClientIP", ports: [{ port: 443, nodePort: 30443 }] }),
  slice("sticky", "IPv4", 8443, ["10.244.0.6", "10.244.1.8", "10.244.2.9"]),
  svc("empty", { clusterIP: "10.96.0.12", ports: [{ port: 80 }] }),
  svc("v6", { clusterIPs: ["fd00:96::6"], ipFamilies: ["IPv6"], ports: [{ port: 80 }] }),
  slice("v6", "IPv6", 80, ["fd00:244::5", "fd00:244:1::5"]),
  svc("v6s", { clusterIPs: ["fd00:96::7"], ipFamilies: ["IPv6"], sessionAffinity: "ClientIP", ports: [{ port: 80 }] }),
  slice("v6s", "IPv6", 80, ["fd00:244::6"]),
];
const state = `${dir}/state.json`;
writeFileSync(state, JSON.stringify(objects));

const listing = (ns: string) => nftListing(lab, ns);

// the attribute that holds each kind's handle: the only thing the order of creation changes
const DUMPS: Array<[string, number, number]> = [
  ["chain", NFT_MSG.GETCHAIN, 2],
  ["rule", NFT_MSG.GETRULE, 3],
  ["set", NFT_MSG.GETSET, 16],
];

/** Every chain, rule and set of `inet skein` as the kernel dumps them, anonymous sets
 * included: each message's attributes in hex, handles left out. */
function dumps(ns: string): string[] {
  const nl = Netlink.openNetfilter(lab.path(ns));
  try {
    const out: string[] = [];
    for (const [kind, type, handle] of DUMPS) {
      for (const m of nl.nftDump(`list the ${kind}s`, type, "inet", [[1, "skein"]])) {
        const parts: string[] = [];
        // after the netlink header and nfgenmsg (whose res_id is the ruleset's generation)
        expect(attrs(m, 20, m.length, (t, at, end) => void (t !== handle && parts.push(`${t}:${Buffer.from(m.subarray(at, end)).toString("hex")}`)))).toBe(true);
        out.push(`${kind} ${parts.join(" ")}`);
      }
    }
    return out.sort();
  } finally {
    nl.close();
  }
}

describe.each([
  ["the default mark ranges", []],
  ["other mark ranges", ["--mark-mask", "0x0fffff00", "--ct-mark-mask", "0x0001ff00"]],
])("with %s", (what, marks) => {
  const tag = marks.length ? "o" : "d";
  const args = ["tables", "--state", state, "--node-ip", "198.18.0.1", ...marks];

  test("the printed text, loaded by nft alone, lists as what the agent's path loads", async () => {
    const text = run([SKEIN, ...args, "--nft"]).stdout;
    expect(text).toContain("meta l4proto { tcp, udp, sctp } dnat ip to meta mark");
    lab.host(`text${tag}`);
    lab.host(`agent${tag}`);
    await lab.exec(`text${tag}`, ["nft", "-f", "-"], { stdin: text });
    const applied = await lab.exec(`agent${tag}`, [SKEIN, ...args, "--apply"]);
    expect(applied.stdout).toMatch(/^applied full: \d+ lines of nft, \d+ ring operations over netlink/);
    const viaText = await listing(`text${tag}`);
    expect(viaText.some((l) => l.startsWith('{"rule":') && l.includes('"jhash"'))).toBe(true);
    expect(await listing(`agent${tag}`)).toEqual(viaText);
    const kernel = dumps(`text${tag}`);
    // four ring chains (v4, v4 with affinity, v6, v6 with affinity), each rule with its set
    expect(kernel.filter((l) => l.startsWith("set ") && l.includes("2:5f5f736574")).length).toBe(4);
    expect(dumps(`agent${tag}`)).toEqual(kernel);
  });
});
