/**
 * Checksums S3 clients send (x-amz-checksum-*, trailers, Content-MD5), computed
 * incrementally as a body streams by. CRC32 and CRC32C are table-driven
 * (slicing-by-8) because Node 20 before 20.15 has no zlib.crc32 and no Node
 * has CRC32C; zlib.crc32 (native) is used for CRC32 when present.
 */
import { createHash, type Hash } from "node:crypto";
import zlib from "node:zlib";
import type { ChecksumAlgorithm } from "../blob/types.js";

export const ALGORITHMS: readonly ChecksumAlgorithm[] = ["crc32", "crc32c", "sha1", "sha256"];

function tables(poly: number): Uint32Array[] {
  const t: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t0[n] = c >>> 0;
  }
  t.push(t0);
  for (let i = 1; i < 8; i++) {
    const prev = t[i - 1]!, cur = new Uint32Array(256);
    for (let n = 0; n < 256; n++) cur[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    t.push(cur);
  }
  return t;
}

const CRC32_T = tables(0xedb88320);
const CRC32C_T = tables(0x82f63b78);

/** Updates a running CRC (pass the previous return value; start with 0). */
function crcUpdate(T: Uint32Array[], crc: number, buf: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = T as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = 0;
  const n = buf.length;
  for (; i + 8 <= n; i += 8) {
    const a = (c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24))) >>> 0;
    c = t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]!
      ^ t3[buf[i + 4]!]! ^ t2[buf[i + 5]!]! ^ t1[buf[i + 6]!]! ^ t0[buf[i + 7]!]!;
  }
  for (; i < n; i++) c = t0[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const nativeCrc32 = (zlib as unknown as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

export function crc32(buf: Uint8Array, prev = 0): number {
  return nativeCrc32 ? nativeCrc32(buf, prev) : crcUpdate(CRC32_T, prev, buf);
}
/** The table-driven CRC32, exported so tests can hold it against zlib's. */
export const crc32Table = (buf: Uint8Array, prev = 0) => crcUpdate(CRC32_T, prev, buf);
export const crc32c = (buf: Uint8Array, prev = 0) => crcUpdate(CRC32C_T, prev, buf);

export interface Hasher {
  update(chunk: Uint8Array): void;
  /** Base64 of the digest (big-endian 4 bytes for CRCs), as S3 headers carry it. */
  digest(): string;
}

class CrcHasher implements Hasher {
  private c = 0;
  constructor(private readonly fn: (b: Uint8Array, prev: number) => number) {}
  update(chunk: Uint8Array) { this.c = this.fn(chunk, this.c); }
  digest() {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(this.c >>> 0);
    return b.toString("base64");
  }
}

class NodeHasher implements Hasher {
  private h: Hash;
  constructor(alg: string) { this.h = createHash(alg); }
  update(chunk: Uint8Array) { this.h.update(chunk); }
  digest() { return this.h.digest("base64"); }
}

export function hasher(alg: ChecksumAlgorithm | "md5"): Hasher {
  switch (alg) {
    case "crc32": return new CrcHasher(crc32);
    case "crc32c": return new CrcHasher(crc32c);
    case "sha1": return new NodeHasher("sha1");
    case "sha256": return new NodeHasher("sha256");
    case "md5": return new NodeHasher("md5");
  }
}

/** Digest length in bytes, to reject malformed header values early (InvalidDigest / InvalidRequest). */
export const DIGEST_BYTES: Record<ChecksumAlgorithm | "md5", number> = { crc32: 4, crc32c: 4, sha1: 20, sha256: 32, md5: 16 };

export function validDigest(alg: ChecksumAlgorithm | "md5", b64: string): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) return false;
  return Buffer.from(b64, "base64").length === DIGEST_BYTES[alg];
}

/** "CRC32" / "crc32" / "x-amz-checksum-crc32" → "crc32"; undefined when not one we know. */
export function parseAlgorithm(s: string | undefined): ChecksumAlgorithm | undefined {
  if (!s) return undefined;
  const a = s.trim().toLowerCase().replace(/^x-amz-checksum-/, "");
  return (ALGORITHMS as readonly string[]).includes(a) ? (a as ChecksumAlgorithm) : undefined;
}

/** The digest of a whole buffer, base64. */
export function digestOf(alg: ChecksumAlgorithm | "md5", data: Uint8Array): string {
  const h = hasher(alg);
  h.update(data);
  return h.digest();
}
