/**
 * Random bytes for the small per-call values (gossip AES-GCM nonces, peer-call
 * MAC nonces, request ids), cut from a pooled 4 KiB block. Node's
 * randomBytes() costs the same ~50-100 µs per call through OpenSSL 3 whether
 * it returns 8 bytes or 4 KiB (measured on the 2-core CI machine, 2026-12-03);
 * at 10-40 heartbeats a second plus every gossip datagram that was a
 * measurable share of an idle agent's CPU (docs/benchmarks.md, "Idle
 * footprint"). The pool holds CSPRNG output like any randomBytes() result;
 * each byte is handed out once.
 */
import { randomBytes } from "node:crypto";

const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;

/** n fresh random bytes (a copy: the caller may keep or change it). */
export function pooledRandomBytes(n: number): Buffer {
  if (n > POOL_BYTES / 8) return randomBytes(n);
  if (used + n > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  const out = Buffer.allocUnsafe(n);
  pool.copy(out, 0, used, used + n);
  pool.fill(0, used, used + n);
  used += n;
  return out;
}
