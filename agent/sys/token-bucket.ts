// A token bucket: `rate` tokens every `periodMs`, holding `burst` at most; a take without a
// token is refused. What bounds the agent's HTTP clients and its Event writes.
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: number,
    private readonly periodMs: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.at = now();
  }

  /** Takes a token at `t` (default: now); false when none is left. */
  take(t = this.now()): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) * this.rate) / this.periodMs);
    this.at = t;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
