import { expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { Datapath } from "./datapath.ts";
import { NftError, type Nft } from "./nft.ts";

class RecordingNft implements Nft {
  readonly backend = "exec" as const;
  scripts: string[] = [];
  failNext = false;
  run(script: string): string {
    if (this.failNext) {
      this.failNext = false;
      throw new NftError("/dev/stdin:1:1: Error: injected", script);
    }
    this.scripts.push(script);
    return "";
  }
}

const state = (eps: string[]) =>
  clusterStateFrom([
    { kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }] } },
    { kind: "EndpointSlice", metadata: { name: "web-1", namespace: "default", labels: { "kubernetes.io/service-name": "web" } }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: eps.map((a) => ({ addresses: [a] })) },
  ]).state;
const opts = { nodeName: "", nodeIPs: [], ringFactor: 25 };

test("full first, then deltas, nothing when nothing changed", () => {
  const nft = new RecordingNft();
  const dp = new Datapath(nft, 25);
  const a = compile(state(["10.244.0.2", "10.244.0.3"]), opts);
  expect(dp.sync(a).kind).toBe("full");
  const b = compile(state(["10.244.0.2", "10.244.0.4"]), { ...opts, previous: a });
  const r = dp.sync(b);
  expect(r.kind).toBe("delta");
  expect(nft.scripts[1]).not.toContain("table");
  expect(dp.sync(b)).toMatchObject({ kind: "none", lines: 0 });
  expect(nft.scripts).toHaveLength(2);
});

test("a rejected transaction keeps the previous tables as the base of the next delta", () => {
  const nft = new RecordingNft();
  const dp = new Datapath(nft, 25);
  const a = compile(state(["10.244.0.2"]), opts);
  dp.sync(a);
  const b = compile(state(["10.244.0.9"]), { ...opts, previous: a });
  nft.failNext = true;
  expect(() => dp.sync(b)).toThrow(/injected/);
  dp.sync(b);
  // the retried delta still removes what a put there, so it starts from a, not from b
  expect(nft.scripts[1]).toContain("delete element inet skein hairpin4 { 10.244.0.2 . 10.244.0.2 }");
});
