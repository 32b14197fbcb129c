/**
 * A body file written past the page cache. Replica bodies are written once
 * and read rarely, on hosts whose memory belongs to VMs: cached, they push
 * guests' memory out and cost a kernel copy into pages nobody reads again
 * (MinIO writes large objects with O_DIRECT for the same reasons). In a VM
 * whose host backs guest memory on first touch, every new page-cache page
 * also costs a host fault: on the 2-core test VM the kernel's copy into the
 * cache took 2.2–2.6 ms per MiB (a quarter of a replica's CPU in a 3-node
 * PUT) against 0.13–0.2 ms per MiB with O_DIRECT.
 *
 * O_DIRECT needs the buffer, length and file offset aligned to the device's
 * block size: whole batches from takeBatch() at batch offsets go direct;
 * the tail of a body (or a batch that could not be aligned) is written
 * through a second, buffered descriptor of the same file. fdatasync covers
 * both (it is per file). A directory whose filesystem refuses O_DIRECT
 * (EINVAL at open, as tmpfs before Linux 6.6 answers, or at a write) gets
 * buffered writes from then on.
 */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

// The global the runtime has; the compiler's lib (no DOM) does not declare it.
declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };

/** Direct I/O alignment: the largest logical block size in use (4 KiB-sector disks); 512 would do on most. */
export const ALIGN = 4096;

/** Writes go to the kernel in batches of this many bytes (one write; direct when aligned). */
export const WRITE_BATCH = 1 << 20;

/**
 * Aligned batches come from one arena of this many: JavaScript cannot ask for
 * alignment, but a WebAssembly memory's backing store is page-aligned. One
 * memory, not one per batch, because V8 reserves ~10 GiB of address space per
 * memory (guard regions); pages are resident only once a batch is first used.
 * Bodies in flight beyond this many batches write buffered.
 */
const ARENA_BATCHES = 16;

/** Buffers known to start on an ALIGN boundary (the arena's). */
const aligned = new WeakSet<ArrayBufferLike>();
let arena: { buf: Buffer; next: number } | null | undefined;
const alignedFree: Buffer[] = [];
const plainFree: Buffer[] = [];
/** Idle unaligned batches kept (a body in flight holds two: one filling, one being written). */
const PLAIN_KEPT = 8;

function arenaSlice(): Buffer | undefined {
  if (arena === undefined) {
    try {
      const mem = new WebAssembly.Memory({ initial: (ARENA_BATCHES * WRITE_BATCH) / 65536, maximum: (ARENA_BATCHES * WRITE_BATCH) / 65536 });
      aligned.add(mem.buffer);
      arena = { buf: Buffer.from(mem.buffer), next: 0 };
    } catch {
      // No address space for it: every batch is an ordinary buffer, written buffered.
      arena = null;
    }
  }
  if (!arena || arena.next === ARENA_BATCHES) return undefined;
  return arena.buf.subarray(WRITE_BATCH * arena.next, WRITE_BATCH * ++arena.next);
}

/**
 * A write batch of WRITE_BATCH bytes, recycled: a body's chunks are copied
 * into these (~0.1 ms per MiB) instead of being kept until their write, so
 * the socket's buffers die young (kept, they outlived a scavenge or two and
 * V8 ran full collections for "external memory pressure"). Aligned (direct
 * writes) while the arena has one.
 */
export function takeBatch(): Buffer {
  return alignedFree.pop() ?? arenaSlice() ?? plainFree.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
}

export function giveBatch(b: Buffer): void {
  if (aligned.has(b.buffer)) alignedFree.push(b);
  else if (plainFree.length < PLAIN_KEPT) plainFree.push(b);
}

/** Body bytes this process wrote past the page cache and through it (thoc_objectstore_body_write_bytes_total). */
export const bodyWriteBytes = { direct: 0, buffered: 0 };

/** Directories whose filesystem refused O_DIRECT (EINVAL at open): buffered from then on. */
const refused = new Set<string>();

export class BodyFile {
  /** The buffered descriptor, opened on first need. */
  private buffered?: Promise<FileHandle>;

  /** Whether whole aligned batches still go direct (false from the start when the file is open buffered). */
  direct: boolean;

  private constructor(private readonly path: string, private readonly fh: FileHandle, private readonly openedDirect: boolean) {
    this.direct = openedDirect;
  }

  /** Creates the file (it must not exist), mode 0600; `direct`: past the page cache if the filesystem allows. */
  static async create(path: string, direct: boolean): Promise<BodyFile> {
    const dir = dirname(path);
    if (direct && !refused.has(dir)) {
      try {
        return new BodyFile(path, await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, 0o600), true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
        refused.add(dir);
      }
    }
    return new BodyFile(path, await open(path, "wx", 0o600), false);
  }

  /** Writes `len` bytes of `buf` at `pos`, direct where buffer, offset and length allow. */
  async write(buf: Buffer, len: number, pos: number): Promise<void> {
    let off = 0;
    if (this.direct && aligned.has(buf.buffer) && buf.byteOffset % ALIGN === 0 && pos % ALIGN === 0) {
      const whole = len - (len % ALIGN);
      try {
        if (whole > 0) await writeAll(this.fh, buf, 0, whole, pos);
        bodyWriteBytes.direct += whole;
        off = whole;
      } catch (err) {
        // A device that wants more alignment than ALIGN: this write and every later one in the directory go buffered.
        if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
        refused.add(dirname(this.path));
        this.direct = false;
      }
    }
    if (off === len) return;
    bodyWriteBytes.buffered += len - off;
    if (!this.openedDirect) return writeAll(this.fh, buf, off, len - off, pos + off);
    this.buffered ??= open(this.path, "r+");
    await writeAll(await this.buffered, buf, off, len - off, pos + off);
  }

  async datasync(): Promise<void> {
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    const b = this.buffered;
    this.buffered = undefined;
    await Promise.all([this.fh.close(), b?.then((f) => f.close(), () => {})]);
  }
}

async function writeAll(fh: FileHandle, buf: Buffer, from: number, len: number, pos: number): Promise<void> {
  // A short write is legal (rare on regular files): finish the rest.
  for (let off = 0; off < len;) {
    const { bytesWritten } = await fh.write(buf, from + off, len - off, pos + off);
    off += bytesWritten;
  }
}
