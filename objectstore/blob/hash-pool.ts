/**
 * MD5 and the requested checksums of large bodies run on worker threads, so
 * the event loop only receives, writes and CRCs (MD5 alone costs about 2 ms
 * per MiB, more than the disk write it would otherwise be serialised with).
 * Small bodies hash inline: a worker round trip would cost more than it saves.
 *
 * Each body is a session on one worker with a fixed ring of shared memory
 * (SLOTS × 1 MiB, reused from a free list): bytes are copied into a slot, the
 * worker hashes it in place and hands the slot back. No buffer is allocated
 * per batch, so a 5 GiB body costs the same few MiB as a 5 MiB one.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { crc32, type BodyDigests } from "./hash.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

export const SLOT = 1 << 20;
export const SLOTS = 4;

interface Session {
  w: number;
  sab: SharedArrayBuffer;
  /** Slots the worker has handed back. */
  onFree?: () => void;
  done?: (r: { md5: string; checksums: Checksums }) => void;
  fail?: (e: Error) => void;
  dead?: Error;
}

class Pool {
  private readonly workers: (Worker | undefined)[] = [];
  private readonly active: number[] = [];
  private readonly sessions = new Map<number, Session>();
  private readonly spare: SharedArrayBuffer[] = [];
  private nextId = 1;
  private rr = 0;

  private worker(i: number): Worker {
    const existing = this.workers[i];
    if (existing) return existing;
    const w = new Worker(new URL("./hash-worker.js", import.meta.url));
    w.on("message", (m: { t: string; id: number; md5?: string; checksums?: Checksums }) => {
      const s = this.sessions.get(m.id);
      if (!s) return;
      if (m.t === "ack") s.onFree?.();
      else if (m.t === "done") {
        this.end(m.id, true);
        s.done?.({ md5: m.md5!, checksums: m.checksums! });
      }
    });
    w.on("error", (err) => {
      for (const [id, s] of this.sessions) {
        if (s.w !== i) continue;
        this.end(id, false);
        s.dead = err;
        s.fail?.(err);
        s.onFree?.();
      }
      this.workers[i] = undefined;
    });
    // Referenced only while it has sessions: an idle pool never keeps the process alive.
    w.unref();
    this.workers[i] = w;
    return w;
  }

  open(algorithms: ChecksumAlgorithm[]): { id: number; w: Worker; s: Session } {
    const id = this.nextId++;
    const wi = this.rr++ % Math.max(1, Math.min(4, availableParallelism()));
    const w = this.worker(wi);
    const s: Session = { w: wi, sab: this.spare.pop() ?? new SharedArrayBuffer(SLOT * SLOTS) };
    this.sessions.set(id, s);
    if ((this.active[wi] = (this.active[wi] ?? 0) + 1) === 1) w.ref();
    w.postMessage({ t: "open", id, algs: algorithms, sab: s.sab });
    return { id, w, s };
  }

  drop(id: number, w: Worker): void {
    // The worker may still be reading the ring: never reuse it.
    if (this.end(id, false)) w.postMessage({ t: "drop", id });
  }

  private end(id: number, reuse: boolean): boolean {
    const s = this.sessions.get(id);
    if (!s) return false;
    this.sessions.delete(id);
    if (reuse && this.spare.length < 64) this.spare.push(s.sab);
    if ((this.active[s.w] = (this.active[s.w] ?? 1) - 1) === 0) this.workers[s.w]?.unref();
    return true;
  }
}

let pool: Pool | undefined;

/** Same results as BodyHasher; update() is sync, ready() applies backpressure, finish() awaits the worker. */
export class OffloadHasher {
  size = 0;
  private crc = 0;
  private readonly sess;
  private readonly ring: Uint8Array;
  private readonly wantCrc32: boolean;
  private free = SLOTS;
  /** Next slot to fill, and how full it is. */
  private slot = 0;
  private fill = 0;
  private filling = false;
  /** Bytes that found no free slot (at most about one chunk, given ready()). */
  private pending: Uint8Array[] = [];
  private waiter?: () => void;
  private finished = false;

  constructor(algorithms: Iterable<ChecksumAlgorithm>) {
    const algs = [...new Set(algorithms)];
    this.wantCrc32 = algs.includes("crc32");
    pool ??= new Pool();
    this.sess = pool.open(algs.filter((a) => a !== "crc32"));
    this.ring = new Uint8Array(this.sess.s.sab);
    this.sess.s.onFree = () => {
      this.free++;
      this.drain();
      if (this.waiter && (this.pending.length === 0 || this.sess.s.dead)) { const r = this.waiter; this.waiter = undefined; r(); }
    };
  }

  update(chunk: Uint8Array): void {
    this.size += chunk.length;
    this.crc = crc32(chunk, this.crc);
    if (this.pending.length) this.pending.push(Buffer.from(chunk));
    else this.put(chunk);
  }

  /** Copies as much of b as free slots take; the rest waits (copied) in pending. */
  private put(b: Uint8Array): void {
    let p = 0;
    while (p < b.length) {
      if (!this.filling) {
        if (this.free === 0) {
          this.pending.push(Buffer.from(b.subarray(p)));
          return;
        }
        this.free--;
        this.filling = true;
        this.fill = 0;
      }
      const n = Math.min(SLOT - this.fill, b.length - p);
      this.ring.set(b.subarray(p, p + n), this.slot * SLOT + this.fill);
      this.fill += n;
      p += n;
      if (this.fill === SLOT) this.post();
    }
  }

  private post(): void {
    if (!this.filling) return;
    this.sess.w.postMessage({ t: "data", id: this.sess.id, slot: this.slot, len: this.fill });
    this.slot = (this.slot + 1) % SLOTS;
    this.filling = false;
  }

  private drain(): void {
    while (this.pending.length && this.free > 0) {
      const b = this.pending.shift()!;
      const before = this.pending.length;
      this.put(b);
      if (this.pending.length > before) {
        // put() parked the rest at the end; it belongs at the front.
        this.pending.unshift(this.pending.pop()!);
        return;
      }
    }
  }

  /** Resolves when the worker has caught up enough to take more. */
  ready(): Promise<void> | undefined {
    if (this.pending.length === 0 || this.sess.s.dead) return undefined;
    return new Promise((r) => { this.waiter = r; });
  }

  async finish(): Promise<BodyDigests> {
    while (this.pending.length && !this.sess.s.dead) await new Promise<void>((r) => { this.waiter = r; });
    this.post();
    this.finished = true;
    const r = await new Promise<{ md5: string; checksums: Checksums }>((done, fail) => {
      if (this.sess.s.dead) return fail(this.sess.s.dead);
      this.sess.s.done = done;
      this.sess.s.fail = fail;
      this.sess.w.postMessage({ t: "end", id: this.sess.id });
    });
    const checksums: Checksums = { ...r.checksums };
    if (this.wantCrc32) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(this.crc >>> 0);
      checksums.crc32 = b.toString("base64");
    }
    return { size: this.size, md5: r.md5, crc: this.crc, checksums };
  }

  /** Frees the worker session of a body that failed half way. */
  abandon(): void {
    if (!this.finished) pool?.drop(this.sess.id, this.sess.w);
  }
}
