/**
 * The blob store seam between the S3 protocol layer (objectstore/s3) and the
 * storage behind it (the replicated store, objectstore/replica), with what
 * every store shares: its typed errors, the one checksum module, hashing of
 * large bodies on worker threads, the S3 object rules, the delimiter roll-up
 * of listings, recycled read buffers, the buckets the node keeps for itself
 * (reserved.ts), and an in-memory store for tests of the layers above.
 */
export type * from "./types.js";
export type * from "./bucket-config.js";
export { BUCKET_CONFIG_SECTIONS } from "./bucket-config.js";
export { MIN_PART_SIZE, MAX_PARTS } from "./types.js";
export { blobError, blobCodeOf, isBlobError, type BlobErrorCode } from "./errors.js";
export {
  ALGORITHMS, BodyHasher, compositeChecksum, crc32, crc32c, digestOf, DIGEST_BYTES, hasher, multipartEtag, parseAlgorithm, validDigest,
  type BodyDigests, type Hasher,
} from "./hash.js";
export { ChunkHasher, type ChunkDigests } from "./hash-chunks.js";
export { algorithmsFor, checkBucketName, extrasOf, chooseParts, partRange, pickHeaders, stripQuotes, verifyDigests } from "./rules.js";
export { commonPrefixOf, RollUp } from "./listing.js";
export { READ_BUFFER, readBuffer, recycleReadBuffer } from "./read-buffers.js";
export { LocalKeyLocker, type KeyLocker } from "./key-lock.js";
export { MemoryBlobStore } from "./memory.js";
export { ReservedBucket, isMissingBlob } from "./reserved.js";
export { afterDays, currentExpiry, filterMatches, needsTags, noncurrentDue, removesLoneMarker, uploadAbortAt, type LifecycleSubject, type NoncurrentVersion } from "./lifecycle.js";
