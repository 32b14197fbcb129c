/**
 * Lifeguard's suspicion timer: it starts at max and shrinks toward min as
 * independent members confirm the suspicion (log scale, as memberlist does),
 * so a lone struggling accuser needs the full max while a real failure seen by
 * many is declared quickly.
 */
import type { Clock, Timer } from "./types.js";

export function suspicionTimeouts(n: number, probeInterval: number, mult: number, maxMult: number): { min: number; max: number } {
  const scale = Math.max(1, Math.log10(Math.max(1, n)));
  const min = Math.floor(mult * scale * probeInterval);
  return { min, max: maxMult * min };
}

/**
 * k, the independent confirmations that bring a suspicion down to min: memberlist's
 * suspicionMult - 2, but capped at the members there are to confirm (n less the accuser
 * and the suspect) instead of dropping to 0 when fewer are known. memberlist's
 * `if n-2 < k { k = 0 }` starts a lone accuser at the *minimum* timeout in a 3-member
 * view — exactly the view a node has while a cluster forms — so one slow probe of a
 * member still starting declared it dead with 0 confirmations. Only when nobody else
 * exists to ask (n <= 2) is k 0 and the minimum taken.
 */
export function confirmationsExpected(n: number, suspicionMult: number): number {
  return Math.max(0, Math.min(suspicionMult - 2, n - 2));
}

export function remaining(confirmations: number, k: number, elapsed: number, min: number, max: number): number {
  const frac = Math.log(confirmations + 1) / Math.log(k + 1);
  const raw = Math.floor(max - frac * (max - min));
  return Math.max(raw, min) - elapsed;
}

export class Suspicion {
  private readonly confirmed = new Set<string>();
  private timer: Timer;
  private readonly start: number;

  /** k: confirmations expected before the timeout reaches min. */
  constructor(from: string, private readonly k: number, private readonly min: number, private readonly max: number,
    private readonly clock: Clock, private readonly fire: () => void) {
    this.confirmed.add(from); // the accuser does not confirm itself
    this.start = clock.now();
    this.timer = clock.after(k < 1 ? min : max, fire);
  }

  get confirmations(): number { return this.confirmed.size - 1; }

  /** Records an independent confirmation; true when it was new (then it is worth re-gossiping). */
  confirm(from: string): boolean {
    if (this.confirmations >= this.k || this.confirmed.has(from)) return false;
    this.confirmed.add(from);
    const left = remaining(this.confirmations, this.k, this.clock.now() - this.start, this.min, this.max);
    this.timer.cancel();
    this.timer = this.clock.after(Math.max(0, left), this.fire);
    return true;
  }

  cancel(): void { this.timer.cancel(); }
}
