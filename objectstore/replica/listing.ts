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
import { ThocError } from "../../errors/index.js";
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

/**
 * The smallest string above every string that starts with `p` (an exclusive
 * upper bound of a prefix range: p with its last character one higher; UTF-8
 * keeps code point order), or undefined when the last character has no simple
 * successor (a surrogate, U+FFFF).
 */
export function prefixEnd(p: string): string | undefined {
  const c = p.charCodeAt(p.length - 1);
  if (!p.length || (c >= 0xd7ff && c <= 0xdfff) || c === 0xffff) return undefined;
  return p.slice(0, -1) + String.fromCharCode(c + 1);
}

export function unreachableError(op: string, missing: string[], w: number): ThocError {
  return blobError("Unavailable", `${op}: ${missing.length} node(s) unreachable (${missing.join(", ")}); a listing needs all but at most ${w - 1} of them to be complete`,
    { missing: missing.length, writeQuorum: w });
}

/** One node's whole list of records under a prefix (signal: the answer is no longer needed). */
export type GatherSource = { node: string; list: (signal: AbortSignal) => Promise<ReplicaRecord[]> };

/**
 * The newest record of every key (tombstones included), in key order, from
 * the first `need` sources that answer in full. With need = ring size - (W -
 * 1) the answer misses no acknowledged write (it is on W nodes, at least one
 * of which answered) and, keeping the newest version of each key, none is
 * older than the newest acknowledged one. Only the first `need` sources are
 * asked (this node's own store first): on a ring of 3 the nodes share a few
 * cores, and a third list nobody waits for costs them as much as a useful
 * one. A spare is asked when one of them fails, and every spare once
 * `hedgeMs` passed without enough answers (a slow node). Fails once fewer
 * than `need` sources can still answer.
 */
export async function gatherSources(op: string, sources: GatherSource[], need: number, w: number, opts: { down?: string[]; hedgeMs?: number } = {}): Promise<ReplicaRecord[]> {
  const down = opts.down ?? [];
  if (sources.length < need) throw unreachableError(op, down, w);
  const stop = new AbortController();
  const lists: ReplicaRecord[][] = [];
  let hedge: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const failed: string[] = [];
      const errors: string[] = [];
      let asked = 0;
      const ask = () => {
        const s = sources[asked++]!;
        // A source that throws before its promise exists fails like one that rejects.
        Promise.resolve().then(() => s.list(stop.signal)).then((l) => {
          lists.push(l);
          if (lists.length === need) resolve();
        }, (err: unknown) => {
          failed.push(s.node);
          errors.push(`${s.node}: ${ThocError.from(err).message}`);
          if (sources.length - failed.length < need) reject(unreachableError(`${op} (${errors.join("; ")})`, [...down, ...failed], w));
          else if (asked < sources.length && !stop.signal.aborted) ask();
        });
      };
      while (asked < need) ask();
      if (asked < sources.length) {
        hedge = setTimeout(() => { while (asked < sources.length) ask(); }, opts.hedgeMs ?? 100);
        hedge.unref?.();
      }
    });
  } finally {
    clearTimeout(hedge);
    stop.abort(new ThocError("cancelled", `${op}: enough nodes answered`));
  }
  const newest = new Map<string, ReplicaRecord>();
  for (const l of lists) {
    for (const r of l) {
      const cur = newest.get(r.key);
      if (!cur || r.version > cur.version) newest.set(r.key, r);
    }
  }
  return [...newest.values()].sort((a, b) => compareKeys(a.key, b.key));
}
