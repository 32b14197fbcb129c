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
/** A node whose lease call could not reach it is not asked again for this long (as the coordinator's failureBackoffMs). */
const FAILURE_BACKOFF_MS = 2000;

/** One round of LockKey calls (ask). */
interface Round {
  enough: Promise<boolean>;
  all: Promise<number>;
  /** Nodes whose answer (or failure) is in. */
  answered: Set<string>;
}

export class QuorumKeyLocker implements KeyLocker {
  /** Counters (tests, metrics): locks taken, attempts that fell short of a majority, 409s, renewals short of a majority. */
  readonly stats = { acquired: 0, retries: 0, conflicts: 0, lost: 0 };
  private readonly local: KeyLocker;
  private readonly pending = new Set<Promise<unknown>>();
  /** When a failed lease call to each node was last logged: a node down fails every attempt of every write. */
  private readonly warned = new Map<string, number>();
  private readonly failedAt = new Map<string, number>();

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
    const asked = prefs.filter((id) => id === this.o.self || this.reachable(id));
    const round = this.ask(asked, bucket, key, owner, need);
    if (await round.enough) {
      this.stats.acquired++;
      return this.hold(bucket, key, owner, asked, need, round, releaseLocal);
    }
    // Freed at once where it was granted, and again where the answer was still out (a grant that lands after
    // the first release would otherwise stay until it expires). This owner id is never used again.
    this.track(this.freeTwice(asked, round, bucket, key, owner));
    return undefined;
  }

  /** Not asked: a node membership or the coordinator sees down, or whose lease call just failed (failureBackoffMs). */
  private reachable(id: string): boolean {
    const failed = this.failedAt.get(id);
    if (failed !== undefined && Date.now() - failed < FAILURE_BACKOFF_MS) return false;
    return this.o.isUp?.(id) ?? true;
  }

  /**
   * Asks (or re-asks, to renew) every node for the lease. `enough` settles as
   * soon as the outcome is known (a majority granted, or can no longer), so a
   * slow or unreachable node does not hold up the lock; `all` once every
   * answer is in, with the number of grants.
   */
  private ask(nodes: readonly string[], bucket: string, key: string, owner: string, need: number): Round {
    let granted = 0, refused = 0;
    const answered = new Set<string>();
    let decide!: (ok: boolean) => void;
    const enough = new Promise<boolean>((r) => { decide = r; });
    const all = Promise.all(nodes.map(async (id) => {
      let ok = false;
      try {
        ok = (await this.o.target(id).lockKey(bucket, key, owner, this.o.ttlMs)).granted;
        this.failedAt.delete(id);
      } catch (err) {
        this.noteFailure(id, bucket, key, err);
      }
      answered.add(id);
      if (ok) granted++;
      else refused++;
      if (granted >= need) decide(true);
      else if (refused > nodes.length - need) decide(false);
    })).then(() => {
      decide(granted >= need);
      return granted;
    });
    return { enough, all, answered };
  }

  private noteFailure(id: string, bucket: string, key: string, err: unknown): void {
    const e = ThocError.from(err);
    if (e.code === "unavailable" || e.code === "deadline_exceeded") this.failedAt.set(id, Date.now());
    const last = this.warned.get(id) ?? -Infinity;
    if (Date.now() - last > 30_000) {
      this.warned.set(id, Date.now());
      this.o.log?.warn({ peer: id, bucket, key, err: e.message }, "object store: conditional-write lease call failed (counted as refused; logged once per 30 s per node)");
    }
  }

  /** Releases everywhere it was asked (a call that timed out may still have been granted). */
  private async free(nodes: readonly string[], bucket: string, key: string, owner: string): Promise<void> {
    await Promise.allSettled(nodes.map(async (id) => this.o.target(id).unlockKey(bucket, key, owner)));
  }

  /** Releases now, then once more where the round's answer came after this release started. */
  private async freeTwice(nodes: readonly string[], round: Round, bucket: string, key: string, owner: string): Promise<void> {
    const early = new Set(round.answered);
    await this.free(nodes, bucket, key, owner);
    await round.all;
    const late = nodes.filter((id) => !early.has(id));
    if (late.length) await this.free(late, bucket, key, owner);
  }

  private hold(bucket: string, key: string, owner: string, nodes: readonly string[], need: number, first: Round, releaseLocal: () => void): () => void {
    let released = false, renewing = false;
    let last = first;
    const timer = setInterval(() => {
      // One renewal at a time: a renewal still waiting for a slow node is not doubled.
      if (renewing) return;
      renewing = true;
      const round = last = this.ask(nodes, bucket, key, owner, need);
      void round.all.finally(() => { renewing = false; }).then((n) => {
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
      // The local lock is let go once the leases are (the next writer through this node then finds the key free);
      // a grant or renewal still on its way is released again once it has landed.
      const rounds = first === last ? [first] : [first, last];
      const out = new Set(nodes.filter((id) => rounds.some((r) => !r.answered.has(id))));
      const now = this.free(nodes, bucket, key, owner).finally(releaseLocal);
      this.track(now.then(async () => {
        await Promise.all(rounds.map((r) => r.all));
        if (out.size) await this.free([...out], bucket, key, owner);
      }));
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
