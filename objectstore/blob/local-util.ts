/** Helpers of the local blob store: S3 errors, header picking, body verification, part ranges. */
import { ThocError, type ErrorCode } from "../../errors/index.js";
import type { Staged } from "./files.js";
import type { ObjectRecord } from "./local-meta.js";
import type { BodyExpectations, ByteRange, ChecksumAlgorithm, ObjectHeaders } from "./types.js";

export function s3Error(code: ErrorCode, s3Code: string, message: string, details: Record<string, string | number | undefined> = {}): ThocError {
  return new ThocError(code, message, { s3Code, ...details });
}

const HEADER_FIELDS = ["contentType", "cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "expires", "storageClass"] as const;

/** Only the known header fields, never undefined ones (records are JSON). */
export function pickHeaders(h: ObjectHeaders & { storageClass?: string }): ObjectHeaders {
  const out: Record<string, string> = {};
  for (const f of HEADER_FIELDS) {
    const v = h[f];
    if (v !== undefined) out[f] = v;
  }
  return out;
}

export function checkBucketName(name: string): void {
  if (!name || name.includes("/") || name.includes("\0")) {
    throw s3Error("invalid_argument", "InvalidBucketName", `invalid bucket name ${JSON.stringify(name)}`, { bucket: name });
  }
}

export function verifyBody(s: Staged, expect: BodyExpectations): void {
  const d = s.digests;
  if (expect.size !== undefined && d.size !== expect.size) {
    throw s3Error("invalid_argument", "IncompleteBody", `the body had ${d.size} bytes but ${expect.size} were announced: resend the whole body`, { size: d.size, expected: expect.size });
  }
  if (expect.md5 !== undefined && Buffer.from(d.md5, "hex").toString("base64") !== expect.md5) {
    throw s3Error("invalid_argument", "BadDigest", "the Content-MD5 you specified did not match what was received", {});
  }
  for (const [alg, want] of Object.entries(expect.checksums ?? {})) {
    if (!want) continue;
    const got = d.checksums[alg as ChecksumAlgorithm];
    if (got === undefined) throw s3Error("invalid_argument", "InvalidRequest", `unsupported checksum algorithm ${alg}`, {});
    if (got !== want) {
      throw s3Error("invalid_argument", "BadDigest", `the ${alg.toUpperCase()} you specified did not match the calculated checksum`, { algorithm: alg });
    }
  }
}

export function partRange(rec: ObjectRecord, partNumber: number): ByteRange {
  const parts = rec.meta.parts;
  if (!parts) {
    if (partNumber !== 1) throw s3Error("invalid_argument", "InvalidPartNumber", `object ${rec.meta.key} has 1 part; part ${partNumber} does not exist`, { partNumber });
    return { start: 0, end: rec.meta.size - 1 };
  }
  let off = 0;
  for (const p of parts) {
    if (p.partNumber === partNumber) return { start: off, end: off + p.size - 1 };
    off += p.size;
  }
  throw s3Error("invalid_argument", "InvalidPartNumber", `object ${rec.meta.key} has ${parts.length} parts; part ${partNumber} does not exist`, { partNumber });
}
