/**
 * S3 versioning on the ring. Every version is an ordinary replica record, so
 * replication, hinted handoff, read repair and anti-entropy carry versions and
 * delete markers with no machinery of their own:
 *
 *  - a version (or delete marker) lives at the internal key
 *    U+0001 "v/" <key> U+0000 <sort id>, with the object's body (or, for a
 *    multipart object, its manifest) and its full meta (versionId, and
 *    deleteMarker for a marker);
 *  - the record at the plain <key> of a versioned bucket is a small "current"
 *    pointer: the latest version's meta (so HEAD, ListObjects and the
 *    delete-marker check stay one quorum round) plus `vref`, the sort id of
 *    the version record whose body a GET then reads (a second round);
 *  - a plain record without `vref` is an object written before versioning was
 *    enabled: the key's "null" version, until a versioned write keeps it as a
 *    version record first (versionId "null", sorted by its own timestamp).
 *
 * Sort ids are the HLC timestamp the write was stamped with, inverted so a
 * key's versions list newest first (fixed-width time and counter, then the
 * node id inverted and closed by "ff"). The pointer is written with that same
 * timestamp as its record version, so last-writer-wins on pointers and the
 * order of version ids agree: whichever write finishes last, the pointer
 * names the newest version. Enabled versions are named by their sort id;
 * Suspended writes make a "null" version (the previous one is deleted).
 *
 * A write stores its version first, then the pointer. A writer that dies in
 * between leaves a version record no pointer names: GET and HEAD keep
 * answering the previous version, ListObjectVersions lists the orphan (as not
 * latest), and the key's next write or delete re-points as usual (the orphan
 * then is an older version). A pointer whose version record is gone (deleted
 * by id) is re-pointed by the next read that finds it so.
 */
import { blobError, RollUp, type DeleteObjectResult, type ListVersionsInput, type ListVersionsResult, type ObjectMeta, type VersionEntry, type VersioningState } from "../blob/index.js";
import { decodeHlc, encodeHlc } from "../../cluster/index.js";
import { isManifest, metaOf, storedOf, type ReplicatedBackend, type StoredMeta } from "./blob-meta.js";
import { encodeManifest, readManifest } from "./blob-manifest.js";
import type { HeadResult } from "./coordinator.js";
import { afterPrefix, type MergedList } from "./listing.js";
import { compareKeys, once, type ReplicaRecord } from "./replica-store.js";

/** Where a versioned bucket's versions live (DeleteBucket counts them too). */
export const VERSION_PREFIX = "\u0001v/";
export const versionsPrefix = (key: string) => `${VERSION_PREFIX}${key}\u0000`;
export const versionKey = (key: string, sid: string) => `${versionsPrefix(key)}${sid}`;

/** The user key and sort id a version record's key names. */
export function parseVersionKey(k: string): { key: string; sid: string } | undefined {
  if (!k.startsWith(VERSION_PREFIX)) return undefined;
  const i = k.lastIndexOf("\u0000");
  if (i < VERSION_PREFIX.length) return undefined;
  return { key: k.slice(VERSION_PREFIX.length, i), sid: k.slice(i + 1) };
}

const PHYS_MAX = 16 ** 12 - 1;
const LOGICAL_MAX = 0xffffffff;

/** The sort id (and, in Enabled buckets, the S3 version id) of a write stamped `hlc`: newer sorts first. */
export function sortIdOf(hlc: string): string {
  const t = decodeHlc(hlc);
  let node = "";
  // Node ids are ASCII (hlc.ts): 127 - c inverts their order; "ff" ends them above any inverted char, so a longer id sorts first as it should.
  for (const ch of t.node) node += (127 - ch.charCodeAt(0)).toString(16).padStart(2, "0");
  return (PHYS_MAX - t.physical).toString(16).padStart(12, "0") + (LOGICAL_MAX - t.logical).toString(16).padStart(8, "0") + node + "ff";
}

/** The HLC a sort id was made from, or undefined when it is not one of ours (malformed). */
export function hlcOfSortId(id: string): string | undefined {
  const m = /^([0-9a-f]{12})([0-9a-f]{8})((?:[0-9a-f]{2}){1,128})ff$/.exec(id);
  if (!m) return undefined;
  let node = "";
  for (let i = 0; i < m[3]!.length; i += 2) node += String.fromCharCode(127 - parseInt(m[3]!.slice(i, i + 2), 16));
  try {
    return encodeHlc({ physical: PHYS_MAX - parseInt(m[1]!, 16), logical: LOGICAL_MAX - parseInt(m[2]!, 16), node });
  } catch {
    return undefined;
  }
}

/** Refuses a version id that cannot be ours (S3: 400 InvalidArgument). */
export function checkVersionId(versionId: string): void {
  if (versionId !== "null" && hlcOfSortId(versionId) === undefined) {
    throw blobError("InvalidArgument", "Invalid version id specified", { versionId });
  }
}

export type Pointer = StoredMeta & { vref: string };
export const isPointer = (m: StoredMeta): m is Pointer => typeof m.vref === "string";
const liveOf = (r: ReplicaRecord | undefined) => (r && !r.tombstone ? r : undefined);

/** A version record's ObjectMeta under its user key. */
export function versionMeta(rec: ReplicaRecord, key: string): ObjectMeta {
  return { ...metaOf(rec), key };
}

/** Writes a version record: `write` stores it at storageKey with the versionId in its meta. */
export type VersionWrite = (storageKey: string, versionId: string | undefined) => Promise<ReplicaRecord>;

/**
 * A new version of `key` in a bucket whose versioning is `state`: keeps a
 * pre-versioning object as the null version (Enabled), writes the version,
 * then the pointer; in a Suspended bucket the new version is the null one and
 * replaces the previous null version.
 */
export async function writeVersion(b: ReplicatedBackend, bucket: string, key: string, state: VersioningState, write: VersionWrite): Promise<ObjectMeta> {
  const coord = b.coordinator;
  const cur = await coord.head(bucket, key);
  const live = liveOf(cur.record);
  const t = coord.stamp(cur.record?.version);
  const sid = sortIdOf(t);
  if (live && !isPointer(storedOf(live)) && state === "Enabled") await keepAsNull(b, bucket, key, cur, live);
  const rec = await write(versionKey(key, sid), state === "Enabled" ? sid : "null");
  await setPointer(b, bucket, key, rec, sid, t);
  await confirmPointer(b, bucket, key, sid);
  if (state === "Suspended") {
    // Older null versions (larger sort ids) go; ours too when a newer one came meanwhile (the pointer names that
    // one). So racing writers never delete the newest, and whichever lists last removes what the other did not see.
    const nulls = (await keyVersions(b, bucket, key)).filter((v) => storedOf(v.rec).versionId === "null");
    const superseded = nulls.some((v) => v.sid < sid);
    for (const v of nulls) if (v.sid > sid || (superseded && v.sid === sid)) await coord.delete(bucket, v.rec.key);
  }
  return versionMeta(rec, key);
}

/**
 * After a write's pointer: the pointer must name our version or a newer one.
 * Our pointer carries the stamp taken before the body streamed, so a
 * re-point (or the pointer's removal) by a DELETE ?versionId= of the latest
 * version that ran while the body was under way is stamped later and wins;
 * having listed before our version record existed, it named an older version
 * or none. Then re-point from the versions as they are now (ours among them).
 * One quorum HEAD per versioned write; the deleter re-checks too (repoint).
 */
async function confirmPointer(b: ReplicatedBackend, bucket: string, key: string, sid: string): Promise<void> {
  const now = await b.coordinator.head(bucket, key);
  const live = liveOf(now.record);
  const m = live ? storedOf(live) : undefined;
  // Sort ids order newest first: a vref at or before ours in that order is ours or newer.
  if (m && isPointer(m) && m.vref <= sid) return;
  // A plain record (no pointer) cannot follow a versioned write of the key: nothing here to re-point.
  if (m && !isPointer(m)) return;
  await repoint(b, bucket, key, now.record?.version ?? "");
}

/** Copies a pre-versioning object to a version record (a multipart object's manifest, not its bytes). */
async function keepAsNull(b: ReplicatedBackend, bucket: string, key: string, known: HeadResult, rec: ReplicaRecord): Promise<void> {
  const coord = b.coordinator;
  const m = storedOf(rec);
  const header = { bucket, key: versionKey(key, sortIdOf(rec.version)), meta: JSON.stringify({ ...m, versionId: "null" } satisfies StoredMeta) };
  if (isManifest(m)) {
    const { manifest } = await readManifest(coord, bucket, key, known);
    const z = encodeManifest(manifest);
    await coord.put(header, once(z), { size: z.length });
    return;
  }
  const got = await coord.get(bucket, key, { known });
  await coord.put(header, got.body, { size: rec.size });
}

async function setPointer(b: ReplicatedBackend, bucket: string, key: string, rec: ReplicaRecord, sid: string, version: string): Promise<void> {
  const m = storedOf(rec);
  const ptr: Pointer = { ...m, size: m.size ?? rec.size, vref: sid };
  await b.coordinator.put({ bucket, key, meta: JSON.stringify(ptr) }, once(), { size: 0, version });
}

/** The live version records of one key, newest first (small: records without bodies). */
export async function keyVersions(b: ReplicatedBackend, bucket: string, key: string): Promise<{ rec: ReplicaRecord; sid: string }[]> {
  const list = await b.listBucket(bucket, { prefix: versionsPrefix(key) });
  const out: { rec: ReplicaRecord; sid: string }[] = [];
  try {
    for (let r = await list.next(); r; r = await list.next()) {
      const p = parseVersionKey(r.key);
      if (!r.tombstone && p && p.key === key) out.push({ rec: r, sid: p.sid });
    }
  } finally {
    await list.close();
  }
  return out;
}

/**
 * Where version `versionId` of `key` is stored: the plain record (a
 * pre-versioning null version) or a version record. NoSuchVersion when there
 * is none; VersionIsDeleteMarker when it is a marker.
 */
export async function findVersion(b: ReplicatedBackend, bucket: string, key: string, versionId: string): Promise<{ storageKey: string; known: HeadResult }> {
  checkVersionId(versionId);
  const coord = b.coordinator;
  const none = () => blobError("NoSuchVersion", `no version ${versionId} of ${key} in bucket ${bucket}`, { bucket, key, versionId });
  let sid: string | undefined = versionId;
  if (versionId === "null") {
    const cur = await coord.head(bucket, key);
    const live = liveOf(cur.record);
    const m = live ? storedOf(live) : undefined;
    if (live && m && !isPointer(m)) return { storageKey: key, known: cur };
    sid = m && isPointer(m) && m.versionId === "null" ? m.vref : (await keyVersions(b, bucket, key)).find((v) => storedOf(v.rec).versionId === "null")?.sid;
    if (sid === undefined) throw none();
  }
  const storageKey = versionKey(key, sid);
  const known = await coord.head(bucket, storageKey);
  const live = liveOf(known.record);
  if (!live) throw none();
  const m = storedOf(live);
  if (m.deleteMarker) {
    throw blobError("VersionIsDeleteMarker", `version ${versionId} of ${key} is a delete marker`, { bucket, key, versionId, deleteMarker: true, lastModified: m.lastModified });
  }
  return { storageKey, known };
}

/**
 * Removes one version for good. When it was the latest, the pointer moves to
 * the newest remaining version (or goes when none remains). An unknown
 * version is nothing to delete (S3 answers 204).
 */
export async function deleteVersion(b: ReplicatedBackend, bucket: string, key: string, versionId: string): Promise<DeleteObjectResult> {
  checkVersionId(versionId);
  const coord = b.coordinator;
  const cur = await coord.head(bucket, key);
  const live = liveOf(cur.record);
  const ptr = live ? storedOf(live) : undefined;
  if (versionId === "null" && ptr && !isPointer(ptr)) {
    await coord.delete(bucket, key);
    return { versionId };
  }
  let sid: string | undefined = versionId;
  if (versionId === "null") sid = (await keyVersions(b, bucket, key)).find((v) => storedOf(v.rec).versionId === "null")?.sid;
  if (sid === undefined) return { versionId };
  const got = liveOf((await coord.head(bucket, versionKey(key, sid))).record);
  if (!got) return { versionId };
  await coord.delete(bucket, versionKey(key, sid));
  if (ptr && isPointer(ptr) && ptr.vref === sid) await repoint(b, bucket, key, cur.record!.version);
  return { versionId, ...(storedOf(got).deleteMarker ? { deleteMarker: true } : {}) };
}

/**
 * Points `key` at its newest remaining version, or removes the pointer when
 * none remains. A write racing with this one may land its version meanwhile:
 * look once more and follow it.
 */
export async function repoint(b: ReplicatedBackend, bucket: string, key: string, seen: string): Promise<void> {
  const coord = b.coordinator;
  for (let round = 0; round < 2; round++) {
    const newest = (await keyVersions(b, bucket, key))[0];
    const t = coord.stamp(seen || undefined);
    if (!newest) {
      // A writer's version may land after the listing, its pointer losing to this removal: look again (confirmPointer is its side).
      const gone = await coord.delete(bucket, key);
      seen = gone.version;
      if (!(await keyVersions(b, bucket, key))[0]) return;
      continue;
    }
    await setPointer(b, bucket, key, newest.rec, newest.sid, t);
    seen = t;
    const again = (await keyVersions(b, bucket, key))[0];
    if (again?.sid === newest.sid) return;
  }
}

/** A merged listing with one record of look-ahead, tombstones skipped. */
class Peek {
  private head?: ReplicaRecord;
  private done = false;
  constructor(private readonly list: MergedList) {}
  async peek(): Promise<ReplicaRecord | undefined> {
    while (!this.head && !this.done) {
      const r = await this.list.next();
      if (!r) this.done = true;
      else if (!r.tombstone) this.head = r;
    }
    return this.head;
  }
  advance(): void { this.head = undefined; }
  seek(key: string): void {
    if (this.head && compareKeys(this.head.key, key) <= 0) this.head = undefined;
    this.list.seek(key);
  }
  close(): Promise<void> { return this.list.close(); }
}

/**
 * ListObjectVersions: the plain records (pointers say which version is
 * latest; a pre-versioning object is its key's null version) merged with the
 * version records, in key order and newest first within a key. `versioned`
 * false (a never-versioned bucket): there are no version records to read.
 */
export async function listVersions(b: ReplicatedBackend, input: ListVersionsInput, versioned: boolean): Promise<ListVersionsResult> {
  const { bucket, delimiter: d } = input;
  const prefix = input.prefix ?? "";
  const km = input.keyMarker || undefined;
  const vm = km !== undefined ? input.versionIdMarker || undefined : undefined;
  if (vm !== undefined) checkVersionId(vm);
  let plainAfter: string | undefined, verAfter: string | undefined;
  let resume: { key: string; ptr?: StoredMeta } | undefined;
  if (km !== undefined) {
    const rolled = d && km.startsWith(prefix) ? km.indexOf(d, prefix.length) : -1;
    if (d && rolled >= 0) {
      const cp = km.slice(0, rolled + d.length);
      plainAfter = afterPrefix(cp);
      verAfter = afterPrefix(VERSION_PREFIX + cp);
    } else {
      plainAfter = km;
      verAfter = afterPrefix(versionsPrefix(km));
      if (vm !== undefined && versioned) {
        // Resume inside km's versions: its pointer still says which is latest.
        const live = liveOf((await b.coordinator.head(bucket, km)).record);
        const ptr = live ? storedOf(live) : undefined;
        let from: string | undefined;
        if (vm !== "null") from = versionKey(km, vm);
        else if (ptr && !isPointer(ptr)) from = VERSION_PREFIX + km;
        else {
          const sid = (await keyVersions(b, bucket, km)).find((v) => storedOf(v.rec).versionId === "null")?.sid;
          if (sid !== undefined) from = versionKey(km, sid);
        }
        if (from !== undefined) {
          verAfter = from;
          resume = { key: km, ...(ptr ? { ptr } : {}) };
        }
      }
    }
  }
  const P = new Peek(await b.listBucket(bucket, { prefix, ...(plainAfter !== undefined ? { after: plainAfter } : {}) }));
  const V = versioned ? new Peek(await b.listBucket(bucket, { prefix: VERSION_PREFIX + prefix, ...(verAfter !== undefined ? { after: verAfter } : {}) })) : undefined;
  const page = new RollUp<VersionEntry>(prefix, d, input.maxKeys);
  let lastVersion: string | undefined;
  /** "full": stop; "rolled": the key went into a common prefix (both listings skip past it). */
  const take = (key: string, entry: () => VersionEntry): "full" | "rolled" | undefined => {
    let made: VersionEntry | undefined;
    const got = page.offer(key, () => (made = entry()));
    if (got === "full") return "full";
    if (got || (made === undefined && page.last !== key)) {
      const cp = got ? got.prefix : page.last!;
      P.seek(afterPrefix(cp));
      V?.seek(afterPrefix(VERSION_PREFIX + cp));
      lastVersion = undefined;
      return "rolled";
    }
    if (made === undefined) return "rolled";
    lastVersion = made.versionId;
    return undefined;
  };
  try {
    outer: for (;;) {
      const p = await P.peek();
      const v = V ? await V.peek() : undefined;
      const vk = v ? parseVersionKey(v.key)?.key : undefined;
      if (v && vk === undefined) { V!.advance(); continue; }
      const key = p && (vk === undefined || compareKeys(p.key, vk) <= 0) ? p.key : vk;
      if (key === undefined) break;
      let ptr: StoredMeta | undefined;
      if (p && p.key === key) { P.advance(); ptr = storedOf(p); }
      const resumed = resume?.key === key;
      if (resumed) ptr = resume!.ptr;
      const legacy = ptr !== undefined && !isPointer(ptr);
      if (legacy && !resumed) {
        const rec = p!;
        const r = take(key, () => ({ ...metaOf(rec), versionId: "null", isLatest: true }));
        if (r === "full") break;
        if (r === "rolled") continue;
      }
      while (V) {
        const x = await V.peek();
        const pk = x ? parseVersionKey(x.key) : undefined;
        if (!x || !pk || pk.key !== key) break;
        V.advance();
        const m = storedOf(x);
        // A pre-versioning object copied by a write that died before its pointer: the plain record is that version.
        if (legacy && m.versionId === "null") continue;
        const latest = ptr !== undefined && isPointer(ptr) && ptr.vref === pk.sid;
        const r = take(key, () => ({ ...versionMeta(x, key), versionId: m.versionId ?? pk.sid, isLatest: latest }));
        if (r === "full") break outer;
        if (r === "rolled") break;
      }
    }
  } finally {
    await P.close();
    await V?.close();
  }
  const { items: versions, commonPrefixes, isTruncated, last } = page;
  return {
    versions, commonPrefixes, isTruncated,
    ...(isTruncated && last !== undefined ? { nextKeyMarker: last, ...(lastVersion !== undefined ? { nextVersionIdMarker: lastVersion } : {}) } : {}),
  };
}
