/**
 * The bulk data path's wire format (docs/objectstore.md, "Bulk data path").
 *
 * Replica bodies between agents travel as plain HTTP/1.1 bodies on the gRPC
 * port: a connection opens with PREFACE (plaintext, before any TLS), then
 * speaks TLS wherever the gRPC API does (mutual, under the cluster CA), then
 * HTTP/1.1 with keep-alive. Two requests:
 *
 *   PUT /replica   x-thoc-record: the record (JSON, base64url), body raw.
 *                  A body whose size and sha256 are known up front (repair,
 *                  handoff, a small object) goes with Content-Length; one
 *                  streamed from an S3 client goes chunked, its size, sha256
 *                  and final meta in the trailer x-thoc-trailer.
 *                  Answer: 200 {"applied","current"} once the replica is
 *                  durable (fsync'd), or an error (below).
 *   GET /replica   x-thoc-get: bucket, key, optional byte range. Answer: 200
 *                  with x-thoc-record, the body chunked, and the trailer
 *                  x-thoc-status "ok" or the error that cut it short.
 *                  With `head`: the record only (absent: no such replica),
 *                  plus the body inline (x-thoc-inline) when it is small: a
 *                  read's quorum round that needs no second request.
 *
 * Every request carries x-thoc-peer-auth, the replica protocol's HMAC
 * (cluster/auth.ts) over the method, the target node and the request's
 * headers above; the body is bound by its sha256, which the receiver checks
 * before it commits anything. Errors are {"code","message","details"} with a
 * non-200 status, so a ThocError crosses the wire with its code.
 */
import { ThocError, type ErrorCode, type ErrorDetails } from "../../errors/index.js";

/** First bytes of a bulk connection: what tells it apart from gRPC on the shared port. */
export const BULK_PREFACE = Buffer.from("THOC-BULK/1\n");

export const PUT_METHOD = "/thoc.objectstore.bulk/PutReplica";
export const GET_METHOD = "/thoc.objectstore.bulk/GetReplica";

export const H_RECORD = "x-thoc-record";
export const H_GET = "x-thoc-get";
export const H_IDLE = "x-thoc-idle-ms";
export const T_TRAILER = "x-thoc-trailer";
export const T_STATUS = "x-thoc-status";

/**
 * Headers and trailers of one request: the record's meta rides in them, and a
 * multipart object's meta (its part list's signature) reaches ~0.5 MiB at
 * 10,000 parts, far over HTTP's usual 16 KiB.
 */
export const MAX_HEADER_BYTES = 2 << 20;

/** The longest silence a sender may ask the receiver to wait through (x-thoc-idle-ms). */
export const MAX_IDLE_MS = 300_000;

export interface PutHeader {
  record: { bucket: string; key: string; version: string; tombstone: boolean; meta: string; size?: number; sha256?: string };
  hintFor?: string;
  clock?: string;
}

export interface GetHeader {
  bucket: string;
  key: string;
  range?: { start: number; end: number };
  /** Only the record (none: no x-thoc-record in the answer), and its body inline when it is live and at most this many bytes. */
  head?: { inlineMax: number };
}

/** Set on a head answer that carries the body (Content-Length, verified by the reader). */
export const H_INLINE = "x-thoc-inline";

export interface Trailer {
  size: number;
  sha256: string;
  meta?: string;
}

export function encodeHeader(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString("base64url");
}

export function decodeHeader<T>(v: string | string[] | undefined, what: string): T {
  if (typeof v !== "string" || !v) throw new ThocError("invalid_argument", `bulk request: ${what} missing`);
  try {
    return JSON.parse(Buffer.from(v, "base64url").toString()) as T;
  } catch {
    throw new ThocError("invalid_argument", `bulk request: ${what} is not base64url JSON`);
  }
}

export function errorBody(err: unknown): string {
  const e = ThocError.from(err);
  return JSON.stringify({ code: e.code, message: e.message, details: e.details ?? {} });
}

/** A ThocError from an error body (or anything else the peer answered). */
export function errorFrom(text: string, status: number, nodeId: string): ThocError {
  try {
    const j = JSON.parse(text) as { code?: ErrorCode; message?: string; details?: ErrorDetails };
    if (j.code && j.message) return new ThocError(j.code, j.message, j.details);
  } catch { /* not ours */ }
  return new ThocError("unavailable", `bulk call to ${nodeId}: HTTP ${status}: ${text.slice(0, 200)}`, { node: nodeId });
}
