/**
 * Who may do what: the authorize step of the pipeline. It combines the
 * caller (an access key's owner, or anonymous), the bucket's owner, its
 * canned ACL, its policy and its Block Public Access settings, with S3's
 * order: an explicit Deny in the policy refuses (data operations, the
 * owner's too); the owner is allowed; a policy Allow grants; then ACL
 * grants (bucket READ = list, bucket WRITE = put/delete objects, object
 * READ = get the object). Tagging, ACL, versioning, CORS, lifecycle and
 * default-encryption calls can be granted by a policy under their IAM action
 * names (OPS); the policy, Block Public Access and DeleteBucket stay the
 * owner's alone.
 *
 * Objects are always owned by the bucket's owner here (S3's "bucket owner
 * enforced" ownership, but with ACLs still honoured), so bucket-owner-read
 * and bucket-owner-full-control add nothing beyond private.
 */
import type { TLSSocket } from "node:tls";
import type { IncomingMessage } from "node:http";
import type { BlobStore, BucketInfo, CannedAcl, ObjectMeta, PublicAccessBlock } from "../blob/index.js";
import { s3err } from "./errors.js";
import { evaluatePolicy, normaliseIp, storedPolicy, type PolicyAction, type PolicyRequest } from "./policy.js";
import { UNSIGNED, type AuthResult } from "./sigv4.js";

/** The caller of a request that carried no signature at all. */
export const ANONYMOUS: AuthResult = Object.freeze({
  accessKeyId: "", owner: "", payload: UNSIGNED, chain: { key: Buffer.alloc(0), amzDate: "", scope: "", seed: "" },
}) as AuthResult;
export const isAnonymous = (a: AuthResult): boolean => a === ANONYMOUS || a.accessKeyId === "";

/**
 * True when a request carries no credentials (no Authorization header, no
 * signature query parameters of any version): S3 serves it as anonymous.
 */
export function hasNoCredentials(headers: IncomingMessage["headers"], query: Map<string, string>): boolean {
  if (headers.authorization !== undefined) return false;
  for (const k of ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm", "Signature", "AWSAccessKeyId"]) if (query.has(k)) return false;
  return true;
}

type Grant = "bucket-read" | "bucket-write" | "object-read";
/** An operation's IAM action (`versioned`: with ?versionId=, as S3 names it), the ACL grant that also lets it in, and whether it acts on a key. */
interface OpRule { action: PolicyAction; versioned?: PolicyAction; grant?: Grant; object: boolean }

/**
 * The operations a non-owner can be let in to (by a policy Allow, or an ACL
 * grant where `grant` says); every other bucket operation (the policy, Block
 * Public Access, DeleteBucket) is the owner's alone.
 */
const OPS: Record<string, OpRule> = {
  HeadBucket: { action: "s3:ListBucket", grant: "bucket-read", object: false },
  ListObjects: { action: "s3:ListBucket", grant: "bucket-read", object: false },
  ListObjectsV2: { action: "s3:ListBucket", grant: "bucket-read", object: false },
  ListObjectVersions: { action: "s3:ListBucketVersions", grant: "bucket-read", object: false },
  ListMultipartUploads: { action: "s3:ListBucketMultipartUploads", grant: "bucket-read", object: false },
  GetObject: { action: "s3:GetObject", versioned: "s3:GetObjectVersion", grant: "object-read", object: true },
  HeadObject: { action: "s3:GetObject", versioned: "s3:GetObjectVersion", grant: "object-read", object: true },
  PutObject: { action: "s3:PutObject", grant: "bucket-write", object: true },
  CopyObject: { action: "s3:PutObject", grant: "bucket-write", object: true },
  CreateMultipartUpload: { action: "s3:PutObject", grant: "bucket-write", object: true },
  UploadPart: { action: "s3:PutObject", grant: "bucket-write", object: true },
  UploadPartCopy: { action: "s3:PutObject", grant: "bucket-write", object: true },
  CompleteMultipartUpload: { action: "s3:PutObject", grant: "bucket-write", object: true },
  AbortMultipartUpload: { action: "s3:AbortMultipartUpload", grant: "bucket-write", object: true },
  ListParts: { action: "s3:ListMultipartUploadParts", object: true },
  DeleteObject: { action: "s3:DeleteObject", versioned: "s3:DeleteObjectVersion", grant: "bucket-write", object: true },
  // Checked per key by the handler (checkKey); the bucket-level answer only lets it start.
  DeleteObjects: { action: "s3:DeleteObject", grant: "bucket-write", object: false },
  GetObjectTagging: { action: "s3:GetObjectTagging", versioned: "s3:GetObjectVersionTagging", object: true },
  PutObjectTagging: { action: "s3:PutObjectTagging", versioned: "s3:PutObjectVersionTagging", object: true },
  DeleteObjectTagging: { action: "s3:DeleteObjectTagging", versioned: "s3:DeleteObjectVersionTagging", object: true },
  GetObjectAcl: { action: "s3:GetObjectAcl", versioned: "s3:GetObjectVersionAcl", object: true },
  PutObjectAcl: { action: "s3:PutObjectAcl", versioned: "s3:PutObjectVersionAcl", object: true },
  GetObjectAttributes: { action: "s3:GetObjectAttributes", versioned: "s3:GetObjectVersionAttributes", object: true },
  GetBucketLocation: { action: "s3:GetBucketLocation", object: false },
  GetBucketTagging: { action: "s3:GetBucketTagging", object: false },
  // As in S3, deleting a configuration needs its Put action.
  PutBucketTagging: { action: "s3:PutBucketTagging", object: false },
  DeleteBucketTagging: { action: "s3:PutBucketTagging", object: false },
  GetBucketVersioning: { action: "s3:GetBucketVersioning", object: false },
  PutBucketVersioning: { action: "s3:PutBucketVersioning", object: false },
  GetBucketCors: { action: "s3:GetBucketCORS", object: false },
  PutBucketCors: { action: "s3:PutBucketCORS", object: false },
  DeleteBucketCors: { action: "s3:PutBucketCORS", object: false },
  GetBucketLifecycleConfiguration: { action: "s3:GetLifecycleConfiguration", object: false },
  PutBucketLifecycleConfiguration: { action: "s3:PutLifecycleConfiguration", object: false },
  DeleteBucketLifecycle: { action: "s3:PutLifecycleConfiguration", object: false },
  GetBucketAcl: { action: "s3:GetBucketAcl", object: false },
  PutBucketAcl: { action: "s3:PutBucketAcl", object: false },
  GetBucketEncryption: { action: "s3:GetEncryptionConfiguration", object: false },
  PutBucketEncryption: { action: "s3:PutEncryptionConfiguration", object: false },
  DeleteBucketEncryption: { action: "s3:PutEncryptionConfiguration", object: false },
};

/** The IAM action a request for `op` needs (undefined: the owner's alone): the versioned variant when it names ?versionId=. */
export function actionOf(op: string, query: ReadonlyMap<string, string>): PolicyAction | undefined {
  const r = OPS[op];
  return r && (query.has("versionId") && r.versioned ? r.versioned : r.action);
}

/** What a bucket's WRITE grant (public-read-write) lets anyone do to its objects. */
const WRITE_GRANTED: ReadonlySet<PolicyAction> = new Set(["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload"]);

export const PUBLIC_ACLS: ReadonlySet<CannedAcl> = new Set(["public-read", "public-read-write", "authenticated-read"]);

/** The READ/WRITE a canned ACL gives to a caller that is not the owner (S3's AllUsers / AuthenticatedUsers groups). */
export function aclGrants(acl: CannedAcl | undefined, anonymous: boolean, ignorePublic: boolean): { read: boolean; write: boolean } {
  if (!acl || ignorePublic) return { read: false, write: false };
  if (acl === "public-read-write") return { read: true, write: true };
  if (acl === "public-read") return { read: true, write: false };
  if (acl === "authenticated-read") return { read: !anonymous, write: false };
  return { read: false, write: false };
}

/** What authorize decided, kept on the Ctx for the handlers. */
export interface Access {
  bucket: BucketInfo;
  isOwner: boolean;
  /**
   * For a non-owner's GET/HEAD that neither the policy nor the bucket
   * allowed outright: the object's own ACL decides, checked on the meta the
   * read returns before any byte goes out. Throws AccessDenied.
   */
  checkObject?: (meta: Pick<ObjectMeta, "acl">) => void;
  /** Per-key decision for DeleteObjects (and a copy's source): AccessDenied unless `action` on key is allowed. */
  checkKey(action: PolicyAction, key: string, meta?: Pick<ObjectMeta, "acl">): void;
  /**
   * Whether the caller may list the bucket: as in S3, a caller who may not
   * hears AccessDenied instead of NoSuchKey for a missing object (so keys
   * cannot be probed).
   */
  mayList(): boolean;
}

export interface AuthorizeInput {
  op: string;
  bucket: string;
  key?: string;
  auth: AuthResult;
  store: BlobStore;
  req: IncomingMessage;
  query: Map<string, string>;
}

const denied = () => s3err("AccessDenied");

/** Whether the S3 port this request came in on serves TLS (aws:SecureTransport). */
export const isSecure = (req: IncomingMessage): boolean => (req.socket as TLSSocket).encrypted === true;

/**
 * The authorize step for a request that names a bucket. NoSuchBucket when
 * it does not exist; AccessDenied when the caller may not go on. For the
 * owner of a bucket without a policy this is the bucket lookup and one
 * local config lookup.
 */
export async function authorize(a: AuthorizeInput): Promise<Access> {
  const bucket = await a.store.headBucket(a.bucket);
  const anon = isAnonymous(a.auth);
  const isOwner = !anon && a.auth.owner === bucket.owner;
  const rule = OPS[a.op];
  const policyText = await a.store.getBucketConfig(a.bucket, "policy");
  const ownerAccess: Access = { bucket, isOwner, checkKey: () => {}, mayList: () => true };
  if (isOwner && !policyText) return ownerAccess;
  if (!rule) {
    // Bucket configuration and ACL calls: the owner's whatever the policy says (S3 lets the owner manage the policy that denies them).
    if (isOwner) return ownerAccess;
    throw denied();
  }
  const [pab, bucketAcl] = isOwner ? [undefined, undefined] : await Promise.all([
    a.store.getBucketConfig(a.bucket, "publicAccessBlock"), a.store.getBucketConfig(a.bucket, "acl"),
  ]);
  const policy = policyText ? storedPolicy(policyText, a.bucket) : undefined;
  const base: Omit<PolicyRequest, "action" | "key"> = {
    caller: anon ? undefined : { owner: a.auth.owner, accessKeyId: a.auth.accessKeyId },
    bucket: a.bucket, sourceIp: normaliseIp(a.req.socket.remoteAddress), secure: isSecure(a.req),
    // s3:prefix is a listing's prefix parameter, "" when it has none (so a policy can allow listing the top level).
    prefix: rule.action.startsWith("s3:ListBucket") ? (a.query.get("prefix") ?? "") : undefined,
  };
  const ownerOnly = !!pab?.restrictPublicBuckets && !!policy?.isPublic;
  const decide = (action: PolicyAction, key: string | undefined) =>
    policy ? evaluatePolicy(policy, { ...base, action, key }, { bucketOwner: bucket.owner, ownerOnly }) : "none";
  const grants = aclGrants(bucketAcl, anon, !!pab?.ignorePublicAcls);
  const objectCheck = (action: PolicyAction, key: string, verdict = decide(action, key)) => {
    if (verdict === "deny") throw denied();
    if (isOwner || verdict === "allow") return undefined;
    if (action === "s3:GetObject" || action === "s3:GetObjectVersion") {
      return (meta: Pick<ObjectMeta, "acl">) => { if (!aclGrants(meta.acl, anon, !!pab?.ignorePublicAcls).read) throw denied(); };
    }
    if (WRITE_GRANTED.has(action) && grants.write) return undefined;
    throw denied();
  };
  const checkKey = (action: PolicyAction, key: string, meta?: Pick<ObjectMeta, "acl">) => {
    const later = objectCheck(action, key);
    if (later) later(meta ?? {});
  };
  const mayList = () => isOwner || grants.read || (policy !== undefined && evaluatePolicy(policy, { ...base, action: "s3:ListBucket", prefix: "" }, { bucketOwner: bucket.owner, ownerOnly }) === "allow");
  const action = actionOf(a.op, a.query)!;
  const verdict = decide(action, rule.object ? a.key : undefined);
  if (rule.object) return { bucket, isOwner, checkKey, mayList, checkObject: objectCheck(action, a.key!, verdict) };
  if (verdict === "deny") throw denied();
  // DeleteObjects is decided key by key (checkKey), a policy may allow some keys and not others.
  const perKey = a.op === "DeleteObjects" && policy !== undefined;
  if (isOwner || perKey || verdict === "allow" || (rule.grant === "bucket-read" && grants.read) || (rule.grant === "bucket-write" && grants.write)) {
    return { bucket, isOwner, checkKey, mayList };
  }
  throw denied();
}

/** BlockPublicAcls: a request that would set a public canned ACL is refused. */
export function refusePublicAcl(pab: PublicAccessBlock | undefined, acl: CannedAcl | undefined): void {
  if (pab?.blockPublicAcls && acl && PUBLIC_ACLS.has(acl)) throw s3err("AccessDenied", "Block Public Access (BlockPublicAcls) refuses a public ACL on this bucket.");
}
