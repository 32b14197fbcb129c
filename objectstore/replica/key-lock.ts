/**
 * The cluster-wide lock of conditional writes, in the style of MinIO's dsync:
 * a node about to check and write a conditional PUT, copy or completion first
 * takes its own per-key lock (so one node sends one contender at a time),
 * then asks each of the key's N preferred nodes for a lease on the key
 * (LockKey, key-leases.ts). It holds the lock once a majority (floor(N/2)+1)
 * granted it: two majorities of the same N nodes share a node, and a node
 * grants a key to one owner at a time, so two coordinators never hold one
 * key's lock together (on the same ring; see docs/objectstore.md for what a
 * ring change does). Short of a majority it frees what it got and tries again
 * after a jittered back-off, until the wait runs out: blob error
 * ConditionalRequestConflict (S3 409). A minority side of a partition never
 * gets the lock.
 *
 * Each attempt has its own owner id (node id and random bytes), so a late
 * release of an earlier attempt (or of a lease that expired) cannot free
 * someone else's grant. Leases expire (ttlMs): a coordinator that dies while
 * holding one blocks the key for at most that long. While the write runs the
 * holder renews them every ttlMs / 3.
 */
import { randomBytes } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import { blobError, LocalKeyLocker, type KeyLocker } from "../blob/index.js";
import type { CoordinatorLog } from "./coordinator.js";
import type { LeaseTarget } from "./key-leases.js";

export interface QuorumKeyLockerOptions {
  self: string;
  /** The key's preferred nodes, N of them (Coordinator.preferenceList); throws when there is no ring. */
  replicas(bucket: string, key: string): readonly string[];
  /** A node's lease table: this node's own KeyLeases, a Peer for the others; may throw (no known address). */
  target(nodeId: string): LeaseTarget;
  /** False: not asked (counts as a refusal) rather than waiting for a call to a node known down. */
  isUp?(nodeId: string): boolean;
  /** Lease duration asked for (objectstore.conditionalLease). */
  ttlMs: number;
  /** This node's own per-key lock, taken first; default a LocalKeyLocker of its own. */
  local?: KeyLocker;
  log?: CoordinatorLog;
  /** Back-off between attempts: a random wait in [0, min(maxMs, baseMs * 2^attempt)) ("full jitter"). */
  backoff?: { baseMs: number; maxMs: number };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class QuorumKeyLocker implements KeyLocker {
  /** Counters (tests, metrics): locks taken, attempts that fell short of a majority, 409s, renewals short of a majority. */
  readonly stats = { acquired: 0, retries: 0, conflicts: 0, lost: 0 };
  private readonly local: KeyLocker;
  private readonly pending = new Set<Promise<unknown>>();
  /** When a failed lease call to each node was last logged: a node down fails every attempt of every write. */
  private readonly warned = new Map<string, number>();

  constructor(private readonly o: QuorumKeyLockerOptions) {
    this.local = o.local ?? new LocalKeyLocker();
  }

  async acquire(bucket: string, key: string, waitMs: number): Promise<() => void> {
    const deadline = Date.now() + waitMs;
    const releaseLocal = await this.local.acquire(bucket, key, waitMs);
    try {
      // Short waits: a holder keeps the key for a quorum read and a write (milliseconds), and a waiter that sleeps
      // long after it was freed only adds latency; the jitter is what keeps contenders from colliding again.
      const { baseMs, maxMs } = this.o.backoff ?? { baseMs: 10, maxMs: 250 };
      for (let attempt = 0; ; attempt++) {
        const held = await this.attempt(bucket, key, releaseLocal);
        if (held) return held;
        this.stats.retries++;
        const delay = Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
        if (Date.now() + delay >= deadline) {
          this.stats.conflicts++;
          throw blobError("ConditionalRequestConflict", undefined, { bucket, key });
        }
        await sleep(delay);
      }
    } catch (err) {
      releaseLocal();
      throw err;
    }
  }

  /** One round: the release function when a majority granted, else undefined (what was granted is freed). */
  private async attempt(bucket: string, key: string, releaseLocal: () => void): Promise<(() => void) | undefined> {
    const prefs = [...this.o.replicas(bucket, key)];
    const need = Math.floor(prefs.length / 2) + 1;
    const owner = `${this.o.self}/${randomBytes(8).toString("hex")}`;
    const asked = prefs.filter((id) => id === this.o.self || (this.o.isUp?.(id) ?? true));
    const granted = await this.ask(asked, bucket, key, owner);
    if (granted >= need) {
      this.stats.acquired++;
      return this.hold(bucket, key, owner, asked, need, releaseLocal);
    }
    // Freed in the background: this attempt's owner id is never used again, so a late release harms nobody.
    this.track(this.free(asked, bucket, key, owner));
    return undefined;
  }

  /** Asks (or re-asks, to renew) every node for the lease; the number that granted it. */
  private async ask(nodes: readonly string[], bucket: string, key: string, owner: string): Promise<number> {
    const answers = await Promise.all(nodes.map(async (id) => {
      try {
        return (await this.o.target(id).lockKey(bucket, key, owner, this.o.ttlMs)).granted;
      } catch (err) {
        const last = this.warned.get(id) ?? -Infinity;
        if (Date.now() - last > 30_000) {
          this.warned.set(id, Date.now());
          this.o.log?.warn({ peer: id, bucket, key, err: ThocError.from(err).message }, "object store: conditional-write lease call failed (counted as refused; logged once per 30 s per node)");
        }
        return false;
      }
    }));
    return answers.filter(Boolean).length;
  }

  /** Releases everywhere it was asked (a call that timed out may still have been granted). */
  private async free(nodes: readonly string[], bucket: string, key: string, owner: string): Promise<void> {
    await Promise.allSettled(nodes.map(async (id) => this.o.target(id).unlockKey(bucket, key, owner)));
  }

  private hold(bucket: string, key: string, owner: string, nodes: readonly string[], need: number, releaseLocal: () => void): () => void {
    let released = false;
    let renewing: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      renewing = this.ask(nodes, bucket, key, owner).then((n) => {
        if (n < need && !released) {
          this.stats.lost++;
          this.o.log?.warn({ bucket, key, granted: n, need }, "object store: could not renew a conditional write's lease on a majority of the key's replicas; another node may take the key's lock once it expires");
        }
      });
    }, Math.max(10, Math.floor(this.o.ttlMs / 3)));
    timer.unref();
    return () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      // The local lock is let go once the leases are: the next writer through this node then finds the key free.
      this.track(renewing.then(() => this.free(nodes, bucket, key, owner)).finally(releaseLocal));
    };
  }

  private track(p: Promise<unknown>): void {
    const t = p.catch(() => undefined).finally(() => this.pending.delete(t));
    this.pending.add(t);
  }

  /** Resolves once releases under way have been sent (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }
}
