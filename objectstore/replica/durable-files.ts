/**
 * The object store's one durable file writer: the body files of a
 * DurableReplicaStore (the replicas and the hints of every node, --dev
 * included). A body streams into <root>/tmp/<id> while it is hashed
 * (SHA-256, the replica protocol's own digest) and written in batches (past
 * the page cache where it can: direct-file.ts; else with a background
 * fdatasync), is fdatasync'd, then renamed to <root>/<id[0..2]>/<id>
 * and the directory fsync'd; only then does the store commit a record that
 * points at it. Files are immutable once placed (one per stored version), and
 * a whole read is checked against the SHA-256 again.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from "node:fs/promises";
import { BodyFile, WRITE_BATCH, giveBatch, takeBatch } from "./direct-file.js";
import path from "node:path";
import { READ_BUFFER, readBuffer } from "../blob/index.js";

/** A received body: in a synced temp file, or (small ones) in memory. */
export interface StagedBody {
  id: string;
  size: number;
  sha256: string;
  tmpPath?: string;
  inline?: Buffer;
}

/**
 * Background fdatasync every this many bytes, so the final one, which the
 * client waits for, flushes little (31–48 ms for a 64 MiB body at 32 MiB,
 * 0–4 ms at 4 MiB).
 */
const SYNC_EVERY = 4 << 20;
const ID = /^[0-9a-f]{24}$/;
const SHARD = /^[0-9a-f]{2}$/;

export class ReplicaFiles {
  readonly tmpDir: string;

  /** directWrites: objectstore.directWrites (direct-file.ts). */
  constructor(readonly root: string, private readonly directWrites = true) {
    this.tmpDir = path.join(root, "tmp");
  }

  /** Creates the directories and empties tmp/ (nothing is in flight at open); returns how many were removed. */
  async init(): Promise<number> {
    const created = await mkdir(this.tmpDir, { recursive: true });
    // New directories must be durable entries of their parents.
    for (let d = this.tmpDir; created && d.length >= created.length; d = path.dirname(d)) await syncDir(path.dirname(d));
    const left = await readdir(this.tmpDir);
    await Promise.all(left.map((f) => rm(path.join(this.tmpDir, f), { force: true, recursive: true })));
    return left.length;
  }

  path(id: string): string {
    return path.join(this.root, id.slice(0, 2), id);
  }

  /** Every placed file: its id and path (a file in the wrong shard has no record's path, so it is no placed body). */
  async placed(): Promise<{ id: string; file: string; misplaced: boolean }[]> {
    const out: { id: string; file: string; misplaced: boolean }[] = [];
    for (const shard of await readdir(this.root).catch(() => [] as string[])) {
      if (!SHARD.test(shard)) continue;
      for (const f of await readdir(path.join(this.root, shard)).catch(() => [] as string[])) {
        if (ID.test(f)) out.push({ id: f, file: path.join(this.root, shard, f), misplaced: f.slice(0, 2) !== shard });
      }
    }
    return out;
  }

  /**
   * Streams a body into a temp file (or memory, up to inlineMax bytes) while
   * hashing it, and fdatasyncs the file. Throws tooLong() as soon as more than
   * maxBytes arrive. Memory stays at about two write batches whatever the
   * size; the temp file is removed if anything fails.
   */
  async stage(body: AsyncIterable<Uint8Array>, inlineMax: number, maxBytes: number, tooLong: () => Error, hash = true): Promise<StagedBody> {
    const id = randomBytes(12).toString("hex");
    const tmpPath = path.join(this.tmpDir, id);
    const h = hash ? createHash("sha256") : undefined;
    let n = 0;
    let fh: BodyFile | undefined;
    let pos = 0;
    /** Chunks of a body that may still fit inline (up to inlineMax), before the file is opened. */
    let small: Uint8Array[] = [];
    /** The batch being filled: a pooled buffer, and how much of it is used. */
    let cur: Buffer | undefined;
    let fill = 0;
    let writing: Promise<void> | undefined;
    let syncing: Promise<void> | undefined;
    let syncErr: unknown;
    let lastSync = 0;
    const flush = async (f: BodyFile) => {
      await writing;
      if (syncErr) throw syncErr;
      if (!cur || fill === 0) return;
      const b = cur;
      const len = fill;
      const at = pos;
      pos += len;
      cur = undefined;
      fill = 0;
      writing = f.write(b, len, at).finally(() => giveBatch(b)).then(() => {
        // Direct writes are on the device already: the final fdatasync only has metadata (and the tail) to flush.
        if (f.direct || syncing || pos - lastSync < SYNC_EVERY) return;
        lastSync = pos;
        syncing = f.datasync().then(() => { syncing = undefined; }, (e) => { syncErr = e; syncing = undefined; });
      });
      // Awaited at the next flush; until then a failure must not count as unhandled.
      writing.catch(() => {});
    };
    /** Copies a chunk into the pooled batch buffers, flushing each as it fills (the chunk itself is not kept). */
    const add = async (f: BodyFile, c: Uint8Array) => {
      for (let off = 0; off < c.byteLength;) {
        cur ??= takeBatch();
        const k = Math.min(WRITE_BATCH - fill, c.byteLength - off);
        cur.set(off === 0 && k === c.byteLength ? c : c.subarray(off, off + k), fill);
        fill += k;
        off += k;
        if (fill === WRITE_BATCH) await flush(f);
      }
    };
    try {
      for await (const c of body) {
        if (c.byteLength === 0) continue;
        n += c.byteLength;
        if (n > maxBytes) throw tooLong();
        h?.update(c);
        if (!fh) {
          if (n <= inlineMax) {
            small.push(c);
            continue;
          }
          fh = await BodyFile.create(tmpPath, this.directWrites);
          for (const s of small) await add(fh, s);
          small = [];
        }
        await add(fh, c);
      }
      const sha256 = h ? h.digest("hex") : "";
      if (!fh) return { id, size: n, sha256, inline: Buffer.concat(small) };
      await flush(fh);
      await writing;
      await syncing;
      if (syncErr) throw syncErr;
      await fh.datasync();
      await fh.close();
      fh = undefined;
      return { id, size: n, sha256, tmpPath };
    } catch (err) {
      await writing?.catch(() => {});
      await syncing;
      if (cur) giveBatch(cur);
      if (fh) {
        await fh.close().catch(() => {});
        await unlink(tmpPath).catch(() => {});
      }
      throw err;
    }
  }

  async discard(s: StagedBody): Promise<void> {
    if (s.tmpPath) await unlink(s.tmpPath).catch(() => {});
  }

  /** Moves a staged file to its final place and makes the rename durable. */
  async place(s: StagedBody): Promise<void> {
    if (!s.tmpPath) return;
    const shard = path.join(this.root, s.id.slice(0, 2));
    try {
      // New shard directories must be durable entries of the root too.
      if (await mkdir(shard, { recursive: true })) await syncDir(this.root);
      await rename(s.tmpPath, this.path(s.id));
      await syncDir(shard);
    } catch (err) {
      await unlink(s.tmpPath).catch(() => {});
      await unlink(this.path(s.id)).catch(() => {});
      throw err;
    }
  }

  /** Removes a placed file (by id, or its path); a missing one is fine (a crash after the commit, before the unlink). */
  async remove(id: string, file = this.path(id)): Promise<void> {
    await unlink(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
  }

  /**
   * Reads bytes [start, end] of a placed file. With `verify` (a whole read),
   * the size is checked first and the SHA-256 at the end, and the last chunk
   * is held back until the check passes: a damaged file is never delivered
   * complete, so a client sees a failed transfer, not wrong bytes.
   */
  async *read(id: string, start: number, end: number, o: {
    verify?: { size: number; sha256: string };
    missing: () => Promise<Error>;
    damaged: (why: string) => Error;
  }): AsyncGenerator<Uint8Array> {
    if (end < start) return;
    let fh: FileHandle;
    try {
      fh = await open(this.path(id), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw await o.missing();
      throw err;
    }
    try {
      if (o.verify && (await fh.stat()).size !== o.verify.size) throw o.damaged("file size differs from the recorded size");
      // Inline: on a worker (a copy of each chunk handed over) GETs ran at 0.6× on 2 cores.
      const h = o.verify ? createHash("sha256") : undefined;
      const readAt = async (p: number) => {
        const len = Math.min(READ_BUFFER, end - p + 1);
        // Whole 1 MiB buffers come from the recycled pool: the S3 layer hands them back once the socket took them.
        const buf = len === READ_BUFFER ? readBuffer() : Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, p);
        return bytesRead < len ? buf.subarray(0, bytesRead) : buf;
      };
      let p = start;
      let held: Buffer | undefined;
      // One read ahead, so the disk works while the consumer sends.
      let next: Promise<Buffer> | undefined = readAt(p);
      while (next) {
        const b = await next;
        if (b.length === 0) throw o.damaged("file shorter than recorded");
        p += b.length;
        next = p <= end ? readAt(p) : undefined;
        next?.catch(() => {});
        h?.update(b);
        if (held) yield held;
        held = b;
      }
      if (h && h.digest("hex") !== o.verify!.sha256) throw o.damaged("sha256 mismatch");
      if (held) yield held;
    } finally {
      await fh.close().catch(() => {});
    }
  }
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
