/**
 * The S3 blob store over the ring: the BlobStore the S3 layer talks to on
 * every node, whatever the cluster's size. Objects are replica records placed
 * by bucket + key and written/read through the quorum coordinator; buckets are
 * a table replicated to every node; listings merge every node's key-ordered
 * records (listing.ts); multipart uploads keep their upload and part records
 * as internal keys of the bucket (blob-multipart.ts), and a completed
 * upload's object is a manifest that references them (blob-manifest.ts).
 *
 * The object's S3 metadata (ETag, checksums, headers) travels as the record's
 * opaque meta; the ETag and checksums are known only once the body has passed,
 * so they go in the replicas' trailer. A body that fails what the client
 * promised (Content-MD5, x-amz-checksum-*, length) fails before the trailer:
 * no replica commits it.
 */
import { ThocError } from "../../errors/index.js";
import {
  BUCKET_CONFIG_SECTIONS, RollUp, algorithmsFor, blobError, checkBucketName, partRange, pickHeaders,
  type BlobStore, type BodyExpectations, type BucketConfigSection, type BucketConfigSections, type BucketInfo, type ByteRange, type ChecksumAlgorithm,
  type GetObjectOptions, type GetObjectResult, type ListObjectsInput, type ListObjectsResult, type ListUploadsInput, type ListUploadsResult, type MultipartUpload,
  type ObjectExtras, type ObjectHeaders, type ObjectMeta, type PartInfo, type PutObjectInput,
  type CompleteOptions, type CompletePart, type DeleteObjectResult, type ListVersionsInput, type ListVersionsResult, type VersioningState,
} from "../blob/index.js";
import type { HeadResult } from "./coordinator.js";
import * as ver from "./blob-versions.js";
import { extrasOf, isManifest, metaOf, storedMeta, storedOf, verifying, checkKey, type ReplicatedBackend, type StoredMeta } from "./blob-meta.js";
import { manifestMeta, openManifestBody, readManifest } from "./blob-manifest.js";
import * as mpu from "./blob-multipart.js";
import { afterPrefix } from "./listing.js";
import { INTERNAL_KEY_PREFIX, once, type ReplicaRecord } from "./replica-store.js";
import { SideMeta, applySide } from "./side-meta.js";

export class ReplicatedBlobStore implements BlobStore {
  /** Tags/ACL changed after the write (updateObjectMeta), kept beside the object (side-meta.ts). */
  private readonly side: SideMeta;
  /** Per bucket: when a missing configuration section was last asked of the peers (section()). */
  private readonly sectionPulls = new Map<string, number>();
  /**
   * Parsed bucket-table values (bucket records and configuration sections) by
   * table key, with the text they were parsed from. Every S3 request reads the
   * bucket and a few sections several times; a value is reused only while the
   * table still holds that very text, so a write here or one replicated from a
   * peer (which replaces the text) is seen on the next read, with no
   * invalidation to miss. Values are frozen: callers share them.
   */
  private readonly parsed = new Map<string, { raw: string; value: unknown }>();

  constructor(readonly b: ReplicatedBackend, private readonly now: () => number = Date.now) {
    this.side = new SideMeta(b, (bucket) => sectionKey(bucket, "sideMeta"));
  }

  async listBuckets(): Promise<BucketInfo[]> {
    this.b.ready?.();
    const all = await this.b.buckets.list();
    return all.filter((e) => !e.key.includes(SECTION_SEP)).map((e) => JSON.parse(e.value) as BucketInfo);
  }

  async getBucketConfig<S extends BucketConfigSection>(bucket: string, section: S): Promise<BucketConfigSections[S] | undefined> {
    // The bucket's record is here in the common case: checked without another async round (headBucket pulls when it is not).
    if (this.b.buckets.table.get(bucket) === undefined) await this.headBucket(bucket);
    else this.b.ready?.();
    const raw = await this.section(bucket, section);
    if (raw === undefined) return undefined;
    try {
      return this.parse<BucketConfigSections[S]>(sectionKey(bucket, section), raw);
    } catch {
      throw blobError("Corrupt", `bucket ${bucket}: stored ${section} configuration is not JSON`);
    }
  }

  /** JSON.parse of a bucket-table value, reused while the table holds the same text (see `parsed`). */
  private parse<T>(key: string, raw: string): T {
    const hit = this.parsed.get(key);
    if (hit !== undefined && hit.raw === raw) return hit.value as T;
    const value = deepFreeze(JSON.parse(raw) as unknown);
    // Deleted buckets leave entries behind: a bound, not an eviction policy (refilled on the next read).
    if (this.parsed.size >= PARSED_MAX) this.parsed.clear();
    this.parsed.set(key, { raw, value });
    return value as T;
  }

  async putBucketConfig<S extends BucketConfigSection>(bucket: string, section: S, value: BucketConfigSections[S] | undefined): Promise<void> {
    await this.headBucket(bucket);
    await this.b.buckets.put(sectionKey(bucket, section), value === undefined ? null : JSON.stringify(value));
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
    // Every request asks, several times: the local copy without an async hop; the cluster lookup (a pull) only on a miss.
    const cur = this.b.buckets.table.get(name) ?? await this.b.buckets.lookup(name);
    if (cur === undefined) throw blobError("NoSuchBucket", `bucket ${name} does not exist`, { bucket: name });
    return this.parse<BucketInfo>(name, cur);
  }

  /**
   * Refuses a bucket that still holds an object (or, in a versioned bucket,
   * any version or delete marker); uploads in progress go with the bucket,
   * as in S3, so a tool that emptied the bucket after an interrupted upload
   * can delete it.
   */
  async deleteBucket(name: string): Promise<void> {
    await this.headBucket(name);
    // A listing of prefix "" leaves the store's internal keys (uploads, parts, versions) out: ask for each kind.
    if (await this.anyLive(name, "") || await this.anyLive(name, VERSION_PREFIX)) {
      throw blobError("BucketNotEmpty", `bucket ${name} is not empty: delete its objects (and, if it was ever versioned, their versions and delete markers) first`, { bucket: name });
    }
    const uploads: string[] = [];
    const list = await this.b.listBucket(name, { prefix: mpu.UPLOAD_PREFIX });
    try {
      for (let r = await list.next(); r; r = await list.next()) if (!r.tombstone) uploads.push(r.key);
    } finally {
      await list.close();
    }
    for (const k of uploads) await this.b.coordinator.delete(name, k);
    await mpu.dropLeftoverParts(this, name);
    await this.side.dropAll(name);
    // The sections go first: a bucket re-created under this name starts with none of them.
    for (const section of BUCKET_CONFIG_SECTIONS) {
      if (this.b.buckets.table.get(sectionKey(name, section)) !== undefined) await this.b.buckets.put(sectionKey(name, section), null);
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
    const base: StoredMeta = { ...pickHeaders(input.headers), etag: "", lastModified: this.now(), userMeta: input.userMeta, checksums: {}, ...extrasOf(input.extras) };
    if (input.headers && (input.headers as { storageClass?: string }).storageClass) base.storageClass = (input.headers as { storageClass?: string }).storageClass;
    return this.commit(input.bucket, input.key, (key, versionId) => {
      const vbase: StoredMeta = versionId === undefined ? base : { ...base, versionId };
      return this.b.coordinator.put({ bucket: input.bucket, key, meta: storedMeta(vbase) }, v.body, {
        ...(v.sha256 ? { sha256: v.sha256 } : {}),
        ...(input.expect.size !== undefined ? { size: input.expect.size } : {}),
        finalMeta: () => {
          const d = v.digests();
          return storedMeta({ ...vbase, etag: d.md5, checksums: d.checksums });
        },
      });
    });
  }

  /** The bucket's versioning state; undefined (never versioned) costs nothing more than this local lookup. */
  /**
   * A section's stored JSON. Sections are read on every request (policy,
   * versioning, default encryption), and most buckets have none: a miss here
   * asks the peers (ClusterTable.lookup pulls every live peer's table) at most
   * once per SECTION_PULL_MS per bucket, not on every request. A section
   * written on another node reaches this one with the write's push (the write
   * waits for a majority, the rest follow at once) or the next table sync.
   */
  private async section(bucket: string, section: BucketConfigSection): Promise<string | undefined> {
    const key = sectionKey(bucket, section);
    const here = this.b.buckets.table.get(key);
    if (here !== undefined) return here;
    const now = Date.now();
    const last = this.sectionPulls.get(bucket);
    if (last !== undefined && now - last < SECTION_PULL_MS) return undefined;
    if (this.sectionPulls.size > 10_000) this.sectionPulls.clear();
    this.sectionPulls.set(bucket, now);
    return this.b.buckets.lookup(key);
  }

  private async versioning(bucket: string): Promise<VersioningState | undefined> {
    const raw = await this.section(bucket, "versioning");
    return raw === undefined ? undefined : this.parse<VersioningState>(sectionKey(bucket, "versioning"), raw);
  }

  /**
   * Writes an object's new record through `write`: at the key itself in a
   * never-versioned bucket, else as a new version plus the key's pointer
   * (blob-versions.ts). PUT, CompleteMultipartUpload (and so CopyObject) and
   * delete markers all come through here.
   */
  async commit(bucket: string, key: string, write: ver.VersionWrite): Promise<ObjectMeta> {
    const state = await this.versioning(bucket);
    if (!state) return metaOf(await write(key, undefined));
    return ver.writeVersion(this.b, bucket, key, state, write);
  }

  /**
   * The record holding the object's current body: the key's own record, or
   * in a versioned bucket the version record its pointer names (a second
   * quorum round). NoSuchKey, with the marker's id, when the latest version
   * is a delete marker.
   */
  private async current(bucket: string, key: string, versionId: string | undefined, healed = false): Promise<{ storageKey: string; known: HeadResult }> {
    if (key.startsWith(INTERNAL_KEY_PREFIX)) throw noSuchKey(bucket, key);
    if (versionId !== undefined) return ver.findVersion(this.b, bucket, key, versionId);
    const known = await this.b.coordinator.head(bucket, key);
    const record = known.record;
    if (!record || record.tombstone) throw noSuchKey(bucket, key);
    // Most records are not pointers: a string test spares a never-versioned GET one more parse of the meta.
    if (!record.meta.includes('"vref":')) return { storageKey: key, known };
    const m = storedOf(record);
    if (!ver.isPointer(m)) return { storageKey: key, known };
    if (m.deleteMarker) throw blobError("NoSuchKey", `no object ${key} in bucket ${bucket} (its latest version is a delete marker)`, { bucket, key, deleteMarker: true, ...(m.versionId ? { versionId: m.versionId } : {}) });
    const storageKey = ver.versionKey(key, m.vref);
    const v = await this.b.coordinator.head(bucket, storageKey);
    if (!v.record || v.record.tombstone) {
      // The version was deleted by id and the pointer not moved (its deleter died): move it now, and read again.
      if (healed) throw noSuchKey(bucket, key);
      await ver.repoint(this.b, bucket, key, record.version);
      return this.current(bucket, key, undefined, true);
    }
    return { storageKey, known: v };
  }

  async headObject(bucket: string, key: string, opts: { versionId?: string } = {}): Promise<ObjectMeta> {
    await this.headBucket(bucket);
    const side = this.side.read(bucket, key);
    if (opts.versionId === undefined && !key.startsWith(INTERNAL_KEY_PREFIX)) {
      // A pointer carries the latest version's meta: one round, unless the part list is needed.
      const known = await this.b.coordinator.head(bucket, key);
      const rec = known.record;
      if (rec && !rec.tombstone) {
        const m = storedOf(rec);
        if (!isManifest(m) && !m.deleteMarker) return this.side.apply(metaOf(rec), side);
      }
    }
    const { storageKey, known } = await this.current(bucket, key, opts.versionId);
    const record = known.record!;
    if (!isManifest(storedOf(record))) return this.side.apply({ ...metaOf(record), key }, side);
    // The part list (for ?partNumber=) is in the manifest, not in the record's meta.
    const m = await readManifest(this.b.coordinator, bucket, storageKey, known);
    return this.side.apply({ ...manifestMeta(m.record, m.manifest), key }, side);
  }

  async getObject(bucket: string, key: string, opts: GetObjectOptions = {}): Promise<GetObjectResult> {
    try {
      return await this.getOnce(bucket, key, opts);
    } catch (err) {
      // Overwritten between the quorum read and the body read: read the new version once.
      if (ThocError.from(err).code !== "aborted") throw err;
      return this.getOnce(bucket, key, opts);
    }
  }

  private async getOnce(bucket: string, userKey: string, opts: GetObjectOptions): Promise<GetObjectResult> {
    await this.headBucket(bucket);
    const side = this.side.read(bucket, userKey);
    const { storageKey: key, known } = await this.current(bucket, userKey, opts.versionId);
    if (!known.record || known.record.tombstone) throw noSuchKey(bucket, userKey);
    // Most buckets have no side records: no promise to wait for then (this path is every GET's).
    const sideRec = side && await side;
    if (isManifest(storedOf(known.record))) {
      const { record, manifest } = await readManifest(this.b.coordinator, bucket, key, known);
      const meta = applySide({ ...manifestMeta(record, manifest), key: userKey }, sideRec);
      let range = opts.prepare ? opts.prepare(meta) : opts.range;
      if (opts.partNumber !== undefined) range = partRange(meta, opts.partNumber);
      if (range && meta.size === 0) range = undefined;
      return { meta, body: await openManifestBody(this.b.coordinator, bucket, key, manifest, range), ...(range ? { range } : {}) };
    }
    const meta = applySide({ ...metaOf(known.record), key: userKey }, sideRec);
    let range = opts.prepare ? opts.prepare(meta) : opts.range;
    if (opts.partNumber !== undefined) range = partRange(meta, opts.partNumber);
    if (range && meta.size === 0) range = undefined;
    const whole = !range || (range.start === 0 && range.end >= meta.size - 1);
    const got = await this.b.coordinator.get(bucket, key, { known, ...(whole ? {} : { range }) });
    return { meta: applySide({ ...metaOf(got.record), key: userKey }, sideRec), body: got.body, ...(range ? { range } : {}) };
  }

  async deleteObject(bucket: string, key: string, opts: { versionId?: string } = {}): Promise<DeleteObjectResult> {
    await this.headBucket(bucket);
    checkKey(key);
    if (opts.versionId !== undefined) return ver.deleteVersion(this.b, bucket, key, opts.versionId);
    const state = await this.versioning(bucket);
    if (!state) {
      await this.b.coordinator.delete(bucket, key);
      await this.side.dropFor(bucket, key);
      return {};
    }
    const marker = (storageKey: string, versionId: string | undefined): Promise<ReplicaRecord> => {
      const m: StoredMeta = { etag: "", lastModified: this.now(), userMeta: {}, checksums: {}, ...(versionId ? { versionId } : {}), deleteMarker: true };
      return this.b.coordinator.put({ bucket, key: storageKey, meta: JSON.stringify(m) }, once(), { size: 0 });
    };
    const meta = await ver.writeVersion(this.b, bucket, key, state, marker);
    return { ...(meta.versionId ? { versionId: meta.versionId } : {}), deleteMarker: true };
  }

  async listObjectVersions(input: ListVersionsInput): Promise<ListVersionsResult> {
    await this.headBucket(input.bucket);
    return ver.listVersions(this.b, input, (await this.versioning(input.bucket)) !== undefined);
  }

  async listObjects(input: ListObjectsInput): Promise<ListObjectsResult> {
    await this.headBucket(input.bucket);
    const prefix = input.prefix ?? "";
    let after = input.after;
    // Resuming after a common prefix skips everything under it (it was returned whole).
    const rolled = after !== undefined && input.delimiter && after.startsWith(prefix) ? after.indexOf(input.delimiter, prefix.length) : -1;
    if (after !== undefined && rolled >= 0) after = afterPrefix(after.slice(0, rolled + input.delimiter!.length));
    const list = await this.b.listBucket(input.bucket, { prefix, ...(after !== undefined ? { after } : {}) });
    // No object key starts with U+0001 (checkKey): such a prefix would list the store's own records (uploads, parts, versions, side records).
    if (prefix.startsWith(INTERNAL_KEY_PREFIX)) return { objects: [], commonPrefixes: [], isTruncated: false };
    const page = new RollUp<ObjectMeta>(prefix, input.delimiter, input.maxKeys);
    try {
      for (let r = await list.next(); r; r = await list.next()) {
        if (r.tombstone) continue;
        // A versioned key whose latest version is a delete marker is not listed (a string test first: most records are not).
        if (r.meta.includes('"deleteMarker":true') && storedOf(r).deleteMarker) continue;
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

  async updateObjectMeta(bucket: string, key: string, patch: Pick<ObjectExtras, "tags" | "acl">, opts: { versionId?: string } = {}): Promise<ObjectMeta> {
    await this.headBucket(bucket);
    checkKey(key);
    return this.side.update(bucket, key, patch, opts);
  }

  createMultipartUpload(bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm, extras?: ObjectExtras): Promise<MultipartUpload> {
    checkKey(key);
    return mpu.create(this, bucket, key, headers, userMeta, checksumAlgorithm, extras);
  }

  uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<PartInfo> {
    return mpu.uploadPart(this, bucket, key, uploadId, partNumber, body, expect);
  }

  completeMultipartUpload(bucket: string, key: string, uploadId: string, parts: CompletePart[] | Promise<CompletePart[]>, opts?: CompleteOptions): Promise<ObjectMeta> {
    return mpu.complete(this, bucket, key, uploadId, parts, opts);
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

export { VERSION_PREFIX } from "./blob-versions.js";
import { VERSION_PREFIX } from "./blob-versions.js";

/** At most this many parsed bucket-table values are kept (ReplicatedBlobStore.parsed). */
const PARSED_MAX = 10_000;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** How often a bucket's missing configuration sections are asked of the peers (see section()). */
const SECTION_PULL_MS = 1000;

/** Bucket names never hold U+0000, so a section's key cannot collide with a bucket's. */
const SECTION_SEP = "\u0000";
const sectionKey = (bucket: string, section: BucketConfigSection) => `${bucket}${SECTION_SEP}${section}`;

export function noSuchKey(bucket: string, key: string): ThocError {
  return blobError("NoSuchKey", `no object ${key} in bucket ${bucket}`, { bucket, key });
}
