// What someone else did to skein's tables: the notifications' transactions described (pure),
// and the table a real kernel lists compared with the model after each kind of edit.
import { afterAll, describe, expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { addNetns, deleteNetns } from "../sys/netns.ts";
import { inNetns, run } from "../sys/exec.ts";
import { Netlink } from "../sys/netlink.ts";
import type { NftTransaction } from "../sys/nfevents.ts";
import { listTable, structureDrift } from "./adopt.ts";
import { Datapath } from "./datapath.ts";
import { describeForeign, tableDrift } from "./drift.ts";
import type { Nft } from "./nft.ts";
import { model } from "./model.ts";
import { REF_TABLE, renderReference } from "./nft-text.ts";

const tx = (pid: number, changes: NftTransaction["changes"], proc = "nft"): NftTransaction => ({ genid: 7, pid, proc, changes, unlisted: 0 });

describe("describeForeign", () => {
  test("names what others did to inet skein and inet skein_cni, counting repeats; skips this process and other tables", () => {
    const f = describeForeign(
      [
        tx(100, [
          { op: "del", kind: "setelem", family: "inet", table: "skein", name: "svc4" },
          { op: "del", kind: "setelem", family: "inet", table: "skein", name: "svc4" },
          { op: "del", kind: "rule", family: "inet", table: "skein", name: "t_5" },
          { op: "new", kind: "rule", family: "inet", table: "other", name: "c" },
          { op: "del", kind: "table", family: "ip", table: "skein" },
        ]),
        tx(5, [{ op: "del", kind: "table", family: "inet", table: "skein" }], "skein"),
        tx(101, [{ op: "del", kind: "table", family: "inet", table: "skein_cni" }, { op: "del", kind: "table", family: "inet", table: "skein" }], "firewalld"),
      ],
      5,
    );
    expect(f.skein).toEqual(["deleted elements of svc4 (2 times) by nft (pid 100)", "deleted a rule of chain t_5 by nft (pid 100)", "deleted the table by firewalld (pid 101)"]);
    expect(f.cni).toEqual(["deleted the table by firewalld (pid 101)"]);
    expect(describeForeign([tx(100, [{ op: "new", kind: "table", family: "inet", table: "mine" }])], 5)).toEqual({ skein: [], cni: [] });
    // what a table's deletion took along is not listed
    const gone = describeForeign([tx(100, [{ op: "del", kind: "rule", family: "inet", table: "skein", name: "nat_output" }, { op: "del", kind: "set", family: "inet", table: "skein", name: "svc4" }, { op: "del", kind: "table", family: "inet", table: "skein" }])], 5);
    expect(gone.skein).toEqual(["deleted the table by nft (pid 100)"]);
  });
});

const ns = `skt-drift${Math.random().toString(36).slice(2, 6)}`;
afterAll(() => {
  deleteNetns(ns);
  deleteNetns(`${ns}s`);
});

const state = clusterStateFrom([
  { kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } },
  { kind: "EndpointSlice", metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: [{ addresses: ["10.244.0.2"] }, { addresses: ["10.244.0.3"] }] },
  { kind: "Service", metadata: { name: "empty", namespace: "default" }, spec: { clusterIP: "10.96.0.11", ports: [{ port: 80 }] } },
  { kind: "Service", metadata: { name: "v6", namespace: "default" }, spec: { clusterIP: "fd00::10", ipFamilies: ["IPv6"], ports: [{ port: 443 }] } },
  { kind: "EndpointSlice", metadata: { name: "v6-1", namespace: "default", labels: { "kubernetes.io/service-name": "v6" } }, addressType: "IPv6", ports: [{ port: 443 }], endpoints: [{ addresses: ["fd00:244::2"] }] },
]).state;

/** The namespace at `path` with nft and a netfilter socket in it, and the state's tables,
 * loaded anew by `load`. */
function kernel(path: string) {
  const nftIn = (args: string[]) => run(inNetns(path, ["nft", ...args])).stdout;
  const nft: Nft = { backend: "exec", run: (script) => run(inNetns(path, ["nft", "-f", "-"]), { stdin: script }).stdout };
  const nl = Netlink.openNetfilter(path);
  const tables = compile(state, { nodeName: "", nodeIPs: [], ringFactor: 10 });
  const load = () => new Datapath(nft, { send: (b) => nl.sendBatch(b) }).sync(tables, { full: true });
  return { nftIn, nft, nl, tables, load };
}

/** Each edit made by nft in the namespace must be found (a line matching its pattern), and
 * the table loaded anew must be found as skein's again. */
async function eachEdit(edits: Array<[string, string[], RegExp]>, nftIn: (args: string[]) => string, load: () => unknown, check: () => Promise<string[]>): Promise<void> {
  for (const [what, cmds, want] of edits) {
    for (const c of cmds) nftIn(c.split(" "));
    const found = await check();
    if (!found.some((l) => want.test(l))) throw new Error(`${what}: ${JSON.stringify(found)} does not match ${want}`);
    load();
    expect(await check()).toEqual([]);
  }
}

describe("tableDrift against a kernel", () => {
  test("a table as skein loaded it agrees with the model; each kind of edit by someone else is found", async () => {
    const { nftIn, nl, tables, load } = kernel(addNetns(ns));
    try {
      const md = model(tables);
      const drift = async () => tableDrift(md, listTable(nl));
      load();
      expect(await drift()).toEqual([]);
      // the web Service's target chain, and the element that leads to it
      const [front, verdict] = [...md.elements.get("svc4")!].find(([k]) => k.startsWith("10.96.0.10 "))!;
      const target = verdict.replace("goto ", "");
      const ringChain = [...md.ringChains.keys()][0]!;
      const edits: Array<[string, string[], RegExp]> = [
        ["a verdict-map element deleted", ["delete element inet skein svc4 { 10.96.0.10 . tcp . 80 }"], /elements of svc4: 1 missing \(10\.96\.0\.10 \. tcp \. 80\)/],
        ["a verdict pointed elsewhere", ["delete element inet skein svc4 { 10.96.0.10 . tcp . 80 }", "add element inet skein svc4 { 10.96.0.10 . tcp . 80 : drop }"], /element 10\.96\.0\.10 \. tcp \. 80 of svc4 is "undefined"|of svc4 is/],
        ["an element added", ["add element inet skein noep4 { 10.96.0.99 . tcp . 80 }"], /elements of noep4: 1 not skein's/],
        ["a hairpin deleted", ["delete element inet skein hairpin4 { 10.244.0.2 . 10.244.0.2 }"], /elements of hairpin4: 1 missing/],
        ["a target chain flushed", [`flush chain inet skein ${target}`], new RegExp(`chain ${target} has 0 rules, not 1`)],
        ["a target chain deleted", [`delete element inet skein svc4 { ${front} }`, `delete chain inet skein ${target}`], /target chains: 1 missing/],
        ["a ring chain flushed", [`flush chain inet skein ${ringChain}`], new RegExp(`chain ${ringChain} has 0 rules`)],
        ["a rule added to a base chain", ["add rule inet skein nat_prerouting accept"], /chain nat_prerouting has 3 rules, not 2/],
        ["a base chain flushed", ["flush chain inet skein reject_output"], /chain reject_output has 0 rules/],
        ["a chain of someone else's", ["add chain inet skein t_999"], /target chains: 1 not skein's \(t_999\)/],
        ["a base chain deleted", ["delete chain inet skein nat_postrouting"], /lacks nat_postrouting/],
        ["the table deleted", ["delete table inet skein"], /table inet skein is missing/],
      ];
      await eachEdit(edits, nftIn, load, async () => drift());
    } finally {
      nl.close();
    }
  }, 60_000);
});

describe("structureDrift against a kernel", () => {
  test("what a bank switch would not put right is found: others' objects, table flags, base chains declared or filled otherwise", async () => {
    const { nftIn, nft, nl, load } = kernel(addNetns(`${ns}s`));
    try {
      const r = renderReference();
      nft.run(r.load);
      const reference = listTable(nl, REF_TABLE, false)!;
      nft.run(r.drop);
      expect(nftIn(["list", "tables"])).not.toContain(REF_TABLE);
      const structure = async () => structureDrift(listTable(nl)!, reference);
      load();
      expect(await structure()).toEqual([]);
      const handle = (chain: string, n = 0) => [...nftIn(["-a", "list", "chain", "inet", "skein", chain]).matchAll(/# handle (\d+)/g)].map((m) => m[1]!)[n + 1]!;
      const edits: Array<[string, string[], RegExp]> = [
        ["a base chain's rule replaced (the count the same)", [`replace rule inet skein nat_prerouting handle ${handle("nat_prerouting")} ip daddr 10.96.0.10 drop`], /base chain nat_prerouting does not hold skein's rules/],
        ["a rule inserted", ["insert rule inet skein nat_output accept"], /base chain nat_output does not hold skein's rules \(3 rules, skein's are 2\)/],
        ["a base chain's policy changed", ["add chain inet skein reject_output { type filter hook output priority -110; policy drop; }"], /base chain reject_output is not declared as skein declares it/],
        ["a chain of someone else's, hooked before skein's", ["add chain inet skein evil { type filter hook prerouting priority -300; policy accept; }"], /chain evil is not skein's/],
        ["a set of someone else's", ["add set inet skein extra { type ipv4_addr; }"], /set extra is not skein's/],
        ["a counter object", ["add counter inet skein c1"], /object c1 is not skein's/],
        ["the table made dormant", ["add table inet skein { flags dormant; }"], /has flags dormant/],
      ];
      await eachEdit(edits, nftIn, load, structure);
    } finally {
      nl.close();
    }
  }, 60_000);
});
