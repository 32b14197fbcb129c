/**
 * The one checksum module: MD5 (the ETag), the S3 checksums (crc32, crc32c,
 * sha1, sha256; base64 of the big-endian digest, as x-amz-checksum-* carry
 * them) and the stores' integrity CRC-32, computed incrementally as a body
 * streams by, plus the digest rules S3 clients are held to.
 *
 * CRC-32 uses zlib.crc32 (native, several GB/s) where Node has it (20.15+);
 * before that, and for CRC-32C, which no Node has natively, a slicing-by-8
 * table, so package.json's engines (>= 20.10) hold.
 */
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

export const ALGORITHMS: readonly ChecksumAlgorithm[] = ["crc32", "crc32c", "sha1", "sha256"];

function tables(poly: number): Uint32Array[] {
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t0[n] = c >>> 0;
  }
  const t = [t0];
  for (let i = 1; i < 8; i++) {
    const prev = t[i - 1]!, cur = new Uint32Array(256);
    for (let n = 0; n < 256; n++) cur[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    t.push(cur);
  }
  return t;
}

const CRC32_T = tables(0xedb88320);
const CRC32C_T = tables(0x82f63b78);

/** Continues a table-driven CRC over buf (pass the previous return value; start with 0). */
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

// zlib.crc32 arrived in Node 20.15; @types/node 20 declares it, older runtimes lack it.
const nativeCrc32 = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/** Continues a CRC-32 (IEEE) over buf; start with 0. */
export function crc32(buf: Uint8Array, prev = 0): number {
  return nativeCrc32 ? nativeCrc32(buf, prev) : crcUpdate(CRC32_T, prev, buf);
}
/** The table-driven CRC-32, exported so tests can hold it against zlib's. */
export const crc32Table = (buf: Uint8Array, prev = 0) => crcUpdate(CRC32_T, prev, buf);
/** Continues a CRC-32C (Castagnoli) over buf; start with 0. */
export const crc32c = (buf: Uint8Array, prev = 0) => crcUpdate(CRC32C_T, prev, buf);

const u32be = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

/** One streaming digest: update with each chunk, then digest() once. */
export interface Hasher {
  update(chunk: Uint8Array): void;
  /** Base64 of the digest (big-endian 4 bytes for CRCs), as S3 headers carry it. */
  digest(): string;
}

function crcHasher(fn: (b: Uint8Array, prev: number) => number): Hasher {
  let v = 0;
  return { update: (b) => { v = fn(b, v); }, digest: () => u32be(v).toString("base64") };
}

function cryptoHasher(alg: string): Hasher {
  const h = createHash(alg);
  return { update: (b) => { h.update(b); }, digest: () => h.digest("base64") };
}

export function hasher(alg: ChecksumAlgorithm | "md5"): Hasher {
  switch (alg) {
    case "crc32": return crcHasher(crc32);
    case "crc32c": return crcHasher(crc32c);
    case "sha1": return cryptoHasher("sha1");
    case "sha256": return cryptoHasher("sha256");
    case "md5": return cryptoHasher("md5");
  }
}

/** The digest of a whole buffer, base64. */
export function digestOf(alg: ChecksumAlgorithm | "md5", data: Uint8Array): string {
  const h = hasher(alg);
  h.update(data);
  return h.digest();
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

export interface BodyDigests {
  size: number;
  /** Hex MD5. */
  md5: string;
  /** Integrity CRC-32 of the stored bytes. */
  crc: number;
  /** Base64 digests of every algorithm that was asked for. */
  checksums: Checksums;
}

/** Hashes a body chunk by chunk: MD5, the integrity CRC-32, and the requested checksums. */
export class BodyHasher {
  private readonly md5 = createHash("md5");
  private crcValue = 0;
  private readonly extra: [ChecksumAlgorithm, Hasher][] = [];
  private readonly wantCrc32: boolean;
  size = 0;

  constructor(algorithms: Iterable<ChecksumAlgorithm>) {
    const algs = new Set(algorithms);
    // crc32 is the integrity checksum already; computing it twice would be waste.
    for (const a of algs) if (a !== "crc32") this.extra.push([a, hasher(a)]);
    this.wantCrc32 = algs.has("crc32");
  }

  update(chunk: Uint8Array): void {
    this.size += chunk.length;
    this.md5.update(chunk);
    this.crcValue = crc32(chunk, this.crcValue);
    for (const [, d] of this.extra) d.update(chunk);
  }

  finish(): BodyDigests {
    const checksums: Checksums = {};
    if (this.wantCrc32) checksums.crc32 = u32be(this.crcValue).toString("base64");
    for (const [a, d] of this.extra) checksums[a] = d.digest();
    return { size: this.size, md5: this.md5.digest("hex"), crc: this.crcValue, checksums };
  }
}

/**
 * S3's multipart checksum: the digest of the concatenated binary part
 * digests, base64, with "-N" appended.
 */
export function compositeChecksum(alg: ChecksumAlgorithm, partDigests: string[]): string {
  const d = hasher(alg);
  for (const p of partDigests) d.update(Buffer.from(p, "base64"));
  return `${d.digest()}-${partDigests.length}`;
}

/** The multipart ETag: hex MD5 of the concatenated binary part MD5s, "-N". */
export function multipartEtag(partEtags: string[]): string {
  const h = createHash("md5");
  for (const e of partEtags) h.update(Buffer.from(e, "hex"));
  return `${h.digest("hex")}-${partEtags.length}`;
}
