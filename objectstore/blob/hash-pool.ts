/**
 * MD5 and the requested checksums of large bodies run on worker threads, so
 * the event loop only receives and writes (MD5 alone costs about 1.6 ms per
 * MiB on this class of CPU and is sequential: it is the longest stage of a
 * PUT). Small bodies hash inline: a worker round trip would cost more than it
 * saves. A session is fed buffers handed over by postMessage transfer, and
 * each goes back with its acknowledgement (hash-chunks.ts).
 *
 * Requested checksums (sha256, sha1, crc32c) hash on a second worker when
 * there is one, beside MD5, instead of after it on the same thread.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { ChecksumAlgorithm, Checksums } from "./types.js";


interface Session {
  w: number;
  /** buf: the buffer a "buf" message handed over, given back. */
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

  open(md5: boolean, algorithms: ChecksumAlgorithm[], avoid?: number): { id: number; w: Worker; s: Session } {
    const id = this.nextId++;
    const wi = this.pick(avoid);
    const w = this.worker(wi);
    const s: Session = { w: wi };
    this.sessions.set(id, s);
    if ((this.active[wi] = (this.active[wi] ?? 0) + 1) === 1) w.ref();
    w.postMessage({ t: "open", id, md5, algs: algorithms });
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
