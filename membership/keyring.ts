/**
 * Sealing of every gossip datagram and stream frame: AES-256-GCM under the
 * cluster key ring (memberlist's model: the primary key seals, every key
 * opens, so keys rotate without downtime), the cluster name as associated
 * data (two clusters on one network never merge), and the sender's id and a
 * per-sender sequence number inside the ciphertext for a replay window.
 *
 * Layout: [version=1][nonce 12][ciphertext][tag 16]; plaintext is
 * [id length 1][sender id][seq 8, big-endian][body].
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { ThocError } from "../errors/index.js";
import { pooledRandomBytes } from "../rpc/index.js";

const VERSION = 1;
const NONCE = 12;
const TAG = 16;
export const SEAL_OVERHEAD = 1 + NONCE + TAG + 1 + 8;

export type DropReason = "malformed" | "version" | "auth" | "replay" | "stale";

export type Opened = { ok: true; from: string; seq: number; body: Buffer } | { ok: false; reason: DropReason };

export function decodeKey(k: string): Buffer {
  const b = Buffer.from(k, "base64");
  if (b.length !== 32) throw new ThocError("invalid_argument", "cluster key must be 32 bytes of base64 (make one with `thoc-node keygen`)", { key: "cluster.keys" });
  return b;
}

export class Keyring {
  private keys: Buffer[];
  private readonly aad: Record<"p" | "s", Buffer>;

  /** keys: base64 32-byte keys, the first is primary. */
  constructor(keys: string[], readonly clusterName: string) {
    if (keys.length === 0) throw new ThocError("invalid_argument", "no cluster key: set cluster.keys (thoc-node keygen makes one)", { key: "cluster.keys" });
    this.keys = keys.map(decodeKey);
    this.aad = { p: Buffer.from(`thoc-gossip/1/p/${clusterName}`), s: Buffer.from(`thoc-gossip/1/s/${clusterName}`) };
  }

  /** Adds a key that opens (not yet seals): step 1 of a rotation, on every node. */
  install(key: string): void {
    const b = decodeKey(key);
    if (!this.keys.some((k) => k.equals(b))) this.keys.push(b);
  }

  /** Makes an installed key primary (seals with it): step 2, once every node has it. */
  use(key: string): void {
    const b = decodeKey(key);
    const i = this.keys.findIndex((k) => k.equals(b));
    if (i < 0) throw new ThocError("failed_precondition", "key is not installed: install it on every node first");
    this.keys.unshift(...this.keys.splice(i, 1));
  }

  /** Drops a key: step 3, once every node seals with the new one. The primary cannot be removed. */
  remove(key: string): void {
    const b = decodeKey(key);
    if (this.keys[0]!.equals(b)) throw new ThocError("failed_precondition", "cannot remove the primary key: make another key primary first");
    this.keys = this.keys.filter((k) => !k.equals(b));
  }

  get size(): number { return this.keys.length; }

  seal(kind: "p" | "s", from: string, seq: number, body: Uint8Array): Buffer {
    const id = Buffer.from(from);
    const head = Buffer.alloc(1 + id.length + 8);
    head[0] = id.length;
    id.copy(head, 1);
    head.writeBigUInt64BE(BigInt(seq), 1 + id.length);
    const nonce = pooledRandomBytes(NONCE);
    const c = createCipheriv("aes-256-gcm", this.keys[0]!, nonce);
    c.setAAD(this.aad[kind]);
    const ct = Buffer.concat([c.update(head), c.update(body), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, ct, c.getAuthTag()]);
  }

  open(kind: "p" | "s", data: Uint8Array): Opened {
    if (data.length < 1 + NONCE + TAG + 1 + 8) return { ok: false, reason: "malformed" };
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf[0] !== VERSION) return { ok: false, reason: "version" };
    const nonce = buf.subarray(1, 1 + NONCE);
    const ct = buf.subarray(1 + NONCE, buf.length - TAG);
    const tag = buf.subarray(buf.length - TAG);
    for (const key of this.keys) {
      let plain: Buffer;
      try {
        const d = createDecipheriv("aes-256-gcm", key, nonce);
        d.setAAD(this.aad[kind]);
        d.setAuthTag(tag);
        plain = Buffer.concat([d.update(ct), d.final()]);
      } catch {
        continue;
      }
      const n = plain[0]!;
      if (plain.length < 1 + n + 8 || n === 0) return { ok: false, reason: "malformed" };
      const from = plain.subarray(1, 1 + n).toString();
      const seq = Number(plain.readBigUInt64BE(1 + n));
      return { ok: true, from, seq, body: plain.subarray(1 + n + 8) };
    }
    return { ok: false, reason: "auth" };
  }
}

/**
 * Per-sender sliding window over sequence numbers. A sequence number is the
 * sender's clock in microseconds (made strictly increasing), so the window is
 * a time span: anything more than windowUs older than the newest seen from
 * that sender, or seen before, is a replay. A restarted sender continues above
 * its old numbers. A sender never heard from before is accepted unless its
 * message is older than maxAgeMs by our clock (clocks are assumed roughly in
 * sync, as NTP keeps them).
 */
export class ReplayGuard {
  private readonly peers = new Map<string, { max: number; seen: Set<number>; at: number; pruneAt: number }>();

  constructor(private readonly windowUs = 30_000_000, private readonly maxAgeMs = 10 * 60_000) {}

  check(from: string, seq: number, nowMs: number): "ok" | "replay" | "stale" {
    const p = this.peers.get(from);
    if (!p) {
      if (seq / 1000 < nowMs - this.maxAgeMs) return "stale";
      this.peers.set(from, { max: seq, seen: new Set([seq]), at: nowMs, pruneAt: 256 });
      if (this.peers.size > 100_000) this.gc(nowMs);
      return "ok";
    }
    if (seq <= p.max - this.windowUs || p.seen.has(seq)) return "replay";
    p.seen.add(seq);
    p.at = nowMs;
    if (seq > p.max) p.max = seq;
    if (p.seen.size > p.pruneAt) {
      for (const s of p.seen) if (s <= p.max - this.windowUs) p.seen.delete(s);
      p.pruneAt = Math.max(256, p.seen.size * 2);
    }
    return "ok";
  }

  /** Forgets senders idle for longer than maxAge (their next message is judged by age again). */
  gc(nowMs: number): void {
    for (const [k, p] of this.peers) if (p.at < nowMs - this.maxAgeMs) this.peers.delete(k);
  }
}

/** Monotonic per-process sequence numbers that start at boot time in microseconds. */
export class SeqSource {
  private last = 0;
  constructor(private readonly now: () => number) {}
  next(): number {
    this.last = Math.max(this.last + 1, Math.floor(this.now() * 1000));
    return this.last;
  }
}
