// Keeps the kernel's table `inet skein` in step with compiled tables: the first sync (or one
// that needs it) loads the table whole in one transaction; every later one applies only the
// delta. A rejected transaction leaves the previous tables in force and is reported with
// nft's message and the offending line; the next sync starts again from what is in force.
import type { Tables } from "../../compiler/reference/compile.ts";
import type { Nft } from "./nft.ts";
import { model, renderDelta, renderFull, type Model } from "./render.ts";

export interface SyncResult {
  kind: "full" | "delta" | "none";
  /** size of the transaction, in lines of nft script */
  lines: number;
  ms: number;
}

export class Datapath {
  private current: Model | undefined;

  constructor(private readonly nft: Nft, private readonly ringFactor: number) {}

  sync(tables: Tables, opts: { full?: boolean } = {}): SyncResult {
    const t0 = performance.now();
    const next = model(tables, this.ringFactor);
    let script = this.current && !opts.full ? renderDelta(this.current, next) : undefined;
    const kind = script === undefined ? "full" : script === "" ? "none" : "delta";
    script ??= renderFull(next);
    if (script) this.nft.run(script); // throws NftError; `current` stays what is in force
    this.current = next;
    return { kind, lines: script ? script.split("\n").length - 1 : 0, ms: performance.now() - t0 };
  }
}
