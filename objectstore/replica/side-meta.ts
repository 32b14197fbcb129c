/**
 * Tags and ACL changed after an object was written (PutObjectTagging,
 * PutObjectAcl: BlobStore.updateObjectMeta), without rewriting the object.
 *
 * Rewriting the object's record (read, patch, write back) is not safe: a PUT
 * of the same key that lands between the read and the write would be
 * overwritten by the old object, or a deleted object resurrected. Instead the
 * change goes to a side record at the internal key U+0001 "m/" <key> U+0000,
 * written through the coordinator like any record (replicated, hinted,
 * repaired), whose meta is { forVersion, tags?, acl? }: the full tags and
 * ACL of the object version whose record version (HLC) is forVersion. A read
 * applies it only when forVersion is the version it read, so an object
 * written later never inherits it: new objects start with their own tags.
 * The object's ETag, Last-Modified and version never change.
 *
 * Cost: a bucket where updateObjectMeta never ran pays nothing. The first
 * call sets the bucket's `sideMeta` configuration section; from then on
 * GET/HEAD of its objects read the side record beside the object's own head
 * (one more quorum read, in parallel), and DeleteObject tombstones the side
 * record after the object.
 *
 * What is left behind: a side record whose object was overwritten is ignored
 * and replaced by the next updateObjectMeta of the key, or tombstoned by its
 * next DeleteObject; DeleteBucket tombstones every side record. Two
 * updateObjectMeta calls on one object at the same instant (say a
 * PutObjectTagging and a PutObjectAcl) are last-writer-wins on the whole side
 * record: one of the two changes may be lost. Likewise a DeleteObject racing
 * a re-creation of the key and its tagging (PUT, then PutObjectTagging, both
 * between the delete's object tombstone and its side tombstone) loses the new
 * object's changed tags (the object keeps its PUT's own).
 */
import { blobError, type CannedAcl, type ObjectExtras, type ObjectMeta } from "../blob/index.js";
import { metaOf, type ReplicatedBackend } from "./blob-meta.js";
import type { ReplicaRecord } from "./replica-store.js";

export const SIDE_PREFIX = "\u0001m/";
export const sideKey = (key: string) => `${SIDE_PREFIX}${key}\u0000`;

/** What a side record's meta holds. */
export interface SideRecord {
  /** The record version (ObjectMeta.version) of the object version these tags and ACL belong to. */
  forVersion: string;
  tags?: Record<string, string>;
  acl?: CannedAcl;
}

/** A side record read in flight: undefined when the bucket never had one (nothing to wait for). */
export type PendingSide = Promise<SideRecord | undefined> | undefined;

function parseSide(rec: ReplicaRecord | undefined): SideRecord | undefined {
  if (!rec || rec.tombstone) return undefined;
  try {
    const s = JSON.parse(rec.meta) as SideRecord;
    return typeof s.forVersion === "string" ? s : undefined;
  } catch {
    // A side record that cannot be read must not make its object unreadable: the object's own extras stand.
    return undefined;
  }
}

/**
 * Where the version a request names lives: the key of its record and of its
 * side record; undefined when there is no such version. The one place a
 * versionId resolves: the current object or latest version (tags and ACLs
 * of older versions of a versioned bucket cannot be changed: NoSuchKey).
 */
export function locate(key: string, _versionId?: string): { recordKey: string; sideKey: string } | undefined {
  // The record at the key is the object, or in a versioned bucket the pointer to its latest version (which
  // carries that version's id and is stamped with its timestamp): a versionId is checked against it by the caller.
  return { recordKey: key, sideKey: sideKey(key) };
}

/** meta with the side record's tags and ACL when the side record was written for this very version; else meta as is. */
export function applySide(meta: ObjectMeta, side: SideRecord | undefined): ObjectMeta {
  if (!side || side.forVersion !== meta.version) return meta;
  const { tags: _t, acl: _a, ...rest } = meta;
  return { ...rest, ...pick(side) };
}

function pick(x: Pick<ObjectExtras, "tags" | "acl">): Pick<ObjectExtras, "tags" | "acl"> {
  const out: Pick<ObjectExtras, "tags" | "acl"> = {};
  if (x.tags && Object.keys(x.tags).length) out.tags = x.tags;
  if (x.acl && x.acl !== "private") out.acl = x.acl;
  return out;
}

const empty = async function* (): AsyncIterable<Uint8Array> {};

export class SideMeta {
  /** flagKey: the bucket table key of the bucket's `sideMeta` configuration section. */
  constructor(private readonly b: ReplicatedBackend, private readonly flagKey: (bucket: string) => string) {}

  /** The bucket ever had a side record (a local table lookup: no round trip). */
  used(bucket: string): boolean {
    return this.b.buckets.table.get(this.flagKey(bucket)) !== undefined;
  }

  /** Starts reading the key's side record when the bucket uses them, to run beside the object's own head. */
  read(bucket: string, key: string): PendingSide {
    if (!this.used(bucket)) return undefined;
    const p = this.b.coordinator.head(bucket, sideKey(key)).then((r) => parseSide(r.record));
    // Awaited by apply(); if the object's own read fails first, nobody does.
    p.catch(() => undefined);
    return p;
  }

  /** meta as the client sees it: with the side record's tags and ACL when they belong to this version. */
  async apply(meta: ObjectMeta, pending: PendingSide): Promise<ObjectMeta> {
    return pending ? applySide(meta, await pending) : meta;
  }

  /** updateObjectMeta: see the file's comment. */
  async update(bucket: string, key: string, patch: Pick<ObjectExtras, "tags" | "acl">, opts: { versionId?: string }): Promise<ObjectMeta> {
    const at = locate(key, opts.versionId);
    if (!at) throw noSuchKey(bucket, key);
    // The flag first: once a side record exists, every node must already be reading them.
    if (!this.used(bucket)) await this.b.buckets.put(this.flagKey(bucket), JSON.stringify(true));
    const coord = this.b.coordinator;
    const [known, side] = await Promise.all([coord.head(bucket, at.recordKey), coord.head(bucket, at.sideKey).then((r) => parseSide(r.record))]);
    if (!known.record || known.record.tombstone) throw noSuchKey(bucket, key);
    const own = metaOf(known.record);
    if (opts.versionId !== undefined && (own.versionId ?? "null") !== opts.versionId) throw noSuchKey(bucket, key);
    const cur = applySide(own, side);
    const next: SideRecord = {
      forVersion: known.record.version,
      ...pick({ tags: patch.tags ?? cur.tags, acl: patch.acl ?? cur.acl }),
    };
    await coord.put({ bucket, key: at.sideKey, meta: JSON.stringify(next) }, empty(), { size: 0 });
    return applySide(own, next);
  }

  /** After DeleteObject: the key's side record is garbage (best effort: one left behind is ignored, see above). */
  async dropFor(bucket: string, key: string): Promise<void> {
    if (!this.used(bucket)) return;
    await this.b.coordinator.delete(bucket, sideKey(key)).catch(() => undefined);
  }

  /** DeleteBucket: every side record of the bucket goes with it. */
  async dropAll(bucket: string): Promise<void> {
    const list = await this.b.listBucket(bucket, { prefix: SIDE_PREFIX });
    const keys: string[] = [];
    try {
      for (let r = await list.next(); r; r = await list.next()) if (!r.tombstone) keys.push(r.key);
    } finally {
      await list.close();
    }
    let i = 0;
    const worker = async () => { while (i < keys.length) await this.b.coordinator.delete(bucket, keys[i++]!).catch(() => undefined); };
    await Promise.all(Array.from({ length: 8 }, worker));
  }
}

function noSuchKey(bucket: string, key: string) {
  return blobError("NoSuchKey", `no object ${key} in bucket ${bucket}`, { bucket, key });
}
