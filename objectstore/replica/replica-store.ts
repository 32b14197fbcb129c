/**
 * The per-node replica store the replica protocol (ObjectStoreService) serves:
 * versioned records (object metadata + body, or a tombstone) under
 * last-writer-wins by HLC version. An older write never replaces a newer one,
 * and a newer tombstone beats an older put. Records are ordered by ring
 * position (then placement key) so anti-entropy can digest and list any arc.
 *
 * MemoryReplicaStore is the in-memory implementation for tests; the durable
 * one wraps the node's local blob store (see docs/objectstore.md).
 */
import { createHash } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import { compareHlc, decodeHlc } from "../../cluster/index.js";
import { RING_SIZE, ringHash, placementKey } from "./ring.js";

export const EMPTY_SHA256 = createHash("sha256").digest("hex");

export interface ReplicaRecord {
  bucket: string;
  key: string;
  /** HLC timestamp (hlc.ts); orders every write and delete of the key. */
  version: string;
  tombstone: boolean;
  /** Body size in bytes (0 for tombstones). */
  size: number;
  /** Hex SHA-256 of the body (EMPTY_SHA256 for tombstones): checked on every copy. */
  sha256: string;
  /**
   * The S3 layer's ObjectMeta as JSON, opaque here, so the replica protocol does
   * not change whenever the S3 metadata grows a field. "" for tombstones.
   */
  meta: string;
}

export interface PutOutcome {
  /** The record replaced what was stored. */
  applied: boolean;
  /** The version stored now (ours, or a newer one that was already there). */
  current: string;
}

/** An arc of the ring: positions in (start, end], or the whole circle. */
export interface PosRange {
  start: number;
  end: number;
  whole?: boolean;
}

export interface RangeDigest {
  /** Hex SHA-256 over the sorted (placement key, version, tombstone) entries; "" when empty. */
  hash: string;
  count: number;
}

/**
 * One incoming replica. The size and sha256 may be unknown when the write
 * starts (a coordinator streaming an S3 PUT learns them at the end): the store
 * computes them while it reads the body and, once the body ends, compares them
 * with expected() (the trailer; it throws when the trailer never came) and
 * with any value the header already gave.
 */
export interface ReplicaWrite {
  header: Omit<ReplicaRecord, "size" | "sha256"> & Partial<Pick<ReplicaRecord, "size" | "sha256">>;
  body: AsyncIterable<Uint8Array>;
  /**
   * The trailer. `meta`, when set, replaces the header's meta: the S3 layer
   * learns the ETag (MD5) and checksums only once the whole body has passed.
   */
  expected(): { size: number; sha256: string; meta?: string };
  /**
   * The body comes from this process's own coordinator, which hashed it once
   * already (Tee): the store may take the sha256 from expected() instead of
   * hashing it again. Sizes are still counted and checked.
   */
  local?: boolean;
}

/** Inclusive byte range of a replica's body. */
export interface BodyRange {
  start: number;
  end: number;
}

export interface BucketListOptions {
  /** Only keys starting with this. Keys starting with U+0001 (internal records) are listed only when the prefix asks for them. */
  prefix?: string;
  /** Exclusive: keys strictly after this one (UTF-8 byte order). */
  after?: string;
  limit?: number;
}

/** Orders keys as S3 lists them: by their UTF-8 bytes (JS's < compares UTF-16 code units, which differs above U+FFFF). */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  // At the first differing code unit, two units that are not surrogates order as their code points, which is how
  // UTF-8 orders: no bytes to encode (sorting an upload's 1,000 part keys encoded ~20,000 strings).
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length < b.length ? -1 : 1;
  const x = a.charCodeAt(i), y = b.charCodeAt(i);
  if ((x < 0xd800 || x > 0xdfff) && (y < 0xd800 || y > 0xdfff)) return x < y ? -1 : 1;
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** First character of the keys the replicated store keeps for itself (multipart uploads and parts) inside a bucket. */
export const INTERNAL_KEY_PREFIX = "\u0001";

/** A write whose size and digest are known up front (repair, handoff, tests). */
export function knownWrite(rec: ReplicaRecord, body: AsyncIterable<Uint8Array>): ReplicaWrite {
  return { header: rec, body, expected: () => ({ size: rec.size, sha256: rec.sha256 }) };
}

export interface ReplicaStore {
  /**
   * Stores the record if its version is newer than the stored one. The body is
   * verified (size and sha256 against the header and the trailer) before
   * anything is committed; a mismatch (short, long or corrupt) or a missing
   * trailer rejects with data_loss and stores nothing. An older or equal
   * version is not applied and its body is not read.
   */
  put(w: ReplicaWrite): Promise<PutOutcome>;
  /** The stored record (tombstones included) or undefined. */
  head(bucket: string, key: string): Promise<ReplicaRecord | undefined>;
  /**
   * The record and its body (empty for tombstones). With a range, only those
   * bytes (clamped to the body); the body is verified against the record's
   * sha256 only when read whole (a mismatch throws data_loss at the end).
   */
  get(bucket: string, key: string, opts?: { range?: BodyRange }): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> } | undefined>;
  /** One bucket's records (tombstones included) in key order (compareKeys), for S3 listings. */
  listBucket(bucket: string, opts?: BucketListOptions): AsyncIterable<ReplicaRecord>;
  /** Records in ring-position order within the range, after the given placement key. */
  list(range: PosRange, opts?: { after?: { pos: number; pkey: string }; limit?: number }): AsyncIterable<ReplicaRecord>;
  /** Digests of `parts` equal sub-arcs of the range: one level of a Merkle tree over the arc. */
  digest(range: PosRange, parts: number): Promise<RangeDigest[]>;
  /**
   * The root digest of each of several disjoint arcs (what digest(arc, 1)
   * gives), in one pass over the records rather than one scan per arc:
   * anti-entropy compares all arcs it shares with a peer at once.
   */
  digestArcs(arcs: readonly PosRange[]): Promise<RangeDigest[]>;
  /** Forgets a record outright if its version is still `version` (hint delivered, tombstone expired, key moved away). */
  drop(bucket: string, key: string, version: string): Promise<boolean>;
  close(): Promise<void>;
}

/** The sub-arc (0..parts-1) of a range a position falls in, or -1 when outside. */
export function subArc(range: PosRange, parts: number, pos: number): number {
  const len = range.whole ? RING_SIZE : ((range.end - range.start + RING_SIZE) % RING_SIZE);
  if (len === 0 && !range.whole) return -1;
  let off = (pos - range.start + RING_SIZE) % RING_SIZE;
  if (off === 0) off = RING_SIZE; // (start, end]: start itself belongs to the far end
  if (off > len) return -1;
  // BigInt: off·parts can pass 2^53, where doubles would misplace boundary keys.
  return Number((BigInt(off - 1) * BigInt(parts)) / BigInt(len));
}

/** The i-th of `parts` equal sub-arcs of a range (the unit anti-entropy recurses into). */
export function subRange(range: PosRange, parts: number, i: number): PosRange {
  if (parts === 1) return { ...range };
  const len = range.whole ? RING_SIZE : ((range.end - range.start + RING_SIZE) % RING_SIZE);
  const cut = (j: number) => (range.start + Number((BigInt(len) * BigInt(j) + BigInt(parts - 1)) / BigInt(parts))) % RING_SIZE;
  // Sub-arc i holds offsets in ((i/parts)·len, ((i+1)/parts)·len], matching subArc.
  return { start: cut(i), end: cut(i + 1), whole: false };
}

/**
 * Finds which of a set of disjoint arcs holds a position (binary search over
 * their position intervals), so one ordered pass over a store's records can
 * digest every arc at once.
 */
export class ArcIndex {
  private readonly lo: number[] = [];
  private readonly hi: number[] = [];
  private readonly arc: number[] = [];

  constructor(readonly arcs: readonly PosRange[]) {
    const iv: [number, number, number][] = [];
    arcs.forEach((r, i) => {
      if (r.whole) return void iv.push([0, RING_SIZE - 1, i]);
      if (r.start === r.end) return; // an empty arc
      if (r.start < r.end) iv.push([r.start + 1, r.end, i]);
      else {
        if (r.start + 1 <= RING_SIZE - 1) iv.push([r.start + 1, RING_SIZE - 1, i]);
        iv.push([0, r.end, i]);
      }
    });
    iv.sort((a, b) => a[0] - b[0]);
    for (const [lo, hi, i] of iv) {
      const prev = this.hi.length ? this.hi[this.hi.length - 1]! : -1;
      if (lo <= prev) throw new ThocError("invalid_argument", `digest arcs: arc ${i} overlaps another; ask for disjoint arcs (ring segments)`);
      this.lo.push(lo);
      this.hi.push(hi);
      this.arc.push(i);
    }
  }

  /** The index (in `arcs`) of the arc holding pos, or -1. */
  find(pos: number): number {
    let a = 0;
    let b = this.lo.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.lo[m]! <= pos) a = m + 1;
      else b = m;
    }
    return a > 0 && pos <= this.hi[a - 1]! ? this.arc[a - 1]! : -1;
  }

  /** Hashes records met in ring-position order (the order digest() hashes them in) into their arcs' digests. */
  digester(): { add(pos: number, rec: ReplicaRecord): void; result(): RangeDigest[] } {
    const hashes = this.arcs.map(() => ({ h: createHash("sha256"), count: 0 }));
    return {
      add: (pos, rec) => {
        const i = this.find(pos);
        if (i < 0) return;
        hashes[i]!.h.update(entryLine(rec));
        hashes[i]!.count++;
      },
      result: () => hashes.map(({ h, count }) => ({ hash: count ? h.digest("hex") : "", count })),
    };
  }
}

export function entryLine(r: ReplicaRecord): string {
  return `${placementKey(r.bucket, r.key)}\u0000${r.version}\u0000${r.tombstone ? 1 : 0}\n`;
}

/** Reads a replica body and checks it against the header and the trailer; returns the record as stored. */
export async function readVerified(w: ReplicaWrite, limitBytes = Infinity): Promise<{ rec: ReplicaRecord; chunks: Buffer[] }> {
  const hd = w.header;
  const max = Math.min(hd.size ?? Infinity, limitBytes);
  const h = createHash("sha256");
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of w.body) {
    n += c.byteLength;
    if (n > max) throw n > limitBytes && hd.size === undefined
      ? new ThocError("resource_exhausted", `replica of ${hd.bucket}/${hd.key} is over this store's limit of ${limitBytes} bytes`)
      : mismatch(hd, `more than the declared ${hd.size} bytes`);
    h.update(c);
    chunks.push(Buffer.from(c));
  }
  const sha256 = h.digest("hex");
  const exp = w.expected();
  if (n !== exp.size || (hd.size !== undefined && hd.size !== n)) throw mismatch(hd, `${n} bytes, declared ${hd.size ?? exp.size}`);
  if (sha256 !== exp.sha256 || (hd.sha256 !== undefined && hd.sha256 !== sha256)) throw mismatch(hd, `sha256 ${sha256}, declared ${hd.sha256 ?? exp.sha256}`);
  const rec: ReplicaRecord = { ...hd, size: n, sha256, ...(exp.meta !== undefined ? { meta: exp.meta } : {}) };
  validateRecord(rec);
  return { rec, chunks };
}

function mismatch(rec: Pick<ReplicaRecord, "bucket" | "key" | "version">, what: string): ThocError {
  return new ThocError("data_loss", `replica body of ${rec.bucket}/${rec.key} version ${rec.version} does not match its header (${what}); nothing stored`,
    { bucket: rec.bucket, key: rec.key, version: rec.version });
}

export function validateHeader(rec: ReplicaWrite["header"]): void {
  decodeHlc(rec.version);
  if (!rec.bucket || rec.bucket.includes("/")) throw new ThocError("invalid_argument", `replica record: bad bucket name ${JSON.stringify(rec.bucket)}`);
  if (rec.size !== undefined && (!Number.isSafeInteger(rec.size) || rec.size < 0)) throw new ThocError("invalid_argument", `replica record: bad size ${rec.size}`);
  if (rec.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(rec.sha256)) throw new ThocError("invalid_argument", "replica record: sha256 must be 64 hex digits");
}

export function validateRecord(rec: ReplicaRecord): void {
  validateHeader(rec);
  if (rec.tombstone && (rec.size !== 0 || rec.sha256 !== EMPTY_SHA256)) throw new ThocError("invalid_argument", "replica record: a tombstone has no body");
}

export function tombstoneRecord(bucket: string, key: string, version: string): ReplicaRecord {
  return { bucket, key, version, tombstone: true, size: 0, sha256: EMPTY_SHA256, meta: "" };
}

export async function* once(...chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const c of chunks) yield c;
}

interface Entry {
  pos: number;
  pkey: string;
  rec: ReplicaRecord;
  body: Buffer[];
}

export class MemoryReplicaStore implements ReplicaStore {
  private readonly entries = new Map<string, Entry>();
  /** Lets tests count what was read from disk. */
  bodyReads = 0;

  async put(w: ReplicaWrite): Promise<PutOutcome> {
    validateHeader(w.header);
    const pkey = placementKey(w.header.bucket, w.header.key);
    const cur = this.entries.get(pkey);
    if (cur && compareHlc(cur.rec.version, w.header.version) >= 0) return { applied: false, current: cur.rec.version };
    const { rec, chunks } = await readVerified(w);
    // Re-check: another put may have committed while this body streamed in.
    const now = this.entries.get(pkey);
    if (now && compareHlc(now.rec.version, rec.version) >= 0) return { applied: false, current: now.rec.version };
    this.entries.set(pkey, { pos: ringHash(pkey), pkey, rec: { ...rec }, body: chunks });
    return { applied: true, current: rec.version };
  }

  async head(bucket: string, key: string): Promise<ReplicaRecord | undefined> {
    const e = this.entries.get(placementKey(bucket, key));
    return e && { ...e.rec };
  }

  async get(bucket: string, key: string, opts: { range?: BodyRange } = {}): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> } | undefined> {
    const e = this.entries.get(placementKey(bucket, key));
    if (!e) return undefined;
    this.bodyReads++;
    if (!opts.range) return { record: { ...e.rec }, body: once(...e.body) };
    const all = Buffer.concat(e.body);
    return { record: { ...e.rec }, body: once(all.subarray(opts.range.start, Math.min(all.length, opts.range.end + 1))) };
  }

  async *listBucket(bucket: string, opts: BucketListOptions = {}): AsyncIterable<ReplicaRecord> {
    const prefix = opts.prefix ?? "";
    const recs = [...this.entries.values()].map((e) => e.rec)
      .filter((r) => r.bucket === bucket && r.key.startsWith(prefix) && (prefix.startsWith(INTERNAL_KEY_PREFIX) || !r.key.startsWith(INTERNAL_KEY_PREFIX)))
      .filter((r) => opts.after === undefined || compareKeys(r.key, opts.after) > 0)
      .sort((a, b) => compareKeys(a.key, b.key));
    let n = 0;
    for (const r of recs) {
      if (opts.limit !== undefined && n++ >= opts.limit) return;
      yield { ...r };
    }
  }

  private sorted(range: PosRange): Entry[] {
    return [...this.entries.values()]
      .filter((e) => subArc(range, 1, e.pos) === 0)
      .sort((a, b) => a.pos - b.pos || (a.pkey < b.pkey ? -1 : a.pkey > b.pkey ? 1 : 0));
  }

  async *list(range: PosRange, opts: { after?: { pos: number; pkey: string }; limit?: number } = {}): AsyncIterable<ReplicaRecord> {
    let n = 0;
    const after = opts.after;
    for (const e of this.sorted(range)) {
      if (after && (e.pos < after.pos || (e.pos === after.pos && e.pkey <= after.pkey))) continue;
      if (opts.limit !== undefined && n >= opts.limit) return;
      n++;
      yield { ...e.rec };
    }
  }

  async digest(range: PosRange, parts: number): Promise<RangeDigest[]> {
    const hashes = Array.from({ length: parts }, () => ({ h: createHash("sha256"), count: 0 }));
    for (const e of this.sorted(range)) {
      const i = subArc(range, parts, e.pos);
      hashes[i]!.h.update(entryLine(e.rec));
      hashes[i]!.count++;
    }
    return hashes.map(({ h, count }) => ({ hash: count ? h.digest("hex") : "", count }));
  }

  async digestArcs(arcs: readonly PosRange[]): Promise<RangeDigest[]> {
    const d = new ArcIndex(arcs).digester();
    for (const e of this.sorted({ start: 0, end: 0, whole: true })) d.add(e.pos, e.rec);
    return d.result();
  }

  async drop(bucket: string, key: string, version: string): Promise<boolean> {
    const pkey = placementKey(bucket, key);
    if (this.entries.get(pkey)?.rec.version !== version) return false;
    this.entries.delete(pkey);
    return true;
  }

  /** Every record, for tests and small listings. */
  records(): ReplicaRecord[] {
    return this.sorted({ start: 0, end: 0, whole: true }).map((e) => ({ ...e.rec }));
  }

  async close(): Promise<void> {}
}
