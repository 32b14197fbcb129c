/** Object operations: PUT, GET, HEAD, DELETE, CopyObject (ACLs: ops-access.ts; tagging: ops-tagging.ts). */
import { isBlobError, parseAlgorithm, type ChecksumAlgorithm, type GetObjectResult, type ObjectHeaders, type ObjectMeta } from "../blob/index.js";
import { readSmall } from "./body.js";
import { checkWriteCondition, EARLY_CHECK_BYTES, guardBody, writeConditionOf, writeGuard } from "./conditional.js";
import { s3err } from "./errors.js";
import { authorize, isAnonymous } from "./access.js";
import { requestedAcl } from "./ops-access.js";
import {
  body, checkConditions, checkWriteHeaders, isoDate, objectHeadersOf, ownBucket, parseRange, quote, sendBody, sendEmpty, sendXml,
  storageClassOf, userMetaOf, writeChecksums, writeObjectHeaders, type Ctx,
} from "./http.js";
import { copyTags, taggingHeader } from "./ops-tagging.js";
import { safeDecode } from "./sigv4.js";
import * as versions from "./ops-versions.js";
import { COPY_SSE_C_PREFIX, hasSseHeaders, sealNew, sseReader, writeRequest, type SseReader } from "./sse.js";

export async function putObject(ctx: Ctx) {
  await ownBucket(ctx);
  const h = ctx.req.headers;
  checkWriteHeaders(h);
  const tags = taggingHeader(h);
  const cond = writeConditionOf(h);
  const acl = await requestedAcl(ctx);
  const enc = await writeRequest(ctx);
  const b = body(ctx);
  if (cond && !((b.expect.size ?? Infinity) < EARLY_CHECK_BYTES)) await checkWriteCondition(ctx.store, ctx.bucket!, ctx.key!, cond);
  // Encrypted: the store gets ciphertext and checks only its length; the plaintext's digests are checked as it is sealed (sse.ts).
  const sealed = enc && sealNew(ctx, enc, b.body, b.expect);
  const data = sealed?.body ?? b.body;
  // The condition is checked under the key's lock once the body has arrived; the lock is held until the store has settled the write.
  const guard = cond && writeGuard(ctx.writeLocks, ctx.store, ctx.bucket!, ctx.key!, cond);
  const meta = await ctx.store.putObject({
    bucket: ctx.bucket!, key: ctx.key!, body: guard ? guardBody(data, guard.check) : data, expect: sealed?.expect ?? b.expect,
    headers: objectHeadersOf(h), userMeta: userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject),
    extras: { acl, ...(tags ? { tags } : {}), ...(sealed ? { sse: sealed.sse } : {}) },
  }).catch((err: unknown) => { throw b.mapError(err); }).finally(() => guard?.release());
  writeChecksums(ctx.res, meta.checksums, b.echo);
  versions.setVersionHeader(ctx, meta);
  sendEmpty(ctx, 200, { ETag: quote(meta.etag), ...sealed?.headers });
}

async function getOrHead(ctx: Ctx, head: boolean) {
  await ownBucket(ctx);
  // As S3: an anonymous GET may not rewrite the answer's headers (a public object served as text/html from this origin).
  if (isAnonymous(ctx.auth) && [...ctx.query.keys()].some((k) => k.startsWith("response-"))) {
    throw s3err("InvalidRequest", "Request specific response headers cannot be used for anonymous GET requests.");
  }
  const versionId = versions.versionIdOf(ctx);
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
    // A non-owner's read the bucket did not allow outright: the object's ACL decides, before conditions and any byte.
    ctx.access?.checkObject?.(meta);
    seen = meta;
    sse = sseReader(ctx, meta);
    checkConditions(h, meta);
    range = parseRange(typeof h.range === "string" ? h.range : undefined, meta.size);
    return range;
  };
  let got: GetObjectResult | undefined;
  try {
    const vo = versionId !== undefined ? { versionId } : {};
    if (head) prepare(await ctx.store.headObject(ctx.bucket!, ctx.key!, vo));
    else got = await ctx.store.getObject(ctx.bucket!, ctx.key!, partNumber !== undefined ? { ...vo, partNumber, prepare: (m) => { prepare(m); return undefined; } } : { ...vo, prepare });
  } catch (err) {
    if (isBlobError(err, "NoSuchKey") && ctx.access && !ctx.access.mayList()) throw s3err("AccessDenied");
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
    versions.setVersionHeader(ctx, meta);
    if (r) ctx.res.setHeader("Content-Range", `bytes ${r.start}-${r.end}/${meta.size}`);
    sendEmpty(ctx, r ? 206 : 200, { "Content-Length": r ? r.end - r.start + 1 : meta.size, ...sse?.headers });
    return;
  }
  const m = got.meta;
  writeObjectHeaders(ctx, m, { checksums: wantChecksums });
  versions.setVersionHeader(ctx, m);
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

export const deleteObject = (ctx: Ctx) => versions.deleteObject(ctx);

/** x-amz-copy-source: "/bucket/key" or "bucket/key", URL-encoded, optionally "?versionId=<id>". */
export function parseCopySource(raw: string): { bucket: string; key: string; versionId?: string } {
  let s = raw;
  let versionId: string | undefined;
  const q = s.indexOf("?");
  if (q >= 0) {
    const v = new URLSearchParams(s.slice(q + 1)).get("versionId");
    if (v === "") throw s3err("InvalidArgument", "Version id cannot be the empty string", { ArgumentName: "x-amz-copy-source", ArgumentValue: raw });
    if (v !== null) versionId = v;
    s = s.slice(0, q);
  }
  s = safeDecode(s).replace(/^\//, "");
  const i = s.indexOf("/");
  if (i <= 0 || i === s.length - 1) throw s3err("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey", { ArgumentName: "x-amz-copy-source", ArgumentValue: raw });
  return { bucket: s.slice(0, i), key: s.slice(i + 1), ...(versionId !== undefined ? { versionId } : {}) };
}

/** The source object of a copy (a version of it with ?versionId=), after the caller's read access to it (as a GetObject) and the x-amz-copy-source-if-* conditions. */
export async function copySource(ctx: Ctx): Promise<{ bucket: string; key: string; versionId?: string; meta: ObjectMeta; sse?: SseReader }> {
  const src = parseCopySource(String(ctx.req.headers["x-amz-copy-source"]));
  // A version of the source is read as GetObject ?versionId= is (s3:GetObjectVersion).
  const query = new Map(src.versionId !== undefined ? [["versionId", src.versionId]] : []);
  const access = await authorize({ op: "GetObject", bucket: src.bucket, key: src.key, auth: ctx.auth, store: ctx.store, req: ctx.req, query });
  const meta = await ctx.store.headObject(src.bucket, src.key, src.versionId !== undefined ? { versionId: src.versionId } : {}).catch((err: unknown) => {
    throw isBlobError(err, "NoSuchKey") && !access.mayList() ? s3err("AccessDenied") : err;
  });
  access.checkObject?.(meta);
  checkConditions(ctx.req.headers, meta, "x-amz-copy-source-if-", true);
  // An encrypted source is decrypted (SSE-C: with the x-amz-copy-source-server-side-encryption-customer-* key).
  return { ...src, meta, sse: sseReader(ctx, meta, COPY_SSE_C_PREFIX) };
}

export async function copyObject(ctx: Ctx) {
  await ownBucket(ctx);
  const h = ctx.req.headers;
  checkWriteHeaders(h);
  const cond = writeConditionOf(h);
  const enc = await writeRequest(ctx);
  const src = await copySource(ctx);
  // As in S3, a copy's ACL is the request's (private without x-amz-acl), never the source's.
  const acl = await requestedAcl(ctx);
  const directive = String(h["x-amz-metadata-directive"] ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") throw s3err("InvalidArgument", "Unknown metadata directive.", { ArgumentName: "x-amz-metadata-directive" });
  if (src.bucket === ctx.bucket && src.key === ctx.key && src.versionId === undefined && directive === "COPY" && !h["x-amz-storage-class"] && !h["x-amz-checksum-algorithm"] && !hasSseHeaders(h)) {
    throw s3err("InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  }
  await readSmall(body(ctx), 0).catch(() => { throw s3err("InvalidRequest", "CopyObject takes no request body."); });
  const m = src.meta;
  const tags = copyTags(h, m);
  const asked = parseAlgorithm(typeof h["x-amz-checksum-algorithm"] === "string" ? h["x-amz-checksum-algorithm"] : undefined);
  const compute = [...new Set<ChecksumAlgorithm>([...(Object.keys(m.checksums).filter((a) => !m.checksums[a as ChecksumAlgorithm]!.includes("-")) as ChecksumAlgorithm[]), ...(asked ? [asked] : [])])];
  if (cond) await checkWriteCondition(ctx.store, ctx.bucket!, ctx.key!, cond);
  const got = await ctx.store.getObject(src.bucket, src.key, src.versionId !== undefined ? { versionId: src.versionId } : {});
  const plain = src.sse ? src.sse.decrypt(got.meta, got.body, 0) : got.body;
  // As in S3, the copy's encryption is the request's (or the bucket's default), not the source's.
  const sealed = enc && sealNew(ctx, enc, plain, { size: got.meta.size, computeChecksums: compute });
  const data = sealed?.body ?? plain;
  const guard = cond && writeGuard(ctx.writeLocks, ctx.store, ctx.bucket!, ctx.key!, cond);
  const meta = await ctx.store.putObject({
    bucket: ctx.bucket!, key: ctx.key!, body: guard ? guardBody(data, guard.check) : data,
    expect: sealed?.expect ?? { size: got.meta.size, computeChecksums: compute },
    // As in S3, the copy's storage class is the request's (STANDARD when absent), whatever the directive.
    headers: directive === "REPLACE" ? objectHeadersOf(h) : {
      contentType: m.contentType, cacheControl: m.cacheControl, contentDisposition: m.contentDisposition,
      contentEncoding: m.contentEncoding, contentLanguage: m.contentLanguage, expires: m.expires, storageClass: storageClassOf(h),
    } as ObjectHeaders,
    userMeta: directive === "REPLACE" ? userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject) : { ...m.userMeta },
    extras: { acl, ...(tags ? { tags } : {}), ...(sealed ? { sse: sealed.sse } : {}) },
  }).finally(() => guard?.release());
  const ck: Record<string, string> = {};
  for (const [a, v] of Object.entries(meta.checksums)) if (v) ck[`Checksum${a.toUpperCase()}`] = v;
  versions.setVersionHeader(ctx, meta);
  versions.setVersionHeader(ctx, got.meta, "x-amz-copy-source-version-id");
  sendXml(ctx, 200, "CopyObjectResult", { LastModified: isoDate(meta.lastModified), ETag: quote(meta.etag), ...ck }, sealed?.headers);
}
