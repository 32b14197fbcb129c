/**
 * Object storage: the S3 API (s3/), the blob store seam and its durable local
 * and in-memory implementations (blob/), S3 access keys (keys/), and the
 * subsystem that wires them into the agent.
 */
export { ObjectStoreSubsystem, type ObjectStoreDeps } from "./subsystem.js";
export { LocalBlobStore, type LocalBlobStoreOptions, type RecoveryReport } from "./blob/local.js";
export { KeyRegistry, generatePair } from "./keys/index.js";
export type * from "./blob/types.js";
export { MIN_PART_SIZE, MAX_PARTS } from "./blob/types.js";
