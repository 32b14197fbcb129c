/** Multipart uploads: create, upload a part (or copy one), complete (idempotent), abort, and the two listings. */
import { isBlobError, MAX_PARTS, parseAlgorithm, type BodyExpectations, type ChecksumAlgorithm, type ObjectHeaders } from "../blob/index.js";
import { readSmall } from "./body.js";
import { writeConditionOf, writeGuard } from "./conditional.js";
import { s3err, toS3Error } from "./errors.js";
import {
  body, checkWriteHeaders, intParam, isoDate, objectHeadersOf, ownBucket, ownerXml, parseRange, quote, sendEmpty, sendXml,
  unquote, urlEncodeKey, userMetaOf, writeChecksums, type Ctx,
} from "./http.js";
import { copySource } from "./ops-object.js";
import { taggingHeader } from "./ops-tagging.js";
import { requestedAcl } from "./ops-access.js";
import { completeSseHeaders, newEncryption, partEncryption, seal, SSE_HEADER, sseHeaders, writeRequest } from "./sse.js";
import { list, parseXml, simpleCompleteParts, text, XML_DECL, xmlDoc } from "./xml.js";

const MAX_COMPLETE_XML = 4 << 20;
/**
 * While a completion runs (a retry, quorum waits, many parts), a space is sent this often, after a 200 and the XML
 * declaration, so proxies and clients do not time out; in a versioned bucket the 200 waits for the version id up to
 * versionWaitMs from the start (tests shorten both).
 */
export const completeTiming = { keepaliveMs: 2000, versionWaitMs: 15_000 };

function uploadId(ctx: Ctx): string {
  const id = ctx.query.get("uploadId");
  if (!id) throw s3err("InvalidArgument", "uploadId must not be empty.", { ArgumentName: "uploadId" });
  return id;
}

function partNumber(ctx: Ctx): number {
  const v = ctx.query.get("partNumber") ?? "";
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_PARTS) {
    throw s3err("InvalidArgument", `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`, { ArgumentName: "partNumber", ArgumentValue: v });
  }
  return Number(v);
}

/** The storage class an upload was created with (kept beside its headers). */
const classOf = (h: ObjectHeaders) => (h as { storageClass?: string }).storageClass ?? "STANDARD";

const checksumXml = (c: Partial<Record<ChecksumAlgorithm, string>> | undefined) => {
  const out: Record<string, string> = {};
  for (const [a, v] of Object.entries(c ?? {})) if (v) out[`Checksum${a.toUpperCase()}`] = v;
  return out;
};

export async function createMultipartUpload(ctx: Ctx) {
  await ownBucket(ctx);
  const h = ctx.req.headers;
  checkWriteHeaders(h);
  const algHeader = h["x-amz-checksum-algorithm"];
  const alg = typeof algHeader === "string" ? parseAlgorithm(algHeader) : undefined;
  if (typeof algHeader === "string" && !alg) throw s3err("InvalidRequest", `Checksum algorithm ${algHeader} is not supported.`);
  if (typeof h["x-amz-checksum-type"] === "string" && h["x-amz-checksum-type"] !== "COMPOSITE") {
    throw s3err("NotImplemented", "Only COMPOSITE multipart checksums are supported.");
  }
  const tags = taggingHeader(h);
  const acl = await requestedAcl(ctx);
  const enc = await writeRequest(ctx);
  const sse = enc && newEncryption(ctx.sse.ring, enc, true).sse;
  // An encrypted upload's checksums are the plaintext's, checked per part in this layer (sse.ts): the store, which sees ciphertext, computes none.
  const u = await ctx.store.createMultipartUpload(ctx.bucket!, ctx.key!, objectHeadersOf(h), userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject), sse ? undefined : alg, { acl, ...(tags ? { tags } : {}), ...(sse ? { sse } : {}) });
  sendXml(ctx, 200, "InitiateMultipartUploadResult", { Bucket: ctx.bucket!, Key: ctx.key!, UploadId: u.uploadId },
    { ...(alg ? { "x-amz-checksum-algorithm": alg.toUpperCase() } : {}), ...(enc ? sseHeaders(enc.mode, enc.mode === "SSE-C" ? enc.ck : undefined) : {}) });
}

/**
 * An encrypted part's expectations for the store: its ciphertext's size, its own IV to keep (sse.ts), and under SSE-S3
 * the plaintext's MD5 as its ETag (as S3 answers; SSE-C parts keep an ETag that is not the plaintext's MD5).
 */
function partExpect(enc: { headers: Record<string, string>; ivField: string }, sealed: ReturnType<typeof seal>): BodyExpectations {
  const e: BodyExpectations = { ...sealed.expect, sse: enc.ivField };
  return enc.headers[SSE_HEADER] === "AES256" ? { ...e, etag: () => sealed.digests().etag } : e;
}

export async function uploadPart(ctx: Ctx) {
  await ownBucket(ctx);
  const n = partNumber(ctx), id = uploadId(ctx);
  const enc = await partEncryption(ctx, id);
  const b = body(ctx);
  const sealed = enc && seal(b.body, enc.key, enc.iv, b.expect);
  const p = await ctx.store.uploadPart(ctx.bucket!, ctx.key!, id, n, sealed?.body ?? b.body, sealed ? partExpect(enc, sealed) : b.expect).catch((err: unknown) => { throw b.mapError(err); });
  const checksums = sealed ? sealed.digests().checksums : p.checksums;
  if (checksums) writeChecksums(ctx.res, checksums);
  sendEmpty(ctx, 200, { ETag: quote(p.etag), ...enc?.headers });
}

export async function uploadPartCopy(ctx: Ctx) {
  await ownBucket(ctx);
  const n = partNumber(ctx), id = uploadId(ctx);
  const enc = await partEncryption(ctx, id);
  const src = await copySource(ctx);
  const rh = ctx.req.headers["x-amz-copy-source-range"];
  const range = parseRange(typeof rh === "string" ? rh : undefined, src.meta.size, true);
  await readSmall(body(ctx), 0).catch(() => { throw s3err("InvalidRequest", "UploadPartCopy takes no request body."); });
  const got = await ctx.store.getObject(src.bucket, src.key, { range, ...(src.versionId !== undefined ? { versionId: src.versionId } : {}) });
  const size = range ? range.end - range.start + 1 : got.meta.size;
  const plain = src.sse ? src.sse.decrypt(got.meta, got.body, range?.start ?? 0) : got.body;
  const sealed = enc && seal(plain, enc.key, enc.iv, { size });
  const p = await ctx.store.uploadPart(ctx.bucket!, ctx.key!, id, n, sealed?.body ?? plain, sealed ? partExpect(enc, sealed) : { size });
  sendXml(ctx, 200, "CopyPartResult", { LastModified: isoDate(p.lastModified ?? Date.now()), ETag: quote(p.etag), ...checksumXml(sealed ? sealed.digests().checksums : p.checksums) }, enc?.headers);
}

export async function completeMultipartUpload(ctx: Ctx) {
  await ownBucket(ctx);
  const id = uploadId(ctx);
  const cond = writeConditionOf(ctx.req.headers);
  // The request is read and checked while the store already reads the upload's part records (the list is handed over
  // as a promise): on a 1,000-part upload both take tens of milliseconds. Nothing is written until the list arrives.
  const checked = checkComplete(ctx, id, cond);
  let onVersionId: (id: string) => void = () => undefined;
  const stored = ctx.store.completeMultipartUpload(ctx.bucket!, ctx.key!, id, checked.then((c) => c.parts), { onVersionId: (v) => onVersionId(v) });
  stored.catch(() => undefined);
  let prepared: Awaited<typeof checked>;
  try {
    prepared = await checked;
  } catch (err) {
    // The store gave up too (the list was rejected); wait for it so nothing it started outlives the request.
    await stored.catch(() => undefined);
    throw err;
  }
  const { versioned, upSse, guard } = prepared;

  // Completing can take a while (quorum waits, many parts, a slow disk): answer 200 early and keep the connection alive with
  // whitespace; an error after that point goes in the 200 body, which SDKs check for this operation. In a bucket that has
  // versioning the early headers wait for the version id (the store names it before it writes the object), at most
  // completeTiming.versionWaitMs, so x-amz-version-id is among them.
  const res = ctx.res;
  const t0 = Date.now();
  let started = false, ticked = false;
  let versionId: string | undefined;
  const start = () => {
    started = true;
    res.writeHead(200, { "Content-Type": "application/xml", ...completeSseHeaders(ctx, upSse?.sse), ...(versionId ? { "x-amz-version-id": versionId } : {}) });
    res.write(XML_DECL);
  };
  const timer = setInterval(() => {
    ticked = true;
    if (started) res.write(" ");
    else if (!versioned || versionId !== undefined || Date.now() - t0 >= completeTiming.versionWaitMs) start();
  }, completeTiming.keepaliveMs);
  onVersionId = (id: string) => {
    versionId = id;
    // The keep-alive is already due and was only waiting for this.
    if (ticked && !started) start();
  };
  try {
    const meta = await stored.finally(() => guard?.release());
    clearInterval(timer);
    const location = `/${ctx.bucket}/${urlEncodeKey(ctx.key!)}`;
    const result = { Location: location, Bucket: ctx.bucket!, Key: ctx.key!, ETag: quote(meta.etag), ...checksumXml(meta.checksums) };
    if (started) {
      res.end(xmlDoc("CompleteMultipartUploadResult", result).slice(XML_DECL.length));
    } else {
      const sseH = completeSseHeaders(ctx, upSse ? upSse.sse : meta.sse);
      sendXml(ctx, 200, "CompleteMultipartUploadResult", result, { ...sseH, ...(meta.versionId ? { "x-amz-version-id": meta.versionId } : {}) });
    }
  } catch (err) {
    clearInterval(timer);
    if (!started) throw err;
    const e = toS3Error(err).error;
    res.end(`<Error><Code>${e.code}</Code><Message>${e.message.replace(/[<&>]/g, "")}</Message><RequestId>${ctx.requestId}</RequestId></Error>`);
  }
}

/** Complete's part list from the request body, and what the answer needs; with a condition, its check under the key's lock. */
async function checkComplete(ctx: Ctx, id: string, cond: ReturnType<typeof writeConditionOf>) {
  const raw = (await readSmall(body(ctx), MAX_COMPLETE_XML)).toString("utf8");
  const given = simpleCompleteParts(raw) ?? list(parseXml(raw, "CompleteMultipartUpload"), "Part").map((p) => ({ partNumber: text(p, "PartNumber"), etag: text(p, "ETag") }));
  const parts = given.map((p) => {
    const num = p.partNumber?.trim() ?? "", etag = p.etag;
    if (!/^\d+$/.test(num) || etag === undefined) throw s3err("MalformedXML", "Every <Part> needs a <PartNumber> and an <ETag>.");
    return { partNumber: Number(num), etag: unquote(etag) };
  });
  if (parts.length === 0) throw s3err("MalformedXML", "You must specify at least one part.");
  if (parts.length > MAX_PARTS) throw s3err("MalformedXML", `At most ${MAX_PARTS} parts.`);
  // Looked up before the lock is taken (the lock must be released on every path after it).
  const versioned = (await ctx.store.getBucketConfig(ctx.bucket!, "versioning")) !== undefined;
  // The upload's encryption, for the answer's headers (early ones too). A retry after success finds no upload: the object's then.
  const upSse = await ctx.sse.uploadSse(ctx.store, ctx.bucket!, ctx.key!, id).then((sse) => ({ sse }), (err: unknown) => {
    if (isBlobError(err, "NoSuchUpload")) return undefined;
    throw err;
  });
  // Last thing before the parts are assembled, under the key's lock until the completion has settled (conditional.ts).
  const guard = cond ? writeGuard(ctx.writeLocks, ctx.store, ctx.bucket!, ctx.key!, cond) : undefined;
  try {
    await guard?.check();
  } catch (err) {
    guard?.release();
    throw err;
  }
  return { parts, versioned, upSse, guard };
}

export async function abortMultipartUpload(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.abortMultipartUpload(ctx.bucket!, ctx.key!, uploadId(ctx));
  sendEmpty(ctx, 204);
}

export async function listParts(ctx: Ctx) {
  await ownBucket(ctx);
  const maxParts = intParam(ctx, "max-parts", 1000, 1000);
  const marker = intParam(ctx, "part-number-marker", 0, MAX_PARTS);
  const r = await ctx.store.listParts(ctx.bucket!, ctx.key!, uploadId(ctx), { partNumberMarker: marker || undefined, maxParts });
  sendXml(ctx, 200, "ListPartsResult", {
    Bucket: ctx.bucket!, Key: ctx.key!, UploadId: r.upload.uploadId,
    Initiator: ownerXml(ctx.auth.owner), Owner: ownerXml(ctx.auth.owner), StorageClass: classOf(r.upload.headers),
    PartNumberMarker: marker, NextPartNumberMarker: r.nextPartNumberMarker ?? (r.parts.length ? r.parts[r.parts.length - 1]!.partNumber : undefined),
    MaxParts: maxParts, IsTruncated: r.isTruncated,
    ChecksumAlgorithm: r.upload.checksumAlgorithm?.toUpperCase(),
    Part: r.parts.map((p) => ({
      PartNumber: p.partNumber, LastModified: isoDate(p.lastModified ?? r.upload.initiated), ETag: quote(p.etag), Size: p.size, ...checksumXml(p.checksums),
    })),
  });
}

export async function listMultipartUploads(ctx: Ctx) {
  await ownBucket(ctx);
  const q = ctx.query;
  const enc = q.get("encoding-type");
  if (enc !== undefined && enc !== "url") throw s3err("InvalidArgument", "Invalid Encoding Method specified in Request", { ArgumentName: "encoding-type" });
  const e = (s: string | undefined) => (s === undefined ? undefined : enc ? urlEncodeKey(s) : s);
  const maxUploads = intParam(ctx, "max-uploads", 1000, 1000);
  const delimiter = q.get("delimiter") || undefined, prefix = q.get("prefix") ?? "";
  const keyMarker = q.get("key-marker") || undefined, uploadIdMarker = q.get("upload-id-marker") || undefined;
  const r = maxUploads === 0 ? { uploads: [], commonPrefixes: [], isTruncated: false, nextKeyMarker: undefined, nextUploadIdMarker: undefined }
    : await ctx.store.listMultipartUploads({ bucket: ctx.bucket!, prefix, delimiter, keyMarker, uploadIdMarker: keyMarker ? uploadIdMarker : undefined, maxUploads });
  sendXml(ctx, 200, "ListMultipartUploadsResult", {
    Bucket: ctx.bucket!, KeyMarker: e(keyMarker ?? ""), UploadIdMarker: uploadIdMarker ?? "",
    NextKeyMarker: e(r.nextKeyMarker), NextUploadIdMarker: r.nextUploadIdMarker,
    Delimiter: e(delimiter), Prefix: e(prefix), MaxUploads: maxUploads, IsTruncated: r.isTruncated, EncodingType: enc,
    Upload: r.uploads.map((u) => ({
      Key: e(u.key), UploadId: u.uploadId, Initiator: ownerXml(ctx.auth.owner), Owner: ownerXml(ctx.auth.owner), StorageClass: classOf(u.headers),
      Initiated: isoDate(u.initiated), ChecksumAlgorithm: u.checksumAlgorithm?.toUpperCase(),
    })),
    CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: e(p) })),
  });
}
