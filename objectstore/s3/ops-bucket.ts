/** Bucket operations, bucket sub-resources answered with fixed replies, and DeleteObjects. */
import { s3err, toS3Error } from "./errors.js";
import { body, isoDate, ownBucket, ownerXml, sendEmpty, sendXml, type Ctx } from "./http.js";
import { readSmall } from "./body.js";
import { requestedAcl } from "./ops-access.js";
import { checkBucketName, emptyConfigError } from "./route.js";
import { list, parseXml, text, xmlDoc } from "./xml.js";

const MAX_XML = 2 << 20;

/** ListBuckets continuation tokens: opaque to clients, the name to resume after, base64url. */
const encodeBucketToken = (after: string) => Buffer.from("b:" + after, "utf8").toString("base64url");
function decodeBucketToken(t: string): string {
  const s = Buffer.from(t, "base64url").toString("utf8");
  if (!t || !s.startsWith("b:")) throw s3err("InvalidArgument", "The continuation token provided is incorrect", { ArgumentName: "continuation-token" });
  return s.slice(2);
}

/**
 * The caller's buckets in name order. Paging as in current AWS: max-buckets
 * (1–10000; without it, every bucket in one answer), continuation-token (the
 * response's ContinuationToken, given when more remain), prefix, and
 * bucket-region (this endpoint's region, or nothing).
 */
export async function listBuckets(ctx: Ctx) {
  const q = ctx.query;
  const maxRaw = q.get("max-buckets");
  let max = Infinity;
  if (maxRaw !== undefined) {
    max = /^\d+$/.test(maxRaw.trim()) ? Number(maxRaw) : NaN;
    if (!(max >= 1 && max <= 10000)) throw s3err("InvalidArgument", "max-buckets must be an integer between 1 and 10000.", { ArgumentName: "max-buckets", ArgumentValue: maxRaw });
  }
  const token = q.get("continuation-token");
  const after = token === undefined ? undefined : decodeBucketToken(token);
  const prefix = q.get("prefix");
  const region = q.get("bucket-region");
  const all = region !== undefined && region !== ctx.config.s3.region ? [] : await ctx.store.listBuckets();
  const mine = all.filter((b) => b.owner === ctx.auth.owner && (!prefix || b.name.startsWith(prefix)) && (after === undefined || b.name > after));
  const page = mine.slice(0, max);
  const more = page.length < mine.length;
  sendXml(ctx, 200, "ListAllMyBucketsResult", {
    Buckets: { Bucket: page.map((b) => ({ Name: b.name, CreationDate: isoDate(b.createdAt), BucketRegion: ctx.config.s3.region })) },
    Owner: ownerXml(ctx.auth.owner),
    ContinuationToken: more ? encodeBucketToken(page[page.length - 1]!.name) : undefined,
    Prefix: prefix,
  });
}

export async function createBucket(ctx: Ctx) {
  const name = ctx.bucket!;
  checkBucketName(name);
  const acl = await requestedAcl(ctx);
  if (ctx.req.headers["x-amz-bucket-object-lock-enabled"] === "true") throw s3err("NotImplemented", "Object Lock is not supported by this store.");
  const raw = (await readSmall(body(ctx), MAX_XML)).toString("utf8");
  if (raw.trim() !== "") {
    const cfg = parseXml(raw, "CreateBucketConfiguration");
    const loc = text(cfg, "LocationConstraint")?.trim();
    if (loc && loc !== ctx.config.s3.region) {
      throw s3err("IllegalLocationConstraintException", `The ${loc} location constraint is not valid here; this endpoint serves region ${ctx.config.s3.region}.`);
    }
  }
  const r = await ctx.store.createBucket(name, ctx.auth.owner);
  if (r.created && acl) await ctx.store.putBucketConfig(name, "acl", acl);
  // us-east-1 answers 200 to an owner re-creating its bucket (AWS's legacy behaviour); other regions 409.
  if (!r.created && ctx.config.s3.region !== "us-east-1") throw s3err("BucketAlreadyOwnedByYou", undefined, { BucketName: name });
  sendEmpty(ctx, 200, { Location: `/${name}` });
}

export async function headBucket(ctx: Ctx) {
  await ownBucket(ctx);
  sendEmpty(ctx, 200, { "x-amz-bucket-region": ctx.config.s3.region });
}

export async function deleteBucket(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.deleteBucket(ctx.bucket!);
  sendEmpty(ctx, 204);
}

export async function getBucketLocation(ctx: Ctx) {
  await ownBucket(ctx);
  // us-east-1 is reported as an empty LocationConstraint, as AWS does.
  const region = ctx.config.s3.region === "us-east-1" ? "" : ctx.config.s3.region;
  const data = Buffer.from(xmlDoc("LocationConstraint", {}).replace("></LocationConstraint>", `>${region}</LocationConstraint>`));
  ctx.res.writeHead(200, { "Content-Type": "application/xml", "Content-Length": data.length });
  ctx.res.end(data);
}

export async function getBucketEmptyConfig(ctx: Ctx) {
  await ownBucket(ctx);
  const sub = [...ctx.query.keys()].find((k) => emptyConfigError(k));
  throw s3err(emptyConfigError(sub!)!, undefined, { BucketName: ctx.bucket! });
}

export async function deleteObjects(ctx: Ctx) {
  await ownBucket(ctx);
  const doc = parseXml((await readSmall(body(ctx), MAX_XML)).toString("utf8"), "Delete");
  const quiet = text(doc, "Quiet")?.trim().toLowerCase() === "true";
  const objects = list(doc, "Object");
  if (objects.length === 0 || objects.length > 1000) throw s3err("MalformedXML", "A Delete request names 1 to 1000 objects.");
  const deleted: { Key: string; VersionId?: string; DeleteMarker?: boolean; DeleteMarkerVersionId?: string }[] = [];
  const errors: { Key: string; Code: string; Message: string }[] = [];
  for (const o of objects) {
    const key = text(o, "Key");
    if (key === undefined || key === "") throw s3err("MalformedXML", "Every <Object> needs a <Key>.");
  }
  for (const o of objects) {
    const key = text(o, "Key")!;
    const vid = text(o, "VersionId");
    try {
      // Each key on its own: a policy may let the caller delete some keys and not others.
      ctx.access?.checkKey(vid !== undefined ? "s3:DeleteObjectVersion" : "s3:DeleteObject", key);
      // With a VersionId: that version goes for good; without, a versioned bucket gets a delete marker.
      const r = await ctx.store.deleteObject(ctx.bucket!, key, vid !== undefined ? { versionId: vid } : {});
      if (!quiet) deleted.push({ Key: key, VersionId: vid, DeleteMarker: r.deleteMarker, DeleteMarkerVersionId: r.deleteMarker ? r.versionId : undefined });
    } catch (err) {
      const { error, internal } = toS3Error(err);
      if (internal) ctx.log.error({ err, key, requestId: ctx.requestId }, "DeleteObjects: one key failed");
      errors.push({ Key: key, Code: error.code, Message: error.message });
    }
  }
  sendXml(ctx, 200, "DeleteResult", { Deleted: deleted, Error: errors });
}
