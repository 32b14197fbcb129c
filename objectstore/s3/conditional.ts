/**
 * Conditional writes (PutObject, CopyObject, CompleteMultipartUpload):
 * `If-None-Match: *` writes only when the key has no object, `If-Match:
 * "<etag>"` only when the current object has that ETag (412
 * PreconditionFailed otherwise; 404 NoSuchKey when there is no object).
 *
 * Not atomic: the replicated store has no compare-and-set, so the condition is
 * a read (a quorum HEAD) followed by the write, and a write of the same key by
 * someone else between the two is not seen (both writers succeed; the later
 * version wins). To keep that window short the check runs as late as it can:
 * for a PUT, when the body has fully arrived, just before the store commits
 * (guardBody); for a completion, right before the parts are assembled. A PUT
 * whose body is large also checks before reading it, so a doomed upload is
 * refused before its bytes are sent. S3's 409 ConditionalRequestConflict
 * (a conflicting write during the upload) is never answered.
 */
import { isBlobError, type BlobStore, type ObjectMeta } from "../blob/index.js";
import { s3err } from "./errors.js";
import { etagMatches } from "./http.js";

export interface WriteCondition {
  /** If-None-Match: * (create only). */
  ifNoneMatch: boolean;
  /** If-Match: the ETag list the current object must match. */
  ifMatch?: string;
}

/** The write conditions a request carries; undefined without any. If-None-Match takes only `*` on writes. */
export function writeConditionOf(h: Record<string, string | string[] | undefined>): WriteCondition | undefined {
  const inm = h["if-none-match"], im = h["if-match"];
  if (inm === undefined && im === undefined) return undefined;
  if (Array.isArray(inm) || Array.isArray(im)) throw s3err("InvalidArgument", "Conditional headers may be given once.");
  if (inm !== undefined && inm.trim() !== "*") throw s3err("NotImplemented", "If-None-Match on a write only accepts '*' (create the object only if the key has none).");
  if (im !== undefined && im.trim() === "") throw s3err("InvalidArgument", "If-Match must name an ETag.", { ArgumentName: "If-Match" });
  return { ifNoneMatch: inm !== undefined, ifMatch: im };
}

/** Checks the condition against the key's current object; throws 412 / 404 as S3 does. */
export async function checkWriteCondition(store: BlobStore, bucket: string, key: string, c: WriteCondition): Promise<void> {
  let cur: ObjectMeta | undefined;
  try {
    cur = await store.headObject(bucket, key);
  } catch (err) {
    if (!isBlobError(err, "NoSuchKey")) throw err;
  }
  if (c.ifNoneMatch && cur) throw s3err("PreconditionFailed", undefined, { Condition: "If-None-Match" });
  if (c.ifMatch !== undefined) {
    if (!cur) throw s3err("NoSuchKey", undefined, { Key: key });
    if (!etagMatches(c.ifMatch, cur.etag)) throw s3err("PreconditionFailed", undefined, { Condition: "If-Match" });
  }
}

/**
 * The body, with `check` run once it has ended and before the store sees the
 * end: a failing check makes the body throw, so the store commits nothing (as
 * with a bad digest) and answers the check's error.
 */
export async function* guardBody(body: AsyncIterable<Uint8Array>, check: () => Promise<void>): AsyncGenerator<Uint8Array> {
  for await (const c of body) yield c;
  await check();
}

/** Bodies at least this large (or of unknown size) are also checked before they are read. */
export const EARLY_CHECK_BYTES = 1 << 20;
