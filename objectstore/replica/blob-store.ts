/**
 * The S3 blob store over the ring: the BlobStore the S3 layer talks to on
 * every node, whatever the cluster's size. Objects are replica records placed
 * by bucket + key and written/read through the quorum coordinator; buckets are
 * a table replicated to every node; listings merge every node's key-ordered
 * records (listing.ts); multipart uploads keep their upload and part records
 * as internal keys of the bucket (blob-multipart.ts).
 *
 * The object's S3 metadata (ETag, checksums, headers) travels as the record's
 * opaque meta; the ETag and checksums are known only once the body has passed,
 * so they go in the replicas' trailer. A body that fails what the client
 * promised (Content-MD5, x-amz-checksum-*, length) fails before the trailer:
 * no replica commits it.
 */
import { ThocError } from "../../errors/index.js";
import {
  BodyHasher, ChunkHasher, RollUp, algorithmsFor, blobError, checkBucketName, partRange, pickHeaders, verifyDigests,
  type BlobStore, type BodyDigests, type BodyExpectations, type BucketInfo, type ByteRange, type ChecksumAlgorithm, type ChunkDigests,
  type GetObjectResult, type ListObjectsInput, type ListObjectsResult, type ListUploadsInput, type ListUploadsResult, type MultipartUpload,
  type ObjectHeaders, type ObjectMeta, type PartInfo, type PutObjectInput,
} from "../blob/index.js";
import * as mpu from "./blob-multipart.js";
import type { Coordinator } from "./coordinator.js";
import { afterPrefix, type MergedList } from "./listing.js";
import { INTERNAL_KEY_PREFIX, type ReplicaRecord } from "./replica-store.js";
import type { ClusterTable } from "../../cluster/index.js";

export interface ReplicatedBackend {
  readonly coordinator: Coordinator;
  readonly buckets: ClusterTable;
  /** Merged listing of a bucket over the reachable nodes; unavailable when too few are reachable to be complete. */
  listBucket(bucket: string, opts: { prefix?: string; after?: string }): Promise<MergedList>;
  /** Throws (unavailable) while this node cannot coordinate requests yet. */
  ready?: () => void;
}

/** What a record's meta holds: ObjectMeta without what the record itself says, plus internal fields. */
export type StoredMeta = Omit<ObjectMeta, "bucket" | "key" | "version" | "size"> & {
  size?: number;
  /** Set on objects made by CompleteMultipartUpload: makes a retried Complete idempotent. */
  mpu?: { id: string; sig: string };
};

export function metaOf(rec: ReplicaRecord): ObjectMeta {
  let m: StoredMeta;
  try {
    m = JSON.parse(rec.meta) as StoredMeta;
  } catch {
    throw blobError("Corrupt", `object ${rec.bucket}/${rec.key}: stored metadata is not JSON`);
  }
  const { mpu: _m, ...rest } = m;
  return { ...rest, bucket: rec.bucket, key: rec.key, version: rec.version, size: rec.size };
}

export function storedMeta(m: ObjectMeta | StoredMeta): string {
  const { bucket: _b, key: _k, version: _v, size: _s, ...rest } = m as ObjectMeta;
  return JSON.stringify(rest);
}

export function checkKey(key: string): void {
  if (!key) throw blobError("InvalidArgument", "object key must not be empty");
  if (key.startsWith(INTERNAL_KEY_PREFIX) || key.startsWith("\u0000")) {
    throw blobError("InvalidArgument", "object keys may not start with U+0000 or U+0001 (reserved for the store's own records)", { key });
  }
  if (Buffer.byteLength(key) > 1024) throw blobError("KeyTooLong", "object key is longer than 1024 bytes");
}

/** Bodies announced at least this large hash on worker threads (blob/hash-chunks.ts); smaller ones inline. */
const OFFLOAD_MIN = 4 << 20;

/**
 * Passes a body through while hashing it; verifies the client's promises
 * before it ends, so a bad body errors the stream instead of completing it.
 * A large body also gets its SHA-256 here, on the hashing workers, for the
 * replicas' trailer (sha256 is then defined: hand it to coordinator.put so
 * the tee does not hash the body again on the event loop).
 */
export function verifying(body: AsyncIterable<Uint8Array>, expect: BodyExpectations, algs: ChecksumAlgorithm[]): { body: AsyncIterable<Uint8Array>; digests(): BodyDigests; sha256?: () => string } {
  let out: ChunkDigests | undefined;
  const tooLong = (n: number) => {
    if (expect.size !== undefined && n > expect.size) {
      throw blobError("IncompleteBody", `the body is longer than the ${expect.size} bytes announced`, { expected: expect.size });
    }
  };
  async function* inline(): AsyncIterable<Uint8Array> {
    const h = new BodyHasher(algs);
    for await (const c of body) {
      h.update(c);
      tooLong(h.size);
      yield c;
    }
    const d = h.finish();
    verifyDigests(d, expect);
    out = d;
  }
  async function* offloaded(): AsyncIterable<Uint8Array> {
    const h = new ChunkHasher(algs, { sha256: true });
    let n = 0;
    try {
      for await (const c of body) {
        n += c.byteLength;
        tooLong(n);
        h.update(c);
        const wait = h.ready();
        if (wait) await wait;
        h.check();
        yield c;
      }
      const d = await h.finish();
      verifyDigests(d, expect);
      out = d;
    } finally {
      if (!out) h.abandon();
    }
  }
  const whole = () => {
    if (!out) throw new ThocError("data_loss", "the body did not arrive whole; nothing stored");
    return out;
  };
  const large = (expect.size ?? 0) >= OFFLOAD_MIN;
  return {
    body: large ? offloaded() : inline(),
    digests: whole,
    ...(large ? { sha256: () => whole().sha256! } : {}),
  };
}

export class ReplicatedBlobStore implements BlobStore {
  constructor(readonly b: ReplicatedBackend, private readonly now: () => number = Date.now) {}

  async listBuckets(): Promise<BucketInfo[]> {
    this.b.ready?.();
    const all = await this.b.buckets.list();
    return all.map((e) => JSON.parse(e.value) as BucketInfo);
  }

  async createBucket(name: string, owner: string): Promise<{ created: boolean; bucket: BucketInfo }> {
    this.b.ready?.();
    checkBucketName(name);
    const cur = await this.b.buckets.lookup(name);
    if (cur !== undefined) {
      const info = JSON.parse(cur) as BucketInfo;
      if (info.owner === owner) return { created: false, bucket: info };
      throw blobError("BucketAlreadyExists", `bucket ${name} is owned by someone else: choose another name`, { bucket: name });
    }
    const bucket: BucketInfo = { name, createdAt: this.now(), owner };
    await this.b.buckets.put(name, JSON.stringify(bucket));
    return { created: true, bucket };
  }

  async headBucket(name: string): Promise<BucketInfo> {
    this.b.ready?.();
    const cur = await this.b.buckets.lookup(name);
    if (cur === undefined) throw blobError("NoSuchBucket", `bucket ${name} does not exist`, { bucket: name });
    return JSON.parse(cur) as BucketInfo;
  }

  async deleteBucket(name: string): Promise<void> {
    await this.headBucket(name);
    if (await this.anyLive(name, "") || await this.anyLive(name, mpu.UPLOAD_PREFIX)) {
      throw blobError("BucketNotEmpty", `bucket ${name} is not empty: delete its objects and abort its multipart uploads first`, { bucket: name });
    }
    await this.b.buckets.put(name, null);
  }

  private async anyLive(bucket: string, prefix: string): Promise<boolean> {
    const list = await this.b.listBucket(bucket, { prefix });
    try {
      for (let r = await list.next(); r; r = await list.next()) if (!r.tombstone) return true;
      return false;
    } finally {
      await list.close();
    }
  }

  async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    checkKey(input.key);
    await this.headBucket(input.bucket);
    const v = verifying(input.body, input.expect, algorithmsFor(input.expect));
    const base: StoredMeta = { ...pickHeaders(input.headers), etag: "", lastModified: this.now(), userMeta: input.userMeta, checksums: {} };
    if (input.headers && (input.headers as { storageClass?: string }).storageClass) base.storageClass = (input.headers as { storageClass?: string }).storageClass;
    const rec = await this.b.coordinator.put({ bucket: input.bucket, key: input.key, meta: storedMeta(base) }, v.body, {
      ...(v.sha256 ? { sha256: v.sha256 } : {}),
      finalMeta: () => {
        const d = v.digests();
        return storedMeta({ ...base, etag: d.md5, checksums: d.checksums });
      },
    });
    return metaOf(rec);
  }

  async headObject(bucket: string, key: string): Promise<ObjectMeta> {
    await this.headBucket(bucket);
    if (key.startsWith(INTERNAL_KEY_PREFIX)) throw noSuchKey(bucket, key);
    const { record } = await this.b.coordinator.head(bucket, key);
    if (!record || record.tombstone) throw noSuchKey(bucket, key);
    return metaOf(record);
  }

  async getObject(bucket: string, key: string, opts: { range?: ByteRange; partNumber?: number } = {}): Promise<GetObjectResult> {
    try {
      return await this.getOnce(bucket, key, opts);
    } catch (err) {
      // Overwritten between the quorum read and the body read: read the new version once.
      if (ThocError.from(err).code !== "aborted") throw err;
      return this.getOnce(bucket, key, opts);
    }
  }

  private async getOnce(bucket: string, key: string, opts: { range?: ByteRange; partNumber?: number }): Promise<GetObjectResult> {
    await this.headBucket(bucket);
    if (key.startsWith(INTERNAL_KEY_PREFIX)) throw noSuchKey(bucket, key);
    const known = await this.b.coordinator.head(bucket, key);
    if (!known.record || known.record.tombstone) throw noSuchKey(bucket, key);
    const meta = metaOf(known.record);
    let range = opts.range;
    if (opts.partNumber !== undefined) range = partRange(meta, opts.partNumber);
    if (range && meta.size === 0) range = undefined;
    const whole = !range || (range.start === 0 && range.end >= meta.size - 1);
    const got = await this.b.coordinator.get(bucket, key, { known, ...(whole ? {} : { range }) });
    return { meta: metaOf(got.record), body: got.body, ...(range ? { range } : {}) };
  }

  async deleteObject(bucket: string, key: string): Promise<void> {
    await this.headBucket(bucket);
    checkKey(key);
    await this.b.coordinator.delete(bucket, key);
  }

  async listObjects(input: ListObjectsInput): Promise<ListObjectsResult> {
    await this.headBucket(input.bucket);
    const prefix = input.prefix ?? "";
    let after = input.after;
    // Resuming after a common prefix skips everything under it (it was returned whole).
    const rolled = after !== undefined && input.delimiter && after.startsWith(prefix) ? after.indexOf(input.delimiter, prefix.length) : -1;
    if (after !== undefined && rolled >= 0) after = afterPrefix(after.slice(0, rolled + input.delimiter!.length));
    const list = await this.b.listBucket(input.bucket, { prefix, ...(after !== undefined ? { after } : {}) });
    const page = new RollUp<ObjectMeta>(prefix, input.delimiter, input.maxKeys);
    try {
      for (let r = await list.next(); r; r = await list.next()) {
        if (r.tombstone) continue;
        const rec = r;
        const got = page.offer(r.key, () => metaOf(rec));
        if (got === "full") break;
        if (got) list.seek(afterPrefix(got.prefix));
      }
    } finally {
      await list.close();
    }
    const { items: objects, commonPrefixes, isTruncated, last } = page;
    return { objects, commonPrefixes, isTruncated, ...(isTruncated && last !== undefined ? { nextAfter: last } : {}) };
  }

  createMultipartUpload(bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm): Promise<MultipartUpload> {
    checkKey(key);
    return mpu.create(this, bucket, key, headers, userMeta, checksumAlgorithm);
  }

  uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<PartInfo> {
    return mpu.uploadPart(this, bucket, key, uploadId, partNumber, body, expect);
  }

  completeMultipartUpload(bucket: string, key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<ObjectMeta> {
    return mpu.complete(this, bucket, key, uploadId, parts);
  }

  abortMultipartUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    return mpu.abort(this, bucket, key, uploadId);
  }

  listParts(bucket: string, key: string, uploadId: string, opts: { partNumberMarker?: number; maxParts: number }) {
    return mpu.listParts(this, bucket, key, uploadId, opts);
  }

  listMultipartUploads(input: ListUploadsInput): Promise<ListUploadsResult> {
    return mpu.listUploads(this, input);
  }

  async close(): Promise<void> {
    await this.b.coordinator.settled();
  }
}

export function noSuchKey(bucket: string, key: string): ThocError {
  return blobError("NoSuchKey", `no object ${key} in bucket ${bucket}`, { bucket, key });
}
