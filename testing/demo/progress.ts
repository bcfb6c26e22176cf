// Progress of a long command: on a terminal a spinner line with the step counter and the time
// the step has taken, replaced by a finished line when the next step starts; elsewhere (a
// pipe, a CI log) one plain line per step and per detail, nothing redrawn.

const FRAMES = ["|", "/", "-", "\\"];

export class Progress {
  private n = 0;
  private current: { what: string; t0: number } | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private frame = 0;

  constructor(
    private readonly total: number,
    private readonly out: (s: string) => void,
    private readonly tty: boolean,
  ) {}

  private line(mark: string): string {
    const c = this.current!;
    const s = ((performance.now() - c.t0) / 1000).toFixed(1);
    return `${mark} [${this.n}/${this.total}] ${c.what} (${s} s)`;
  }

  /** Ends the step in progress (if any) and starts the next. */
  step(what: string): void {
    this.done();
    this.n++;
    this.current = { what, t0: performance.now() };
    if (!this.tty) {
      this.out(`[${this.n}/${this.total}] ${what}\n`);
      return;
    }
    this.out(this.line(FRAMES[0]!));
    this.timer = setInterval(() => this.out(`\r\x1b[K${this.line(FRAMES[++this.frame % FRAMES.length]!)}`), 100);
  }

  /** A detail of the step in progress, printed under it. */
  info(s: string): void {
    if (this.tty && this.current) this.out(`\r\x1b[K    ${s}\n${this.line(FRAMES[this.frame % FRAMES.length]!)}`);
    else this.out(`    ${s}\n`);
  }

  /** Ends the step in progress: `ok` false marks it failed. */
  done(ok = true): void {
    if (!this.current) return;
    clearInterval(this.timer);
    if (this.tty) this.out(`\r\x1b[K${this.line(ok ? "ok" : "FAILED")}\n`);
    else if (!ok) this.out(`    FAILED after ${((performance.now() - this.current.t0) / 1000).toFixed(1)} s\n`);
    this.current = undefined;
  }
}
