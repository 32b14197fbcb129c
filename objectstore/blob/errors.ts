/**
 * The blob stores' own error vocabulary. A store failure the client caused or
 * can act on is a ThocError whose `details.blobCode` names what went wrong;
 * objectstore/s3/errors.ts maps each code to its S3 error once, and other
 * callers (VM images) match the codes, never S3 strings.
 */
import { ThocError, type ErrorCode, type ErrorDetails } from "../../errors/index.js";

/** Each code with the ThocError code (and so the gRPC status) it carries. */
const CODES = {
  NoSuchBucket: "not_found",
  NoSuchKey: "not_found",
  NoSuchUpload: "not_found",
  /** A version id that names no version of the key. */
  NoSuchVersion: "not_found",
  /** GET/HEAD of a version that is a delete marker (S3: 405 MethodNotAllowed). */
  VersionIsDeleteMarker: "failed_precondition",
  BucketAlreadyExists: "already_exists",
  BucketNotEmpty: "failed_precondition",
  InvalidBucketName: "invalid_argument",
  /** A key or part number the store does not accept. */
  InvalidArgument: "invalid_argument",
  KeyTooLong: "invalid_argument",
  /** The body's length differs from the announced one. */
  IncompleteBody: "invalid_argument",
  /** Content-MD5 or a checksum does not match the body. */
  BadDigest: "invalid_argument",
  UnsupportedChecksum: "invalid_argument",
  InvalidPart: "invalid_argument",
  InvalidPartOrder: "invalid_argument",
  InvalidPartNumber: "invalid_argument",
  /** CompleteMultipartUpload without any part. */
  EmptyPartList: "invalid_argument",
  EntityTooSmall: "invalid_argument",
  InvalidRange: "invalid_argument",
  /** Stored metadata that cannot be read back. */
  Corrupt: "data_loss",
  /** A conditional write waited too long for its key's lock (objectstore/blob/key-lock.ts). */
  ConditionalRequestConflict: "aborted",
  /** Too few replicas reachable, or this node not ready to coordinate yet. */
  Unavailable: "unavailable",
} as const satisfies Record<string, ErrorCode>;

export type BlobErrorCode = keyof typeof CODES;

/**
 * The one constructor of blob store errors. Without a message the error says
 * only its code, and the S3 layer answers with S3's standard text.
 */
export function blobError(code: BlobErrorCode, message?: string, details: ErrorDetails = {}): ThocError {
  return new ThocError(CODES[code], message ?? code, { ...details, blobCode: code });
}

/** The BlobErrorCode a thrown error carries, if it is a blob error. */
export function blobCodeOf(err: unknown): BlobErrorCode | undefined {
  if (!(err instanceof ThocError)) return undefined;
  const c = err.details.blobCode;
  return typeof c === "string" && Object.hasOwn(CODES, c) ? (c as BlobErrorCode) : undefined;
}

export function isBlobError(err: unknown, ...codes: BlobErrorCode[]): boolean {
  const c = blobCodeOf(err);
  return c !== undefined && codes.includes(c);
}
