/**
 * The digests of a large body that has no file of its own on this node yet
 * (the replicated store's coordinator fans it out to replicas while it
 * arrives): MD5, the requested checksums, and optionally the SHA-256 the
 * replicas verify and the integrity CRC-32, on worker threads.
 *
 * Hashing on the event loop cost the replicated PUT ~2.6 ms per MiB (MD5
 * 1.5, SHA-256 0.65 with SHA-NI, CRC-32 0.35) out of ~4 ms: the loop was the
 * bottleneck. Here the loop only copies each chunk into a 1 MiB buffer
 * (~0.15 ms per MiB: a plain ArrayBuffer, never a SharedArrayBuffer, whose
 * misaligned copies V8 does byte by byte) and hands the buffer over by
 * transfer. With two workers MD5 runs on one while SHA-256 and the CRC run on
 * the other: the buffer goes to the first, comes back with its
 * acknowledgement, goes to the second, and returns to a free list.
 *
 * Memory: each body may have MAX_LAG bytes handed over and not yet hashed by
 * every worker (the caller awaits ready()), and all bodies together keep at
 * most FREE_MAX idle buffers; beyond BUDGET buffers in use a body with any
 * buffer out waits until one is back, so at most BUDGET + one per body are
 * in use: 32 concurrent uploads do not hold 32 × MAX_LAG.
 */
import type { BodyDigests } from "./hash.js";
import { deadIn, endSessions, hashPool, type PoolSession } from "./hash-pool.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

const BUF = 1 << 20;
/** Bytes handed to the workers and not yet hashed by all of them before the writer waits. */
const MAX_LAG = 4 << 20;
/** Buffers in use by all bodies at once before a body with buffers of its own in flight waits. */
const BUDGET = 24;
/** Idle buffers kept for the next body (one body at c=1 cycles through ~6; more would only raise the RSS). */
const FREE_MAX = 8;

const free: ArrayBuffer[] = [];
let inUse = 0;
const budgetWaiters = new Set<() => void>();

function take(): ArrayBuffer {
  inUse++;
  return free.pop() ?? new ArrayBuffer(BUF);
}

function give(b: ArrayBuffer | undefined): void {
  inUse--;
  if (b && b.byteLength === BUF && free.length < FREE_MAX) free.push(b);
  for (const w of [...budgetWaiters]) w();
}

/** Buffers handed out and not yet back (or written off), across all bodies. @internal for tests */
export function chunkBuffersInUse(): number {
  return inUse;
}

type Sess = PoolSession & { acked: number };

export interface ChunkDigests extends BodyDigests {
  /** Hex SHA-256 of the body, when asked for. */
  sha256?: string;
}

export class ChunkHasher {
  private readonly sessions: Sess[] = [];
  private readonly wantCrc32: boolean;
  private readonly wantSha256: boolean;
  private readonly sha256Checksum: boolean;
  private abandoned = false;
  private cur?: ArrayBuffer;
  /** The buffer ready() reserved for the next update(). */
  private spare?: ArrayBuffer;
  private fill = 0;
  private size = 0;
  /** Bytes handed to the first worker. */
  private posted = 0;
  /** Buffers of this body not yet back. */
  private held = 0;
  private waiter?: () => void;
  private ended = false;

  /**
   * algorithms: the S3 checksums to return; sha256: also the hex SHA-256;
   * crc: also the integrity CRC-32 (otherwise BodyDigests.crc is 0).
   */
  constructor(algorithms: Iterable<ChecksumAlgorithm>, opts: { sha256?: boolean; crc?: boolean } = {}) {
    const requested = new Set(algorithms);
    this.wantCrc32 = requested.has("crc32");
    this.wantSha256 = !!opts.sha256;
    this.sha256Checksum = requested.has("sha256");
    // Second stage: the fast digests (SHA-256 with SHA-NI, CRC-32); the first: MD5 and the slow requested ones.
    const second = new Set<ChecksumAlgorithm>();
    if (opts.sha256 || requested.has("sha256")) second.add("sha256");
    if (opts.crc || requested.has("crc32")) second.add("crc32");
    const first = [...requested].filter((a) => !second.has(a));
    const pool = hashPool();
    const stages: [boolean, ChecksumAlgorithm[]][] = pool.size > 1 && second.size ? [[true, first], [false, [...second]]] : [[true, [...first, ...second]]];
    let prev: number | undefined;
    for (const [md5, algs] of stages) {
      const o = pool.open(md5, algs, prev);
      prev = o.s.w;
      this.sessions.push({ ...o, acked: 0 });
    }
    this.sessions.forEach((sess, i) => {
      sess.s.onAck = (n, buf) => {
        sess.acked += n;
        if (this.abandoned) {
          // Already counted out of the budget by abandon().
          if (buf && free.length < FREE_MAX) free.push(buf);
          return;
        }
        const next = this.sessions[i + 1];
        if (buf && next && !next.s.dead) {
          next.w.postMessage({ t: "buf", id: next.id, buf, len: n }, [buf]);
        } else {
          this.held--;
          give(buf);
        }
        this.wake();
      };
      sess.s.onDead = () => this.wake();
    });
  }

  /** Copies chunk for hashing; call ready() before the next. */
  update(chunk: Uint8Array): void {
    this.size += chunk.byteLength;
    for (let off = 0; off < chunk.byteLength;) {
      if (!this.cur) {
        if (this.spare) this.cur = this.spare;
        else {
          this.cur = take();
          this.held++;
        }
        this.spare = undefined;
        this.fill = 0;
      }
      const n = Math.min(BUF - this.fill, chunk.byteLength - off);
      new Uint8Array(this.cur, this.fill, n).set(chunk.subarray(off, off + n));
      this.fill += n;
      off += n;
      if (this.fill === BUF) this.post();
    }
  }

  private post(): void {
    const b = this.cur!;
    const first = this.sessions[0]!;
    this.cur = undefined;
    if (this.fill === 0) {
      this.held--;
      give(b);
      return;
    }
    this.posted += this.fill;
    if (first.s.dead) {
      this.held--;
      give(undefined);
      return;
    }
    first.w.postMessage({ t: "buf", id: first.id, buf: b, len: this.fill }, [b]);
  }

  private lag(): number {
    return this.posted - this.sessions[this.sessions.length - 1]!.acked;
  }

  private dead(): Error | undefined {
    return deadIn(this.sessions);
  }

  private wake(): void {
    const r = this.waiter;
    this.waiter = undefined;
    r?.();
  }

  /**
   * False once the next update() may go on: the workers are close enough
   * behind, and a buffer for it is at hand (taken here, in the same turn as
   * the check, so bodies woken together cannot all pass one free slot).
   */
  private blocked(): boolean {
    if (this.dead()) return false;
    if (this.lag() > MAX_LAG) return true;
    if (this.cur || this.spare) return false;
    // A body with nothing out always gets one: it cannot wait for its own buffers.
    if (inUse >= BUDGET && this.held > 0) return true;
    this.spare = take();
    this.held++;
    return false;
  }

  /** A pending promise while the workers lag too far behind; undefined otherwise. */
  ready(): Promise<void> | undefined {
    if (!this.blocked()) return undefined;
    return new Promise((resolve) => {
      const check = () => {
        if (this.blocked()) {
          this.waiter = check;
          return;
        }
        budgetWaiters.delete(check);
        this.waiter = undefined;
        resolve();
      };
      this.waiter = check;
      budgetWaiters.add(check);
    });
  }

  /** Throws if a worker died, so the caller stops reading. */
  check(): void {
    const e = this.dead();
    if (e) throw e;
  }

  /** The digests, once every byte is hashed. */
  async finish(): Promise<ChunkDigests> {
    if (this.cur) this.post();
    if (this.spare) {
      this.held--;
      give(this.spare);
      this.spare = undefined;
    }
    // The second stage's end must follow its last buffer, which it gets only after the first stage's ack.
    while (this.lag() > 0) {
      this.check();
      await new Promise<void>((r) => { this.waiter = r; });
    }
    this.check();
    this.ended = true;
    const { md5, checksums: all } = await endSessions(this.sessions, this.size);
    const crcB64 = all.crc32;
    const crc = crcB64 ? Buffer.from(crcB64, "base64").readUInt32BE(0) : 0;
    const sha = all.sha256;
    const checksums: Checksums = {};
    for (const [a, v] of Object.entries(all) as [ChecksumAlgorithm, string][]) {
      if ((a === "crc32" && !this.wantCrc32) || (a === "sha256" && !this.sha256Checksum)) continue;
      checksums[a] = v;
    }
    return { size: this.size, md5: md5!, crc, checksums, ...(this.wantSha256 && sha ? { sha256: Buffer.from(sha, "base64").toString("hex") } : {}) };
  }

  /** Ends the sessions of a body that failed half way. */
  abandon(): void {
    if (this.ended) return;
    this.ended = true;
    this.abandoned = true;
    for (const b of [this.cur, this.spare]) {
      if (!b) continue;
      this.held--;
      give(b);
    }
    this.cur = this.spare = undefined;
    for (const sess of this.sessions) {
      if (sess.s.dead || sess.s.finished) continue;
      sess.w.postMessage({ t: "drop", id: sess.id });
    }
    // Buffers still with a worker are lost with the session; count them out of the budget.
    while (this.held > 0) {
      this.held--;
      give(undefined);
    }
  }
}
