/**
 * Multipart uploads on the ring. An upload is a record at the internal key
 * U+0001 "u/" <key> U+0000 <uploadId> of its bucket (so uploads list in key,
 * then start-time order), each part a record at U+0001 "p/" <uploadId> "/"
 * <part number>, placed and replicated like any object — parts sent through
 * different nodes all land in the same place. A part's meta names the object
 * key it was uploaded for, so the part sweeper can find who uses it.
 *
 * Complete copies nothing: it writes the object as a record whose body is a
 * manifest of the chosen parts and their versions (blob-manifest.ts), then
 * tombstones the upload and the parts it did not choose. The chosen parts
 * stay while an object version references them; the sweeper
 * (part-sweeper.ts) collects them once the object is overwritten or deleted.
 * A retried Complete with the same part list returns the same object.
 */
import { randomBytes } from "node:crypto";
import {
  MAX_PARTS, RollUp, algorithmsFor, blobError, chooseParts, compositeChecksum, isBlobError, multipartEtag, pickHeaders, stripQuotes,
  type BodyExpectations, type ChecksumAlgorithm, type CompleteOptions, type CompletePart, type Checksums, type ListUploadsInput, type ListUploadsResult,
  type MultipartUpload, type ObjectExtras, type ObjectHeaders, type ObjectMeta, type PartInfo,
  type BucketInfo,
} from "../blob/index.js";
import { extrasOf, metaOf, storedOf, verifying, type ReplicatedBackend, type StoredMeta } from "./blob-meta.js";
import { PART_PREFIX, encodeManifest, partKey, partsPrefix, type Manifest } from "./blob-manifest.js";
import { afterPrefix } from "./listing.js";
import { once, type ReplicaRecord } from "./replica-store.js";

/** What multipart needs of the replicated blob store (blob-store.ts), named here so neither file imports the other. */
export interface MultipartHost {
  readonly b: ReplicatedBackend;
  headBucket(bucket: string): Promise<BucketInfo>;
  /** Writes the object's record through `write` (at the key, or as a new version in a versioned bucket). */
  commit(bucket: string, key: string, write: (storageKey: string, versionId: string | undefined) => Promise<ReplicaRecord>): Promise<ObjectMeta>;
}

export const UPLOAD_PREFIX = "\u0001u/";
export const uploadKey = (key: string, uploadId: string) => `${UPLOAD_PREFIX}${key}\u0000${uploadId}`;

/** What a part record's meta holds: its PartInfo and the key of the object it was uploaded for. */
export type StoredPart = PartInfo & { objectKey?: string };

/** A part record's PartInfo (its size from the record), without the internal fields. */
function partInfo(rec: ReplicaRecord): PartInfo {
  const { objectKey: _k, ...info } = parse<StoredPart>(rec);
  return { ...info, size: rec.size };
}

const noSuchUpload = (uploadId: string) =>
  blobError("NoSuchUpload", `upload ${uploadId} does not exist: it was completed or aborted, or the id is wrong`, { uploadId });

function parse<T>(rec: ReplicaRecord): T {
  try {
    return JSON.parse(rec.meta) as T;
  } catch {
    throw blobError("Corrupt", `record ${rec.bucket}/${JSON.stringify(rec.key)}: metadata is not JSON`);
  }
}

async function getUpload(s: MultipartHost, bucket: string, key: string, uploadId: string): Promise<MultipartUpload> {
  await s.headBucket(bucket);
  if (!/^[0-9a-f]{12,64}$/.test(uploadId)) throw noSuchUpload(uploadId);
  const { record } = await s.b.coordinator.head(bucket, uploadKey(key, uploadId));
  if (!record || record.tombstone) throw noSuchUpload(uploadId);
  return parse<MultipartUpload>(record);
}

export async function create(s: MultipartHost, bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm, extras?: ObjectExtras): Promise<MultipartUpload> {
  await s.headBucket(bucket);
  // Time first: one key's uploads list in the order they were started.
  const uploadId = Date.now().toString(16).padStart(12, "0") + randomBytes(10).toString("hex");
  const up: MultipartUpload = { uploadId, bucket, key, initiated: Date.now(), headers: pickHeaders(headers), userMeta };
  if (checksumAlgorithm) up.checksumAlgorithm = checksumAlgorithm;
  if (extras && Object.keys(extras).length) up.extras = extras;
  await s.b.coordinator.put({ bucket, key: uploadKey(key, uploadId), meta: JSON.stringify(up) }, (async function* () {})());
  return up;
}

export async function uploadPart(s: MultipartHost, bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<PartInfo> {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
    throw blobError("InvalidArgument", `part number must be an integer between 1 and ${MAX_PARTS}, got ${partNumber}`, { partNumber });
  }
  const up = await getUpload(s, bucket, key, uploadId);
  const v = verifying(body, expect, algorithmsFor(expect, up.checksumAlgorithm ? [up.checksumAlgorithm] : []));
  const lastModified = Date.now();
  const info = (): PartInfo => {
    const d = v.digests();
    const p: PartInfo = { partNumber, size: d.size, etag: expect.etag ? expect.etag() : d.md5, lastModified };
    if (Object.keys(d.checksums).length) p.checksums = d.checksums;
    if (expect.sse !== undefined) p.sse = expect.sse;
    return p;
  };
  const finalMeta = () => JSON.stringify({ ...info(), objectKey: key } satisfies StoredPart);
  const rec = await s.b.coordinator.put({ bucket, key: partKey(uploadId, partNumber), meta: JSON.stringify({ objectKey: key }) }, v.body, { finalMeta, ...(v.sha256 ? { sha256: v.sha256 } : {}) });
  // An abort or complete that ran meanwhile would never see this part: take it back.
  const still = await s.b.coordinator.head(bucket, uploadKey(key, uploadId));
  if (!still.record || still.record.tombstone) {
    await s.b.coordinator.delete(bucket, partKey(uploadId, partNumber)).catch(() => undefined);
    throw noSuchUpload(uploadId);
  }
  return partInfo(rec);
}

async function storedParts(s: MultipartHost, bucket: string, uploadId: string, afterPart = 0): Promise<Map<number, { rec: ReplicaRecord; info: PartInfo }>> {
  const lo = { prefix: partsPrefix(uploadId), ...(afterPart > 0 ? { after: partKey(uploadId, afterPart) } : {}) };
  const out = new Map<number, { rec: ReplicaRecord; info: PartInfo }>();
  const add = (r: ReplicaRecord) => {
    if (r.tombstone) return;
    const info = partInfo(r);
    out.set(info.partNumber, { rec: r, info });
  };
  if (s.b.gather) {
    // An upload has at most MAX_PARTS part keys: each node sends them all in one call, and the slowest node is not waited for.
    for (const r of await s.b.gather(bucket, lo.prefix, { ...lo, limit: MAX_PARTS })) add(r);
    return out;
  }
  const list = await s.b.listBucket(bucket, lo);
  try {
    for (let r = await list.next(); r; r = await list.next()) add(r);
  } finally {
    await list.close();
  }
  return out;
}

export async function complete(s: MultipartHost, bucket: string, key: string, uploadId: string, partList: CompletePart[] | Promise<CompletePart[]>, opts?: CompleteOptions): Promise<ObjectMeta> {
  // The part listing is most of Complete's cost on a big upload: it and the upload's lookup start at once, while the
  // caller may still be reading and parsing the part list (a 1,000-part document takes ~10 ms to parse).
  const listing = storedParts(s, bucket, uploadId);
  listing.catch(() => undefined);
  const upload = getUpload(s, bucket, key, uploadId);
  upload.catch(() => undefined);
  const list = await partList;
  const sig = list.map((p) => `${p.partNumber}:${stripQuotes(p.etag)}`).join(",");
  let up: MultipartUpload;
  try {
    up = await upload;
  } catch (err) {
    if (!isBlobError(err, "NoSuchUpload")) throw err;
    // A retry after success: the object says which upload made it.
    const { record } = await s.b.coordinator.head(bucket, key);
    if (record && !record.tombstone) {
      const m = storedOf(record);
      if (m.mpu?.id === uploadId && m.mpu.sig === sig && !m.deleteMarker) return metaOf(record);
    }
    throw err;
  }
  if (list.length === 0) throw blobError("EmptyPartList", "CompleteMultipartUpload needs at least one part", { uploadId });
  const stored = await listing;
  const chosen = chooseParts(list, stored, uploadId);
  const checksums: Checksums = {};
  const alg = up.checksumAlgorithm;
  if (alg && chosen.every((p) => p.info.checksums?.[alg])) checksums[alg] = compositeChecksum(alg, chosen.map((p) => p.info.checksums![alg]!));
  // The object references the parts at the versions listed: nothing is copied (blob-manifest.ts).
  const manifest: Manifest = { uploadId, parts: chosen.map((p) => ({ ...p.info, version: p.rec.version })) };
  const meta: StoredMeta = {
    ...up.headers, etag: multipartEtag(chosen.map((p) => p.info.etag)), lastModified: Date.now(), userMeta: up.userMeta, checksums,
    size: chosen.reduce((n, p) => n + p.info.size, 0), mpu: { id: uploadId, sig, parts: chosen.length }, ...extrasOf(up.extras),
  };
  const body = encodeManifest(manifest);
  const coord = s.b.coordinator;
  // In a versioned bucket the manifest is the new version's record (blob-versions.ts).
  const done = await s.commit(bucket, key, (k, versionId) => {
    // Named before the manifest is written: the S3 layer can send x-amz-version-id with early (keep-alive) headers.
    if (versionId) opts?.onVersionId?.(versionId);
    return coord.put({ bucket, key: k, meta: JSON.stringify(versionId ? { ...meta, versionId } : meta) }, once(body), { size: body.length });
  });
  await coord.delete(bucket, uploadKey(key, uploadId)).catch(() => undefined);
  const used = new Set(chosen.map((p) => p.rec.key));
  await dropAll(s, bucket, [...stored.values()].map((p) => p.rec.key).filter((k) => !used.has(k)));
  return done;
}

async function dropAll(s: MultipartHost, bucket: string, keys: string[]): Promise<void> {
  let i = 0;
  const worker = async () => { while (i < keys.length) await s.b.coordinator.delete(bucket, keys[i++]!).catch(() => undefined); };
  await Promise.all(Array.from({ length: 8 }, worker));
}

export async function abort(s: MultipartHost, bucket: string, key: string, uploadId: string): Promise<void> {
  await getUpload(s, bucket, key, uploadId);
  await s.b.coordinator.delete(bucket, uploadKey(key, uploadId));
  // Listed after the upload's tombstone: a part that lands later sees the tombstone and takes itself back (uploadPart).
  await dropAll(s, bucket, [...(await storedParts(s, bucket, uploadId)).values()].map((p) => p.rec.key));
}

export async function listParts(s: MultipartHost, bucket: string, key: string, uploadId: string, opts: { partNumberMarker?: number; maxParts: number }) {
  const listing = storedParts(s, bucket, uploadId, opts.partNumberMarker ?? 0);
  listing.catch(() => undefined);
  const upload = await getUpload(s, bucket, key, uploadId);
  const all = [...(await listing).values()].map((p) => p.info).sort((a, b) => a.partNumber - b.partNumber);
  const parts = all.slice(0, opts.maxParts);
  const isTruncated = all.length > parts.length;
  return { upload, parts, isTruncated, ...(isTruncated && parts.length ? { nextPartNumberMarker: parts[parts.length - 1]!.partNumber } : {}) };
}

export async function listUploads(s: MultipartHost, input: ListUploadsInput): Promise<ListUploadsResult> {
  await s.headBucket(input.bucket);
  const prefix = input.prefix ?? "";
  let after: string | undefined;
  if (input.keyMarker !== undefined && input.keyMarker !== "") {
    after = input.uploadIdMarker ? uploadKey(input.keyMarker, input.uploadIdMarker) : afterPrefix(`${UPLOAD_PREFIX}${input.keyMarker}\u0000`);
  }
  const list = await s.b.listBucket(input.bucket, { prefix: UPLOAD_PREFIX + prefix, ...(after ? { after } : {}) });
  const page = new RollUp<MultipartUpload>(prefix, input.delimiter, input.maxUploads);
  try {
    for (let r = await list.next(); r; r = await list.next()) {
      if (r.tombstone) continue;
      const up = parse<MultipartUpload>(r);
      const got = page.offer(up.key, () => up);
      if (got === "full") break;
      if (got) list.seek(afterPrefix(UPLOAD_PREFIX + got.prefix));
    }
  } finally {
    await list.close();
  }
  const { items: uploads, commonPrefixes, isTruncated } = page;
  const last = uploads[uploads.length - 1];
  return {
    uploads, commonPrefixes, isTruncated,
    ...(isTruncated && last ? { nextKeyMarker: last.key, nextUploadIdMarker: last.uploadId } : {}),
  };
}

/**
 * Tombstones every part record left in a bucket that holds no object and no
 * upload any more (parts of deleted multipart objects the sweeper has not
 * collected yet): once the bucket is gone the sweeper no longer visits it.
 */
export async function dropLeftoverParts(s: MultipartHost, bucket: string): Promise<void> {
  const list = await s.b.listBucket(bucket, { prefix: PART_PREFIX });
  const keys: string[] = [];
  try {
    for (let r = await list.next(); r; r = await list.next()) if (!r.tombstone) keys.push(r.key);
  } finally {
    await list.close();
  }
  await dropAll(s, bucket, keys);
}
