/**
 * The durable ReplicaStore: records in the node's LevelDB, bodies in files
 * (durable-files.ts) or, when small, inline in LevelDB. Same semantics as
 * MemoryReplicaStore, which the tests hold it to (digests must match across
 * a durable and a memory node). Layout, all sublevels of [name, ...]:
 *
 *   k  <bucket>\0<key>            KeyRow: the record + where its body is
 *   p  <pos: 12 hex><placement>   ReplicaRecord (the ring-order index)
 *   f  <fileId>                   "<bucket>\0<key>": the file is referenced
 *   d  <bodyId>                   bytes of a small body kept inline
 *
 * Keys are UTF-8 in LevelDB, which orders bytes: `k` lists a bucket in
 * compareKeys order (bucket names hold neither "/" nor "\0"), and `p` in
 * position order (fixed-width hex). Every change of a key is one fsync'd
 * batch over all four, made after its body file is durable in place; a
 * replaced file is removed after the commit, and files no `f` row names
 * (a crash between rename and commit, or between commit and unlink) are
 * swept at open.
 */
import { createHash } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import type { LocalStore } from "../../store/index.js";
import { ArcDigestCache } from "./arc-digests.js";
import { prefixEnd } from "./listing.js";
import { ReplicaFiles, type StagedBody } from "./durable-files.js";
import { compareHlc } from "../../cluster/index.js";
import {
  INTERNAL_KEY_PREFIX, entryLine, once, subArc, validateHeader, validateRecord, compareKeys,
  type BodyRange, type BucketListOptions, type PosRange, type PutOutcome, type RangeDigest, type ReplicaRecord, type ReplicaStore, type ReplicaWrite,
} from "./replica-store.js";
import { RING_SIZE, placementKey, ringHash } from "./ring.js";

export interface DurableReplicaStoreOptions {
  store: LocalStore;
  /** Directory of the body files (created if missing). */
  dir: string;
  /** LevelDB sublevel namespace, e.g. "replicas" or "hint-<nodeId>". */
  name: string;
  /** Bodies up to this many bytes live in LevelDB (one fsync instead of three). Default 64 KiB. */
  inlineMax?: number;
  /** Called whenever a read finds stored data damaged (metrics, repair). */
  onDataLoss?: (e: ThocError) => void;
  /** objectstore.directWrites: body files written with O_DIRECT where the filesystem takes it. Default true. */
  directWrites?: boolean;
}

/** One operation of an atomic multi-sublevel batch on the root db. */
export type BatchOp = { type: "put"; sublevel: object; key: string; value: unknown } | { type: "del"; sublevel: object; key: string };

interface KeyRow {
  r: ReplicaRecord;
  /** Absent for tombstones and empty bodies. */
  b?: { id: string; inline?: true };
  /**
   * Set once a read found this body damaged (bit rot, truncation, missing
   * file): later reads refuse at once, before any byte, so the coordinator
   * reads another replica, and a put of the same version may replace it
   * (read repair). Rows written before this field existed simply lack it.
   */
  d?: string;
}

const SEP = "\u0000";


/** A listing reads at most this many rows, or this many bytes of them, in one LevelDB call. */
const LIST_BATCH_MAX = 1000;
const LIST_READ_BYTES = 1 << 20;

const posKey = (pos: number) => pos.toString(16).padStart(12, "0");

function ringKey(bucket: string, key: string): string {
  const pkey = placementKey(bucket, key);
  return posKey(ringHash(pkey)) + pkey;
}

function layout(db: LocalStore["db"], name: string) {
  return {
    byKey: db.sublevel<string, KeyRow>([name, "k"], { valueEncoding: "json" }),
    byPos: db.sublevel<string, ReplicaRecord>([name, "p"], { valueEncoding: "json" }),
    refs: db.sublevel<string, string>([name, "f"], { valueEncoding: "utf8" }),
    inline: db.sublevel<string, Uint8Array>([name, "d"], { valueEncoding: "view" }),
  };
}
type Layout = ReturnType<typeof layout>;

export class DurableReplicaStore implements ReplicaStore {
  readonly files: ReplicaFiles;
  /** What the last open found: temp files of interrupted writes, files no record referenced. */
  readonly recovery = { tmpFiles: 0, orphanFiles: 0 };
  private readonly db: LocalStore["db"];
  private readonly l: Layout;
  private readonly inlineMax: number;
  private readonly locks = new Map<string, Promise<void>>();
  /** key → version of bodies found damaged whose row is not marked yet. */
  private readonly damagedNow = new Map<string, string>();
  private readonly commits = new Set<Promise<unknown>>();
  /** Unlinks of replaced bodies under way (close() waits for them). */
  private readonly removing = new Set<Promise<void>>();
  private readonly ready: Promise<void>;
  private closed = false;
  /** Root digests of arcs until the next commit (anti-entropy of an idle node scans nothing). */
  private readonly arcs = new ArcDigestCache();

  private constructor(private readonly o: DurableReplicaStoreOptions, private readonly alsoCommit?: () => BatchOp[]) {
    this.db = o.store.db;
    this.l = layout(this.db, o.name);
    this.inlineMax = o.inlineMax ?? 64 << 10;
    this.files = new ReplicaFiles(o.dir, o.directWrites ?? true);
    this.ready = this.recover();
    this.ready.catch(() => {});
  }

  static async open(o: DurableReplicaStoreOptions): Promise<DurableReplicaStore> {
    const s = new DurableReplicaStore(o);
    await s.ready;
    return s;
  }

  /**
   * A store whose recovery runs in the background (every operation waits for
   * it), for HintStore.for(), which must answer synchronously. `alsoCommit`
   * adds operations to every put's batch. @internal
   */
  static opening(o: DurableReplicaStoreOptions, alsoCommit?: () => BatchOp[]): { store: DurableReplicaStore; ready: Promise<void> } {
    const s = new DurableReplicaStore(o, alsoCommit);
    return { store: s, ready: s.ready };
  }

  private async recover(): Promise<void> {
    this.recovery.tmpFiles = await this.files.init();
    const files = await this.files.placed();
    for (let i = 0; i < files.length; i += 1000) {
      const part = files.slice(i, i + 1000);
      const refs = await this.l.refs.getMany(part.map((x) => x.id));
      for (let j = 0; j < part.length; j++) {
        if (refs[j] !== undefined && !part[j]!.misplaced) continue;
        await this.files.remove(part[j]!.id, part[j]!.file);
        this.recovery.orphanFiles++;
      }
    }
  }

  private async usable(): Promise<void> {
    await this.ready;
    if (this.closed) throw new ThocError("unavailable", `replica store ${this.o.name} is closed`);
  }

  /**
   * A key's row, read synchronously. Rows are a few hundred bytes that LevelDB
   * finds in its memtable or block cache in microseconds, while an async get
   * is two thread-pool hops: 0.1–0.3 ms of CPU and of latency each on a loaded
   * 2-core machine, and 11% of the agents' CPU in a 3-node 4 KiB PUT profile
   * (two to three reads per replica write). The cost of a cold read is one
   * page-cache (or disk) read on the event loop.
   */
  private row(k: string): KeyRow | undefined {
    return this.l.byKey.getSync(k);
  }

  /** Runs fn alone for this key (a check-then-commit must not interleave with another). */
  private async locked<T>(k: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(k) ?? Promise.resolve();
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const mine = prev.then(() => gate);
    this.locks.set(k, mine);
    await prev;
    const run = fn();
    this.commits.add(run);
    try {
      return await run;
    } finally {
      this.commits.delete(run);
      release();
      if (this.locks.get(k) === mine) this.locks.delete(k);
    }
  }

  private commit(ops: BatchOp[]): Promise<void> {
    // Through the root db: `sync` (fsync of the log) is an option of the root's batch.
    this.arcs.changed();
    return this.db.batch(ops as never, { sync: true }).finally(() => this.arcs.changed());
  }

  /** The stored row wins over an incoming version unless that is newer, or the same one repairing a damaged body. */
  private keeps(k: string, row: KeyRow, version: string): boolean {
    const c = compareHlc(row.r.version, version);
    return c > 0 || (c === 0 && !row.d && this.damagedNow.get(k) !== version);
  }

  async put(w: ReplicaWrite): Promise<PutOutcome> {
    const hd = w.header;
    validateHeader(hd);
    await this.usable();
    const k = hd.bucket + SEP + hd.key;
    const cur = this.row(k);
    if (cur && this.keeps(k, cur, hd.version)) return { applied: false, current: cur.r.version };
    const staged = await this.files.stage(w.body, this.inlineMax, hd.size ?? Infinity, () => mismatch(hd, `more than the declared ${hd.size} bytes`), !w.local);
    if (w.local) staged.sha256 = w.expected().sha256;
    let state: "staged" | "placed" | "committed" = "staged";
    let old: KeyRow["b"];
    try {
      const rec = verified(w, staged);
      // Re-check before the fsyncs of placing: a newer put may have committed while this body streamed in.
      // A body kept inline has no placing to spare (the check under the lock below decides): one read less per small write.
      const mid = staged.inline ? undefined : this.row(k);
      if (mid && this.keeps(k, mid, rec.version)) return { applied: false, current: mid.r.version };
      await this.files.place(staged);
      state = "placed";
      return await this.locked(k, async () => {
        const now = this.row(k);
        if (now && this.keeps(k, now, rec.version)) return { applied: false, current: now.r.version };
        const body = staged.size === 0 ? undefined : staged.inline ? { id: staged.id, inline: true as const } : { id: staged.id };
        await this.commit([
          { type: "put", sublevel: this.l.byKey, key: k, value: { r: rec, ...(body ? { b: body } : {}) } satisfies KeyRow },
          { type: "put", sublevel: this.l.byPos, key: ringKey(rec.bucket, rec.key), value: rec },
          ...this.bodyOps("put", body, k, staged.inline),
          ...this.bodyOps("del", now?.b, k),
          ...(this.alsoCommit?.() ?? []),
        ]);
        state = "committed";
        old = now?.b;
        // A new body (a newer version, or the same one repaired): the in-memory damage mark is done.
        this.damagedNow.delete(k);
        return { applied: true, current: rec.version };
      });
    } finally {
      if (state === "staged") await this.files.discard(staged);
      else if (state === "placed" && staged.tmpPath) await this.files.remove(staged.id).catch(() => {});
      if (old && !old.inline) this.removeLater(old.id);
    }
  }

  private bodyOps(type: "put" | "del", b: KeyRow["b"], k: string, data?: Buffer): BatchOp[] {
    if (!b) return [];
    const sub = b.inline ? this.l.inline : this.l.refs;
    return type === "del" ? [{ type, sublevel: sub, key: b.id }] : [{ type, sublevel: sub, key: b.id, value: b.inline ? data! : k }];
  }

  async head(bucket: string, key: string): Promise<ReplicaRecord | undefined> {
    await this.usable();
    return this.row(bucket + SEP + key)?.r;
  }

  async get(bucket: string, key: string, opts: { range?: BodyRange } = {}): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> } | undefined> {
    await this.usable();
    const k = bucket + SEP + key;
    const row = this.row(k);
    if (!row) return undefined;
    const rec = row.r;
    const why = row.d ?? (this.damagedNow.get(k) === rec.version ? "found damaged by an earlier read" : undefined);
    if (why) throw this.dataLoss(rec, why, false);
    if (!row.b) return { record: rec, body: once() };
    const start = Math.max(0, opts.range?.start ?? 0);
    const end = Math.min(rec.size - 1, opts.range?.end ?? Infinity);
    // Verified whenever the read covers the whole body, asked for as a range or not.
    const verify = start === 0 && end === rec.size - 1 ? { size: rec.size, sha256: rec.sha256 } : undefined;
    const damaged = (why: string) => this.dataLoss(rec, why, true);
    // The body may be replaced (and its file removed) between this read and the first byte: only the same version missing is a loss.
    const missing = async () => {
      const now = this.row(k);
      if (now?.b?.id === row.b!.id) return damaged(row.b!.inline ? "inline body missing" : "file missing");
      return new ThocError("aborted", `replica ${bucket}/${key} version ${rec.version} was replaced while being read; read it again`, { bucket, key, version: rec.version });
    };
    const body = row.b.inline ? this.readInline(row.b.id, start, end, { verify, missing, damaged }) : this.files.read(row.b.id, start, end, { verify, missing, damaged });
    return { record: rec, body };
  }

  private async *readInline(id: string, start: number, end: number, o: { verify?: { size: number; sha256: string }; missing: () => Promise<Error>; damaged: (why: string) => Error }): AsyncGenerator<Uint8Array> {
    const data = this.l.inline.getSync(id);
    if (!data) throw await o.missing();
    if (o.verify && (data.byteLength !== o.verify.size || createHash("sha256").update(data).digest("hex") !== o.verify.sha256)) throw o.damaged("inline body does not match its sha256");
    if (end >= start) yield data.subarray(start, end + 1);
  }

  /** The error for a damaged body; `found` (first detection) counts it and marks the row so later reads refuse at once. */
  private dataLoss(rec: ReplicaRecord, why: string, found: boolean): ThocError {
    const e = new ThocError("data_loss",
      `stored replica of ${rec.bucket}/${rec.key} version ${rec.version} is damaged (${why}); it must be repaired from another replica`,
      { bucket: rec.bucket, key: rec.key, version: rec.version });
    if (found) {
      this.o.onDataLoss?.(e);
      // In memory at once (the next read must not wait for the commit), in the row for after a restart.
      // The memory mark stays until a put replaces the body: a read that fetched the row before the
      // mark committed must still find it (dropping it at commit let such a read serve the damaged body).
      const k = rec.bucket + SEP + rec.key;
      this.damagedNow.set(k, rec.version);
      void this.markDamaged(rec, why).catch(() => { /* the next read finds it again */ });
    }
    return e;
  }

  private async markDamaged(rec: ReplicaRecord, why: string): Promise<void> {
    if (this.closed) return;
    const k = rec.bucket + SEP + rec.key;
    await this.locked(k, async () => {
      const row = this.row(k);
      if (row?.r.version !== rec.version || row.d) return;
      await this.commit([{ type: "put", sublevel: this.l.byKey, key: k, value: { ...row, d: why } satisfies KeyRow }]);
    });
  }

  async *listBucket(bucket: string, opts: BucketListOptions = {}): AsyncIterable<ReplicaRecord> {
    await this.usable();
    const prefix = opts.prefix ?? "";
    const base = bucket + SEP;
    const internal = prefix.startsWith(INTERNAL_KEY_PREFIX);
    const from = opts.after !== undefined && compareKeys(opts.after, prefix) >= 0 ? { gt: base + opts.after } : { gte: base + prefix };
    const end = prefixEnd(base + prefix);
    // Rows come from LevelDB in batches, each one thread-pool hop: iterating one row at a time cost a hop per
    // ~35 rows (classic-level's 16 KiB read-ahead), 20-90 ms for a 1,000-part upload's records on a busy node.
    // highWaterMarkBytes is classic-level's own option, which the sublevel passes on.
    const range: { gt?: string; gte?: string; lt?: string; highWaterMarkBytes: number } = { ...from, ...(end !== undefined ? { lt: end } : {}), highWaterMarkBytes: LIST_READ_BYTES };
    const it = this.l.byKey.iterator(range);
    try {
      let n = 0;
      // Small first (a page of a listing may need a few rows), then larger.
      let want = 64;
      for (;;) {
        const room = opts.limit !== undefined ? opts.limit - n : Infinity;
        if (room <= 0) return;
        const rows = await it.nextv(Math.min(want, room));
        if (!rows.length) return;
        want = Math.min(want * 4, LIST_BATCH_MAX);
        for (const [k, row] of rows) {
          if (!k.startsWith(base + prefix)) return;
          if (!internal && k.startsWith(base + INTERNAL_KEY_PREFIX, 0)) {
            // Skip every internal key (multipart parts can be many) with one seek; the rest of this batch is before it.
            it.seek(base + "\u0002");
            break;
          }
          n++;
          yield row.r;
        }
      }
    } finally {
      await it.close();
    }
  }

  /**
   * Records of the range in MemoryReplicaStore's order: by position, then
   * placement key as JS compares strings (LevelDB orders equal positions by
   * bytes, so a run of equal positions, practically never more than one, is re-sorted).
   */
  private async *ordered(range: PosRange, from = 0): AsyncGenerator<{ pos: number; pkey: string; rec: ReplicaRecord }> {
    const len = range.whole ? RING_SIZE : (range.end - range.start + RING_SIZE) % RING_SIZE;
    if (len === 0) return;
    const arcs: [number, number][] = range.whole ? [[0, RING_SIZE - 1]]
      : range.start < range.end ? [[range.start + 1, range.end]]
      : [[0, range.end], [range.start + 1, RING_SIZE - 1]];
    for (const [lo0, hi] of arcs) {
      const lo = Math.max(lo0, from);
      if (lo > hi) continue;
      let run: { pos: number; pkey: string; rec: ReplicaRecord }[] = [];
      for await (const [key, rec] of this.l.byPos.iterator({ gte: posKey(lo), ...(hi < RING_SIZE - 1 ? { lt: posKey(hi + 1) } : {}) })) {
        const pos = parseInt(key.slice(0, 12), 16);
        if (run.length && run[0]!.pos !== pos) {
          yield* sortRun(run);
          run = [];
        }
        run.push({ pos, pkey: key.slice(12), rec });
      }
      yield* sortRun(run);
    }
  }

  async *list(range: PosRange, opts: { after?: { pos: number; pkey: string }; limit?: number } = {}): AsyncIterable<ReplicaRecord> {
    await this.usable();
    const after = opts.after;
    let n = 0;
    for await (const e of this.ordered(range, after?.pos)) {
      if (subArc(range, 1, e.pos) !== 0) continue;
      if (after && (e.pos < after.pos || (e.pos === after.pos && e.pkey <= after.pkey))) continue;
      if (opts.limit !== undefined && n >= opts.limit) return;
      n++;
      yield e.rec;
    }
  }

  async digest(range: PosRange, parts: number): Promise<RangeDigest[]> {
    await this.usable();
    const hashes = Array.from({ length: parts }, () => ({ h: createHash("sha256"), count: 0 }));
    for await (const e of this.ordered(range)) {
      const i = subArc(range, parts, e.pos);
      if (i < 0) continue;
      hashes[i]!.h.update(entryLine(e.rec));
      hashes[i]!.count++;
    }
    return hashes.map(({ h, count }) => ({ hash: count ? h.digest("hex") : "", count }));
  }

  async digestArcs(arcs: readonly PosRange[]): Promise<RangeDigest[]> {
    await this.usable();
    return this.arcs.digests(arcs, async (add) => {
      for await (const e of this.ordered({ start: 0, end: 0, whole: true })) add(e.pos, e.rec);
    });
  }

  async drop(bucket: string, key: string, version: string): Promise<boolean> {
    await this.usable();
    const k = bucket + SEP + key;
    let gone: KeyRow["b"];
    const dropped = await this.locked(k, async () => {
      const row = this.row(k);
      if (row?.r.version !== version) return false;
      await this.commit([
        { type: "del", sublevel: this.l.byKey, key: k },
        { type: "del", sublevel: this.l.byPos, key: ringKey(bucket, key) },
        ...this.bodyOps("del", row.b, k),
      ]);
      gone = row.b;
      return true;
    });
    if (gone && !gone.inline) this.removeLater(gone.id);
    return dropped;
  }

  /** Counts by a scan (for metrics). */
  async stats(): Promise<{ records: number; tombstones: number; bytes: number }> {
    await this.usable();
    const s = { records: 0, tombstones: 0, bytes: 0 };
    for await (const rec of this.l.byPos.values()) {
      s.records++;
      if (rec.tombstone) s.tombstones++;
      s.bytes += rec.size;
    }
    return s;
  }

  /** True when the store holds no record (cheap: one key). */
  async empty(): Promise<boolean> {
    await this.usable();
    return (await this.l.byPos.keys({ limit: 1 }).all()).length === 0;
  }

  /**
   * Unlinks the file of a body no committed row points at any more, in the
   * background: unlinking 64 MiB costs ~45 ms on ext4, which an overwrite or
   * a delete should not wait for. A file left by a crash or a failed unlink
   * is swept at the next open (its `f` row is gone).
   */
  private removeLater(id: string): void {
    const p: Promise<void> = this.files.remove(id).catch(() => {}).finally(() => this.removing.delete(p));
    this.removing.add(p);
  }

  /** Resolves once the background unlinks of replaced bodies have run (tests, close). */
  async settled(): Promise<void> {
    while (this.removing.size) await Promise.allSettled([...this.removing]);
  }

  /** Stops taking operations and waits for commits and unlinks under way (bodies still streaming are abandoned). */
  async close(): Promise<void> {
    this.closed = true;
    await this.ready.catch(() => {});
    await Promise.allSettled([...this.commits]);
    await this.settled();
  }
}

function* sortRun<T extends { pkey: string }>(run: T[]): Generator<T> {
  if (run.length > 1) run.sort((a, b) => (a.pkey < b.pkey ? -1 : a.pkey > b.pkey ? 1 : 0));
  yield* run;
}

/** The checks of readVerified (replica-store.ts), same rules and messages, on a staged body. */
function verified(w: ReplicaWrite, s: StagedBody): ReplicaRecord {
  const hd = w.header;
  const n = s.size;
  const exp = w.expected();
  if (n !== exp.size || (hd.size !== undefined && hd.size !== n)) throw mismatch(hd, `${n} bytes, declared ${hd.size ?? exp.size}`);
  if (s.sha256 !== exp.sha256 || (hd.sha256 !== undefined && hd.sha256 !== s.sha256)) throw mismatch(hd, `sha256 ${s.sha256}, declared ${hd.sha256 ?? exp.sha256}`);
  const rec: ReplicaRecord = {
    bucket: hd.bucket, key: hd.key, version: hd.version, tombstone: hd.tombstone, size: n, sha256: s.sha256, meta: exp.meta !== undefined ? exp.meta : hd.meta,
  };
  validateRecord(rec);
  return rec;
}

function mismatch(rec: Pick<ReplicaRecord, "bucket" | "key" | "version">, what: string): ThocError {
  return new ThocError("data_loss", `replica body of ${rec.bucket}/${rec.key} version ${rec.version} does not match its header (${what}); nothing stored`,
    { bucket: rec.bucket, key: rec.key, version: rec.version });
}
