/**
 * An in-memory BlobStore for fast tests of everything above the seam (the S3
 * protocol layer). It keeps whole objects in memory, so it is for tests only,
 * but it verifies and computes exactly what the durable store does: sizes,
 * Content-MD5, checksums, multipart rules, S3's ETags and listing order.
 */
import { createHash, randomBytes } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import { blobError } from "./errors.js";
import { hasher, type Hasher } from "./hash.js";
import type { BucketConfigSection, BucketConfigSections } from "./bucket-config.js";
import { extrasOf } from "./rules.js";
import { commonPrefixOf, RollUp } from "./listing.js";
import {
  MIN_PART_SIZE, type BlobStore, type BodyExpectations, type BucketInfo, type ByteRange, type ChecksumAlgorithm, type Checksums, type CompletePart,
  type GetObjectOptions, type GetObjectResult, type ListObjectsInput, type ListObjectsResult, type ListUploadsInput, type ListUploadsResult,
  type MultipartUpload, type ObjectExtras, type ObjectHeaders, type ObjectMeta, type PartInfo, type PutObjectInput,
  type CompleteOptions, type DeleteObjectResult, type ListVersionsInput, type ListVersionsResult,
} from "./types.js";

/**
 * This store does not keep versions: every object is its own "null" version
 * (as in a never-versioned S3 bucket) and enabling versioning is refused as
 * not implemented (the replicated store, objectstore/replica, has it).
 */
function onlyNull(versionId: string | undefined, key: string): void {
  if (versionId !== undefined && versionId !== "null") throw blobError("NoSuchVersion", undefined, { key, versionId });
}

interface Stored { meta: ObjectMeta; data: Buffer }
interface Upload { upload: MultipartUpload; parts: Map<number, { info: PartInfo; data: Buffer }> }
interface Bucket { info: BucketInfo; objects: Map<string, Stored>; uploads: Map<string, Upload>; config: Map<string, string> }

/** Reads a body, verifying size, MD5 and checksums; returns the bytes, the hex MD5 and every checksum asked for. */
async function readVerified(body: AsyncIterable<Uint8Array>, expect: BodyExpectations): Promise<{ data: Buffer; md5: string; checksums: Checksums }> {
  const md5 = createHash("md5");
  const algs = new Set<ChecksumAlgorithm>([...(Object.keys(expect.checksums ?? {}) as ChecksumAlgorithm[]), ...(expect.computeChecksums ?? [])]);
  const hs = new Map<ChecksumAlgorithm, Hasher>([...algs].map((a) => [a, hasher(a)]));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    md5.update(c);
    for (const h of hs.values()) h.update(c);
    chunks.push(Buffer.from(c));
    size += c.length;
  }
  if (expect.size !== undefined && size !== expect.size) throw blobError("IncompleteBody", `expected ${expect.size} bytes, got ${size}`);
  const md5Raw = md5.digest();
  if (expect.md5 !== undefined && md5Raw.toString("base64") !== expect.md5) throw blobError("BadDigest");
  const checksums: Checksums = {};
  for (const [a, h] of hs) {
    const got = h.digest();
    const want = expect.checksums?.[a];
    if (want && want !== got) throw blobError("BadDigest", `The ${a.toUpperCase()} you specified did not match the calculated checksum.`);
    checksums[a] = got;
  }
  return { data: Buffer.concat(chunks, size), md5: md5Raw.toString("hex"), checksums };
}

async function* slices(data: Buffer): AsyncIterable<Uint8Array> {
  for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, Math.min(data.length, i + 65536));
}

/** One page of sorted [key, item] entries under the prefix and strictly after `after` (a key or a common prefix). */
function rollUp<T>(items: [string, T][], prefix: string, delimiter: string | undefined, after: string | undefined, max: number): RollUp<T> {
  const page = new RollUp<T>(prefix, delimiter, max);
  for (const [key, item] of items) {
    if (!key.startsWith(prefix)) continue;
    if (after !== undefined && (commonPrefixOf(key, prefix, delimiter) ?? key) <= after) continue;
    if (page.offer(key, () => item) === "full") break;
  }
  return page;
}

export class MemoryBlobStore implements BlobStore {
  private readonly buckets = new Map<string, Bucket>();
  private readonly completed = new Map<string, { parts: string; meta: ObjectMeta }>();
  private clock = 0;

  private version(): string { return String(++this.clock).padStart(16, "0"); }

  private bucket(name: string): Bucket {
    const b = this.buckets.get(name);
    if (!b) throw blobError("NoSuchBucket", undefined, { bucket: name });
    return b;
  }

  async listBuckets(): Promise<BucketInfo[]> {
    return [...this.buckets.values()].map((b) => b.info).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async createBucket(name: string, owner: string) {
    const b = this.buckets.get(name);
    if (b) {
      if (b.info.owner !== owner) throw blobError("BucketAlreadyExists", undefined, { bucket: name });
      return { created: false, bucket: b.info };
    }
    const info: BucketInfo = { name, owner, createdAt: Date.now() };
    this.buckets.set(name, { info, objects: new Map(), uploads: new Map(), config: new Map() });
    return { created: true, bucket: info };
  }

  async headBucket(name: string) { return this.bucket(name).info; }

  async getBucketConfig<S extends BucketConfigSection>(bucket: string, section: S): Promise<BucketConfigSections[S] | undefined> {
    const raw = this.bucket(bucket).config.get(section);
    return raw === undefined ? undefined : JSON.parse(raw) as BucketConfigSections[S];
  }

  async putBucketConfig<S extends BucketConfigSection>(bucket: string, section: S, value: BucketConfigSections[S] | undefined): Promise<void> {
    const c = this.bucket(bucket).config;
    if (section === "versioning" && value !== undefined) throw new ThocError("unimplemented", "the in-memory store does not keep object versions");
    if (value === undefined) c.delete(section);
    else c.set(section, JSON.stringify(value));
  }

  async deleteBucket(name: string) {
    const b = this.bucket(name);
    if (b.objects.size) throw blobError("BucketNotEmpty", undefined, { bucket: name });
    this.buckets.delete(name);
  }

  async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    this.bucket(input.bucket);
    const { data, md5, checksums } = await readVerified(input.body, input.expect);
    const b = this.bucket(input.bucket); // it may have gone while the body streamed
    const meta: ObjectMeta = {
      ...input.headers, bucket: input.bucket, key: input.key, size: data.length, etag: md5, lastModified: Date.now(),
      userMeta: { ...input.userMeta }, checksums, version: this.version(), ...extrasOf(input.extras),
    };
    b.objects.set(input.key, { meta, data });
    return meta;
  }

  private object(bucket: string, key: string): Stored {
    const o = this.bucket(bucket).objects.get(key);
    if (!o) throw blobError("NoSuchKey", undefined, { key });
    return o;
  }

  async headObject(bucket: string, key: string, opts: { versionId?: string } = {}) {
    const o = this.object(bucket, key);
    onlyNull(opts.versionId, key);
    return o.meta;
  }

  async getObject(bucket: string, key: string, opts: GetObjectOptions = {}): Promise<GetObjectResult> {
    onlyNull(opts.versionId, key);
    const { meta, data } = this.object(bucket, key);
    let range = opts.prepare ? opts.prepare(meta) : opts.range;
    if (opts.partNumber !== undefined) {
      const parts = meta.parts ?? [{ partNumber: 1, size: meta.size, etag: meta.etag }];
      if (opts.partNumber < 1 || opts.partNumber > parts.length) throw blobError("InvalidPartNumber");
      let start = 0;
      for (const p of parts.slice(0, opts.partNumber - 1)) start += p.size;
      range = { start, end: start + parts[opts.partNumber - 1]!.size - 1 };
    }
    if (range && (range.start < 0 || range.end >= meta.size || range.start > range.end)) throw blobError("InvalidRange");
    const body = range ? data.subarray(range.start, range.end + 1) : data;
    return { meta, body: slices(body), range };
  }

  async deleteObject(bucket: string, key: string, opts: { versionId?: string } = {}): Promise<DeleteObjectResult> {
    const b = this.bucket(bucket);
    if (opts.versionId !== undefined && opts.versionId !== "null") return {};
    b.objects.delete(key);
    return opts.versionId ? { versionId: "null" } : {};
  }

  async listObjectVersions(input: ListVersionsInput): Promise<ListVersionsResult> {
    // Every object is its single null version: a version-id marker means "after that key".
    const r = await this.listObjects({ bucket: input.bucket, prefix: input.prefix, delimiter: input.delimiter, after: input.keyMarker || undefined, maxKeys: input.maxKeys });
    const last = r.objects[r.objects.length - 1];
    return {
      versions: r.objects.map((o) => ({ ...o, versionId: "null", isLatest: true })),
      commonPrefixes: r.commonPrefixes, isTruncated: r.isTruncated,
      ...(r.isTruncated ? { nextKeyMarker: r.nextAfter, ...(last && last.key === r.nextAfter ? { nextVersionIdMarker: "null" } : {}) } : {}),
    };
  }

  async listObjects(input: ListObjectsInput): Promise<ListObjectsResult> {
    const b = this.bucket(input.bucket);
    const items = [...b.objects.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    const r = rollUp(items, input.prefix ?? "", input.delimiter, input.after, input.maxKeys);
    return {
      objects: r.items.map((o) => o.meta),
      commonPrefixes: r.commonPrefixes,
      isTruncated: r.isTruncated,
      nextAfter: r.isTruncated ? r.last : undefined,
    };
  }

  async updateObjectMeta(bucket: string, key: string, patch: Pick<ObjectExtras, "tags" | "acl">, opts: { versionId?: string } = {}): Promise<ObjectMeta> {
    const o = this.object(bucket, key);
    if (opts.versionId !== undefined && opts.versionId !== (o.meta.versionId ?? "null")) throw blobError("NoSuchKey", undefined, { key });
    const next: ObjectMeta = { ...o.meta };
    if (patch.tags !== undefined) { if (Object.keys(patch.tags).length) next.tags = patch.tags; else delete next.tags; }
    if (patch.acl !== undefined) { if (patch.acl !== "private") next.acl = patch.acl; else delete next.acl; }
    o.meta = next;
    return next;
  }

  async createMultipartUpload(bucket: string, key: string, headers: ObjectHeaders, userMeta: Record<string, string>, checksumAlgorithm?: ChecksumAlgorithm, extras?: ObjectExtras) {
    const b = this.bucket(bucket);
    const upload: MultipartUpload = { uploadId: randomBytes(16).toString("base64url"), bucket, key, initiated: Date.now(), headers, userMeta, checksumAlgorithm, ...(extras ? { extras } : {}) };
    b.uploads.set(upload.uploadId, { upload, parts: new Map() });
    return upload;
  }

  private upload(bucket: string, key: string, uploadId: string): Upload {
    const u = this.bucket(bucket).uploads.get(uploadId);
    if (!u || u.upload.key !== key) throw blobError("NoSuchUpload", undefined, { uploadId });
    return u;
  }

  async uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, expect: BodyExpectations) {
    const u0 = this.upload(bucket, key, uploadId);
    const alg = u0.upload.checksumAlgorithm;
    const e = alg ? { ...expect, computeChecksums: [...(expect.computeChecksums ?? []), alg] } : expect;
    const { data, md5, checksums } = await readVerified(body, e);
    const u = this.upload(bucket, key, uploadId);
    const info: PartInfo = { partNumber, size: data.length, etag: expect.etag ? expect.etag() : md5, checksums, lastModified: Date.now(), ...(expect.sse !== undefined ? { sse: expect.sse } : {}) };
    u.parts.set(partNumber, { info, data });
    return info;
  }

  // opts.onVersionId is never called: this store keeps no versions (a versioned bucket is refused).
  async completeMultipartUpload(bucket: string, key: string, uploadId: string, partList: CompletePart[] | Promise<CompletePart[]>, _opts?: CompleteOptions) {
    const parts = await partList;
    const sig = JSON.stringify(parts.map((p) => [p.partNumber, p.etag.replace(/"/g, "")]));
    const done = this.completed.get(uploadId);
    if (done && done.meta.bucket === bucket && done.meta.key === key) {
      if (done.parts === sig) return done.meta;
      throw blobError("InvalidPart", "The upload was already completed with a different part list.");
    }
    const u = this.upload(bucket, key, uploadId);
    const chosen: { info: PartInfo; data: Buffer }[] = [];
    let prev = 0;
    for (const p of parts) {
      if (p.partNumber <= prev) throw blobError("InvalidPartOrder");
      prev = p.partNumber;
      const have = u.parts.get(p.partNumber);
      if (!have || have.info.etag !== p.etag.replace(/"/g, "")) throw blobError("InvalidPart", undefined, { partNumber: p.partNumber });
      chosen.push(have);
    }
    chosen.forEach((c, i) => {
      if (i < chosen.length - 1 && c.info.size < MIN_PART_SIZE) {
        throw blobError("EntityTooSmall", undefined, { partNumber: c.info.partNumber, size: c.info.size, minSize: MIN_PART_SIZE });
      }
    });
    const md5 = createHash("md5");
    for (const c of chosen) md5.update(Buffer.from(c.info.etag, "hex"));
    const checksums: Checksums = {};
    const alg = u.upload.checksumAlgorithm;
    if (alg && chosen.every((c) => c.info.checksums?.[alg])) {
      const h = hasher(alg);
      for (const c of chosen) h.update(Buffer.from(c.info.checksums![alg]!, "base64"));
      checksums[alg] = `${h.digest()}-${chosen.length}`;
    }
    const data = Buffer.concat(chosen.map((c) => c.data));
    const meta: ObjectMeta = {
      ...u.upload.headers, bucket, key, size: data.length, etag: `${md5.digest("hex")}-${chosen.length}`, lastModified: Date.now(),
      userMeta: { ...u.upload.userMeta }, checksums, version: this.version(), parts: chosen.map((c) => c.info), ...extrasOf(u.upload.extras),
    };
    const b = this.bucket(bucket);
    b.objects.set(key, { meta, data });
    b.uploads.delete(uploadId);
    this.completed.set(uploadId, { parts: sig, meta });
    return meta;
  }

  async abortMultipartUpload(bucket: string, key: string, uploadId: string) {
    this.upload(bucket, key, uploadId);
    this.bucket(bucket).uploads.delete(uploadId);
  }

  async listParts(bucket: string, key: string, uploadId: string, opts: { partNumberMarker?: number; maxParts: number }) {
    const u = this.upload(bucket, key, uploadId);
    const all = [...u.parts.values()].map((p) => p.info).sort((a, b) => a.partNumber - b.partNumber)
      .filter((p) => p.partNumber > (opts.partNumberMarker ?? 0));
    const parts = all.slice(0, opts.maxParts);
    const isTruncated = all.length > parts.length;
    return { upload: u.upload, parts, isTruncated, nextPartNumberMarker: isTruncated ? parts[parts.length - 1]?.partNumber : undefined };
  }

  async listMultipartUploads(input: ListUploadsInput): Promise<ListUploadsResult> {
    const b = this.bucket(input.bucket);
    const all = [...b.uploads.values()].map((u) => u.upload)
      // Within a key, by upload id, so upload-id-marker resumes exactly where a page ended.
      .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : x.uploadId < y.uploadId ? -1 : x.uploadId > y.uploadId ? 1 : 0))
      .filter((u) => {
        if (input.keyMarker === undefined) return true;
        if (u.key > input.keyMarker) return true;
        if (u.key < input.keyMarker || input.uploadIdMarker === undefined) return false;
        return u.uploadId > input.uploadIdMarker;
      });
    const r = rollUp(all.map((u) => [u.key, u] as [string, MultipartUpload]), input.prefix ?? "", input.delimiter, undefined, input.maxUploads);
    const uploads = r.items;
    const lastUp = uploads[uploads.length - 1];
    return {
      uploads, commonPrefixes: r.commonPrefixes, isTruncated: r.isTruncated,
      nextKeyMarker: r.isTruncated ? r.last : undefined,
      nextUploadIdMarker: r.isTruncated && lastUp && lastUp.key === r.last ? lastUp.uploadId : undefined,
    };
  }

  async close() { this.buckets.clear(); }
}
