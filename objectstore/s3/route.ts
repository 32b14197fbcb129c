/**
 * Where a request goes: the bucket and key (path-style /bucket/key, or
 * virtual-host-style bucket.DOMAIN/key when s3.domain is set) and which S3
 * operation its method, sub-resources and headers name.
 */
import { s3err } from "./errors.js";

export interface Target { bucket?: string; key?: string; virtualHost: boolean }

export function resolveTarget(host: string | undefined, rawPath: string, domain: string): Target {
  const h = (host ?? "").replace(/:\d+$/, "").replace(/\.$/, "").toLowerCase();
  const d = domain.toLowerCase().replace(/^\./, "");
  const path = decodePath(rawPath.startsWith("/") ? rawPath.slice(1) : rawPath);
  if (d && h.endsWith("." + d)) {
    const bucket = h.slice(0, -(d.length + 1));
    return { bucket, key: path === "" ? undefined : path, virtualHost: true };
  }
  if (path === "") return { virtualHost: false };
  const i = path.indexOf("/");
  if (i < 0) return { bucket: path, virtualHost: false };
  const key = path.slice(i + 1);
  return { bucket: path.slice(0, i), key: key === "" ? undefined : key, virtualHost: false };
}

/**
 * The path's percent-escapes decoded, strictly: a bad escape or bytes that are
 * not UTF-8 are refused as S3 refuses them, not left undecoded (which made
 * /b/bad%ff and /b/bad%25ff name the same object).
 */
function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw s3err("InvalidURI");
  }
}

/** S3's naming rules for new buckets (existing names are only looked up). */
export function checkBucketName(name: string): void {
  const bad = (why: string) => s3err("InvalidBucketName", `The specified bucket is not valid: ${why}.`, { BucketName: name });
  if (name.length < 3 || name.length > 63) throw bad("a bucket name is 3 to 63 characters long");
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) throw bad("use lower-case letters, digits, '.' and '-', starting and ending with a letter or digit");
  if (name.includes("..") || name.includes(".-") || name.includes("-.")) throw bad("no '..', '.-' or '-.'");
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) throw bad("a bucket name must not look like an IP address");
  if (name.startsWith("xn--") || name.startsWith("sthree-") || name.endsWith("-s3alias") || name.endsWith("--ol-s3")) throw bad("reserved prefix or suffix");
}

/** Sub-resources answered with a fixed "none configured" reply or NotImplemented. */
const BUCKET_EMPTY_CONFIG: Record<string, string> = {
  "object-lock": "ObjectLockConfigurationNotFoundError",
};
export const emptyConfigError = (sub: string) => BUCKET_EMPTY_CONFIG[sub];

const BUCKET_SUBS = ["acl", "analytics", "cors", "encryption", "intelligent-tiering", "inventory", "lifecycle", "logging", "metrics",
  "notification", "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment",
  "tagging", "versioning", "website", "accelerate", "location", "uploads", "versions", "delete", "session"];
const OBJECT_SUBS = ["acl", "tagging", "retention", "legal-hold", "torrent", "restore", "select", "attributes", "uploads", "uploadId"];

/** The S3 operation name (metrics label and dispatch key). "NotImplemented" and "MethodNotAllowed" are refused after auth. */
export function operationOf(method: string, t: Target, q: Map<string, string>, hasCopySource: boolean): string {
  if (method === "OPTIONS" && t.bucket) return "CorsPreflight";
  if (!t.bucket) {
    if (method === "GET" || method === "HEAD") return "ListBuckets";
    return "MethodNotAllowed";
  }
  if (t.key === undefined) {
    const sub = BUCKET_SUBS.find((s) => q.has(s));
    switch (method) {
      case "GET":
        if (sub === "location") return "GetBucketLocation";
        if (sub === "uploads") return "ListMultipartUploads";
        if (sub === "versions") return "ListObjectVersions";
        if (sub === "versioning") return "GetBucketVersioning";
        if (sub === "acl") return "GetBucketAcl";
        if (sub === "cors") return "GetBucketCors";
        if (sub === "lifecycle") return "GetBucketLifecycleConfiguration";
        if (sub === "tagging") return "GetBucketTagging";
        if (sub === "policy") return "GetBucketPolicy";
        if (sub === "policyStatus") return "GetBucketPolicyStatus";
        if (sub === "publicAccessBlock") return "GetPublicAccessBlock";
        if (sub === "encryption") return "GetBucketEncryption";
        if (sub && BUCKET_EMPTY_CONFIG[sub]) return "GetBucketEmptyConfig";
        if (sub) return "NotImplemented";
        return q.get("list-type") === "2" ? "ListObjectsV2" : "ListObjects";
      case "HEAD": return "HeadBucket";
      case "PUT":
        if (sub === "acl") return "PutBucketAcl";
        if (sub === "cors") return "PutBucketCors";
        if (sub === "lifecycle") return "PutBucketLifecycleConfiguration";
        if (sub === "tagging") return "PutBucketTagging";
        if (sub === "policy") return "PutBucketPolicy";
        if (sub === "publicAccessBlock") return "PutPublicAccessBlock";
        if (sub === "versioning") return "PutBucketVersioning";
        if (sub === "encryption") return "PutBucketEncryption";
        return sub ? "NotImplemented" : "CreateBucket";
      case "DELETE":
        if (sub === "cors") return "DeleteBucketCors";
        if (sub === "lifecycle") return "DeleteBucketLifecycle";
        if (sub === "tagging") return "DeleteBucketTagging";
        if (sub === "policy") return "DeleteBucketPolicy";
        if (sub === "publicAccessBlock") return "DeletePublicAccessBlock";
        if (sub === "encryption") return "DeleteBucketEncryption";
        return sub ? "NotImplemented" : "DeleteBucket";
      case "POST":
        if (sub === "delete") return "DeleteObjects";
        return sub ? "NotImplemented" : "PostObject";
      default: return "MethodNotAllowed";
    }
  }
  const sub = OBJECT_SUBS.find((s) => q.has(s));
  switch (method) {
    case "GET":
      if (sub === "uploadId") return "ListParts";
      if (sub === "acl") return "GetObjectAcl";
      if (sub === "tagging") return "GetObjectTagging";
      if (sub === "attributes") return "GetObjectAttributes";
      return sub ? "NotImplemented" : "GetObject";
    case "HEAD": return sub ? "NotImplemented" : "HeadObject";
    case "PUT":
      if (sub === "uploadId" || q.has("partNumber")) return hasCopySource ? "UploadPartCopy" : "UploadPart";
      if (sub === "acl") return "PutObjectAcl";
      if (sub === "tagging") return "PutObjectTagging";
      if (sub) return "NotImplemented";
      return hasCopySource ? "CopyObject" : "PutObject";
    case "DELETE":
      if (sub === "uploadId") return "AbortMultipartUpload";
      if (sub === "tagging") return "DeleteObjectTagging";
      return sub ? "NotImplemented" : "DeleteObject";
    case "POST":
      if (sub === "uploads") return "CreateMultipartUpload";
      if (sub === "uploadId") return "CompleteMultipartUpload";
      return "NotImplemented";
    default: return "MethodNotAllowed";
  }
}
