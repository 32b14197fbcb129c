/** Object operations: PUT, GET, HEAD, DELETE, CopyObject, and the ACL/tagging answers for unversioned, untagged objects. */
import { isBlobError, parseAlgorithm, type ChecksumAlgorithm, type GetObjectResult, type ObjectHeaders, type ObjectMeta } from "../blob/index.js";
import { readSmall } from "./body.js";
import { s3err } from "./errors.js";
import { aclXml } from "./ops-bucket.js";
import {
  body, checkConditions, checkWriteHeaders, isoDate, objectHeadersOf, ownBucket, parseRange, quote, sendBody, sendEmpty, sendXml,
  storageClassOf, userMetaOf, writeChecksums, writeObjectHeaders, type Ctx,
} from "./http.js";
import { safeDecode } from "./sigv4.js";
import { COPY_SSE_C_PREFIX, hasSseHeaders, sealNew, sseReader, writeRequest, type SseReader } from "./sse.js";

function checkVersionId(ctx: Ctx): void {
  const v = ctx.query.get("versionId");
  if (v !== undefined && v !== "null") throw s3err("InvalidArgument", "Invalid version id specified", { ArgumentName: "versionId", ArgumentValue: v });
}

export async function putObject(ctx: Ctx) {
  await ownBucket(ctx);
  const h = ctx.req.headers;
  checkWriteHeaders(h);
  const enc = await writeRequest(ctx);
  if (typeof h["if-none-match"] === "string" || typeof h["if-match"] === "string") {
    let cur: ObjectMeta | undefined;
    try { cur = await ctx.store.headObject(ctx.bucket!, ctx.key!); } catch (err) { if (!isBlobError(err, "NoSuchKey")) throw err; }
    if (h["if-none-match"] === "*" && cur) throw s3err("PreconditionFailed", undefined, { Condition: "If-None-Match" });
    if (typeof h["if-match"] === "string") {
      if (!cur) throw s3err("NoSuchKey");
      checkConditions({ "if-match": h["if-match"] }, cur);
    }
  }
  const b = body(ctx);
  // Encrypted: the store gets ciphertext and checks only its length; the plaintext's digests are checked as it is sealed (sse.ts).
  const sealed = enc && sealNew(ctx, enc, b.body, b.expect);
  const meta = await ctx.store.putObject({
    bucket: ctx.bucket!, key: ctx.key!, body: sealed?.body ?? b.body, expect: sealed?.expect ?? b.expect,
    headers: objectHeadersOf(h), userMeta: userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject), ...(sealed ? { extras: { sse: sealed.sse } } : {}),
  }).catch((err: unknown) => { throw b.mapError(err); });
  writeChecksums(ctx.res, meta.checksums, b.echo);
  sendEmpty(ctx, 200, { ETag: quote(meta.etag), ...sealed?.headers });
}

async function getOrHead(ctx: Ctx, head: boolean) {
  await ownBucket(ctx);
  checkVersionId(ctx);
  const h = ctx.req.headers;
  const pn = ctx.query.get("partNumber");
  let partNumber: number | undefined;
  if (pn !== undefined) {
    if (!/^\d+$/.test(pn) || Number(pn) < 1 || Number(pn) > 10000) throw s3err("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive", { ArgumentName: "partNumber", ArgumentValue: pn });
    if (h.range) throw s3err("InvalidRequest", "Cannot specify both Range header and partNumber query parameter");
    partNumber = Number(pn);
  }
  // Conditions and the range are decided on the metadata: a HEAD looks it up; a GET has the store
  // call back with it before any byte is read (one quorum round, not a HEAD and then a GET).
  let seen: ObjectMeta | undefined;
  let range: ReturnType<typeof parseRange>;
  let sse: SseReader | undefined;
  const prepare = (meta: ObjectMeta) => {
    seen = meta;
    sse = sseReader(ctx, meta);
    checkConditions(h, meta);
    range = parseRange(typeof h.range === "string" ? h.range : undefined, meta.size);
    return range;
  };
  let got: GetObjectResult | undefined;
  try {
    if (head) prepare(await ctx.store.headObject(ctx.bucket!, ctx.key!));
    else got = await ctx.store.getObject(ctx.bucket!, ctx.key!, partNumber !== undefined ? { partNumber, prepare: (m) => { prepare(m); return undefined; } } : { prepare });
  } catch (err) {
    if ((err as { code?: string }).code === "NotModified" && seen) {
      ctx.res.setHeader("ETag", quote(seen.etag));
      ctx.res.setHeader("Last-Modified", new Date(seen.lastModified).toUTCString());
      sendEmpty(ctx, 304);
      return;
    }
    throw err;
  }
  const meta = seen!;
  const wantChecksums = h["x-amz-checksum-mode"] === "ENABLED" && !range && partNumber === undefined;
  if (head || !got) {
    let r = range;
    if (partNumber !== undefined) {
      const parts = meta.parts ?? [{ partNumber: 1, size: meta.size }];
      if (partNumber > parts.length) throw s3err("InvalidPartNumber");
      const start = parts.slice(0, partNumber - 1).reduce((n, p) => n + p.size, 0);
      r = { start, end: start + parts[partNumber - 1]!.size - 1 };
      ctx.res.setHeader("x-amz-mp-parts-count", String(parts.length));
    }
    writeObjectHeaders(ctx, meta, { checksums: wantChecksums });
    if (r) ctx.res.setHeader("Content-Range", `bytes ${r.start}-${r.end}/${meta.size}`);
    sendEmpty(ctx, r ? 206 : 200, { "Content-Length": r ? r.end - r.start + 1 : meta.size, ...sse?.headers });
    return;
  }
  const m = got.meta;
  writeObjectHeaders(ctx, m, { checksums: wantChecksums });
  const r = got.range;
  const len = r ? r.end - r.start + 1 : m.size;
  const status = r && (range || partNumber !== undefined) ? 206 : 200;
  if (r && status === 206) ctx.res.setHeader("Content-Range", `bytes ${r.start}-${r.end}/${m.size}`);
  if (partNumber !== undefined) ctx.res.setHeader("x-amz-mp-parts-count", String(m.parts?.length ?? 1));
  ctx.res.writeHead(status, { "Content-Length": len, ...sse?.headers });
  await sendBody(ctx, sse ? sse.decrypt(m, got.body, r?.start ?? 0) : got.body);
}

export const getObject = (ctx: Ctx) => getOrHead(ctx, false);
export const headObject = (ctx: Ctx) => getOrHead(ctx, true);

export async function deleteObject(ctx: Ctx) {
  await ownBucket(ctx);
  checkVersionId(ctx);
  await ctx.store.deleteObject(ctx.bucket!, ctx.key!);
  sendEmpty(ctx, 204);
}

/** x-amz-copy-source: "/bucket/key" or "bucket/key", URL-encoded, optionally "?versionId=null". */
export function parseCopySource(raw: string): { bucket: string; key: string } {
  let s = raw;
  const q = s.indexOf("?");
  if (q >= 0) {
    const params = new URLSearchParams(s.slice(q + 1));
    const v = params.get("versionId");
    if (v !== null && v !== "null") throw s3err("NoSuchVersion");
    s = s.slice(0, q);
  }
  s = safeDecode(s).replace(/^\//, "");
  const i = s.indexOf("/");
  if (i <= 0 || i === s.length - 1) throw s3err("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey", { ArgumentName: "x-amz-copy-source", ArgumentValue: raw });
  return { bucket: s.slice(0, i), key: s.slice(i + 1) };
}

/** The source object of a copy, after the caller's ownership and the x-amz-copy-source-if-* conditions. */
export async function copySource(ctx: Ctx): Promise<{ bucket: string; key: string; meta: ObjectMeta; sse?: SseReader }> {
  const src = parseCopySource(String(ctx.req.headers["x-amz-copy-source"]));
  const sb = await ctx.store.headBucket(src.bucket);
  if (sb.owner !== ctx.auth.owner) throw s3err("AccessDenied", "The source bucket belongs to another owner.");
  const meta = await ctx.store.headObject(src.bucket, src.key);
  checkConditions(ctx.req.headers, meta, "x-amz-copy-source-if-", true);
  // An encrypted source is decrypted (SSE-C: with the x-amz-copy-source-server-side-encryption-customer-* key).
  return { ...src, meta, sse: sseReader(ctx, meta, COPY_SSE_C_PREFIX) };
}

export async function copyObject(ctx: Ctx) {
  await ownBucket(ctx);
  const h = ctx.req.headers;
  checkWriteHeaders(h);
  const enc = await writeRequest(ctx);
  const src = await copySource(ctx);
  const directive = String(h["x-amz-metadata-directive"] ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") throw s3err("InvalidArgument", "Unknown metadata directive.", { ArgumentName: "x-amz-metadata-directive" });
  if (src.bucket === ctx.bucket && src.key === ctx.key && directive === "COPY" && !h["x-amz-storage-class"] && !h["x-amz-checksum-algorithm"] && !hasSseHeaders(h)) {
    throw s3err("InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  }
  await readSmall(body(ctx), 0).catch(() => { throw s3err("InvalidRequest", "CopyObject takes no request body."); });
  const m = src.meta;
  const asked = parseAlgorithm(typeof h["x-amz-checksum-algorithm"] === "string" ? h["x-amz-checksum-algorithm"] : undefined);
  const compute = [...new Set<ChecksumAlgorithm>([...(Object.keys(m.checksums).filter((a) => !m.checksums[a as ChecksumAlgorithm]!.includes("-")) as ChecksumAlgorithm[]), ...(asked ? [asked] : [])])];
  const got = await ctx.store.getObject(src.bucket, src.key);
  const plain = src.sse ? src.sse.decrypt(got.meta, got.body, 0) : got.body;
  // As in S3, the copy's encryption is the request's (or the bucket's default), not the source's.
  const sealed = enc && sealNew(ctx, enc, plain, { size: got.meta.size, computeChecksums: compute });
  const meta = await ctx.store.putObject({
    bucket: ctx.bucket!, key: ctx.key!, body: sealed?.body ?? plain, ...(sealed ? { extras: { sse: sealed.sse } } : {}),
    expect: sealed?.expect ?? { size: got.meta.size, computeChecksums: compute },
    // As in S3, the copy's storage class is the request's (STANDARD when absent), whatever the directive.
    headers: directive === "REPLACE" ? objectHeadersOf(h) : {
      contentType: m.contentType, cacheControl: m.cacheControl, contentDisposition: m.contentDisposition,
      contentEncoding: m.contentEncoding, contentLanguage: m.contentLanguage, expires: m.expires, storageClass: storageClassOf(h),
    } as ObjectHeaders,
    userMeta: directive === "REPLACE" ? userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject) : { ...m.userMeta },
  });
  const ck: Record<string, string> = {};
  for (const [a, v] of Object.entries(meta.checksums)) if (v) ck[`Checksum${a.toUpperCase()}`] = v;
  sendXml(ctx, 200, "CopyObjectResult", { LastModified: isoDate(meta.lastModified), ETag: quote(meta.etag), ...ck }, sealed?.headers);
}

export async function getObjectAcl(ctx: Ctx) {
  const b = await ownBucket(ctx);
  await ctx.store.headObject(ctx.bucket!, ctx.key!);
  sendXml(ctx, 200, "AccessControlPolicy", aclXml(b.owner));
}

export async function putObjectAcl(ctx: Ctx) {
  await ownBucket(ctx);
  checkWriteHeaders(ctx.req.headers);
  await ctx.store.headObject(ctx.bucket!, ctx.key!);
  await readSmall(body(ctx), 1 << 20);
  sendEmpty(ctx, 200);
}

export async function getObjectTagging(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.headObject(ctx.bucket!, ctx.key!);
  sendXml(ctx, 200, "Tagging", { TagSet: {} });
}
