/**
 * The per-request context handlers get, and the header conventions shared by
 * object operations: user metadata, standard headers, ETags, conditional
 * requests and byte ranges.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Config } from "../../config/index.js";
import type { Logger } from "../../core/index.js";
import { recycleReadBuffer, type BlobStore, type ByteRange, type KeyLocker, type ChecksumAlgorithm, type Checksums, type ObjectHeaders, type ObjectMeta } from "../blob/index.js";
import { prepareBody, type PreparedBody } from "./body.js";
import { s3err } from "./errors.js";
import type { AuthResult } from "./sigv4.js";
import type { Access } from "./access.js";
import type { SseContext } from "./sse-keys.js";
import { xmlDoc, type XmlNode } from "./xml.js";

export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  op: string;
  bucket?: string;
  key?: string;
  /** Decoded query parameters (first value wins). */
  query: Map<string, string>;
  auth: AuthResult;
  /** What the authorize step decided (access.ts); set for every request that names a bucket, except CreateBucket. */
  access?: Access;
  store: BlobStore;
  config: Config;
  log: Logger;
  /** Encryption at rest: the SSE-S3 key ring and the encryption of uploads (sse.ts). */
  sse: SseContext;
  /** The per-key lock of conditional writes (conditional.ts): this node's, or the cluster's. */
  writeLocks: KeyLocker;
  bytesIn: number;
  bytesOut: number;
}

export function body(ctx: Ctx): PreparedBody {
  return prepareBody(ctx.req, ctx.auth, ctx.config.s3.idleTimeout, (n) => { ctx.bytesIn += n; }, ctx.config.s3.minBodyRate);
}

export function sendXml(ctx: Ctx, status: number, root: string, children: XmlNode, headers: Record<string, string> = {}): void {
  const data = Buffer.from(xmlDoc(root, children));
  ctx.res.writeHead(status, { ...headers, "Content-Type": "application/xml", "Content-Length": data.length });
  ctx.res.end(data);
  ctx.bytesOut += data.length;
}

export function sendEmpty(ctx: Ctx, status: number, headers: Record<string, string | number> = {}): void {
  ctx.res.writeHead(status, { "Content-Length": 0, ...headers });
  ctx.res.end();
}

export const quote = (etag: string) => `"${etag}"`;
export const unquote = (etag: string) => etag.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
export const isoDate = (ms: number) => new Date(ms).toISOString();
export const httpDate = (ms: number) => new Date(ms).toUTCString();

export const CANNED_ACLS = ["private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"];
const STORAGE_CLASSES = ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE"];

/** Checks headers that ask for features this store does not have, and x-amz-acl / storage class values. */
export function checkWriteHeaders(h: IncomingMessage["headers"]): void {
  const acl = h["x-amz-acl"];
  if (typeof acl === "string" && !CANNED_ACLS.includes(acl)) throw s3err("InvalidArgument", `x-amz-acl: unknown canned ACL '${acl}'.`, { ArgumentName: "x-amz-acl", ArgumentValue: acl });
  const sc = h["x-amz-storage-class"];
  if (typeof sc === "string" && !STORAGE_CLASSES.includes(sc)) throw s3err("InvalidStorageClass", undefined, { StorageClassRequested: sc });
  for (const name of [
    "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold", "x-amz-website-redirect-location"]) {
    if (h[name] !== undefined) throw s3err("NotImplemented", `The ${name} header is not supported by this store.`);
  }
}

/** x-amz-meta-* (names lower-cased, prefix dropped), capped at limits.maxMetaBytesPerObject. */
export function userMetaOf(h: IncomingMessage["headers"], maxBytes: number): Record<string, string> {
  const meta: Record<string, string> = {};
  let size = 0;
  for (const [k, v] of Object.entries(h)) {
    if (!k.startsWith("x-amz-meta-") || v === undefined) continue;
    const name = k.slice(11), value = Array.isArray(v) ? v.join(",") : v;
    size += name.length + value.length;
    meta[name] = value;
  }
  if (size > maxBytes) throw s3err("MetadataTooLarge", undefined, { Size: String(size), MaxSizeAllowed: String(maxBytes) });
  return meta;
}

/** The storage class a write asks for, kept only when it is not the default STANDARD (checkWriteHeaders refused unknown ones). */
export function storageClassOf(h: IncomingMessage["headers"]): string | undefined {
  const sc = h["x-amz-storage-class"];
  return typeof sc === "string" && sc !== "STANDARD" ? sc : undefined;
}

/** Headers stored with an object; the stores keep storageClass beside them (ObjectMeta.storageClass). */
export function objectHeadersOf(h: IncomingMessage["headers"]): ObjectHeaders & { storageClass?: string } {
  const s = (n: string) => (typeof h[n] === "string" && h[n] !== "" ? (h[n] as string) : undefined);
  const enc = s("content-encoding")?.split(",").map((x) => x.trim()).filter((x) => x && x !== "aws-chunked").join(", ");
  const out: ObjectHeaders & { storageClass?: string } = {
    contentType: s("content-type"), cacheControl: s("cache-control"), contentDisposition: s("content-disposition"),
    contentEncoding: enc || undefined, contentLanguage: s("content-language"), expires: s("expires"),
  };
  const sc = storageClassOf(h);
  if (sc) out.storageClass = sc;
  return out;
}

function setSafe(res: ServerResponse, name: string, value: string): void {
  try { res.setHeader(name, value); } catch { /* a value a client stored that HTTP cannot carry back is dropped */ }
}

/** Headers of GET/HEAD (and part of PUT's answer). */
export function writeObjectHeaders(ctx: Ctx, meta: ObjectMeta, opts: { checksums?: boolean } = {}): void {
  const res = ctx.res;
  res.setHeader("ETag", quote(meta.etag));
  res.setHeader("Last-Modified", httpDate(meta.lastModified));
  res.setHeader("Accept-Ranges", "bytes");
  const q = ctx.query;
  const pick = (override: string, v: string | undefined, name: string) => {
    const o = q.get(override);
    if (o !== undefined) setSafe(res, name, o);
    else if (v !== undefined) setSafe(res, name, v);
  };
  pick("response-content-type", meta.contentType ?? "binary/octet-stream", "Content-Type");
  pick("response-cache-control", meta.cacheControl, "Cache-Control");
  pick("response-content-disposition", meta.contentDisposition, "Content-Disposition");
  pick("response-content-encoding", meta.contentEncoding, "Content-Encoding");
  pick("response-content-language", meta.contentLanguage, "Content-Language");
  pick("response-expires", meta.expires, "Expires");
  for (const [k, v] of Object.entries(meta.userMeta)) setSafe(res, `x-amz-meta-${k}`, v);
  if (meta.storageClass && meta.storageClass !== "STANDARD") res.setHeader("x-amz-storage-class", meta.storageClass);
  const tagCount = Object.keys(meta.tags ?? {}).length;
  if (tagCount) res.setHeader("x-amz-tagging-count", String(tagCount));
  if (opts.checksums) writeChecksums(res, meta.checksums);
}

export function writeChecksums(res: ServerResponse, c: Checksums, only?: ChecksumAlgorithm[]): void {
  for (const [a, v] of Object.entries(c) as [ChecksumAlgorithm, string][]) {
    if (v && (!only || only.includes(a))) res.setHeader(`x-amz-checksum-${a}`, v);
  }
}

export function etagMatches(list: string, etag: string): boolean {
  return list.split(",").some((t) => t.trim() === "*" || unquote(t) === etag);
}

/**
 * RFC 7232 as S3 applies it: If-Match / If-Unmodified-Since → 412, If-None-Match /
 * If-Modified-Since → 304 (GET, HEAD). A true If-Match overrides a false
 * If-Unmodified-Since, a false If-None-Match (the ETag matches) answers 304
 * whatever If-Modified-Since says, and If-Modified-Since counts only without
 * If-None-Match. Dates that do not parse are ignored, as RFC 7232 says.
 * The 412's Condition names the header that failed (x-amz-copy-source-If-...
 * for a copy source, whose would-be 304s are 412s).
 */
export function checkConditions(h: Record<string, string | string[] | undefined>, meta: ObjectMeta, prefix = "if-", notModifiedAs412 = false): void {
  const get = (n: string) => (typeof h[prefix + n] === "string" ? (h[prefix + n] as string) : undefined);
  const im = get("match"), inm = get("none-match"), ims = get("modified-since"), ius = get("unmodified-since");
  const modSec = Math.floor(meta.lastModified / 1000) * 1000;
  const fail = (name: string) => s3err("PreconditionFailed", undefined, { Condition: prefix === "if-" ? name : `x-amz-copy-source-${name}` });
  const notModified = (name: string) => (notModifiedAs412 ? fail(name) : s3err("NotModified"));
  if (im !== undefined) {
    if (!etagMatches(im, meta.etag)) throw fail("If-Match");
  } else if (ius !== undefined) {
    const t = Date.parse(ius);
    if (!Number.isNaN(t) && modSec > t) throw fail("If-Unmodified-Since");
  }
  if (inm !== undefined) {
    if (etagMatches(inm, meta.etag)) throw notModified("If-None-Match");
  } else if (ims !== undefined) {
    const t = Date.parse(ims);
    if (!Number.isNaN(t) && modSec <= t) throw notModified("If-Modified-Since");
  }
}

/**
 * A Range header against an object size: undefined means "whole object" (no
 * header, or syntax S3 ignores such as several ranges); InvalidRange when it
 * cannot be satisfied.
 */
export function parseRange(header: string | undefined, size: number, strictSyntax = false): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) {
    if (strictSyntax) throw s3err("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last.", { ArgumentName: "x-amz-copy-source-range", ArgumentValue: header });
    return undefined;
  }
  const unsatisfiable = () => s3err("InvalidRange", undefined, { RangeRequested: header, ActualObjectSize: String(size) });
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  let end = m[2] === "" ? size - 1 : Number(m[2]);
  if (m[2] !== "" && end < start) {
    if (strictSyntax) throw unsatisfiable();
    return undefined; // RFC 7233: an invalid range-spec is ignored
  }
  if (start >= size) throw unsatisfiable();
  if (end >= size) end = size - 1;
  return { start, end };
}

/**
 * Streams a body into the response: each chunk goes straight to res.write,
 * waiting for 'drain' when the socket is full (no Readable.from / pipeline
 * in between, which added stream buffering and several promise hops per
 * chunk). Resolves once the response is finished; throws
 * ERR_STREAM_PREMATURE_CLOSE when the client goes away, and whatever the body
 * throws (the caller destroys the half-sent response).
 */
export async function sendBody(ctx: Ctx, body: AsyncIterable<Uint8Array>): Promise<void> {
  const res = ctx.res;
  let gone: Error | undefined;
  let wake: (() => void) | undefined;
  const onDrain = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onClose = () => {
    if (!res.writableFinished) gone ??= Object.assign(new Error("the client closed the connection"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
    onDrain();
  };
  res.on("drain", onDrain);
  res.on("close", onClose);
  res.on("error", onClose);
  try {
    for await (const c of body) {
      if (gone) throw gone;
      ctx.bytesOut += c.length;
      // Once the socket has the bytes, a read buffer of the local store goes back to its pool.
      if (!res.write(c, (err) => { if (!err) recycleReadBuffer(c); })) await new Promise<void>((r) => { wake = r; });
      if (gone) throw gone;
    }
    await new Promise<void>((r) => {
      wake = r;
      res.end(onDrain);
    });
    if (gone) throw gone;
  } finally {
    res.off("drain", onDrain);
    res.off("close", onClose);
    res.off("error", onClose);
  }
}

/**
 * The bucket the request names. The pipeline's authorize step already
 * decided who may go on (owner-only unless an ACL or policy lets others in);
 * without it, refused unless the caller's key owns the bucket.
 */
export async function ownBucket(ctx: Ctx) {
  if (ctx.access) return ctx.access.bucket;
  const b = await ctx.store.headBucket(ctx.bucket!);
  if (b.owner !== ctx.auth.owner) throw s3err("AccessDenied", "The bucket belongs to another owner.");
  return b;
}

export const ownerXml = (id: string) => ({ ID: id, DisplayName: id });

/** S3's "url" encoding-type: percent-encoding with '/' kept and spaces as '+'. */
export function urlEncodeKey(s: string): string {
  return encodeURIComponent(s).replace(/%2F/g, "/").replace(/%20/g, "+").replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** A non-negative integer query parameter with a cap (max-keys, max-parts...). */
export function intParam(ctx: Ctx, name: string, def: number, max: number): number {
  const v = ctx.query.get(name);
  if (v === undefined || v === "") return def;
  if (!/^\d+$/.test(v.trim())) throw s3err("InvalidArgument", `Provided ${name} not an integer or within integer range`, { ArgumentName: name, ArgumentValue: v });
  return Math.min(Number(v), max);
}
