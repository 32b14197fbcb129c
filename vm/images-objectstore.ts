/**
 * Images kept in the object store's reserved bucket, with <dataDir>/images as
 * the node-local cache libvirt reads. The bucket is the source of truth: an
 * image exists when `<name>/record.json` does; its parts are `<name>/disk`,
 * `<name>/kernel`, `<name>/initrd`, each with its SHA-256 (hex) in the
 * object's user metadata. The bucket belongs to an internal owner that no S3
 * key has by default, so S3 users neither list nor touch it (S3 access is by
 * owner: objectstore/s3 ownBucket / listBuckets).
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { QemuAccess } from "./access.js";
import { ThocError } from "../errors/index.js";
import { isMissingBlob, ReservedBucket, type BlobStore } from "../objectstore/index.js";
import {
  IMAGE_NAME_RE, IMAGE_PARTS, LocalImageStore, checkImageName, sha256File,
  type ImageFile, type ImageImportOptions, type ImagePart, type ImageRecord, type ImageStore, type ImageWriter,
} from "./images.js";

export const IMAGE_BUCKET = "thoc-images";
/** No S3 key has this owner unless an operator creates one for it (docs/vms.md, Not done yet). */
export const IMAGE_OWNER = "thoc-system";
const CHUNK = 1 << 20;

const codeOf = (e: unknown) => e as { code?: string };

export interface ObjectImageStoreOptions {
  bucket?: string;
  owner?: string;
  /** Who besides the agent reads the cached files (QEMU's group; vm/access.ts). */
  access?: QemuAccess;
}

export class ObjectImageStore implements ImageStore {
  readonly bucket: string;
  readonly owner: string;
  /** The cache's layout is LocalImageStore's, which also stages imports (hash, qemu-img check). */
  private readonly cache: LocalImageStore;
  /** Parts known good: name → "part:sha:size:mtime,…" of the cached files at the last check. */
  private readonly verified = new Map<string, string>();
  private readonly fetching = new Map<string, Promise<ImageRecord>>();
  /** The bucket and its records (objectstore's ReservedBucket, as container images). */
  private readonly store: ReservedBucket<ImageRecord>;

  constructor(readonly blobs: BlobStore, readonly dir: string, opts: ObjectImageStoreOptions = {}) {
    this.bucket = opts.bucket ?? IMAGE_BUCKET;
    this.owner = opts.owner ?? IMAGE_OWNER;
    this.cache = new LocalImageStore(dir, opts.access);
    this.store = new ReservedBucket(blobs, this.bucket, this.owner, "VM images");
  }

  /** Creates the reserved bucket (idempotent); refuses one an S3 user took first rather than trust its contents. */
  ensureBucket(): Promise<void> { return this.store.ensure(); }

  pathOf(name: string, part: ImagePart): string { return this.cache.pathOf(name, part); }

  async begin(name: string, opts: ImageImportOptions = {}): Promise<ImageWriter> {
    checkImageName(name);
    await this.ensureBucket();
    if (!opts.replace && await this.get(name)) throw new ThocError("already_exists", `image ${name} already exists: delete it first (thoc-node image delete ${name}) or import with --replace`, { image: name });
    // The cache may hold a copy of an image deleted elsewhere: the bucket decided above, so stage over it.
    const staging = await this.cache.begin(name, { ...opts, replace: true });
    const self = this;
    return {
      write: (part, chunk) => staging.write(part, chunk),
      abort: () => staging.abort(),
      async commit() {
        const rec = await staging.commit();
        try {
          for (const f of rec.files) await self.upload(name, f);
          // The record goes last: until it is written the image does not exist (or is still the old one).
          await self.store.write(rec);
        } catch (err) {
          self.verified.delete(name);
          await rm(path.join(self.dir, name), { recursive: true, force: true });
          const e = ThocError.from(err);
          throw new ThocError(e.code, `image ${name}: storing it in the object store failed: ${e.message}`, { ...e.details, image: name }, { cause: err });
        }
        self.verified.set(name, await self.stamp(rec));
        return rec;
      },
    };
  }

  private async upload(name: string, f: ImageFile): Promise<void> {
    // The store re-hashes what it writes: a cache file changed under us is refused (BadDigest), not stored.
    await this.store.put(`${name}/${f.part}`, createReadStream(this.pathOf(name, f.part), { highWaterMark: CHUNK }), "application/octet-stream", { size: f.size, sha256: f.sha256 });
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    if (!IMAGE_NAME_RE.test(name)) return undefined;
    return this.store.read(name);
  }

  list(): Promise<ImageRecord[]> { return this.store.list((n) => this.get(n)); }

  async delete(name: string): Promise<void> {
    const rec = await this.get(name);
    if (!rec) throw new ThocError("not_found", `image ${name} is not on this node (thoc-node image list)`, { image: name });
    // Record first, so a delete cut short leaves no half image visible, only unreferenced parts.
    await this.store.unlink(name);
    for (const p of IMAGE_PARTS) await this.blobs.deleteObject(this.bucket, `${name}/${p}`);
    this.verified.delete(name);
    await rm(path.join(this.dir, name), { recursive: true, force: true });
  }

  /** Makes the cache hold exactly the recorded bytes, fetching what is missing or changed; DATA_LOSS if the bucket's copy is bad. */
  async verify(name: string): Promise<ImageRecord> {
    let p = this.fetching.get(name);
    if (!p) {
      p = this.ensureCached(name).finally(() => this.fetching.delete(name));
      this.fetching.set(name, p);
    }
    return p;
  }

  private async ensureCached(name: string): Promise<ImageRecord> {
    const rec = await this.get(name);
    if (!rec) {
      // A cached copy is left alone: it may be the backing file of VMs made before the image moved to the bucket.
      this.verified.delete(name);
      throw new ThocError("not_found", `image ${name} is not on this node: import it with \`thoc-node image import ${name} FILE\` (thoc-node image list shows what is here)`, { image: name });
    }
    if (this.verified.get(name) === await this.stamp(rec)) return rec;
    await this.cache.access.dir(path.join(this.dir, name));
    for (const f of rec.files) {
      const file = this.pathOf(name, f.part);
      const have = await sha256File(file).catch(() => undefined);
      if (have !== f.sha256) await this.fetch(name, f, file);
    }
    // Keeps the cache directory a complete LocalImageStore layout.
    const json = path.join(this.dir, name, "image.json");
    const text = JSON.stringify(rec, null, 2);
    if (await readFile(json, "utf8").catch(() => "") !== text) await writeFile(json, text);
    this.verified.set(name, await this.stamp(rec));
    return rec;
  }

  private async fetch(name: string, f: ImageFile, dest: string): Promise<void> {
    const tmp = path.join(this.dir, `.fetch-${name}-${f.part}-${randomUUID().slice(0, 8)}`);
    const bad = (why: string, cause?: unknown) => new ThocError("data_loss",
      `image ${name}: the object store's copy of its ${f.part} is damaged (${why}); nothing was booted from it — import the image again (thoc-node image import ${name} FILE --replace)`,
      { image: name, part: f.part }, cause ? { cause } : undefined);
    const fh = await open(tmp, "w", 0o600);
    try {
      const h = createHash("sha256");
      let size = 0;
      try {
        const { meta, body } = await this.blobs.getObject(this.bucket, `${name}/${f.part}`);
        if (meta.userMeta.sha256 && meta.userMeta.sha256 !== f.sha256) throw bad(`its SHA-256 metadata ${meta.userMeta.sha256} differs from the image record's ${f.sha256}`);
        for await (const c of body) {
          h.update(c);
          size += c.length;
          await fh.write(c);
        }
      } catch (err) {
        if (err instanceof ThocError && err.details.image === name) throw err;
        if (isMissingBlob(err)) throw bad("object missing", err);
        if (codeOf(err).code === "data_loss") throw bad(ThocError.from(err).message, err);
        throw err;
      }
      const got = h.digest("hex");
      if (got !== f.sha256 || size !== f.size) throw bad(`fetched ${size} bytes with SHA-256 ${got}, the record says ${f.size} bytes with ${f.sha256}`);
      await fh.sync();
      await fh.close();
      await rename(tmp, dest);
      await this.cache.access.file(dest); // QEMU reads it: its group may (vm/access.ts)
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      // A corrupt cached file must not linger where libvirt could pick it up.
      await rm(dest, { force: true });
      throw err;
    }
  }

  private async stamp(rec: ImageRecord): Promise<string> {
    const parts = await Promise.all(rec.files.map(async (f) => {
      const s = await stat(this.pathOf(rec.name, f.part)).catch(() => undefined);
      return `${f.part}:${f.sha256}:${s ? `${s.size}:${s.mtimeMs}` : "-"}`;
    }));
    return parts.join(",");
  }
}
