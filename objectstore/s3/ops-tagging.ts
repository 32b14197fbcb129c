/**
 * Object and bucket tagging: Put/Get/DeleteObjectTagging,
 * Put/Get/DeleteBucketTagging, and the x-amz-tagging header of PutObject,
 * CreateMultipartUpload and CopyObject (x-amz-tagging-directive), with S3's
 * limits and error answers. An object's tags change through
 * BlobStore.updateObjectMeta, which never rewrites the object (its ETag,
 * Last-Modified and version stay).
 */
import type { IncomingMessage } from "node:http";
import type { ObjectMeta } from "../blob/index.js";
import { readSmall } from "./body.js";
import { s3err } from "./errors.js";
import { body, ownBucket, sendEmpty, sendXml, type Ctx } from "./http.js";
import { list, parseXml, text } from "./xml.js";

/** S3's limits: 10 tags per object, 50 per bucket; keys 1–128 and values 0–256 UTF-16 code units. */
export const MAX_OBJECT_TAGS = 10;
export const MAX_BUCKET_TAGS = 50;
const MAX_KEY = 128;
const MAX_VALUE = 256;
/** The characters S3 (as all AWS tagging) accepts in keys and values. */
const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
/** 50 tags at their longest, with XML around them, stay far below this. */
const MAX_TAGGING_XML = 256 << 10;

type Kind = "object" | "bucket";

/** Validates a tag list in S3's order of checks (count, then each tag); returns it as a map. */
export function checkTags(tags: [string, string][], kind: Kind): Record<string, string> {
  if (kind === "object" && tags.length > MAX_OBJECT_TAGS) throw s3err("BadRequest", `Object tags cannot be greater than ${MAX_OBJECT_TAGS}`);
  if (kind === "bucket" && tags.length > MAX_BUCKET_TAGS) throw s3err("BadRequest", `Bucket tag count cannot be greater than ${MAX_BUCKET_TAGS}`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [key, value] of tags) {
    if (key.length < 1 || key.length > MAX_KEY || !TAG_CHARS.test(key)) throw s3err("InvalidTag", "The TagKey you have provided is invalid", { TagKey: key });
    if (value.length > MAX_VALUE || !TAG_CHARS.test(value)) throw s3err("InvalidTag", "The TagValue you have provided is invalid", { TagValue: value });
    if (key.startsWith("aws:")) {
      throw s3err("InvalidTag", kind === "object" ? "Your TagKey cannot be prefixed with aws:" : "System tags cannot be added/updated by requester", { TagKey: key });
    }
    if (Object.prototype.hasOwnProperty.call(out, key)) throw s3err("InvalidTag", "Cannot provide multiple Tags with the same key", { TagKey: key });
    out[key] = value;
  }
  return { ...out };
}

const badHeader = () => s3err("InvalidArgument", "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.", { ArgumentName: "x-amz-tagging" });

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    throw badHeader();
  }
}

/** x-amz-tagging ("k1=v1&k2=v2", URL-encoded): the tags, or undefined when the header is absent. */
export function taggingHeader(h: IncomingMessage["headers"]): Record<string, string> | undefined {
  const raw = h["x-amz-tagging"];
  if (raw === undefined) return undefined;
  const pairs: [string, string][] = [];
  const seen = new Set<string>();
  for (const part of (Array.isArray(raw) ? raw.join("&") : raw).split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = formDecode(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : formDecode(part.slice(eq + 1));
    if (key === "" || seen.has(key)) throw badHeader();
    seen.add(key);
    pairs.push([key, value]);
  }
  return checkTags(pairs, "object");
}

/**
 * The tags a CopyObject gives its copy: the source's (x-amz-tagging-directive
 * COPY, the default) or the request's x-amz-tagging (REPLACE; none without it).
 */
export function copyTags(h: IncomingMessage["headers"], source: ObjectMeta): Record<string, string> | undefined {
  const d = String(h["x-amz-tagging-directive"] ?? "COPY").toUpperCase();
  if (d !== "COPY" && d !== "REPLACE") throw s3err("InvalidArgument", "Unknown tagging directive.", { ArgumentName: "x-amz-tagging-directive", ArgumentValue: String(h["x-amz-tagging-directive"]) });
  return d === "COPY" ? source.tags : taggingHeader(h);
}

/** A <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging> request body, validated. */
async function readTagging(ctx: Ctx, kind: Kind): Promise<Record<string, string>> {
  const doc = parseXml((await readSmall(body(ctx), MAX_TAGGING_XML)).toString("utf8"), "Tagging");
  if (text(doc, "TagSet") === undefined) throw s3err("MalformedXML");
  const set = (doc as Record<string, unknown>).TagSet;
  const pairs: [string, string][] = [];
  for (const t of list(set, "Tag")) {
    const key = text(t, "Key"), value = text(t, "Value");
    if (key === undefined || value === undefined) throw s3err("MalformedXML");
    pairs.push([key, value]);
  }
  return checkTags(pairs, kind);
}

/**
 * The version a tagging request names (?versionId=). The one place it
 * resolves: for now only the current object ("null", or none); the store's
 * updateObjectMeta takes the same id.
 */
function versionOf(ctx: Ctx): { versionId?: string } {
  const v = ctx.query.get("versionId");
  if (v === undefined) return {};
  if (v !== "null") throw s3err("InvalidArgument", "Invalid version id specified", { ArgumentName: "versionId", ArgumentValue: v });
  return { versionId: v };
}

async function objectMeta(ctx: Ctx, opts: { versionId?: string }): Promise<ObjectMeta> {
  const meta = await ctx.store.headObject(ctx.bucket!, ctx.key!);
  if (opts.versionId !== undefined && (meta.versionId ?? "null") !== opts.versionId) throw s3err("NoSuchVersion");
  return meta;
}

const versionHeader = (m: ObjectMeta): Record<string, string> => (m.versionId !== undefined ? { "x-amz-version-id": m.versionId } : {});
const tagSetXml = (tags: Record<string, string> | undefined) => ({ TagSet: { Tag: Object.entries(tags ?? {}).map(([Key, Value]) => ({ Key, Value })) } });

export async function getObjectTagging(ctx: Ctx) {
  await ownBucket(ctx);
  const meta = await objectMeta(ctx, versionOf(ctx));
  sendXml(ctx, 200, "Tagging", tagSetXml(meta.tags), versionHeader(meta));
}

export async function putObjectTagging(ctx: Ctx) {
  await ownBucket(ctx);
  const v = versionOf(ctx);
  const tags = await readTagging(ctx, "object");
  const meta = await ctx.store.updateObjectMeta(ctx.bucket!, ctx.key!, { tags }, v);
  sendEmpty(ctx, 200, versionHeader(meta));
}

export async function deleteObjectTagging(ctx: Ctx) {
  await ownBucket(ctx);
  const meta = await ctx.store.updateObjectMeta(ctx.bucket!, ctx.key!, { tags: {} }, versionOf(ctx));
  sendEmpty(ctx, 204, versionHeader(meta));
}

export async function getBucketTagging(ctx: Ctx) {
  await ownBucket(ctx);
  const tags = await ctx.store.getBucketConfig(ctx.bucket!, "tagging");
  if (!tags || Object.keys(tags).length === 0) throw s3err("NoSuchTagSet", undefined, { BucketName: ctx.bucket! });
  sendXml(ctx, 200, "Tagging", tagSetXml(tags));
}

/** An empty TagSet removes the bucket's tags (GetBucketTagging then answers NoSuchTagSet). */
export async function putBucketTagging(ctx: Ctx) {
  await ownBucket(ctx);
  const tags = await readTagging(ctx, "bucket");
  await ctx.store.putBucketConfig(ctx.bucket!, "tagging", Object.keys(tags).length ? tags : undefined);
  sendEmpty(ctx, 204);
}

export async function deleteBucketTagging(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.putBucketConfig(ctx.bucket!, "tagging", undefined);
  sendEmpty(ctx, 204);
}
