/**
 * Root digests of ring arcs, remembered until the store next changes. An
 * idle cluster's anti-entropy asks every node for the same arcs' digests
 * round after round; with this cache an unchanged store answers (and asks)
 * without scanning its index, and a changed one scans it once for all the
 * arcs asked, not once per arc.
 */
import { ArcIndex, type PosRange, type RangeDigest, type ReplicaRecord } from "./replica-store.js";

/** Feeds every record of the store, in ring-position order, to `add`. */
export type IndexPass = (add: (pos: number, rec: ReplicaRecord) => void) => Promise<void>;

export class ArcDigestCache {
  /** Moves before and after every commit, so a pass that overlapped one is never kept. */
  private generation = 0;
  private cachedAt = -1;
  private cache = new Map<string, RangeDigest>();

  /** Call around every change of the store's records (before it starts and once it is committed). */
  changed(): void {
    this.generation++;
  }

  async digests(arcs: readonly PosRange[], pass: IndexPass): Promise<RangeDigest[]> {
    const gen = this.generation;
    if (gen !== this.cachedAt) {
      this.cache = new Map();
      this.cachedAt = gen;
    }
    const hit = arcs.map((r) => this.cache.get(arcKey(r)));
    if (hit.every((d) => d !== undefined)) return hit as RangeDigest[];
    const d = new ArcIndex(arcs).digester();
    await pass(d.add);
    const got = d.result();
    if (this.generation === gen && this.cachedAt === gen) arcs.forEach((r, i) => this.cache.set(arcKey(r), got[i]!));
    return got;
  }
}

const arcKey = (r: PosRange): string => (r.whole ? "whole" : `${r.start}:${r.end}`);
