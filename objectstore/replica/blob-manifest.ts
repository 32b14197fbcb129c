/**
 * Objects made by CompleteMultipartUpload do not hold their bytes: the
 * object's record has a small manifest body naming the part records it is
 * made of (U+0001 "p/" <uploadId> "/" <n>, each at the version Complete saw)
 * and their sizes, and its meta holds the object's total size and its part
 * count (so listings stay small). The manifest is an ordinary body: it is
 * replicated, checksummed, repaired and rebalanced like any other, and so are
 * the parts, which stay where UploadPart put them. Complete therefore costs
 * O(number of parts) in metadata whatever the object's size.
 *
 * A read resolves the byte range onto the parts and streams each overlapping
 * part (or the needed slice of it) through the quorum coordinator, in order.
 * A part that is gone or was replaced fails the read with Corrupt: it never
 * returns other bytes. The parts are collected once no object version
 * references them any more (part-sweeper.ts).
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { blobError, isBlobError, type ByteRange, type ObjectMeta, type PartInfo } from "../blob/index.js";
import { metaOf } from "./blob-meta.js";
import type { Coordinator } from "./coordinator.js";
import { once, type BodyRange, type ReplicaRecord } from "./replica-store.js";

/** A part as the object references it: what ListParts said of it, plus the record version that holds its bytes. */
export interface PartRef extends PartInfo {
  version: string;
}

export interface Manifest {
  uploadId: string;
  parts: PartRef[];
}

/** 10,000 parts of ~150 bytes each fit with room to spare; anything larger is not a manifest we wrote. */
const MAX_MANIFEST_BYTES = 8 << 20;

export const PART_PREFIX = "\u0001p/";
export const partsPrefix = (uploadId: string) => `${PART_PREFIX}${uploadId}/`;
export const partKey = (uploadId: string, n: number) => `${partsPrefix(uploadId)}${String(n).padStart(5, "0")}`;

/** The upload id and part number a part key names, or undefined for any other key. */
export function parsePartKey(key: string): { uploadId: string; partNumber: number } | undefined {
  const m = /^\u0001p\/([0-9a-f]+)\/(\d{5})$/.exec(key);
  return m ? { uploadId: m[1]!, partNumber: Number(m[2]) } : undefined;
}

/**
 * The manifest as stored: gzip'd JSON. 1,000 parts are ~156 KB of JSON and
 * ~31 KB gzip'd (in ~1 ms), which fits the 64 KiB a replica keeps inline in
 * its LevelDB and the coordinator sends whole in one request (SMALL_BODY_MAX):
 * Complete then costs one fsync per replica, not a file's three, and one round
 * trip. Manifests written before were plain JSON; readManifest takes both.
 */
export function encodeManifest(m: Manifest): Buffer {
  return gzipSync(JSON.stringify(m));
}

/** The manifest's JSON from its stored bytes: gzip'd (starts 1f 8b) or, as written before, plain JSON. */
function manifestJson(raw: Buffer): string {
  if (raw[0] !== 0x1f || raw[1] !== 0x8b) return raw.toString("utf8");
  return gunzipSync(raw, { maxOutputLength: MAX_MANIFEST_BYTES }).toString("utf8");
}

/** The manifest of a multipart object's record `known` (read from one of its holders, checksummed by the replica). */
export async function readManifest(coord: Coordinator, bucket: string, key: string, known: { record?: ReplicaRecord; holders: string[] }): Promise<{ record: ReplicaRecord; manifest: Manifest }> {
  const got = await coord.get(bucket, key, { known });
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of got.body) {
    n += c.byteLength;
    if (n > MAX_MANIFEST_BYTES) throw blobError("Corrupt", `object ${bucket}/${key}: its multipart manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
    chunks.push(Buffer.from(c));
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(manifestJson(Buffer.concat(chunks))) as Manifest;
  } catch {
    throw blobError("Corrupt", `object ${bucket}/${key}: its multipart manifest is not (gzip'd) JSON of at most ${MAX_MANIFEST_BYTES} bytes`);
  }
  if (!Array.isArray(manifest.parts) || typeof manifest.uploadId !== "string") throw blobError("Corrupt", `object ${bucket}/${key}: its multipart manifest has no part list`);
  return { record: got.record, manifest };
}

/** The object's metadata with its part list (for ?partNumber= and x-amz-mp-parts-count). */
export function manifestMeta(record: ReplicaRecord, manifest: Manifest): ObjectMeta {
  return { ...metaOf(record), parts: manifest.parts.map(({ version: _v, ...p }) => p) };
}

interface Slice {
  ref: PartRef;
  /** Undefined: the whole part. */
  range?: BodyRange;
}

/** The parts (or slices of them) that make up bytes [range.start, range.end] of the object. */
export function slicesOf(manifest: Manifest, range: ByteRange | undefined): Slice[] {
  const out: Slice[] = [];
  let off = 0;
  for (const ref of manifest.parts) {
    const start = off, end = off + ref.size - 1;
    off += ref.size;
    if (ref.size === 0) continue;
    if (!range) { out.push({ ref }); continue; }
    if (end < range.start || start > range.end) continue;
    const s = Math.max(range.start, start) - start, e = Math.min(range.end, end) - start;
    out.push(s === 0 && e === ref.size - 1 ? { ref } : { ref, range: { start: s, end: e } });
  }
  return out;
}

/**
 * The object's bytes in `range` (or whole), part after part. The first part is
 * opened before this resolves, so a missing first part fails the request
 * before any header is sent; a later one ends the body with an error.
 */
export async function openManifestBody(coord: Coordinator, bucket: string, key: string, manifest: Manifest, range: ByteRange | undefined): Promise<AsyncIterable<Uint8Array>> {
  const slices = slicesOf(manifest, range);
  const open = async (s: Slice) => {
    const k = partKey(manifest.uploadId, s.ref.partNumber);
    const missing = (found?: string) => blobError("Corrupt",
      `object ${bucket}/${key}: part ${s.ref.partNumber} (version ${s.ref.version}) it is made of is ${found ? `replaced by version ${found}` : "gone"}; the object cannot be read: upload it again`,
      { bucket, key, partNumber: s.ref.partNumber });
    let got: { record: ReplicaRecord; body: AsyncIterable<Uint8Array> };
    try {
      got = await coord.get(bucket, k, s.range ? { range: s.range } : {});
    } catch (err) {
      if (isBlobError(err, "NoSuchKey")) throw missing();
      throw err;
    }
    if (got.record.version !== s.ref.version) {
      void got.body[Symbol.asyncIterator]().return?.();
      throw missing(got.record.version);
    }
    return got.body;
  };
  const first = slices.length ? await open(slices[0]!) : undefined;
  return (async function* () {
    if (!first) return;
    yield* first;
    for (const s of slices.slice(1)) yield* await open(s);
  })();
}
