/**
 * Streaming digests for object bodies: MD5 (the ETag), the S3 checksums
 * (crc32, crc32c, sha1, sha256; base64 of the big-endian digest) and the
 * store's own integrity checksum (CRC-32, which zlib computes at several GB/s,
 * so it costs nothing next to MD5 and is always on for every stored file).
 *
 * CRC-32C has no native implementation in Node 20, so it is a slice-by-8 table
 * version here; it only runs when a client asks for it.
 */
import { createHash, type Hash } from "node:crypto";
import { crc32 as zlibCrc32 } from "node:zlib";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

export const ALGORITHMS: readonly ChecksumAlgorithm[] = ["crc32", "crc32c", "sha1", "sha256"];

const CRC32C_TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[0]![n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[0]![n]!;
    for (let k = 1; k < 8; k++) {
      c = t[0]![c & 0xff]! ^ (c >>> 8);
      t[k]![n] = c >>> 0;
    }
  }
  return t;
})();

/** Continues a CRC-32C (Castagnoli) over buf; start with 0. */
export function crc32c(buf: Uint8Array, prev = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~prev >>> 0;
  let i = 0;
  const n = buf.length;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const a = (c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24))) >>> 0;
    c = t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]!
      ^ t3[buf[i + 4]!]! ^ t2[buf[i + 5]!]! ^ t1[buf[i + 6]!]! ^ t0[buf[i + 7]!]!;
  }
  for (; i < n; i++) c = t0[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export function crc32(buf: Uint8Array, prev = 0): number {
  return zlibCrc32(buf, prev);
}

const u32be = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

/** One streaming digest: update with each chunk, then digest() once. */
interface Digest { update(b: Uint8Array): void; digest(): Buffer }

function crcDigest(fn: (b: Uint8Array, prev: number) => number): Digest & { value(): number } {
  let v = 0;
  return { update: (b) => { v = fn(b, v); }, digest: () => u32be(v), value: () => v };
}

function cryptoDigest(alg: string): Digest {
  const h: Hash = createHash(alg);
  return { update: (b) => { h.update(b); }, digest: () => h.digest() };
}

export function newDigest(alg: ChecksumAlgorithm): Digest {
  switch (alg) {
    case "crc32": return crcDigest(crc32);
    case "crc32c": return crcDigest(crc32c);
    case "sha1": return cryptoDigest("sha1");
    case "sha256": return cryptoDigest("sha256");
  }
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
  private readonly extra: [ChecksumAlgorithm, Digest][] = [];
  size = 0;

  constructor(algorithms: Iterable<ChecksumAlgorithm>) {
    // crc32 is the integrity checksum already; computing it twice would be waste.
    for (const a of new Set(algorithms)) if (a !== "crc32") this.extra.push([a, newDigest(a)]);
    this.wantCrc32 = new Set(algorithms).has("crc32");
  }
  private readonly wantCrc32: boolean;

  update(chunk: Uint8Array): void {
    this.size += chunk.length;
    this.md5.update(chunk);
    this.crcValue = crc32(chunk, this.crcValue);
    for (const [, d] of this.extra) d.update(chunk);
  }

  finish(): BodyDigests {
    const checksums: Checksums = {};
    if (this.wantCrc32) checksums.crc32 = u32be(this.crcValue).toString("base64");
    for (const [a, d] of this.extra) checksums[a] = d.digest().toString("base64");
    return { size: this.size, md5: this.md5.digest("hex"), crc: this.crcValue, checksums };
  }
}

/**
 * S3's multipart checksum: the digest of the concatenated binary part
 * digests, base64, with "-N" appended.
 */
export function compositeChecksum(alg: ChecksumAlgorithm, partDigests: string[]): string {
  const d = newDigest(alg);
  for (const p of partDigests) d.update(Buffer.from(p, "base64"));
  return `${d.digest().toString("base64")}-${partDigests.length}`;
}

/** The multipart ETag: hex MD5 of the concatenated binary part MD5s, "-N". */
export function multipartEtag(partEtags: string[]): string {
  const h = createHash("md5");
  for (const e of partEtags) h.update(Buffer.from(e, "hex"));
  return `${h.digest("hex")}-${partEtags.length}`;
}
