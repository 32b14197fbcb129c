/**
 * Object storage: the S3 API (s3/), the blob store seam, its typed errors
 * and in-memory fake (blob/), the replicated store (replica/), S3 access
 * keys (keys/), and the subsystem that wires them into the agent.
 */
export { ObjectStoreSubsystem, type ObjectStoreDeps } from "./subsystem.js";
export { KeyRegistry, generatePair } from "./keys/index.js";
export type * from "./blob/index.js";
export { MIN_PART_SIZE, MAX_PARTS, blobCodeOf, isBlobError, crc32, crc32c, digestOf, isMissingBlob, ReservedBucket, type BlobErrorCode } from "./blob/index.js";
