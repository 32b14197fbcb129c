/**
 * Cluster-wide bucket listings. Object records are placed by the hash of
 * bucket + key (spreading a hot bucket over every node), so a listing merges
 * each node's key-ordered records of the bucket: a k-way merge that keeps the
 * newest version of every key (tombstones included, so a delete seen on one
 * node hides a stale copy on another). Sources page lazily and can seek, so a
 * delimiter listing skips a whole common prefix without reading it.
 *
 * Completeness: an acknowledged write is on at least W nodes, so a listing
 * that reached every node but fewer than W is complete; the caller checks that
 * before merging (see ReplicationNode.listBucket).
 */
import type { ThocError } from "../../errors/index.js";
import { blobError } from "../blob/index.js";
import { compareKeys, type BucketListOptions, type ReplicaRecord } from "./replica-store.js";

/** One node's records of a bucket, in key order, from `after` on (exclusive). */
export type ListSource = (opts: BucketListOptions) => AsyncIterable<ReplicaRecord>;

export interface MergedList {
  /** The newest record of the next key (tombstones included), or undefined at the end. */
  next(): Promise<ReplicaRecord | undefined>;
  /** Continues after `key` (exclusive) on every source. */
  seek(key: string): void;
  close(): Promise<void>;
}

class Cursor {
  private buf: ReplicaRecord[] = [];
  private i = 0;
  private exhausted = false;
  private after: string | undefined;

  constructor(private readonly source: ListSource, private readonly prefix: string, after: string | undefined, private readonly page: number) {
    this.after = after;
  }

  async peek(): Promise<ReplicaRecord | undefined> {
    if (this.i < this.buf.length) return this.buf[this.i];
    if (this.exhausted) return undefined;
    const got: ReplicaRecord[] = [];
    for await (const r of this.source({ prefix: this.prefix, ...(this.after !== undefined ? { after: this.after } : {}), limit: this.page })) got.push(r);
    this.buf = got;
    this.i = 0;
    if (got.length < this.page) this.exhausted = true;
    if (got.length) this.after = got[got.length - 1]!.key;
    return got[0];
  }

  advance(): void {
    this.i++;
  }

  seek(key: string): void {
    while (this.i < this.buf.length && compareKeys(this.buf[this.i]!.key, key) <= 0) this.i++;
    if (this.i >= this.buf.length && (this.after === undefined || compareKeys(this.after, key) < 0)) {
      this.after = key;
      this.exhausted = false;
    }
  }
}

export function mergeSources(sources: ListSource[], opts: { prefix?: string; after?: string; page?: number } = {}): MergedList {
  const cursors = sources.map((s) => new Cursor(s, opts.prefix ?? "", opts.after, Math.max(2, opts.page ?? 256)));
  return {
    async next() {
      const heads = await Promise.all(cursors.map((c) => c.peek()));
      let min: string | undefined;
      for (const h of heads) if (h && (min === undefined || compareKeys(h.key, min) < 0)) min = h.key;
      if (min === undefined) return undefined;
      let best: ReplicaRecord | undefined;
      heads.forEach((h, i) => {
        if (!h || h.key !== min) return;
        cursors[i]!.advance();
        if (!best || h.version > best.version) best = h;
      });
      return best;
    },
    seek(key) {
      for (const c of cursors) c.seek(key);
    },
    async close() {},
  };
}

/** The smallest string above every key that starts with `prefix` that compareKeys can tell apart in practice. */
export function afterPrefix(prefix: string): string {
  return `${prefix}\u{10FFFF}\u{10FFFF}`;
}

export function unreachableError(op: string, missing: string[], w: number): ThocError {
  return blobError("Unavailable", `${op}: ${missing.length} node(s) unreachable (${missing.join(", ")}); a listing needs all but at most ${w - 1} of them to be complete`,
    { missing: missing.length, writeQuorum: w });
}
