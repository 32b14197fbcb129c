/**
 * The lock seam of conditional writes (If-None-Match: *, If-Match): the S3
 * layer takes a key's lock before it checks the condition and holds it until
 * the store has settled the write (objectstore/s3/conditional.ts). Which lock
 * that is, is the composition's choice (objectstore/subsystem.ts): this
 * node's own (LocalKeyLocker, enough on a single node), or a cluster-wide
 * lease granted by a majority of the key's replicas
 * (objectstore/replica/key-lock.ts). The S3 layer knows neither the ring nor
 * the replicas.
 */
import { blobError } from "./errors.js";

export interface KeyLocker {
  /**
   * Resolves, once the caller holds the key's lock, with the function that
   * releases it (idempotent); rejects with blob error
   * ConditionalRequestConflict (S3 409) after waitMs without it.
   */
  acquire(bucket: string, key: string, waitMs: number): Promise<() => void>;
}

/**
 * Per-key locks of one process: each holder waits for the previous one of its
 * key to release (a FIFO chain of promises; an idle key keeps no entry).
 */
export class LocalKeyLocker implements KeyLocker {
  private readonly tails = new Map<string, Promise<void>>();

  async acquire(bucket: string, key: string, waitMs: number): Promise<() => void> {
    const id = `${bucket}\u0000${key}`;
    const prev = this.tails.get(id) ?? Promise.resolve();
    let free!: () => void;
    const mine = new Promise<void>((r) => { free = r; });
    const tail = prev.then(() => mine);
    this.tails.set(id, tail);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      free();
      if (this.tails.get(id) === tail) this.tails.delete(id);
    };
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<false>((r) => { timer = setTimeout(() => r(false), waitMs); });
    const got = await Promise.race([prev.then(() => true), expired]);
    clearTimeout(timer);
    if (!got) {
      // Our turn is given up: whoever queued behind us waits only for those ahead of us.
      release();
      throw blobError("ConditionalRequestConflict", undefined, { bucket, key });
    }
    return release;
  }

  /** Keys locked or waited for (tests). */
  get size(): number { return this.tails.size; }
}
