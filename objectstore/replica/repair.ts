/**
 * The copies one node makes to repair its own replicas (anti-entropy pulls):
 * a bounded number run at once, so re-replicating after a node loss is not
 * one object after another, and a key already being copied is not copied
 * again by a second round or a second peer that found the same gap. Bytes
 * are paced by the node's RateLimiter (objectstore.repairBytesPerSecond),
 * which every transfer shares.
 */
import { ThocError } from "../../errors/index.js";

export interface RepairStats {
  /** Copies that changed the local replica (a missing or older version replaced). */
  copies: number;
  /** Body bytes of those copies. */
  bytes: number;
  /** Copies that arrived after a newer version had (the store kept it; no change). */
  stale: number;
  /** Asked for while the same key was already being copied here. */
  deduplicated: number;
  /** Found already here when their turn came (no transfer). */
  skipped: number;
  failed: number;
}

/** One copy: resolves to whether it changed the local replica and its body bytes, or undefined when it found nothing to copy. */
export type RepairJob = () => Promise<{ applied: boolean; bytes: number } | undefined>;

export class RepairPool {
  readonly stats: RepairStats = { copies: 0, bytes: 0, stale: 0, deduplicated: 0, skipped: 0, failed: 0 };
  private readonly inFlight = new Set<string>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly concurrency = 4) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ThocError("invalid_argument", `repair concurrency must be a positive integer, got ${concurrency}`);
  }

  /**
   * Waits for a free slot, then starts the copy of `key` in the background;
   * resolves (once started) with `done`, its completion, which rejects with
   * the copy's error. Undefined when the key is being copied already.
   */
  async submit(key: string, job: RepairJob): Promise<{ done: Promise<void> } | undefined> {
    if (this.inFlight.has(key)) {
      this.stats.deduplicated++;
      return undefined;
    }
    this.inFlight.add(key);
    while (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    const done = (async () => {
      try {
        const r = await job();
        if (!r) this.stats.skipped++;
        else if (r.applied) {
          this.stats.copies++;
          this.stats.bytes += r.bytes;
        } else this.stats.stale++;
      } catch (err) {
        this.stats.failed++;
        throw err;
      } finally {
        this.inFlight.delete(key);
        this.running--;
        this.waiting.shift()?.();
      }
    })();
    return { done };
  }

  /** Copies running or waiting for a slot. */
  get busy(): number {
    return this.inFlight.size;
  }
}
