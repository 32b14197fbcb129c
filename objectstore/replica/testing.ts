/**
 * Small helpers shared by this folder's tests (deterministic randomness).
 */

import { seededRandom } from "../../core/index.js";

/** A seeded PRNG (membership's mulberry32), so a failing property test replays exactly. */
export const prng = seededRandom;

export function shuffle<T>(xs: readonly T[], rnd: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function manualClock(start: number): { t: number; now(): number } {
  const c = { t: start, now: () => c.t };
  return c;
}
