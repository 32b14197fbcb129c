/**
 * Conditional writes (PutObject, CopyObject, CompleteMultipartUpload):
 * `If-None-Match: *` writes only when the key has no object, `If-Match:
 * "<etag>"` only when the current object has that ETag (412
 * PreconditionFailed otherwise; 404 NoSuchKey when there is no object).
 *
 * The replicated store has no compare-and-set, so the condition is a read (a
 * quorum HEAD) followed by the write, made atomic by the key's lock: a
 * KeyLocker (objectstore/blob/key-lock.ts) taken just before the check and
 * held until the store has acknowledged (or refused) the write. Which lock is
 * the composition's: in the agent, one leased from a majority of the key's
 * replicas (objectstore/replica/key-lock.ts), so of K concurrent
 * `If-None-Match: *` PUTs of one key through any nodes exactly one writes and
 * the others see its object (412); by default (tests of this layer) this
 * server's own. A conditional write that has not got the lock after
 * conditionalTiming.lockWaitMs (write-locks.ts) answers S3's 409
 * ConditionalRequestConflict.
 *
 * What stays open (docs/s3.md, "Conditional requests"): unconditional writes
 * and deletes take no lock and can still land between a check and its write;
 * the later version then wins, as for any two writes. The check runs as late
 * as it can to keep that window short: for a PUT, when the body has fully
 * arrived, just before the store commits (guardBody); for a completion, right
 * before the parts are assembled. A PUT whose body is large also checks
 * (without the lock) before reading it, so a doomed upload is refused before
 * its bytes are sent.
 */
import { isBlobError, type BlobStore, type KeyLocker, type ObjectMeta } from "../blob/index.js";
import { s3err } from "./errors.js";
import { etagMatches } from "./http.js";
import { conditionalTiming } from "./write-locks.js";

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

/**
 * A conditional write's guard: check() takes the key's lock (once) and checks
 * the condition; release() lets the next writer of the key in, and must run
 * once the store has settled the write, whatever happened.
 */
export function writeGuard(locks: KeyLocker, store: BlobStore, bucket: string, key: string, c: WriteCondition): { check(): Promise<void>; release(): void } {
  let release: (() => void) | undefined;
  let done = false;
  return {
    async check() {
      if (!release) {
        const r = await locks.acquire(bucket, key, conditionalTiming.lockWaitMs);
        // Released meanwhile (the request failed while it waited): let the next one in at once.
        if (done) r();
        else release = r;
      }
      await checkWriteCondition(store, bucket, key, c);
    },
    release() {
      done = true;
      release?.();
    },
  };
}
