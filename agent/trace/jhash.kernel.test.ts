// jhash.ts against the kernel's own nft_jhash: in a private namespace, an output rule puts
// `jhash ADDR saddr . th sport mod 4294967295 seed 0x0` (and `jhash ADDR saddr`) into the
// connection's mark, datagrams go out from many source addresses and ports, and conntrack
// tells each flow's mark. With that modulus reciprocal_scale leaves hash - 1 (0 for 0), so
// almost every bit of the hash is compared, not just a slot of a small ring.
import { describe, expect, test } from "bun:test";
import { inNetns, run } from "../sys/exec.ts";
import { useNetns } from "../datapath/fixtures.case.ts";
import { jhash, ringKey, scale } from "./jhash.ts";

const netns = useNetns(`skt-jh${Math.random().toString(36).slice(2, 6)}`);
const M = 0xffffffff;

/** Sends one datagram per (source address, source port) to `dst`:`dport` from inside `path`. */
function send(path: string, flows: Array<[string, number]>, dst: string, dport: number): void {
  const script = `
    const dgram = require("node:dgram");
    const flows = ${JSON.stringify(flows)};
    (async () => {
      for (const [a, p] of flows) {
        const s = dgram.createSocket(a.includes(":") ? "udp6" : "udp4");
        await new Promise((ok, ko) => { s.once("error", ko); s.bind(p, a, ok); });
        await new Promise((ok) => s.send("x", ${dport}, ${JSON.stringify(dst)}, ok));
        s.close();
      }
    })().catch((e) => { console.error(e); process.exit(1); });`;
  run(inNetns(path, [process.execPath, "-e", script]));
}

/** The mark of every UDP flow to `dport`, keyed "saddr sport". */
function marks(path: string, family: 4 | 6, dport: number): Map<string, number> {
  const out = new Map<string, number>();
  const r = run(inNetns(path, ["conntrack", "-L", "-f", family === 4 ? "ipv4" : "ipv6", "-p", "udp", "--dport", String(dport)]), { allowFail: true });
  for (const line of r.stdout.split("\n")) {
    const m = /src=(\S+) dst=\S+ sport=(\d+) dport=\d+ .*mark=(\d+)/.exec(line);
    if (m) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return out;
}

describe("in a kernel", () => {
  test("the hash of address . port, and of the address alone, is the kernel's (IPv4 and IPv6)", () => {
    const path = netns("a");
    const v6 = Array.from({ length: 12 }, (_, i) => `fd00::${(i * 4099 + 1).toString(16)}`);
    run(inNetns(path, ["ip", "-b", "-"]), { stdin: v6.map((a) => `address add ${a}/128 dev lo nodad`).join("\n") + "\n" });
    run(inNetns(path, ["nft", "-f", "-"]), {
      stdin: `table inet jh {
        chain out { type filter hook output priority 0; policy accept;
          meta l4proto udp udp dport 9 meta mark set jhash ip saddr . th sport mod ${M} seed 0x0 ct mark set meta mark
          meta l4proto udp udp dport 9 meta mark set jhash ip6 saddr . th sport mod ${M} seed 0x0 ct mark set meta mark
          meta l4proto udp udp dport 10 meta mark set jhash ip saddr mod ${M} seed 0x0 ct mark set meta mark
          meta l4proto udp udp dport 10 meta mark set jhash ip6 saddr mod ${M} seed 0x0 ct mark set meta mark
        }
      }\n`,
    });
    const v4 = Array.from({ length: 12 }, (_, i) => `127.${i * 19}.${(i * 37) & 255}.${i + 1}`);
    const ports = [1, 2, 255, 256, 1024, 40000, 65535, ...Array.from({ length: 9 }, (_, i) => 1025 + ((i * 7919) % 60000))];
    const flows = (addrs: string[]) => addrs.flatMap((a, i) => ports.filter((_, j) => (i + j) % 3 === 0).map((p) => [a, p] as [string, number]));
    const cases = [
      { family: 4 as const, flows: flows(v4), dst: "127.0.0.1", dport: 9, port: true },
      { family: 6 as const, flows: flows(v6), dst: "::1", dport: 9, port: true },
      { family: 4 as const, flows: v4.map((a, i) => [a, 2000 + i] as [string, number]), dst: "127.0.0.1", dport: 10, port: false },
      { family: 6 as const, flows: v6.map((a, i) => [a, 2000 + i] as [string, number]), dst: "::1", dport: 10, port: false },
    ];
    for (const c of cases) {
      send(path, c.flows, c.dst, c.dport);
      const seen = marks(path, c.family, c.dport);
      expect(seen.size).toBe(c.flows.length);
      const want = new Map(c.flows.map(([a, p]) => [`${a} ${p}`, scale(jhash(ringKey(a, c.port ? p : undefined), 0), M)]));
      expect(seen).toEqual(want);
    }
  });
});
