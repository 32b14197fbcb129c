/**
 * Bucket versioning on the wire: Put/GetBucketVersioning, ListObjectVersions,
 * and the version headers and ?versionId= handling the object operations call
 * (ops-object.ts, ops-multipart.ts, DeleteObjects). The store keeps the
 * versions (BlobStore: versionId options, listObjectVersions); a bucket that
 * never had versioning answers exactly as before: no version header, no
 * extra lookup.
 */
import type { DeleteObjectResult, ObjectMeta, VersionEntry, VersioningState } from "../blob/index.js";
import { s3err } from "./errors.js";
import { body, isoDate, ownBucket, ownerXml, quote, sendEmpty, sendXml, type Ctx } from "./http.js";
import { readSmall } from "./body.js";
import { common } from "./ops-list.js";
import { parseXml, text } from "./xml.js";

const MAX_XML = 64 << 10;

/** ?versionId= of an object request: undefined when absent; S3 refuses an empty one. */
export function versionIdOf(ctx: Ctx): string | undefined {
  const v = ctx.query.get("versionId");
  if (v === "") throw s3err("InvalidArgument", "Version id cannot be the empty string", { ArgumentName: "versionId", ArgumentValue: v });
  return v;
}

/** x-amz-version-id on an answer, for objects of a bucket that has (had) versioning. */
export function setVersionHeader(ctx: Ctx, meta: Pick<ObjectMeta, "versionId">, name = "x-amz-version-id"): void {
  if (meta.versionId) ctx.res.setHeader(name, meta.versionId);
}

/** DeleteObject, with or without ?versionId=: 204 with the version and delete-marker headers S3 sends. */
export async function deleteObject(ctx: Ctx): Promise<void> {
  await ownBucket(ctx);
  const versionId = versionIdOf(ctx);
  const r: DeleteObjectResult = await ctx.store.deleteObject(ctx.bucket!, ctx.key!, versionId !== undefined ? { versionId } : {});
  const headers: Record<string, string> = {};
  if (r.versionId) headers["x-amz-version-id"] = r.versionId;
  if (r.deleteMarker) headers["x-amz-delete-marker"] = "true";
  sendEmpty(ctx, 204, headers);
}

export async function putBucketVersioning(ctx: Ctx): Promise<void> {
  await ownBucket(ctx);
  if (ctx.req.headers["x-amz-mfa"] !== undefined) throw s3err("NotImplemented", "MFA Delete is not supported by this store.");
  const doc = parseXml((await readSmall(body(ctx), MAX_XML)).toString("utf8"), "VersioningConfiguration");
  const status = text(doc, "Status")?.trim();
  const mfa = text(doc, "MfaDelete")?.trim();
  const illegal = (what: string) => s3err("IllegalVersioningConfigurationException", `The versioning configuration specified in the request is invalid: ${what}.`);
  if (mfa !== undefined && mfa !== "Enabled" && mfa !== "Disabled") throw illegal(`MfaDelete must be Enabled or Disabled, not '${mfa}'`);
  if (mfa === "Enabled") throw s3err("NotImplemented", "MFA Delete is not supported by this store.");
  if (status !== undefined && status !== "Enabled" && status !== "Suspended") throw illegal(`Status must be Enabled or Suspended, not '${status}'`);
  // No Status: nothing changes (S3 treats the missing element as "leave it").
  if (status !== undefined) await ctx.store.putBucketConfig(ctx.bucket!, "versioning", status as VersioningState);
  sendEmpty(ctx, 200);
}

export async function getBucketVersioning(ctx: Ctx): Promise<void> {
  await ownBucket(ctx);
  const state = await ctx.store.getBucketConfig(ctx.bucket!, "versioning");
  sendXml(ctx, 200, "VersioningConfiguration", { Status: state });
}

export async function listObjectVersions(ctx: Ctx): Promise<void> {
  const b = await ownBucket(ctx);
  const c = common(ctx);
  const q = ctx.query;
  const keyMarker = q.get("key-marker") || undefined;
  const vm = q.get("version-id-marker") || undefined;
  if (vm && !keyMarker) throw s3err("InvalidArgument", "A version-id marker cannot be specified without a key marker.", { ArgumentName: "version-id-marker", ArgumentValue: vm });
  const r = c.maxKeys === 0
    ? { versions: [] as VersionEntry[], commonPrefixes: [] as string[], isTruncated: false, nextKeyMarker: undefined, nextVersionIdMarker: undefined }
    : await ctx.store.listObjectVersions({ bucket: ctx.bucket!, prefix: c.prefix || undefined, delimiter: c.delimiter, keyMarker, versionIdMarker: vm, maxKeys: c.maxKeys });
  const owner = ownerXml(b.owner);
  sendXml(ctx, 200, "ListVersionsResult", {
    Name: ctx.bucket!, Prefix: c.e(c.prefix), KeyMarker: c.e(keyMarker ?? ""), VersionIdMarker: vm ?? "",
    NextKeyMarker: r.isTruncated ? c.e(r.nextKeyMarker) : undefined, NextVersionIdMarker: r.isTruncated ? r.nextVersionIdMarker : undefined,
    MaxKeys: c.maxKeys, Delimiter: c.e(c.delimiter), IsTruncated: r.isTruncated, EncodingType: c.enc,
    // SDKs read Version and DeleteMarker as two lists: grouped here, each in listing order.
    Version: r.versions.filter((v) => !v.deleteMarker).map((o) => ({
      Key: c.e(o.key), VersionId: o.versionId, IsLatest: o.isLatest, LastModified: isoDate(o.lastModified), ETag: quote(o.etag), Size: o.size,
      Owner: owner, StorageClass: o.storageClass ?? "STANDARD",
    })),
    DeleteMarker: r.versions.filter((v) => v.deleteMarker).map((o) => ({
      Key: c.e(o.key), VersionId: o.versionId, IsLatest: o.isLatest, LastModified: isoDate(o.lastModified), Owner: owner,
    })),
    CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: c.e(p) })),
  });
}
