/**
 * The S3 wire protocol: HTTP server, path- and virtual-host-style routing,
 * SigV4 (headers, presigned URLs, aws-chunked), checksums, S3 XML and errors,
 * thoc_s3_* metrics. Storage is whatever BlobStore it is handed.
 */
export { createS3Server } from "./server.js";
export type { Credential, CredentialLookup, S3Server, S3ServerOptions } from "./types.js";
export { S3Error, toS3Error } from "./errors.js";
