/**
 * The blob store seam between the S3 protocol layer (objectstore/s3) and the
 * storage behind it: the replicated store over the ring
 * (objectstore/replica/blob-store.ts; --dev runs it on a ring of one) and an
 * in-memory one for tests of the layers above (objectstore/blob/memory.ts).
 *
 * Bodies are streams (AsyncIterable<Uint8Array>), never whole buffers, so
 * memory stays bounded however big an object is. Errors are ThocErrors; those
 * a client caused or can act on carry a BlobErrorCode (errors.ts: NoSuchBucket,
 * NoSuchKey, NoSuchUpload, BucketNotEmpty, BucketAlreadyExists, InvalidPart,
 * InvalidPartOrder, EntityTooSmall, BadDigest, InvalidRange, ...), which the
 * S3 layer maps to S3 errors.
 */

import type { BucketConfigSection, BucketConfigSections, CannedAcl } from "./bucket-config.js";

export type ChecksumAlgorithm = "crc32" | "crc32c" | "sha1" | "sha256";

/** Base64 digests, as S3 sends and returns them in x-amz-checksum-*. */
export type Checksums = Partial<Record<ChecksumAlgorithm, string>>;

/** Standard headers stored with an object and returned on GET/HEAD. */
export interface ObjectHeaders {
  contentType?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  expires?: string;
}

export interface PartInfo {
  partNumber: number;
  size: number;
  /** Hex MD5 of the part, no quotes. */
  etag: string;
  checksums?: Checksums;
  lastModified?: number;
  /**
   * The part's own encryption parameters (the S3 layer's sse.ts: its random
   * IV), kept verbatim from BodyExpectations.sse and never read by the store.
   * Absent on unencrypted parts and on parts written before parts had their own.
   */
  sse?: string;
}

/**
 * How an object's body is encrypted at rest (SSE). The fields past `mode` are
 * the encryption module's own (objectstore/s3 sse): the store keeps them
 * verbatim and never needs to read them.
 */
export interface ObjectEncryption {
  mode: "SSE-S3" | "SSE-C";
  [field: string]: string | number | boolean | undefined;
}

/**
 * What an object carries besides its body and headers and what a client can
 * change later without rewriting the body (tags, ACL: updateObjectMeta).
 */
export interface ObjectExtras {
  /** Object tags (x-amz-tagging, PutObjectTagging). */
  tags?: Record<string, string>;
  /** Canned ACL (x-amz-acl, PutObjectAcl); none means private. */
  acl?: CannedAcl;
  sse?: ObjectEncryption;
}

export interface ObjectMeta extends ObjectHeaders, ObjectExtras {
  bucket: string;
  key: string;
  size: number;
  /** Hex MD5 for single PUTs; "<hex md5 of part md5s>-N" for multipart. No quotes. */
  etag: string;
  /** Milliseconds since the epoch. */
  lastModified: number;
  /** x-amz-meta-* without the prefix, lower-case names. */
  userMeta: Record<string, string>;
  /** Checksums the client asked for (and we verified), returned on GET/HEAD when asked. */
  checksums: Checksums;
  /** Set for multipart objects (part sizes serve GET ?partNumber= and the -N ETag). */
  parts?: PartInfo[];
  /** Opaque, totally ordered version (an HLC timestamp in the replicated store). */
  version: string;
  storageClass?: string;
  /** S3 version id in a bucket that has (had) versioning: "null" for the null version; absent in a never-versioned bucket. */
  versionId?: string;
  /** The version is a delete marker (versioned buckets only). */
  deleteMarker?: boolean;
}

export interface BucketInfo {
  name: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Access key id of the owner. */
  owner: string;
}

/** What the client promised about a body; the store verifies every field it gets. */
export interface BodyExpectations {
  size?: number;
  /** Base64 MD5 from Content-MD5. Mismatch → BadDigest. */
  md5?: string;
  /** Checksums to verify (mismatch → BadDigest) — may also be only the algorithm names to compute. */
  checksums?: Checksums;
  /**
   * The ETag to record instead of the body's MD5, asked for once the body has
   * ended: an SSE-S3 part, whose body here is ciphertext and whose ETag S3
   * gives as the plaintext's MD5 (computed as it was sealed).
   */
  etag?: () => string;
  /** Algorithms to compute and store even with no expected value (x-amz-sdk-checksum-algorithm). */
  computeChecksums?: ChecksumAlgorithm[];
  /** uploadPart only: stored as the part's PartInfo.sse (an encrypted part's own IV, which the store does not check). */
  sse?: string;
}

export interface GetObjectOptions {
  /** A version of a versioned bucket's object ("null": the null version); without it, the latest. */
  versionId?: string;
  range?: ByteRange;
  partNumber?: number;
  prepare?: (meta: ObjectMeta) => ByteRange | undefined;
}

export interface PutObjectInput {
  bucket: string;
  key: string;
  body: AsyncIterable<Uint8Array>;
  headers: ObjectHeaders;
  userMeta: Record<string, string>;
  expect: BodyExpectations;
  /**
   * Stored as given, read once the body has ended: the S3 layer completes
   * extras.sse (the plaintext's ETag and checksums of an encrypted object)
   * as the last byte of the body passes.
   */
  extras?: ObjectExtras;
}

/** Inclusive byte range, already resolved against the object size. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface GetObjectResult {
  meta: ObjectMeta;
  /** The requested range (or the whole object); verified against the stored checksum when whole. */
  body: AsyncIterable<Uint8Array>;
  range?: ByteRange;
}

export interface ListObjectsInput {
  bucket: string;
  prefix?: string;
  delimiter?: string;
  /** Exclusive: list keys strictly after this (marker / start-after / decoded continuation token). */
  after?: string;
  maxKeys: number;
}

export interface ListObjectsResult {
  objects: ObjectMeta[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** The last key or common prefix returned; the next page starts after it. */
  nextAfter?: string;
}

/** What DeleteObject did in a bucket that has (had) versioning; empty in a never-versioned bucket. */
export interface DeleteObjectResult {
  /** The version deleted (with opts.versionId), or the delete marker's (without). */
  versionId?: string;
  /** A delete marker was written (without opts.versionId), or the version deleted was one. */
  deleteMarker?: boolean;
}

export interface ListVersionsInput {
  bucket: string;
  prefix?: string;
  delimiter?: string;
  /** Exclusive, with versionIdMarker: resume after that version of that key; alone: after every version of it. */
  keyMarker?: string;
  versionIdMarker?: string;
  maxKeys: number;
}

/** One version (or delete marker: meta.deleteMarker) of a key, as ListObjectVersions lists it. */
export interface VersionEntry extends ObjectMeta {
  versionId: string;
  isLatest: boolean;
}

export interface ListVersionsResult {
  /** Key order, newest first within a key. */
  versions: VersionEntry[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextKeyMarker?: string;
  nextVersionIdMarker?: string;
}

export interface MultipartUpload {
  uploadId: string;
  bucket: string;
  key: string;
  initiated: number;
  headers: ObjectHeaders;
  userMeta: Record<string, string>;
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Carried to the completed object. */
  extras?: ObjectExtras;
}

export interface ListUploadsInput {
  bucket: string;
  prefix?: string;
  delimiter?: string;
  keyMarker?: string;
  uploadIdMarker?: string;
  maxUploads: number;
}

export interface ListUploadsResult {
  uploads: MultipartUpload[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextKeyMarker?: string;
  nextUploadIdMarker?: string;
}

/** One entry of CompleteMultipartUpload's part list. */
export interface CompletePart { partNumber: number; etag: string }

export interface CompleteOptions {
  onVersionId?: (versionId: string) => void;
}

export interface BlobStore {
  listBuckets(): Promise<BucketInfo[]>;
  /** One configuration section of a bucket (bucket-config.ts), undefined when never set. NoSuchBucket when the bucket is missing. */
  getBucketConfig<S extends BucketConfigSection>(bucket: string, section: S): Promise<BucketConfigSections[S] | undefined>;
  /** Sets (or with undefined, removes) one section, replicated like the bucket itself; the others are untouched. */
  putBucketConfig<S extends BucketConfigSection>(bucket: string, section: S, value: BucketConfigSections[S] | undefined): Promise<void>;
  /** Idempotent for the same owner ({created:false}); another owner's bucket → BucketAlreadyExists. */
  createBucket(name: string, owner: string): Promise<{ created: boolean; bucket: BucketInfo }>;
  headBucket(name: string): Promise<BucketInfo>;
  /** BucketNotEmpty when it holds objects (or versions); uploads in progress are aborted with it, as S3 does. */
  deleteBucket(name: string): Promise<void>;

  /** Writes durably (fsync) before resolving; atomically replaces any previous version. */
  putObject(input: PutObjectInput): Promise<ObjectMeta>;
  /**
   * opts.versionId: that version (NoSuchVersion when unknown; a delete
   * marker's id → VersionIsDeleteMarker). Without it, a key whose latest
   * version is a delete marker is NoSuchKey with details {deleteMarker: true, versionId}.
   */
  headObject(bucket: string, key: string, opts?: { versionId?: string }): Promise<ObjectMeta>;
  /**
   * range is resolved by the caller against headObject's size; partNumber
   * selects one part of a multipart object. `prepare`, instead of range, is
   * called with the object's metadata before any byte is read and returns the
   * range (or throws: a failed precondition): one metadata lookup per GET
   * instead of a HEAD and then a GET, which on the replicated store are two
   * quorum rounds.
   */
  getObject(bucket: string, key: string, opts?: GetObjectOptions): Promise<GetObjectResult>;
  /**
   * Deleting a missing key succeeds (S3 semantics). In a versioned bucket,
   * without opts.versionId it writes a delete marker; with it, it removes that
   * version for good (an unknown one: nothing to do).
   */
  deleteObject(bucket: string, key: string, opts?: { versionId?: string }): Promise<DeleteObjectResult>;
  /** Latest live version of each key: delete markers hide their key. */
  listObjects(input: ListObjectsInput): Promise<ListObjectsResult>;
  /** Every version and delete marker (an object of a never-versioned bucket is its own "null" version). */
  listObjectVersions(input: ListVersionsInput): Promise<ListVersionsResult>;

  /**
   * Changes an object's tags and/or ACL (a field left out stays as it is;
   * tags: {} removes them) without rewriting its body or changing its ETag,
   * Last-Modified or version. NoSuchKey when there is no such object
   * (version, when versionId is given).
   */
  updateObjectMeta(bucket: string, key: string, patch: Pick<ObjectExtras, "tags" | "acl">, opts?: { versionId?: string }): Promise<ObjectMeta>;

  createMultipartUpload(bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm, extras?: ObjectExtras): Promise<MultipartUpload>;
  /** Replaces an earlier upload of the same part number. NoSuchUpload when unknown. */
  uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<PartInfo>;
  /**
   * Assembles the listed parts (ascending, each but the last ≥ 5 MiB — EntityTooSmall — and
   * matching ETags — InvalidPart; out of order — InvalidPartOrder). Completing an already
   * completed upload with the same part list returns the same object (idempotent retry).
   * opts.onVersionId: called, in a bucket that has (had) versioning, with the new
   * version's id as soon as it is decided, before the object is written (the S3
   * layer's keep-alive sends its headers, x-amz-version-id among them, early).
   * `parts` may be a promise: a store starts what does not need the list (reading the
   * upload's part records) while the caller still reads and checks the request; a
   * rejected list rejects the call with its reason, and nothing is written.
   */
  completeMultipartUpload(bucket: string, key: string, uploadId: string, parts: CompletePart[] | Promise<CompletePart[]>, opts?: CompleteOptions): Promise<ObjectMeta>;
  abortMultipartUpload(bucket: string, key: string, uploadId: string): Promise<void>;
  listParts(bucket: string, key: string, uploadId: string, opts: { partNumberMarker?: number; maxParts: number }): Promise<{ upload: MultipartUpload; parts: PartInfo[]; isTruncated: boolean; nextPartNumberMarker?: number }>;
  listMultipartUploads(input: ListUploadsInput): Promise<ListUploadsResult>;

  close(): Promise<void>;
}

/** S3's minimum size of every part but the last. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;
