/** ListObjects (v1) and ListObjectsV2 (ListObjectVersions: ops-versions.ts). */
import type { ListObjectsResult, ObjectMeta } from "../blob/index.js";
import { s3err } from "./errors.js";
import { intParam, isoDate, ownBucket, ownerXml, quote, sendXml, urlEncodeKey, type Ctx } from "./http.js";

export interface Common { prefix: string; delimiter?: string; maxKeys: number; enc?: "url"; e: (s: string | undefined) => string | undefined }

/** The parameters every listing shares (ListObjectVersions too). */
export function common(ctx: Ctx): Common {
  const q = ctx.query;
  const encRaw = q.get("encoding-type");
  if (encRaw !== undefined && encRaw !== "url") throw s3err("InvalidArgument", "Invalid Encoding Method specified in Request", { ArgumentName: "encoding-type", ArgumentValue: encRaw });
  const enc = encRaw as "url" | undefined;
  return {
    prefix: q.get("prefix") ?? "", delimiter: q.get("delimiter") || undefined, maxKeys: intParam(ctx, "max-keys", 1000, 1000), enc,
    e: (s) => (s === undefined ? undefined : enc ? urlEncodeKey(s) : s),
  };
}

async function run(ctx: Ctx, c: Common, after: string | undefined): Promise<ListObjectsResult> {
  if (c.maxKeys === 0) return { objects: [], commonPrefixes: [], isTruncated: false };
  return ctx.store.listObjects({ bucket: ctx.bucket!, prefix: c.prefix || undefined, delimiter: c.delimiter, after, maxKeys: c.maxKeys });
}

const contents = (c: Common, o: ObjectMeta, owner?: string) => ({
  Key: c.e(o.key), LastModified: isoDate(o.lastModified), ETag: quote(o.etag), Size: o.size,
  Owner: owner ? ownerXml(owner) : undefined, StorageClass: o.storageClass ?? "STANDARD",
});

export async function listObjects(ctx: Ctx) {
  const b = await ownBucket(ctx);
  const c = common(ctx);
  const marker = ctx.query.get("marker") ?? "";
  const r = await run(ctx, c, marker || undefined);
  sendXml(ctx, 200, "ListBucketResult", {
    Name: ctx.bucket!, Prefix: c.e(c.prefix), Marker: c.e(marker), NextMarker: r.isTruncated ? c.e(r.nextAfter) : undefined,
    MaxKeys: c.maxKeys, Delimiter: c.e(c.delimiter), IsTruncated: r.isTruncated, EncodingType: c.enc,
    Contents: r.objects.map((o) => contents(c, o, b.owner)),
    CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: c.e(p) })),
  });
}

/** Continuation tokens are opaque to clients: the key to resume after, base64url-encoded. */
const encodeToken = (after: string) => Buffer.from("k:" + after, "utf8").toString("base64url");
function decodeToken(t: string): string {
  const s = Buffer.from(t, "base64url").toString("utf8");
  if (!s.startsWith("k:")) throw s3err("InvalidArgument", "The continuation token provided is incorrect", { ArgumentName: "continuation-token" });
  return s.slice(2);
}

export async function listObjectsV2(ctx: Ctx) {
  const b = await ownBucket(ctx);
  const c = common(ctx);
  const q = ctx.query;
  const token = q.get("continuation-token");
  if (token === "") throw s3err("InvalidArgument", "The continuation token provided is incorrect", { ArgumentName: "continuation-token" });
  const startAfter = q.get("start-after") || undefined;
  let after = startAfter;
  if (token !== undefined) {
    const t = decodeToken(token);
    if (!after || t > after) after = t;
  }
  const fetchOwner = q.get("fetch-owner") === "true";
  const r = await run(ctx, c, after);
  sendXml(ctx, 200, "ListBucketResult", {
    Name: ctx.bucket!, Prefix: c.e(c.prefix), Delimiter: c.e(c.delimiter), MaxKeys: c.maxKeys, EncodingType: c.enc,
    KeyCount: r.objects.length + r.commonPrefixes.length, IsTruncated: r.isTruncated,
    ContinuationToken: token, NextContinuationToken: r.isTruncated && r.nextAfter !== undefined ? encodeToken(r.nextAfter) : undefined,
    StartAfter: c.e(startAfter),
    Contents: r.objects.map((o) => contents(c, o, fetchOwner ? b.owner : undefined)),
    CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: c.e(p) })),
  });
}
