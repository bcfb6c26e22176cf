// Owning the kernel state: telling the agent's own nftables transactions from everyone
// else's. Small writes of the agent's are heard like anyone's: their notifications carry the
// pid the kernel gives the agent's thread and are skipped. Large ones (filling ring maps: a
// cold load at 10,000 services is a million ring slots, a million notifications for the
// kernel to build and the agent to read) go through `own()` unheard: it stops listening,
// notes the ruleset generation before and after, and listens again. A write adds exactly one
// generation when it commits and none when it is refused; any other step means another
// process committed while the agent was not listening, which makes the next poll report a
// doubt, settled by comparing the table with the model (drift.ts). Everything else the
// listener hears is someone else's.
import type { NftTransaction } from "../sys/nfevents.ts";
import type { BatchSink } from "./datapath.ts";
import { describeForeign, type Foreign } from "./drift.ts";
import type { Nft } from "./nft.ts";

export interface NftEventSource {
  read(): { transactions: NftTransaction[]; lost: boolean };
  pause(): void;
  resume(): void;
}

export interface GenerationSource {
  /** the ruleset's generation id now */
  genid(): number;
}

export interface Findings extends Foreign {
  /** why the notifications may have missed something: the table must be compared */
  doubt: string[];
}

/** Writes past these sizes are run unheard. A notification is ~125 bytes per element in the
 * listener's buffer (4 MB, agent/sys/nfevents.ts), against ~37 bytes per ring slot in a
 * batch and ~30 bytes per element in nft text: a write at the limit fills about a quarter of
 * the buffer, so the three steps of a sync fit in it together. */
const LARGE_BATCH = 256 * 1024;
const LARGE_SCRIPT = 128 * 1024;

export class KernelOwner {
  /** every ruleset generation up to this one is accounted for: the agent's own, or heard */
  private known: number;
  /** generations above `known` accounted for out of order (a gap below them is unheard so far) */
  private readonly ahead = new Set<number>();
  /** the gap the last poll saw: one still open at the next poll was never heard */
  private gap: number | undefined;
  private doubts: string[] = [];

  constructor(
    private readonly events: NftEventSource,
    private readonly gen: GenerationSource,
    private readonly self = process.pid,
  ) {
    this.known = gen.genid();
  }

  private account(g: number): void {
    if (g <= this.known) return;
    this.ahead.add(g);
    while (this.ahead.delete(this.known + 1)) this.known++;
  }

  /**
   * Runs one of the agent's own kernel transactions. A small one (`large` false) is heard like
   * anyone's: its notifications name this process and are skipped, and another process's
   * commit at the same moment is heard too, so it leaves no doubt (a neighbour that writes
   * nftables all the time would otherwise turn every sync into a doubt). A large one (a fill
   * of ring slots: more notifications than the listener's buffer holds) is run unheard, its
   * generation counted.
   */
  own<T>(write: () => T, large = true): T {
    if (!large) return write();
    this.events.pause();
    let g0: number | undefined;
    let committed = false;
    try {
      g0 = this.gen.genid();
      const r = write();
      committed = true;
      return r;
    } finally {
      try {
        if (g0 !== undefined) {
          const g1 = this.gen.genid();
          if (g1 - g0 !== (committed ? 1 : 0)) {
            this.doubts.push(`the ruleset went from generation ${g0} to ${g1} over one ${committed ? "committed" : "refused"} transaction of skein's: another process changed nftables meanwhile`);
          }
          for (let g = g0 + 1; g <= g1; g++) this.account(g);
        }
      } finally {
        this.events.resume();
      }
    }
  }

  /** `nft` with every script run as one of the agent's own transactions. */
  nft(nft: Nft): Nft {
    return { backend: nft.backend, run: (script) => this.own(() => nft.run(script), script.length > LARGE_SCRIPT) };
  }

  /** `sink` with every batch sent as one of the agent's own transactions. */
  sink(sink: BatchSink): BatchSink {
    return { send: (b) => this.own(() => sink.send(b), b.bytes.length > LARGE_BATCH) };
  }

  /**
   * What others did since the last poll, never blocking: the changes the notifications named,
   * and the doubts (notifications lost, a generation neither the agent's nor heard) that call
   * for a comparison of the table with the model.
   */
  poll(): Findings {
    const { transactions, lost } = this.events.read();
    const f: Findings = { ...describeForeign(transactions, this.self), doubt: this.doubts.splice(0) };
    if (lost) f.doubt.push("the kernel dropped nftables notifications (the listener's buffer overflowed)");
    for (const t of transactions) if (t.unlisted && t.pid !== this.self) f.doubt.push(`${t.proc || "a process"} (pid ${t.pid}) changed ${t.unlisted} objects more than the notifications list`);
    for (const t of transactions) this.account(t.genid);
    // a transaction still being committed may be counted in a generation the agent read
    // before its notifications arrive: a gap is a doubt only when it outlives a poll
    const gap = this.ahead.size ? this.known + 1 : undefined;
    if (gap !== undefined && gap === this.gap) {
      f.doubt.push(`ruleset generation ${gap} was committed unheard`);
      this.settle();
    } else this.gap = gap;
    return f;
  }

  /** A reason for the next poll to report a doubt (a comparison that could not be made). */
  doubt(why: string): void {
    this.doubts.push(why);
  }

  /** Whether the ruleset changed since everything was last accounted for: the periodic
   * check's cheap first step, one netlink request. */
  changed(): boolean {
    return this.gen.genid() !== this.known;
  }

  /** The ruleset as it is now is the base of what follows: called before the table is read
   * for a comparison, so that a change made during the reading is heard, not lost. */
  settle(): void {
    this.known = this.gen.genid();
    this.ahead.clear();
    this.gap = undefined;
  }
}
