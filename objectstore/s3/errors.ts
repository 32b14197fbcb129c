/**
 * S3 error codes with their HTTP status and AWS's standard message, and the
 * one place a thrown error becomes an S3 error. The blob stores throw
 * ThocErrors carrying a BlobErrorCode, mapped here once (BY_BLOB_CODE);
 * anything else maps by ThocError code, and unknown failures become
 * InternalError without leaking their text.
 */
import { ThocError, type ErrorCode } from "../../errors/index.js";
import { blobCodeOf, type BlobErrorCode } from "../blob/index.js";

const TABLE: Record<string, [number, string]> = {
  AccessDenied: [403, "Access Denied"],
  AccessForbidden: [403, "CORSResponse: This CORS request is not allowed."],
  AuthorizationHeaderMalformed: [400, "The authorization header is malformed."],
  AuthorizationQueryParametersError: [400, "Error parsing the X-Amz-Credential parameter."],
  BadRequest: [400, "Bad Request"],
  BadDigest: [400, "The Content-MD5 or checksum you specified did not match what we received."],
  BucketAlreadyExists: [409, "The requested bucket name is not available. Please select a different name and try again."],
  BucketAlreadyOwnedByYou: [409, "Your previous request to create the named bucket succeeded and you already own it."],
  BucketNotEmpty: [409, "The bucket you tried to delete is not empty."],
  ConditionalRequestConflict: [409, "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part."],
  EntityTooLarge: [400, "Your proposed upload exceeds the maximum allowed object size."],
  EntityTooSmall: [400, "Your proposed upload is smaller than the minimum allowed object size."],
  IllegalLocationConstraintException: [400, "The specified location-constraint is not valid for this endpoint."],
  IllegalVersioningConfigurationException: [400, "The versioning configuration specified in the request is invalid."],
  IncompleteBody: [400, "You did not provide the number of bytes specified by the Content-Length HTTP header."],
  InternalError: [500, "We encountered an internal error. Please try again."],
  InvalidAccessKeyId: [403, "The AWS Access Key Id you provided does not exist in our records."],
  InvalidArgument: [400, "Invalid Argument"],
  InvalidBucketName: [400, "The specified bucket is not valid."],
  InvalidEncryptionAlgorithmError: [400, "The encryption request you specified is not valid. The valid value is AES256."],
  InvalidDigest: [400, "The Content-MD5 or checksum you specified is not valid."],
  InvalidPart: [400, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."],
  InvalidPartOrder: [400, "The list of parts was not in ascending order. Parts must be ordered by part number."],
  InvalidPartNumber: [416, "The requested partnumber is not satisfiable"],
  InvalidRange: [416, "The requested range is not satisfiable"],
  InvalidRequest: [400, "Invalid Request"],
  InvalidURI: [400, "Couldn't parse the specified URI."],
  InvalidStorageClass: [400, "The storage class you specified is not valid."],
  KeyTooLongError: [400, "Your key is too long."],
  MalformedACLError: [400, "The XML you provided was not well-formed or did not validate against our published schema."],
  MalformedPolicy: [400, "Policies must be valid JSON and the first byte must be '{'"],
  MalformedXML: [400, "The XML you provided was not well-formed or did not validate against our published schema."],
  MetadataTooLarge: [400, "Your metadata headers exceed the maximum allowed metadata size."],
  MethodNotAllowed: [405, "The specified method is not allowed against this resource."],
  MissingContentLength: [411, "You must provide the Content-Length HTTP header."],
  MissingSecurityHeader: [400, "Your request was missing a required header."],
  NoSuchBucket: [404, "The specified bucket does not exist."],
  NoSuchBucketPolicy: [404, "The bucket policy does not exist."],
  NoSuchCORSConfiguration: [404, "The CORS configuration does not exist."],
  NoSuchKey: [404, "The specified key does not exist."],
  NoSuchLifecycleConfiguration: [404, "The lifecycle configuration does not exist."],
  NoSuchTagSet: [404, "The TagSet does not exist."],
  NoSuchPublicAccessBlockConfiguration: [404, "The public access block configuration was not found."],
  NoSuchUpload: [404, "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."],
  NoSuchVersion: [404, "The specified version does not exist."],
  NotImplemented: [501, "A header or operation you provided implies functionality that is not implemented."],
  NotModified: [304, "Not Modified"],
  ObjectLockConfigurationNotFoundError: [404, "Object Lock configuration does not exist for this bucket."],
  PreconditionFailed: [412, "At least one of the pre-conditions you specified did not hold."],
  RequestHeaderSectionTooLarge: [431, "Your request header section exceeds the maximum allowed size."],
  RequestTimeTooSkewed: [403, "The difference between the request time and the server's time is too large."],
  RequestTimeout: [400, "Your socket connection to the server was not read from or written to within the timeout period."],
  ServerSideEncryptionConfigurationNotFoundError: [404, "The server side encryption configuration was not found."],
  ServiceUnavailable: [503, "Please reduce your request rate."],
  SignatureDoesNotMatch: [403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."],
  UnexpectedContent: [400, "This request does not support content."],
  XAmzContentSHA256Mismatch: [400, "The provided 'x-amz-content-sha256' header does not match what was computed."],
};

const BY_THOC_CODE: Record<ErrorCode, string> = {
  invalid_argument: "InvalidArgument",
  not_found: "NoSuchKey",
  already_exists: "BucketAlreadyExists",
  failed_precondition: "PreconditionFailed",
  resource_exhausted: "ServiceUnavailable",
  unavailable: "ServiceUnavailable",
  permission_denied: "AccessDenied",
  unauthenticated: "AccessDenied",
  deadline_exceeded: "ServiceUnavailable",
  aborted: "ServiceUnavailable",
  cancelled: "RequestTimeout",
  unimplemented: "NotImplemented",
  data_loss: "InternalError",
  internal: "InternalError",
};

/** The S3 error of each blob store error; the message is the store's, or S3's standard one when the store gave none. */
const BY_BLOB_CODE: Record<BlobErrorCode, string> = {
  NoSuchBucket: "NoSuchBucket",
  NoSuchKey: "NoSuchKey",
  NoSuchUpload: "NoSuchUpload",
  NoSuchVersion: "NoSuchVersion",
  VersionIsDeleteMarker: "MethodNotAllowed",
  BucketAlreadyExists: "BucketAlreadyExists",
  BucketNotEmpty: "BucketNotEmpty",
  InvalidBucketName: "InvalidBucketName",
  InvalidArgument: "InvalidArgument",
  KeyTooLong: "KeyTooLongError",
  IncompleteBody: "IncompleteBody",
  BadDigest: "BadDigest",
  UnsupportedChecksum: "InvalidRequest",
  InvalidPart: "InvalidPart",
  InvalidPartOrder: "InvalidPartOrder",
  InvalidPartNumber: "InvalidPartNumber",
  EmptyPartList: "MalformedXML",
  EntityTooSmall: "EntityTooSmall",
  InvalidRange: "InvalidRange",
  Corrupt: "InternalError",
  Unavailable: "ServiceUnavailable",
  ConditionalRequestConflict: "ConditionalRequestConflict",
};

/** An error answered to the client as S3 XML. `extra` becomes extra XML elements (Region, ArgumentName...). */
export class S3Error extends Error {
  readonly status: number;
  /** Headers the error answer carries (x-amz-delete-marker, x-amz-version-id of a delete marker's 404/405). */
  headers?: Record<string, string>;
  constructor(readonly code: string, message?: string, readonly extra: Record<string, string> = {}, status?: number) {
    super(message ?? TABLE[code]?.[1] ?? code);
    this.status = status ?? TABLE[code]?.[0] ?? 400;
  }
}

export const s3err = (code: string, message?: string, extra?: Record<string, string>) => new S3Error(code, message, extra);

/** Whatever was thrown → the S3 error to answer; `internal` tells the caller to log it. */
export function toS3Error(err: unknown): { error: S3Error; internal: boolean } {
  if (err instanceof S3Error) return { error: err, internal: false };
  if (err instanceof ThocError) {
    const blobCode = blobCodeOf(err);
    if (blobCode) {
      const error = new S3Error(BY_BLOB_CODE[blobCode], err.message === blobCode ? undefined : err.message);
      // A key hidden by a delete marker (404), or a marker asked for by version id (405): S3 says which marker.
      if (err.details.deleteMarker === true) {
        error.headers = { "x-amz-delete-marker": "true", ...(typeof err.details.versionId === "string" ? { "x-amz-version-id": err.details.versionId } : {}) };
      }
      return { error, internal: false };
    }
    const code = BY_THOC_CODE[err.code];
    const internal = code === "InternalError" || code === "ServiceUnavailable";
    // A quorum or reachability failure says what is down and how many replicas answered:
    // worth showing the client (and still logged); other internal errors stay generic.
    return { error: new S3Error(code, code === "InternalError" ? undefined : err.message), internal };
  }
  return { error: new S3Error("InternalError"), internal: true };
}

export const KNOWN_CODES = Object.keys(TABLE);
