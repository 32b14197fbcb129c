/**
 * The file half of the local blob store. A body is streamed into
 * <root>/tmp/<id> while it is hashed, fdatasync'd, then renamed to
 * <root>/data/g<generation>/<id[0..2]>/<id> and the directory fsync'd; only
 * then does the caller commit metadata that points at it. Files are
 * immutable once placed, named by a random id (one file per stored version or
 * part), and removed only after the metadata that referenced them is gone.
 *
 * The generation (how many times the data dir has been started) in the path
 * bounds crash recovery: a file that was placed but never committed can only
 * be in the directory of a generation that did not stop cleanly.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { ThocError } from "../../errors/index.js";
import { BodyHasher, crc32, type BodyDigests } from "./hash.js";
import { OffloadHasher } from "./hash-pool.js";
import { READ_BUFFER, readBuffer } from "./read-buffers.js";
import type { ChecksumAlgorithm } from "./types.js";

/** One immutable stored file: a whole single-PUT object or one part. */
export interface Segment {
  id: string;
  /** Relative to the blob root, e.g. data/g3/ab/ab12... */
  path: string;
  size: number;
  /** Integrity CRC-32 of the file's bytes. */
  crc: number;
  /** Small bodies live in LevelDB beside their metadata (one fsync instead of three); path is then "". */
  inline?: true;
}

/** A received body: in a synced temp file, or (small ones) in memory. */
export interface Staged { id: string; tmpPath?: string; inline?: Buffer; digests: BodyDigests }

/** Writes are handed to the kernel in batches of this many bytes (one writev). */
const WRITE_BATCH = 1 << 20;
/** Batches of a large body being written at once (each holds its socket chunks until written). */
const WRITES_IN_FLIGHT = 4;
/**
 * Background fdatasync once this many new bytes are written (the kernel alone
 * would hold gigabytes dirty until the final fdatasync, and receiving and the
 * flush would then run one after the other). Small, so the final fdatasync
 * that the client waits for flushes little: 64 MiB PUTs, c=1, measured
 * 337 / 368 / 391 MB/s at 16 / 8 / 4 MiB (means of 3; the final flush 20–25 ms
 * at 16 MiB, 0–4 ms at 4 MiB).
 */
const SYNC_EVERY = 4 << 20;
/** Bodies announced at least this large hash on worker threads (hash-pool.ts). */
const OFFLOAD_MIN = 4 << 20;

export function dataLoss(seg: Segment, why: string): ThocError {
  return new ThocError("data_loss",
    `stored data of blob ${seg.id} is damaged (${why}); the object must be restored from a replica or re-uploaded`,
    { s3Code: "InternalError", blob: seg.path });
}

/** writev of bufs at pos, finishing a short write (rare on files, but not excluded). */
async function writeAll(fh: FileHandle, bufs: Uint8Array[], pos: number, n: number): Promise<void> {
  const { bytesWritten } = await fh.writev(bufs, pos);
  if (bytesWritten >= n) return;
  const rest = Buffer.concat(bufs).subarray(bytesWritten);
  for (let off = 0; off < rest.length;) off += (await fh.write(rest, off, rest.length - off, pos + bytesWritten + off)).bytesWritten;
}

/**
 * Background fdatasync of a file being written, once SYNC_EVERY new bytes
 * are down, one at a time, so the disk writes back while the rest of the
 * body is still arriving and being hashed.
 */
class Syncer {
  private unsynced = 0;
  private running?: Promise<void>;
  private err: unknown;
  private stopped = false;

  wrote(fh: FileHandle, n: number): void {
    this.unsynced += n;
    if (this.running || this.err !== undefined || this.stopped || this.unsynced < SYNC_EVERY) return;
    this.unsynced = 0;
    this.running = fh.datasync().then(() => { this.running = undefined; this.wrote(fh, 0); }, (e) => { this.err = e; this.running = undefined; });
  }

  /** The final, durable fdatasync (after the background one, whose failure it reports). */
  async last(fh: FileHandle): Promise<void> {
    this.stopped = true;
    await this.running;
    if (this.err !== undefined) throw this.err;
    await fh.datasync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

export class BlobFiles {
  readonly tmpDir: string;
  readonly dataDir: string;
  private readonly genDir: string;
  private readonly made = new Map<string, Promise<void>>();
  private readonly dirSyncs = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  constructor(readonly root: string, readonly generation: number) {
    this.tmpDir = path.join(root, "tmp");
    this.dataDir = path.join(root, "data");
    this.genDir = path.join(this.dataDir, `g${generation}`);
  }

  /** Creates the directories and empties tmp/ (nothing is in flight at start). */
  async init(): Promise<number> {
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.dataDir, { recursive: true });
    const left = await readdir(this.tmpDir);
    await Promise.all(left.map((f) => rm(path.join(this.tmpDir, f), { force: true, recursive: true })));
    return left.length;
  }

  abs(rel: string): string {
    return path.join(this.root, rel);
  }

  /**
   * Streams body into a new temp file, hashing as it goes, and fdatasyncs it.
   * Memory stays at a few MiB whatever the size. The temp file is removed if
   * anything fails.
   */
  async stage(body: AsyncIterable<Uint8Array>, algorithms: Iterable<ChecksumAlgorithm>, inlineMax = 0, sizeHint = 0): Promise<Staged> {
    const id = randomBytes(12).toString("hex");
    const tmpPath = path.join(this.tmpDir, id);
    if (sizeHint >= OFFLOAD_MIN && sizeHint > inlineMax) return this.stageLarge(body, algorithms, id, tmpPath);
    const hasher = new BodyHasher(algorithms);
    // Bodies up to inlineMax stay in memory; the first byte beyond opens the temp file.
    let fh: FileHandle | undefined;
    let pos = 0;
    let batch: Uint8Array[] = [];
    let batchLen = 0;
    let writing: Promise<unknown> | undefined;
    const sync = new Syncer();
    const flush = async () => {
      if (!fh) return;
      const f = fh;
      await writing;
      const bufs = batch, n = batchLen;
      writing = bufs.length ? writeAll(f, bufs, pos, n).then(() => sync.wrote(f, n)) : undefined;
      pos += n;
      batch = [];
      batchLen = 0;
    };
    try {
      for await (const chunk of body) {
        if (chunk.length === 0) continue;
        hasher.update(chunk);
        batch.push(chunk);
        batchLen += chunk.length;
        if (!fh) {
          if (hasher.size <= inlineMax) continue;
          fh = await open(tmpPath, "wx", 0o600);
        }
        if (batchLen >= WRITE_BATCH) await flush();
      }
      if (!fh) return { id, inline: Buffer.concat(batch), digests: hasher.finish() };
      await flush();
      await writing;
      await sync.last(fh);
      await fh.close();
    } catch (err) {
      await writing?.catch(() => {});
      await sync.stop();
      if (fh) {
        await fh.close().catch(() => {});
        await unlink(tmpPath).catch(() => {});
      }
      throw err;
    }
    return { id, tmpPath, digests: hasher.finish() };
  }

  /**
   * A body announced as large: CRC'd here as it arrives, written in 1 MiB
   * writev batches with several in flight, and hashed by worker threads that
   * read each range back once it is written (hash-pool.ts).
   */
  private async stageLarge(body: AsyncIterable<Uint8Array>, algorithms: Iterable<ChecksumAlgorithm>, id: string, tmpPath: string): Promise<Staged> {
    // Read-write: the hashing workers read the bytes back through this descriptor.
    const fh = await open(tmpPath, "wx+", 0o600);
    const sync = new Syncer();
    const hasher = new OffloadHasher(algorithms, fh.fd);
    let size = 0, crc = 0, pos = 0;
    let batch: Uint8Array[] = [];
    let batchLen = 0;
    // Writes run in parallel; their ranges reach the hasher in file order.
    const inflight: Promise<void>[] = [];
    let reported: Promise<void> = Promise.resolve();
    let failed: unknown;
    const submit = () => {
      const bufs = batch, n = batchLen, at = pos;
      batch = [];
      batchLen = 0;
      pos += n;
      const w = writeAll(fh, bufs, at, n);
      reported = Promise.all([w, reported]).then(() => {
        hasher.written(at, n);
        sync.wrote(fh, n);
      });
      const settled = reported.catch((e: unknown) => { failed ??= e; });
      inflight.push(settled);
    };
    let digests: BodyDigests;
    try {
      for await (const chunk of body) {
        if (chunk.length === 0) continue;
        size += chunk.length;
        crc = crc32(chunk, crc);
        batch.push(chunk);
        batchLen += chunk.length;
        if (batchLen >= WRITE_BATCH) {
          submit();
          if (inflight.length > WRITES_IN_FLIGHT) await inflight.shift();
          const wait = hasher.ready();
          if (wait) await wait;
          if (failed) throw failed;
          hasher.check();
        }
      }
      if (batchLen) submit();
      await Promise.all(inflight);
      if (failed) throw failed;
      digests = await hasher.finish(size, crc);
      await sync.last(fh);
      await fh.close();
    } catch (err) {
      await Promise.all(inflight);
      await hasher.abandon();
      await sync.stop();
      await fh.close().catch(() => {});
      await unlink(tmpPath).catch(() => {});
      throw err;
    }
    return { id, tmpPath, digests };
  }

  async discard(s: Staged): Promise<void> {
    if (s.tmpPath) await unlink(s.tmpPath).catch(() => {});
  }

  /** Moves a staged file to its final place and makes the rename durable. */
  async place(s: Staged): Promise<Segment> {
    if (!s.tmpPath) return { id: s.id, path: "", size: s.digests.size, crc: s.digests.crc, inline: true };
    const shard = path.join(this.genDir, s.id.slice(0, 2));
    await this.ensureDir(shard);
    const rel = path.relative(this.root, path.join(shard, s.id));
    try {
      await rename(s.tmpPath, this.abs(rel));
      await this.syncDir(shard);
    } catch (err) {
      await unlink(s.tmpPath).catch(() => {});
      await unlink(this.abs(rel)).catch(() => {});
      throw err;
    }
    return { id: s.id, path: rel, size: s.digests.size, crc: s.digests.crc };
  }

  async remove(seg: Segment): Promise<void> {
    if (seg.inline) return;
    await unlink(this.abs(seg.path)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
  }

  /** Generation numbers that have a data directory. */
  async generations(): Promise<number[]> {
    const names = await readdir(this.dataDir).catch(() => [] as string[]);
    return names.filter((n) => /^g\d+$/.test(n)).map((n) => Number(n.slice(1)));
  }

  /** Every file of one generation: [id, relative path]. */
  async listGeneration(gen: number): Promise<[string, string][]> {
    const dir = path.join(this.dataDir, `g${gen}`);
    const out: [string, string][] = [];
    for (const shard of await readdir(dir).catch(() => [] as string[])) {
      for (const f of await readdir(path.join(dir, shard)).catch(() => [] as string[])) {
        out.push([f, path.relative(this.root, path.join(dir, shard, f))]);
      }
    }
    return out;
  }

  /**
   * Reads bytes [start, end] of a segment. When the read covers the whole
   * segment its CRC is checked, and the last chunk is held back until the
   * check passes: a damaged file is never delivered complete, so a client
   * sees a failed transfer, not wrong bytes. Whole 1 MiB chunks come from
   * read-buffers.ts: a consumer may hand them back with recycleReadBuffer().
   */
  async *read(seg: Segment, start: number, end: number, onDamage?: (e: ThocError) => void, inline?: Uint8Array): AsyncGenerator<Uint8Array> {
    const verify = start === 0 && end === seg.size - 1;
    if (end < start) return;
    const fail = (why: string) => {
      const e = dataLoss(seg, why);
      onDamage?.(e);
      return e;
    };
    if (seg.inline) {
      // Small enough to check before the first byte leaves, range or not.
      if (!inline) throw fail("inline data missing");
      if (inline.length !== seg.size || crc32(inline) !== seg.crc) throw fail("checksum mismatch");
      yield inline.subarray(start, end + 1);
      return;
    }
    let fh;
    try {
      fh = await open(this.abs(seg.path), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw fail("file missing");
      throw err;
    }
    try {
      if (verify && (await fh.stat()).size !== seg.size) throw fail("size differs from the recorded size");
      let pos = start;
      let crc = 0;
      let held: Uint8Array | undefined;
      const readAt = async (p: number) => {
        const n = Math.min(READ_BUFFER, end - p + 1);
        const buf = n === READ_BUFFER ? readBuffer() : Buffer.allocUnsafe(n);
        const { bytesRead } = await fh.read(buf, 0, n, p);
        return bytesRead < n ? buf.subarray(0, bytesRead) : buf;
      };
      // One read ahead, so the disk works while the consumer sends.
      let next: Promise<Buffer> | undefined = readAt(pos);
      while (next) {
        const b = await next;
        if (b.length === 0) throw fail("file shorter than recorded");
        pos += b.length;
        next = pos <= end ? readAt(pos) : undefined;
        next?.catch(() => {});
        if (verify) crc = crc32(b, crc);
        if (held) yield held;
        held = b;
      }
      if (verify && crc !== seg.crc) throw fail("checksum mismatch");
      if (held) yield held;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  private ensureDir(dir: string): Promise<void> {
    let p = this.made.get(dir);
    if (!p) {
      p = this.makeDir(dir);
      this.made.set(dir, p);
      p.catch(() => this.made.delete(dir));
    }
    return p;
  }

  private async makeDir(dir: string): Promise<void> {
    const created = await mkdir(dir, { recursive: true });
    if (created) {
      // New directories must be durable entries of their parents too.
      let d = dir;
      while (d.length >= created.length && d !== this.root) {
        d = path.dirname(d);
        await this.syncDir(d);
      }
    }
  }

  /**
   * fsyncs a directory, coalescing concurrent callers: a caller joins the next
   * fsync that starts after its own rename, so many small PUTs share one.
   */
  syncDir(dir: string): Promise<void> {
    const st = this.dirSyncs.get(dir);
    const run = async () => {
      const fh = await open(dir, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    };
    if (!st) {
      const running = run().finally(() => this.afterSync(dir));
      this.dirSyncs.set(dir, { running });
      return running;
    }
    st.next ??= st.running.catch(() => {}).then(run);
    return st.next;
  }

  private afterSync(dir: string): void {
    const st = this.dirSyncs.get(dir);
    if (!st) return;
    if (st.next) {
      const running = st.next.finally(() => this.afterSync(dir));
      this.dirSyncs.set(dir, { running });
      running.catch(() => {});
    } else {
      this.dirSyncs.delete(dir);
    }
  }
}
