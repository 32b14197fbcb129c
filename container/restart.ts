/**
 * The restart policy: whether an exited container is started again, and after
 * how long. Exponential back-off from 1 s doubling to 60 s, so a container
 * that fails at once costs a start a minute at worst; a run of at least
 * resetAfterMs counts as a success and starts the back-off over.
 */
import type { RestartPolicy } from "./types.js";

export interface BackoffOptions { minMs: number; maxMs: number; resetAfterMs: number }
export const BACKOFF: BackoffOptions = { minMs: 1000, maxMs: 60_000, resetAfterMs: 10_000 };

export function shouldRestart(policy: RestartPolicy, exitCode: number): boolean {
  return policy === "always" || (policy === "on-failure" && exitCode !== 0);
}

/** The wait before the (failures+1)-th restart in a row. */
export function backoffMs(failures: number, o: BackoffOptions = BACKOFF): number {
  return Math.min(o.maxMs, o.minMs * 2 ** Math.min(failures, 30));
}
