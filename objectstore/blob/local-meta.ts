/**
 * The LevelDB layout of the local blob store, and its listings. Every key
 * space is a sublevel of one namespace (default "blob"), so one atomic,
 * fsync'd batch can update an object, its file references and the garbage
 * list together:
 *
 *   bk  <bucket>                       BucketInfo
 *   ob  <bucket>/<key>                 ObjectRecord (meta + the files, in order)
 *   up  <uploadId>                     UploadRecord
 *   ul  <bucket>/<key>\0<uploadId>     UploadRecord (the listing index)
 *   pt  <uploadId>/<partNumber:5>      PartRecord
 *   rf  <fileId>                       "" — the file is referenced by committed metadata
 *   dt  <fileId>                       bytes of a small body kept inline (no file)
 *   gc  <fileId>                       Segment — to delete once no reader holds it
 *   dn  <uploadId>                     DoneRecord — answers a retried Complete
 *   sw  g<generation>                  "" — that generation's files need no sweep
 *
 * Keys are compared as UTF-8 bytes (LevelDB's order, which is S3's listing
 * order). Listings read through buffer-keyed views of the same sublevels, so
 * range bounds and skips past a common prefix are exact byte successors.
 */
import type { ClassicLevel } from "classic-level";
import type { Segment } from "./files.js";
import type {
  BucketInfo, ListObjectsInput, ListObjectsResult, ListUploadsInput, ListUploadsResult,
  MultipartUpload, ObjectMeta, PartInfo,
} from "./types.js";

export interface ObjectRecord { meta: ObjectMeta; segs: Segment[] }
export type UploadRecord = MultipartUpload;
export interface PartRecord { info: PartInfo; seg: Segment }
export interface DoneRecord { bucket: string; key: string; parts: string; meta: ObjectMeta; at: number }

type Db = ClassicLevel<string, string>;

export function openLayout(db: Db, ns: string) {
  const s = <V>(name: string) => db.sublevel<string, V>([ns, name], { valueEncoding: "json" });
  const b = <V>(name: string) => db.sublevel<Buffer, V>([ns, name], { keyEncoding: "buffer", valueEncoding: "json" });
  return {
    db,
    buckets: s<BucketInfo>("bk"),
    objects: s<ObjectRecord>("ob"),
    objectsB: b<ObjectRecord>("ob"),
    uploads: s<UploadRecord>("up"),
    uploadIndex: s<UploadRecord>("ul"),
    uploadIndexB: b<UploadRecord>("ul"),
    parts: s<PartRecord>("pt"),
    refs: s<string>("rf"),
    inline: db.sublevel<string, Buffer>([ns, "dt"], { valueEncoding: "buffer" }),
    gc: s<Segment>("gc"),
    done: s<DoneRecord>("dn"),
    swept: s<string>("sw"),
  };
}
export type Layout = ReturnType<typeof openLayout>;

export const objectKey = (bucket: string, key: string) => `${bucket}/${key}`;
export const uploadIndexKey = (bucket: string, key: string, uploadId: string) => `${bucket}/${key}\0${uploadId}`;
export const partKey = (uploadId: string, n: number) => `${uploadId}/${String(n).padStart(5, "0")}`;

/** The smallest byte string greater than every string that starts with p. */
export function successor(p: Buffer): Buffer {
  let n = p.length;
  while (n > 0 && p[n - 1] === 0xff) n--;
  if (n === 0) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
  const out = Buffer.from(p.subarray(0, n));
  out[n - 1]!++;
  return out;
}

const utf8 = (s: string) => Buffer.from(s, "utf8");

/** The common prefix `rest` rolls up into, if any (prefix + up to and including the delimiter). */
function rollUp(key: string, prefix: string, delimiter: string | undefined): string | undefined {
  if (!delimiter || !key.startsWith(prefix)) return undefined;
  const i = key.indexOf(delimiter, prefix.length);
  return i < 0 ? undefined : key.slice(0, i + delimiter.length);
}

/**
 * Where a listing starts: after `after`, and past a whole common prefix
 * when `after` names one (a continuation after a rolled-up prefix).
 */
function startBound(base: string, prefix: string, after: string | undefined, delimiter: string | undefined, afterSuffix = "") {
  const lo = utf8(base + prefix);
  if (after === undefined || Buffer.compare(utf8(after), utf8(prefix)) < 0) return { gte: lo };
  if (rollUp(after, prefix, delimiter) === after) return { gte: successor(utf8(base + after)) };
  return { gt: utf8(base + after + afterSuffix) };
}

export async function listObjects(l: Layout, input: ListObjectsInput): Promise<ListObjectsResult> {
  const prefix = input.prefix ?? "";
  const delimiter = input.delimiter || undefined;
  const base = `${input.bucket}/`;
  const out: ListObjectsResult = { objects: [], commonPrefixes: [], isTruncated: false };
  const it = l.objectsB.iterator({ ...startBound(base, prefix, input.after, delimiter), lt: successor(utf8(base + prefix)) });
  try {
    let count = 0;
    for (;;) {
      const e = await it.next();
      if (!e) break;
      const key = e[0].toString("utf8").slice(base.length);
      if (count >= input.maxKeys) {
        out.isTruncated = true;
        break;
      }
      const cp = rollUp(key, prefix, delimiter);
      if (cp !== undefined) {
        out.commonPrefixes.push(cp);
        out.nextAfter = cp;
        // Jump over every key under this prefix with one seek, however many there are.
        it.seek(successor(utf8(base + cp)));
      } else {
        out.objects.push(e[1].meta);
        out.nextAfter = key;
      }
      count++;
    }
  } finally {
    await it.close();
  }
  if (!out.isTruncated) delete out.nextAfter;
  return out;
}

export async function listUploads(l: Layout, input: ListUploadsInput): Promise<ListUploadsResult> {
  const prefix = input.prefix ?? "";
  const delimiter = input.delimiter || undefined;
  const base = `${input.bucket}/`;
  const out: ListUploadsResult = { uploads: [], commonPrefixes: [], isTruncated: false };
  let start;
  if (input.keyMarker === undefined || input.keyMarker === "") start = startBound(base, prefix, undefined, delimiter);
  else if (input.uploadIdMarker) start = startBound(base, prefix, `${input.keyMarker}\0${input.uploadIdMarker}`, undefined);
  else if (rollUp(input.keyMarker, prefix, delimiter) === input.keyMarker) start = startBound(base, prefix, input.keyMarker, delimiter);
  else start = { gte: successor(utf8(`${base}${input.keyMarker}\0`)) };
  const it = l.uploadIndexB.iterator({ ...start, lt: successor(utf8(base + prefix)) });
  let lastKey: string | undefined;
  let lastId: string | undefined;
  try {
    for (;;) {
      const e = await it.next();
      if (!e) break;
      const full = e[0].toString("utf8").slice(base.length);
      const z = full.lastIndexOf("\0");
      const key = full.slice(0, z);
      if (out.uploads.length + out.commonPrefixes.length >= input.maxUploads) {
        out.isTruncated = true;
        break;
      }
      const cp = rollUp(key, prefix, delimiter);
      if (cp !== undefined) {
        out.commonPrefixes.push(cp);
        lastKey = cp;
        lastId = undefined;
        it.seek(successor(utf8(base + cp)));
      } else {
        out.uploads.push(e[1]);
        lastKey = key;
        lastId = full.slice(z + 1);
      }
    }
  } finally {
    await it.close();
  }
  if (out.isTruncated) {
    out.nextKeyMarker = lastKey;
    out.nextUploadIdMarker = lastId;
  }
  return out;
}

export async function listParts(l: Layout, uploadId: string, marker: number, maxParts: number): Promise<{ parts: PartInfo[]; isTruncated: boolean; nextPartNumberMarker?: number }> {
  const rows = await l.parts.iterator({ gt: partKey(uploadId, marker), lt: `${uploadId}0`, limit: maxParts + 1 }).all();
  const parts = rows.slice(0, maxParts).map(([, v]) => v.info);
  const isTruncated = rows.length > maxParts;
  return { parts, isTruncated, nextPartNumberMarker: isTruncated ? parts[parts.length - 1]?.partNumber : undefined };
}

/** Every part record of one upload, in part-number order (for Complete and Abort). */
export async function allParts(l: Layout, uploadId: string): Promise<PartRecord[]> {
  const rows = await l.parts.iterator({ gt: `${uploadId}/`, lt: `${uploadId}0` }).all();
  return rows.map(([, v]) => v);
}

/** True when the bucket holds any object or in-progress upload. */
export async function bucketHasData(l: Layout, bucket: string): Promise<boolean> {
  const range = { gte: utf8(`${bucket}/`), lt: successor(utf8(`${bucket}/`)), limit: 1 };
  const [o, u] = await Promise.all([l.objectsB.keys(range).all(), l.uploadIndexB.keys(range).all()]);
  return o.length > 0 || u.length > 0;
}

/** One operation of an atomic multi-sublevel batch. */
export type BatchOp =
  | { type: "put"; sublevel: object; key: string; value: unknown }
  | { type: "del"; sublevel: object; key: string };

/** Commits ops atomically and durably (fsync'd LevelDB log). */
export function commitBatch(l: Layout, ops: BatchOp[]): Promise<void> {
  return l.db.batch(ops as never, { sync: true });
}
