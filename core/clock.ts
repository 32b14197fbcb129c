/**
 * The one time seam of thoc-node: every timer-driven algorithm (SWIM, the HLC,
 * and later the scheduler's election) takes a Clock, so the same code runs on
 * the wall clock and, in simulations, on FakeClock, where a run with the same
 * seed always takes the same path.
 */

export interface Timer { cancel(): void }

export interface Clock {
  /** Milliseconds since the epoch (the wall clock, or the simulation's time). */
  now(): number;
  /** Runs fn once after ms; the returned handle cancels it. */
  after(ms: number, fn: () => void): Timer;
}

/** Code that only reads time (the HLC) asks for this much of a Clock. */
export type WallClock = Pick<Clock, "now">;

/** Date.now and unref'd timers: a pending timer never keeps the process alive. */
export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * A deterministic clock for simulations: timers run only when the test
 * advances time, in time order (ties in scheduling order).
 */

interface Entry { at: number; seq: number; fn: () => void; dead: boolean }

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private heap: Entry[] = [];

  constructor(start = 1_700_000_000_000) { this.t = start; }

  now(): number { return this.t; }

  /**
   * Steps the clock to t, backwards too (an NTP step), without running
   * timers: for code that only reads the wall clock, such as the HLC.
   */
  set(t: number): void { this.t = t; }

  after(ms: number, fn: () => void): Timer {
    const e: Entry = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, dead: false };
    this.push(e);
    return { cancel: () => { e.dead = true; } };
  }

  /** Runs every timer due within ms, letting promise chains settle between timers. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const e = this.heap[0];
      if (!e || e.at > end) break;
      this.pop();
      if (e.dead) continue;
      this.t = e.at;
      e.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }

  private less(a: Entry, b: Entry) { return a.at < b.at || (a.at === b.at && a.seq < b.seq); }

  private push(e: Entry) {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Lets pending promise reactions run (a few microtask turns). */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await Promise.resolve();
}

/** Small seeded PRNG (mulberry32) so simulations are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates in place, driven by the given PRNG (Math.random unless a simulation passes its own). */
export function shuffle<T>(a: T[], random: () => number = Math.random): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
