/**
 * The ring state on disk: one fsync'd JSON document in the node's LevelDB, so
 * a restarted node computes the same placement before it has talked to anyone
 * (and never re-joins: join() is a no-op for a known node id). Ring exchange
 * with peers: push ours (MergeRing), merge what comes back.
 */
import type { LocalStore } from "../../store/index.js";
import { RingState, type RingStateData } from "./ring-state.js";
import type { RingHolder } from "./service.js";

const KEY = "ring";

export class DurableRingHolder implements RingHolder {
  private readonly listeners: ((s: RingState) => void)[] = [];
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(private readonly store: LocalStore, private readonly s: RingState) {}

  private static sub(store: LocalStore) {
    return store.json<RingStateData>("objectstore-ring");
  }

  static async open(store: LocalStore): Promise<DurableRingHolder> {
    const saved = await DurableRingHolder.sub(store).get(KEY);
    return new DurableRingHolder(store, saved ? RingState.fromJSON(saved) : new RingState());
  }

  state(): RingState {
    return this.s;
  }

  /** Calls fn after every change, once it is on disk (rebuild the ring, start rebalancing). */
  onChange(fn: (s: RingState) => void): void {
    this.listeners.push(fn);
  }

  merge(data: RingStateData): Promise<boolean> {
    return this.apply((s) => s.merge(data));
  }

  /** Runs a local change (join, operator remove, re-weigh) and persists it before resolving. */
  apply(change: (s: RingState) => boolean): Promise<boolean> {
    // Serialized: two merges must not persist out of order.
    const run = this.chain.then(async () => {
      // Change a copy, persist it, then fold it in: memory never runs ahead of the disk.
      const next = this.s.clone();
      if (!change(next)) return false;
      // Through the root db: `sync` (fsync) is an option of the root's batch.
      await this.store.db.batch([{ type: "put", sublevel: DurableRingHolder.sub(this.store), key: KEY, value: next.toJSON() }], { sync: true });
      this.s.merge(next);
      for (const l of this.listeners) l(this.s);
      return true;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** One round of ring gossip with a peer: send ours, merge theirs (both end equal). */
export async function syncRing(holder: RingHolder, peer: { mergeRing(s: RingStateData, digest: string): Promise<RingStateData> }): Promise<boolean> {
  const s = holder.state();
  const theirs = await peer.mergeRing(s.toJSON(), s.digest());
  return holder.merge(theirs);
}
