/** Rules every blob store keeps: header picking, bucket names, body verification, part ranges, part lists. */
import { blobError } from "./errors.js";
import { ALGORITHMS, type BodyDigests } from "./hash.js";
import { MIN_PART_SIZE, type BodyExpectations, type ByteRange, type ChecksumAlgorithm, type ObjectExtras, type ObjectHeaders, type ObjectMeta, type PartInfo } from "./types.js";

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
    throw blobError("InvalidBucketName", `invalid bucket name ${JSON.stringify(name)}`, { bucket: name });
  }
}

/** Checks what the client promised about a body (length, Content-MD5, x-amz-checksum-*) against its digests. */
export function verifyDigests(d: BodyDigests, expect: BodyExpectations): void {
  if (expect.size !== undefined && d.size !== expect.size) {
    throw blobError("IncompleteBody", `the body had ${d.size} bytes but ${expect.size} were announced: resend the whole body`, { size: d.size, expected: expect.size });
  }
  if (expect.md5 !== undefined && Buffer.from(d.md5, "hex").toString("base64") !== expect.md5) {
    throw blobError("BadDigest", "the Content-MD5 you specified did not match what was received", {});
  }
  for (const [alg, want] of Object.entries(expect.checksums ?? {})) {
    if (!want) continue;
    const got = d.checksums[alg as ChecksumAlgorithm];
    if (got === undefined) throw blobError("UnsupportedChecksum", `unsupported checksum algorithm ${alg}`, {});
    if (got !== want) {
      throw blobError("BadDigest", `the ${alg.toUpperCase()} you specified did not match the calculated checksum`, { algorithm: alg });
    }
  }
}

/** Checksum algorithms to compute for a body: those asked for, those with an expected value, and `extra`. */
export function algorithmsFor(expect: BodyExpectations, extra: readonly ChecksumAlgorithm[] = []): ChecksumAlgorithm[] {
  const algs = new Set<ChecksumAlgorithm>([...extra, ...(expect.computeChecksums ?? [])]);
  for (const a of Object.keys(expect.checksums ?? {})) if ((ALGORITHMS as string[]).includes(a)) algs.add(a as ChecksumAlgorithm);
  return [...algs];
}

export function partRange(meta: Pick<ObjectMeta, "key" | "size" | "parts">, partNumber: number): ByteRange {
  const parts = meta.parts;
  if (!parts) {
    if (partNumber !== 1) throw blobError("InvalidPartNumber", `object ${meta.key} has 1 part; part ${partNumber} does not exist`, { partNumber });
    return { start: 0, end: meta.size - 1 };
  }
  let off = 0;
  for (const p of parts) {
    if (p.partNumber === partNumber) return { start: off, end: off + p.size - 1 };
    off += p.size;
  }
  throw blobError("InvalidPartNumber", `object ${meta.key} has ${parts.length} parts; part ${partNumber} does not exist`, { partNumber });
}

export const stripQuotes = (e: string) => e.replace(/^"|"$/g, "").replace(/^W\//, "").replace(/^"|"$/g, "");

/**
 * CompleteMultipartUpload's rules on the client's part list: ascending
 * (InvalidPartOrder), each part uploaded with that ETag (InvalidPart), every
 * part but the last at least 5 MiB (EntityTooSmall). Returns the chosen parts.
 */
export function chooseParts<P extends { info: PartInfo }>(list: readonly { partNumber: number; etag: string }[], stored: ReadonlyMap<number, P>, uploadId: string): P[] {
  const chosen: P[] = [];
  for (let i = 0; i < list.length; i++) {
    const want = list[i]!;
    if (i > 0 && want.partNumber <= list[i - 1]!.partNumber) {
      throw blobError("InvalidPartOrder", "the list of parts was not in ascending order: sort it by part number", { uploadId });
    }
    const p = stored.get(want.partNumber);
    if (!p || p.info.etag !== stripQuotes(want.etag)) {
      throw blobError("InvalidPart", `part ${want.partNumber} was not uploaded or its ETag does not match: upload it again or fix the list`, { uploadId, partNumber: want.partNumber });
    }
    chosen.push(p);
  }
  for (let i = 0; i < chosen.length - 1; i++) {
    if (chosen[i]!.info.size < MIN_PART_SIZE) {
      throw blobError("EntityTooSmall", `part ${chosen[i]!.info.partNumber} is ${chosen[i]!.info.size} bytes; every part but the last must be at least 5 MiB`, { uploadId, partNumber: chosen[i]!.info.partNumber });
    }
  }
  return chosen;
}

/** The extras a client set, without empty fields (the stored meta stays as small as before for plain objects). */
export function extrasOf(x: ObjectExtras | undefined): ObjectExtras {
  const out: ObjectExtras = {};
  if (x?.tags && Object.keys(x.tags).length) out.tags = x.tags;
  if (x?.acl && x.acl !== "private") out.acl = x.acl;
  if (x?.sse) out.sse = x.sse;
  return out;
}
