/**
 * A bucket's configuration sections (versioning, tags, ACL, CORS, lifecycle,
 * policy, public access block, default encryption), each stored and replicated
 * on its own so that two operators setting different sections at once never
 * undo each other. The S3 layer parses and validates what clients send; the
 * store keeps the validated JSON and the parts that act on data (versioning,
 * lifecycle, encryption) read their section here.
 */

/** S3's bucket versioning states; a bucket that never had versioning has none. */
export type VersioningState = "Enabled" | "Suspended";

/** The canned ACLs a bucket or object can carry (objectstore/s3 validates names). */
export type CannedAcl = "private" | "public-read" | "public-read-write" | "authenticated-read" | "aws-exec-read" | "bucket-owner-read" | "bucket-owner-full-control" | "log-delivery-write";

export interface CorsRule {
  id?: string;
  allowedOrigins: string[];
  allowedMethods: string[];
  allowedHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds?: number;
}

/** A lifecycle rule's filter: prefix and tags all must match (S3's And). */
export interface LifecycleFilter {
  prefix?: string;
  tags?: Record<string, string>;
  objectSizeGreaterThan?: number;
  objectSizeLessThan?: number;
}

export interface LifecycleRule {
  id?: string;
  enabled: boolean;
  filter: LifecycleFilter;
  /** Current versions expire this many days after creation, or at this date (ms since the epoch). */
  expiration?: { days?: number; date?: number; expiredObjectDeleteMarker?: boolean };
  noncurrentVersionExpiration?: { noncurrentDays: number; newerNoncurrentVersions?: number };
  abortIncompleteMultipartUpload?: { daysAfterInitiation: number };
}

export interface PublicAccessBlock {
  blockPublicAcls: boolean;
  ignorePublicAcls: boolean;
  blockPublicPolicy: boolean;
  restrictPublicBuckets: boolean;
}

/** Every section a bucket can have and the JSON shape the store keeps for it. */
export interface BucketConfigSections {
  versioning: VersioningState;
  tagging: Record<string, string>;
  acl: CannedAcl;
  cors: CorsRule[];
  lifecycle: LifecycleRule[];
  /** The policy document as the client sent it (validated JSON text; GetBucketPolicy returns it as is). */
  policy: string;
  publicAccessBlock: PublicAccessBlock;
  /** Default encryption applied to PUTs without their own SSE headers. */
  encryption: { algorithm: "AES256" };
  /**
   * Set (by the replicated store) the first time an object of the bucket had
   * its tags or ACL changed after it was written: from then on GET/HEAD read
   * the objects' side records too (objectstore/replica/side-meta.ts). Not an
   * S3 setting; buckets without it pay nothing.
   */
  sideMeta: true;
}

export type BucketConfigSection = keyof BucketConfigSections;

export const BUCKET_CONFIG_SECTIONS: readonly BucketConfigSection[] = ["versioning", "tagging", "acl", "cors", "lifecycle", "policy", "publicAccessBlock", "encryption", "sideMeta"];
