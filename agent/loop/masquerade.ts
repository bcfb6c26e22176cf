// The CNI plugin's masquerade table (`inet skein_cni`) while the agent runs: the plugin makes
// it at a pod's ADD, but nothing would put it back if something else removed it between
// ADDs (`nft flush ruleset`, a firewall reload), and pod traffic leaving the cluster would go
// out with pod source addresses until the next ADD. The agent renders the same table from the
// same inputs the plugin reads in the node file (so the two agree on its fingerprint and never
// rewrite each other's) and puts it back when it is missing or changed.
import { poolsFrom } from "../cni/config.ts";
import { renderMasquerade } from "../cni/masquerade.ts";
import type { Nft } from "../datapath/nft.ts";
import type { MasqueradeKeeper } from "./agent.ts";

export class Masquerade implements MasqueradeKeeper {
  private want: { script: string; fingerprint: string } | undefined;

  /** `userdata` reads the table's comment (undefined: no table); `nft` writes the table. */
  constructor(
    private readonly nft: Nft,
    private readonly userdata: () => Uint8Array | undefined,
  ) {}

  set(podCIDRs: string[], clusterCIDRs: string[]): void {
    this.want = renderMasquerade(poolsFrom(podCIDRs, "the Node's spec.podCIDRs"), clusterCIDRs);
  }

  /** `force`: write it even when its comment says it is as set (its rules may have been
   * changed: the comment says nothing of them). Says what it found, when it wrote. */
  ensure(force = false): string | undefined {
    if (!this.want) return undefined;
    const ud = this.userdata();
    const fingerprinted = ud !== undefined && new TextDecoder().decode(ud).includes(this.want.fingerprint);
    if (!force && fingerprinted) return undefined;
    this.nft.run(this.want.script);
    return ud === undefined ? "was missing" : fingerprinted ? "was written anew" : "was not as the agent set it";
  }
}
