/**
 * A token bucket in bytes per second for background traffic (anti-entropy,
 * hinted handoff, read repair), so client requests are never starved.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(private readonly bytesPerSecond: number, private readonly now: () => number = Date.now, private readonly burst = bytesPerSecond) {
    this.tokens = burst;
    this.last = now();
  }

  /** Waits until n bytes may be sent (n larger than the burst waits for its share). */
  async take(n: number): Promise<void> {
    for (;;) {
      const t = this.now();
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.bytesPerSecond);
      this.last = t;
      if (this.tokens >= Math.min(n, this.burst)) {
        this.tokens -= n; // may go negative: a big object is paid off before the next one starts
        return;
      }
      const waitMs = Math.ceil(((Math.min(n, this.burst) - this.tokens) / this.bytesPerSecond) * 1000);
      await new Promise((r) => setTimeout(r, Math.max(1, waitMs)));
    }
  }

  /** Paces a body stream chunk by chunk. */
  async *pace(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
    for await (const c of body) {
      await this.take(c.byteLength);
      yield c;
    }
  }
}
