/**
 * This node's grants of conditional-write leases (the LockKey / UnlockKey
 * calls of the replica protocol; key-lock.ts is the side that asks): one
 * owner per key at a time, until it releases the lease or the lease runs out.
 * In memory only: a restarted node grants afresh, which is safe because a
 * lease is held only while a majority of the key's replicas hold it, and
 * expiry is what frees the keys of a coordinator that died.
 *
 * Times are this node's monotonic clock (performance.now): no clock needs to
 * agree with another node's. The asker counts its lease from before it sent
 * the request, so it believes in the lease no longer than the grantor does.
 */
import { performance } from "node:perf_hooks";
import { ThocError } from "../../errors/index.js";

/** Longest lease a node grants, whatever is asked: a confused peer cannot wedge a key for longer. */
export const MAX_LEASE_MS = 60_000;
const MAX_OWNER = 256;
/** Expired grants are swept every this many LockKey calls (keys never released stay bounded). */
const SWEEP_EVERY = 1024;

export interface LeaseAnswer {
  granted: boolean;
  /** The owner that holds the lease when it was refused. */
  holder: string;
}

/** What a lock asker needs of one node, local (KeyLeases) or remote (Peer). */
export interface LeaseTarget {
  lockKey(bucket: string, key: string, owner: string, ttlMs: number): Promise<LeaseAnswer>;
  unlockKey(bucket: string, key: string, owner: string): Promise<boolean>;
}

export class KeyLeases implements LeaseTarget {
  private readonly held = new Map<string, { owner: string; until: number }>();
  private calls = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  private static check(bucket: string, owner: string, ttlMs?: number): void {
    if (!bucket) throw new ThocError("invalid_argument", "LockKey: bucket missing");
    if (!owner || owner.length > MAX_OWNER) throw new ThocError("invalid_argument", `LockKey: the owner must be 1 to ${MAX_OWNER} characters`);
    if (ttlMs !== undefined && !(Number.isInteger(ttlMs) && ttlMs > 0)) throw new ThocError("invalid_argument", "LockKey: ttl_ms must be a positive number of milliseconds");
  }

  /** Grants (or renews, for the same owner) the key's lease for min(ttlMs, MAX_LEASE_MS), unless another owner holds it. */
  async lockKey(bucket: string, key: string, owner: string, ttlMs: number): Promise<LeaseAnswer> {
    KeyLeases.check(bucket, owner, ttlMs);
    const t = this.now();
    if (++this.calls % SWEEP_EVERY === 0) this.sweep(t);
    const id = `${bucket}\u0000${key}`;
    const cur = this.held.get(id);
    if (cur && cur.owner !== owner && cur.until > t) return { granted: false, holder: cur.owner };
    this.held.set(id, { owner, until: t + Math.min(ttlMs, MAX_LEASE_MS) });
    return { granted: true, holder: owner };
  }

  /** Frees the key's lease only if `owner` holds it (a late release of an expired lease must not free its successor's). */
  async unlockKey(bucket: string, key: string, owner: string): Promise<boolean> {
    KeyLeases.check(bucket, owner);
    const id = `${bucket}\u0000${key}`;
    const cur = this.held.get(id);
    if (!cur || cur.owner !== owner) return false;
    this.held.delete(id);
    return cur.until > this.now();
  }

  private sweep(t: number): void {
    for (const [id, l] of this.held) if (l.until <= t) this.held.delete(id);
  }

  /** Grants kept (expired ones not yet swept included; tests). */
  get size(): number { return this.held.size; }
}
