/**
 * Multipart uploads of the local blob store. Parts are files of their own;
 * Complete commits an object record that lists the chosen part files in order
 * (no byte is copied), drops the upload and its part records, retires parts
 * that were uploaded but not chosen, and leaves a "done" record so that a
 * retried Complete with the same part list returns the same object.
 *
 * Lock order: the upload (`u:<id>`) before the object key (`o:<bucket>/<key>`).
 */
import { randomBytes } from "node:crypto";
import { compositeChecksum, multipartEtag } from "./hash.js";
import {
  allParts, commitBatch, listParts, partKey, uploadIndexKey, type BatchOp, type DoneRecord, type UploadRecord,
} from "./local-meta.js";
import type { LocalBlobStore } from "./local.js";
import { chooseParts, s3Error, stripQuotes } from "./local-util.js";
import {
  MAX_PARTS, type BodyExpectations, type ChecksumAlgorithm, type Checksums, type MultipartUpload,
  type ObjectHeaders, type ObjectMeta, type PartInfo,
} from "./types.js";

const noSuchUpload = (uploadId: string) =>
  s3Error("not_found", "NoSuchUpload", `upload ${uploadId} does not exist: it was completed or aborted, or the id is wrong`, { uploadId });

async function getUpload(s: LocalBlobStore, bucket: string, key: string, uploadId: string): Promise<UploadRecord> {
  const up = await s.l.uploads.get(uploadId);
  if (!up || up.bucket !== bucket || up.key !== key) {
    await s.headBucket(bucket);
    throw noSuchUpload(uploadId);
  }
  return up;
}

export async function create(s: LocalBlobStore, bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm): Promise<MultipartUpload> {
  // Under the bucket's shared lock, as every commit into a bucket: DeleteBucket cannot run between check and batch.
  return s.locks.with(`b:${bucket}`, false, async () => {
    await s.headBucket(bucket);
    // Version first: uploads of one key list in the order they were started.
    const uploadId = s.nextVersion() + randomBytes(8).toString("hex");
    const up: UploadRecord = { uploadId, bucket, key, initiated: Date.now(), headers, userMeta };
    if (checksumAlgorithm) up.checksumAlgorithm = checksumAlgorithm;
    await commitBatch(s.l, [
      { type: "put", sublevel: s.l.uploads, key: uploadId, value: up },
      { type: "put", sublevel: s.l.uploadIndex, key: uploadIndexKey(bucket, key, uploadId), value: up },
    ]);
    return up;
  });
}

export async function uploadPart(s: LocalBlobStore, bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<PartInfo> {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
    throw s3Error("invalid_argument", "InvalidArgument", `part number must be an integer between 1 and ${MAX_PARTS}, got ${partNumber}`, { partNumber });
  }
  const up = await getUpload(s, bucket, key, uploadId);
  const got = await s.receive(body, expect, up.checksumAlgorithm ? [up.checksumAlgorithm] : []);
  const info: PartInfo = { partNumber, size: got.seg.size, etag: got.md5, lastModified: Date.now() };
  if (Object.keys(got.checksums).length) info.checksums = got.checksums;
  let retired: typeof got.seg[] = [];
  try {
    await s.locks.with(`u:${uploadId}`, true, async () => {
      if (!(await s.l.uploads.get(uploadId))) throw noSuchUpload(uploadId);
      const pk = partKey(uploadId, partNumber);
      const old = await s.l.parts.get(pk);
      retired = old ? [old.seg] : [];
      await commitBatch(s.l, [
        { type: "put", sublevel: s.l.parts, key: pk, value: { info, seg: got.seg } },
        ...s.holdOps(got),
        ...s.retireOps(retired),
      ]);
    });
  } catch (err) {
    await s.files.remove(got.seg).catch(() => {});
    throw err;
  }
  s.retire(retired);
  return info;
}

export async function complete(s: LocalBlobStore, bucket: string, key: string, uploadId: string, list: { partNumber: number; etag: string }[]): Promise<ObjectMeta> {
  const sig = list.map((p) => `${p.partNumber}:${stripQuotes(p.etag)}`).join(",");
  let unusedSegs: import("./files.js").Segment[] = [];
  const meta = await s.locks.with(`u:${uploadId}`, true, async () => {
    const up = await s.l.uploads.get(uploadId);
    if (!up || up.bucket !== bucket || up.key !== key) {
      const done = await s.l.done.get(uploadId);
      if (done && done.bucket === bucket && done.key === key && done.parts === sig) return done.meta;
      await s.headBucket(bucket);
      throw noSuchUpload(uploadId);
    }
    if (list.length === 0) throw s3Error("invalid_argument", "MalformedXML", "CompleteMultipartUpload needs at least one part", { uploadId });
    const stored = new Map((await allParts(s.l, uploadId)).map((p) => [p.info.partNumber, p]));
    const chosen = chooseParts(list, stored, uploadId);
    const chosenIds = new Set(chosen.map((p) => p.seg.id));
    unusedSegs = [...stored.values()].filter((p) => !chosenIds.has(p.seg.id)).map((p) => p.seg);
    const checksums: Checksums = {};
    const alg = up.checksumAlgorithm;
    if (alg && chosen.every((p) => p.info.checksums?.[alg])) checksums[alg] = compositeChecksum(alg, chosen.map((p) => p.info.checksums![alg]!));
    const meta: ObjectMeta = {
      ...up.headers, bucket, key,
      size: chosen.reduce((n, p) => n + p.info.size, 0),
      etag: multipartEtag(chosen.map((p) => p.info.etag)),
      lastModified: Date.now(), userMeta: up.userMeta, checksums,
      parts: chosen.map((p) => p.info), version: "",
    };
    // The done record holds `meta` itself: the batch encodes it after commitObject stamps the version.
    const done: DoneRecord = { bucket, key, parts: sig, meta, at: Date.now() };
    const extra: BatchOp[] = [
      { type: "del", sublevel: s.l.uploads, key: uploadId },
      { type: "del", sublevel: s.l.uploadIndex, key: uploadIndexKey(bucket, key, uploadId) },
      ...[...stored.keys()].map((n) => ({ type: "del" as const, sublevel: s.l.parts, key: partKey(uploadId, n) })),
      { type: "put", sublevel: s.l.done, key: uploadId, value: done },
      ...s.retireOps(unusedSegs),
    ];
    return s.commitObject({ meta, segs: chosen.map((p) => p.seg) }, extra, false);
  });
  s.retire(unusedSegs);
  return meta;
}

export async function abort(s: LocalBlobStore, bucket: string, key: string, uploadId: string): Promise<void> {
  const segs = await s.locks.with(`u:${uploadId}`, true, async () => {
    await getUpload(s, bucket, key, uploadId);
    const parts = await allParts(s.l, uploadId);
    await commitBatch(s.l, [
      { type: "del", sublevel: s.l.uploads, key: uploadId },
      { type: "del", sublevel: s.l.uploadIndex, key: uploadIndexKey(bucket, key, uploadId) },
      ...parts.map((p) => ({ type: "del" as const, sublevel: s.l.parts, key: partKey(uploadId, p.info.partNumber) })),
      ...s.retireOps(parts.map((p) => p.seg)),
    ]);
    return parts.map((p) => p.seg);
  });
  s.retire(segs);
}

export async function parts(s: LocalBlobStore, bucket: string, key: string, uploadId: string, opts: { partNumberMarker?: number; maxParts: number }) {
  const upload = await getUpload(s, bucket, key, uploadId);
  return { upload, ...(await listParts(s.l, uploadId, opts.partNumberMarker ?? 0, opts.maxParts)) };
}

/** Forgets completed uploads older than `before` (ms); a retry after that gets NoSuchUpload, as on AWS. */
export async function expireDone(s: LocalBlobStore, before: number): Promise<void> {
  const old: string[] = [];
  for await (const [k, v] of s.l.done.iterator()) if (v.at < before) old.push(k);
  if (old.length) await s.l.done.batch(old.map((key) => ({ type: "del" as const, key })));
}

