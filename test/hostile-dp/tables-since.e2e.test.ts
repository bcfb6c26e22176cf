// Hostile: `skein tables --since EARLIER --nft` is to print what the agent loads for the
// delta, and `--apply --since` to load it as the agent does. Three small cases:
// 1. endpoints scaled up so the ring grows to a size no ring chain has yet: the printed delta
//    cannot be loaded by nft (1.0.6: "conflicting protocols specified: tcp vs. th" for the
//    ring rule added in a later transaction);
// 2. services added past the ring maps' size (no new ring size): the agent switches banks,
//    the printed text is a plain delta into the old, too small map (the kernel refuses it:
//    ENFILE, "Too many open files in system");
// 3. after (2) went in with --apply --since, the next --apply --since fails (ENOENT): the
//    CLI assumes bank 0 whatever the earlier delta left.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Lab } from "../../testing/lab.ts";
import { SKEIN } from "../harness/index.ts";
import { run } from "../../agent/sys/exec.ts";

const lab = new Lab(`skhd-ts${Math.random().toString(36).slice(2, 5)}-`, SKEIN);
const dir = mkdtempSync(`${tmpdir()}/skhd-ts-`);
afterAll(() => {
  lab.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** `services` ClusterIP Services with `n` endpoints each, as a state file. */
function state(name: string, n: number, services = 1): string {
  const ips = Array.from({ length: n }, (_, i) => `10.244.0.${i + 1}`);
  const f = `${dir}/${name}.json`;
  writeFileSync(f, JSON.stringify(Array.from({ length: services }, (_, s) => [
    { kind: "Service", metadata: { name: `web${s}`, namespace: "default" }, spec: { clusterIP: `10.96.${s >> 8}.${s & 255}`, ports: [{ port: 80 }] } },
    { kind: "EndpointSlice", metadata: { name: `web${s}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `web${s}` } }, addressType: "IPv4", ports: [{ port: 8080 }], endpoints: ips.map((a) => ({ addresses: [a] })) },
  ]).flat()));
  return f;
}
const small = state("small", 2); // one ring of 23 slots
const grown = state("grown", 4); // ring 41: a ring chain of a new size
// 200 rings of 23 (the same ring chain): 4600 slots, past the 4096-slot maps, a bank switch
const huge = state("huge", 2, 200);

const tables = (...args: string[]) => run([SKEIN, "tables", ...args]).stdout;
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

/** The earlier state loaded from its printed text, then the printed delta: loads, and lists
 * as the agent's path (--apply, then --apply --since) leaves the table. */
async function deltaMatches(tag: string, earlier: string, later: string): Promise<void> {
  lab.host(`t${tag}`);
  lab.host(`a${tag}`);
  await lab.exec(`t${tag}`, ["nft", "-f", "-"], { stdin: tables("--state", earlier, "--nft") });
  const delta = await lab.exec(`t${tag}`, ["nft", "-f", "-"], { stdin: tables("--state", later, "--since", earlier, "--nft"), allowFail: true });
  await lab.exec(`a${tag}`, [SKEIN, "tables", "--state", earlier, "--apply"]);
  await lab.exec(`a${tag}`, [SKEIN, "tables", "--state", later, "--since", earlier, "--apply"]);
  expect(delta.stderr.split("\n")[0]).toBe("");
  expect(delta.exitCode).toBe(0);
  expect(await listing(`t${tag}`)).toEqual(await listing(`a${tag}`));
}

test("a delta that grows a ring to a new size: the printed text loads and lists as the agent's path", async () => {
  await deltaMatches("g", small, grown);
});

test("a delta that outgrows the ring maps (a bank switch): the printed text loads and lists as the agent's path", async () => {
  await deltaMatches("h", small, huge);
});

test("--apply --since over a table an earlier --apply --since switched to bank 1", async () => {
  lab.host("b");
  await lab.exec("b", [SKEIN, "tables", "--state", small, "--apply"]);
  expect((await lab.exec("b", [SKEIN, "tables", "--state", huge, "--since", small, "--apply"])).stdout).toMatch(/^applied rebuild/);
  const back = await lab.exec("b", [SKEIN, "tables", "--state", small, "--since", huge, "--apply"], { allowFail: true });
  expect(back.stderr).toBe("");
  expect(back.exitCode).toBe(0);
});
