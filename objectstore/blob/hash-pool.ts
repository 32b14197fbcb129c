/**
 * MD5 and the requested checksums of large bodies run on worker threads, so
 * the event loop only receives, CRCs and writes (MD5 alone costs about
 * 1.6 ms per MiB on this class of CPU and is sequential: it is the longest
 * stage of a PUT). Small bodies hash inline: a worker round trip would cost
 * more than it saves.
 *
 * The worker reads the bytes back from the file being written (pread of
 * pages still in the page cache, a kernel memcpy) instead of being handed a
 * copy: copying socket chunks into shared memory from JavaScript runs byte by
 * byte whenever source and target are not equally aligned (V8 copies into a
 * SharedArrayBuffer with "relaxed atomic" semantics), and that alone cost the
 * event loop about 0.6 ms per MiB. It also means the digests cover the bytes
 * as stored. The event loop reports each written range in file order; the
 * worker hashes it and acknowledges, and the writer waits when the worker
 * lags by more than MAX_LAG bytes, so memory stays bounded.
 *
 * Requested checksums (sha256, sha1, crc32c) hash on a second worker when
 * there is one, beside MD5, instead of after it on the same thread.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { BodyDigests } from "./hash.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

/** The worker's read size. */
export const READ = 1 << 20;
/** Written bytes the slowest worker may still have to hash before the writer waits. */
const MAX_LAG = 8 << 20;

interface Session {
  w: number;
  /** buf: the buffer a "buf" message handed over, given back (buffer mode). */
  onAck?: (bytes: number, buf?: ArrayBuffer) => void;
  onDead?: () => void;
  done?: (r: { md5?: string; checksums: Checksums }) => void;
  dropped?: () => void;
  fail?: (e: Error) => void;
  dead?: Error;
  /** The worker has sent its digests (and reads nothing more). */
  finished?: boolean;
}

type FromWorker = { t: "ack"; id: number; n: number; buf?: ArrayBuffer } | { t: "done"; id: number; md5?: string; checksums: Checksums } | { t: "dropped"; id: number } | { t: "error"; id: number; message: string };

/** A session is fed file ranges (fd >= 0) or, with fd -1, buffers handed over by postMessage transfer. */
export class Pool {
  private readonly workers: (Worker | undefined)[] = [];
  private readonly active: number[] = [];
  private readonly sessions = new Map<number, Session>();
  private nextId = 1;
  readonly size = Math.max(1, Math.min(4, availableParallelism()));

  private worker(i: number): Worker {
    const existing = this.workers[i];
    if (existing) return existing;
    // Small heaps: a worker holds a few digests and message views, and each default-sized isolate
    // added ~5 MiB to the agent's RSS (the 5 GiB streaming target is < 200 MiB).
    const w = new Worker(new URL("./hash-worker.js", import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 } });
    w.on("message", (m: FromWorker) => {
      const s = this.sessions.get(m.id);
      if (!s) return;
      if (m.t === "ack") s.onAck?.(m.n, m.buf);
      else if (m.t === "done") {
        this.end(m.id);
        s.finished = true;
        s.done?.({ md5: m.md5, checksums: m.checksums });
        s.dropped?.();
      } else if (m.t === "dropped") {
        this.end(m.id);
        s.dropped?.();
      } else {
        this.end(m.id);
        this.kill(s, new Error(`hashing a body failed: ${m.message}`));
      }
    });
    w.on("error", (err) => {
      for (const [id, s] of this.sessions) {
        if (s.w !== i) continue;
        this.end(id);
        this.kill(s, err);
      }
      this.workers[i] = undefined;
    });
    // Referenced only while it has sessions: an idle pool never keeps the process alive.
    w.unref();
    this.workers[i] = w;
    return w;
  }

  private kill(s: Session, err: Error): void {
    s.dead = err;
    s.fail?.(err);
    s.dropped?.();
    s.onDead?.();
  }

  /** The least busy worker, other than `avoid` when there is a choice. */
  private pick(avoid?: number): number {
    let best = -1;
    for (let i = 0; i < this.size; i++) {
      if (i === avoid && this.size > 1) continue;
      if (best < 0 || (this.active[i] ?? 0) < (this.active[best] ?? 0)) best = i;
    }
    return best;
  }

  open(fd: number, md5: boolean, algorithms: ChecksumAlgorithm[], avoid?: number): { id: number; w: Worker; s: Session } {
    const id = this.nextId++;
    const wi = this.pick(avoid);
    const w = this.worker(wi);
    const s: Session = { w: wi };
    this.sessions.set(id, s);
    if ((this.active[wi] = (this.active[wi] ?? 0) + 1) === 1) w.ref();
    w.postMessage({ t: "open", id, fd, md5, algs: algorithms });
    return { id, w, s };
  }

  private end(id: number): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    if ((this.active[s.w] = (this.active[s.w] ?? 1) - 1) === 0) this.workers[s.w]?.unref();
  }
}

let pool: Pool | undefined;

/** One body's session on one worker, as Pool.open returns it. */
export type PoolSession = ReturnType<Pool["open"]>;

/** The error of a session whose worker died, if any did. */
export function deadIn(sessions: readonly PoolSession[]): Error | undefined {
  for (const sess of sessions) if (sess.s.dead) return sess.s.dead;
  return undefined;
}

/** Ends a body's sessions once `size` bytes were handed to each: MD5 (from the session that had it) and the checksums of all. */
export async function endSessions(sessions: readonly PoolSession[], size: number): Promise<{ md5?: string; checksums: Checksums }> {
  const results = await Promise.all(sessions.map((sess) => new Promise<{ md5?: string; checksums: Checksums }>((done, fail) => {
    if (sess.s.dead) return fail(sess.s.dead);
    sess.s.done = done;
    sess.s.fail = fail;
    sess.w.postMessage({ t: "end", id: sess.id, size });
  })));
  return { md5: results.find((r) => r.md5 !== undefined)?.md5, checksums: Object.assign({}, ...results.map((r) => r.checksums)) as Checksums };
}

/** The process's hashing workers (started on first use). */
export function hashPool(): Pool {
  pool ??= new Pool();
  return pool;
}

type Sess = PoolSession & { acked: number };

/**
 * Same digests as BodyHasher, computed on workers from a file descriptor.
 * Call written() for each range once it is in the file, in file order, from
 * offset 0 without gaps; ready() is a pending promise while the workers lag
 * too far; finish() resolves with MD5 and the checksums. The CRC-32 and size
 * are the caller's (it sees the bytes as they arrive).
 */
export class OffloadHasher {
  private readonly sessions: Sess[] = [];
  private readonly wantCrc32: boolean;
  private posted = 0;
  private waiter?: () => void;

  constructor(algorithms: Iterable<ChecksumAlgorithm>, fd: number) {
    const algs = [...new Set(algorithms)];
    this.wantCrc32 = algs.includes("crc32");
    const extra = algs.filter((a) => a !== "crc32");
    const p = hashPool();
    const split = extra.length > 0 && p.size > 1;
    const first = p.open(fd, true, split ? [] : extra);
    this.sessions.push({ ...first, acked: 0 });
    if (split) this.sessions.push({ ...p.open(fd, false, extra, first.s.w), acked: 0 });
    for (const sess of this.sessions) {
      sess.s.onAck = (n) => {
        sess.acked += n;
        if (this.lag() <= MAX_LAG || this.dead()) this.wake();
      };
      sess.s.onDead = () => this.wake();
    }
  }

  /** Bytes [pos, pos + len) are in the file. */
  written(pos: number, len: number): void {
    if (pos !== this.posted) throw new Error(`hash ranges out of order: ${pos} after ${this.posted}`);
    this.posted += len;
    for (const sess of this.sessions) if (!sess.s.dead) sess.w.postMessage({ t: "range", id: sess.id, pos, len });
  }

  private lag(): number {
    let min = this.posted;
    for (const sess of this.sessions) min = Math.min(min, sess.acked);
    return this.posted - min;
  }

  private dead(): Error | undefined {
    return deadIn(this.sessions);
  }

  private wake(): void {
    const r = this.waiter;
    this.waiter = undefined;
    r?.();
  }

  /** A pending promise while the workers lag by more than MAX_LAG; undefined otherwise. */
  ready(): Promise<void> | undefined {
    if (this.lag() <= MAX_LAG || this.dead()) return undefined;
    return new Promise((r) => { this.waiter = r; });
  }

  /** Throws if a worker died, so the caller stops reading. */
  check(): void {
    const e = this.dead();
    if (e) throw e;
  }

  async finish(size: number, crc: number): Promise<BodyDigests> {
    const { md5, checksums } = await endSessions(this.sessions, size);
    if (this.wantCrc32) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(crc >>> 0);
      checksums.crc32 = b.toString("base64");
    }
    return { size, md5: md5!, crc, checksums };
  }

  /**
   * Ends the sessions of a body that failed half way. Resolves once no worker
   * will read the file descriptor again, so the caller may close it.
   */
  abandon(): Promise<void> {
    return Promise.all(this.sessions.map((sess) => new Promise<void>((r) => {
      if (sess.s.dead || sess.s.finished) return r();
      sess.s.dropped = r;
      sess.w.postMessage({ t: "drop", id: sess.id });
    }))).then(() => {});
  }
}
