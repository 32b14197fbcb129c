/**
 * GetObjectAttributes (GET /bucket/key?attributes): the attributes named in
 * x-amz-object-attributes (ETag, Checksum, ObjectParts, StorageClass,
 * ObjectSize) from the object's metadata, without reading its body. The part
 * list pages with the x-amz-max-parts and x-amz-part-number-marker headers.
 */
import type { ChecksumAlgorithm, ObjectMeta } from "../blob/index.js";
import { s3err } from "./errors.js";
import { checkConditions, httpDate, ownBucket, sendXml, type Ctx } from "./http.js";
import type { XmlNode } from "./xml.js";

const ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];

function headerInt(ctx: Ctx, name: string, def: number, max: number): number {
  const v = ctx.req.headers[name];
  if (v === undefined) return def;
  if (typeof v !== "string" || !/^\d+$/.test(v.trim())) throw s3err("InvalidArgument", `${name} must be a non-negative integer.`, { ArgumentName: name, ArgumentValue: String(v) });
  return Math.min(Number(v), max);
}

const checksumsXml = (c: Partial<Record<ChecksumAlgorithm, string>> | undefined) => {
  const out: Record<string, string> = {};
  for (const [a, v] of Object.entries(c ?? {})) if (v) out[`Checksum${a.toUpperCase()}`] = v;
  return out;
};

export async function getObjectAttributes(ctx: Ctx) {
  await ownBucket(ctx);
  const v = ctx.query.get("versionId");
  if (v !== undefined && v !== "null") throw s3err("InvalidArgument", "Invalid version id specified", { ArgumentName: "versionId", ArgumentValue: v });
  const raw = ctx.req.headers["x-amz-object-attributes"];
  const asked = (Array.isArray(raw) ? raw.join(",") : raw ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (asked.length === 0) throw s3err("InvalidArgument", "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty", { ArgumentName: "x-amz-object-attributes" });
  const bad = asked.find((a) => !ATTRIBUTES.includes(a));
  if (bad) throw s3err("InvalidArgument", "Invalid attribute name specified.", { ArgumentName: "x-amz-object-attributes", ArgumentValue: bad });
  const maxParts = headerInt(ctx, "x-amz-max-parts", 1000, 1000);
  const marker = headerInt(ctx, "x-amz-part-number-marker", 0, 10000);
  const meta: ObjectMeta = await ctx.store.headObject(ctx.bucket!, ctx.key!);
  // As GetObject: a failed If-Match / If-Unmodified-Since is 412, and the 304 cases are 304.
  checkConditions(ctx.req.headers, meta);
  const want = new Set(asked);
  const doc: XmlNode = {};
  if (want.has("ETag")) doc.ETag = meta.etag; // S3 gives it unquoted here
  if (want.has("Checksum")) {
    const c = checksumsXml(meta.checksums);
    if (Object.keys(c).length) doc.Checksum = { ...c, ChecksumType: Object.values(c).some((x) => x.includes("-")) ? "COMPOSITE" : "FULL_OBJECT" };
  }
  if (want.has("ObjectParts") && meta.parts?.length) {
    const page = meta.parts.filter((p) => p.partNumber > marker).slice(0, maxParts);
    const truncated = page.length > 0 && page[page.length - 1]!.partNumber < meta.parts[meta.parts.length - 1]!.partNumber;
    doc.ObjectParts = {
      PartsCount: meta.parts.length, PartNumberMarker: marker, NextPartNumberMarker: page.length ? page[page.length - 1]!.partNumber : marker,
      MaxParts: maxParts, IsTruncated: truncated,
      Part: page.map((p) => ({ PartNumber: p.partNumber, Size: p.size, ...checksumsXml(p.checksums) })),
    };
  }
  if (want.has("StorageClass")) doc.StorageClass = meta.storageClass ?? "STANDARD";
  if (want.has("ObjectSize")) doc.ObjectSize = meta.size;
  const headers: Record<string, string> = { "Last-Modified": httpDate(meta.lastModified) };
  if (meta.versionId) headers["x-amz-version-id"] = meta.versionId;
  sendXml(ctx, 200, "GetObjectAttributesResponse", doc, headers);
}
