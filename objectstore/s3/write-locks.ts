/**
 * Per-key locks of the conditional writes one node takes (conditional.ts):
 * its own file so that http.ts (the Ctx that carries them) and conditional.ts
 * (which uses http.ts) do not import each other.
 */
import { s3err } from "./errors.js";

/** How long a conditional write waits for an earlier one of the same key (tests shorten it). */
export const conditionalTiming = { lockWaitMs: 30_000 };

/**
 * Per-key locks of this node's conditional writes: each holder waits for the
 * previous one of its key to release (a FIFO chain of promises; an idle key
 * keeps no entry).
 */
export class WriteLocks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Waits for the key's earlier holders (409 ConditionalRequestConflict after waitMs); resolves with the release function. */
  async acquire(id: string, waitMs = conditionalTiming.lockWaitMs): Promise<() => void> {
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
      throw s3err("ConditionalRequestConflict");
    }
    return release;
  }

  /** Keys locked or waited for (tests). */
  get size(): number { return this.tails.size; }
}
