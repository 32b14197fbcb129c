/**
 * Container images without a registry: `docker save` / OCI archives kept in
 * the cluster's object store, in a reserved bucket like VM images (both
 * through objectstore's ReservedBucket), and loaded into a node's engine the first time
 * a container there needs them. The bucket is the source of truth: an image
 * exists when `<name>/record.json` does; its archive is `<name>/archive-<id>`
 * (a fresh key per import, so a failed or replacing import never damages the
 * image already there). Names are an image's name[:tag] ("bb" is "bb:latest").
 */
import { createHash, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { ThocError } from "../errors/index.js";
import type { ContainerEngine } from "../engine/index.js";
import { isBlobError, isMissingBlob, ReservedBucket, type BlobStore } from "../objectstore/index.js";
import { ArchiveScanner } from "./archive.js";

export const CONTAINER_IMAGE_BUCKET = "thoc-container-images";
/** The internal owner VM images also use: no S3 key has it by default. */
export const CONTAINER_IMAGE_OWNER = "thoc-system";

/** repository[:tag], lower-case repository as Docker wants, no '/' (a registry path is pulled, not imported). */
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

export interface ContainerImageRecord {
  /** name:tag. */
  name: string;
  sha256: string;
  size: number;
  importedAt: number;
  /** References the archive carries (RepoTags); what the engine knows the image as once loaded. */
  refs: string[];
  /** "sha256:<hex>" of the image's config, "" when the archive does not say. */
  imageId: string;
  format: "docker" | "oci";
  /** The archive's object key. */
  key: string;
}

/** What a container is created from once ensure() made the engine hold the image. */
export interface EnsuredImage { name: string; ref: string; imageId: string }

export interface ImportOptions { size?: number; sha256?: string; replace?: boolean }

/** "bb" → "bb:latest"; undefined for anything that is not an importable name. */
export function canonicalImageName(ref: string): string | undefined {
  if (!NAME_RE.test(ref)) return undefined;
  return ref.includes(":") ? ref : `${ref}:latest`;
}

export function checkImageName(name: string): string {
  const c = canonicalImageName(name);
  if (!c) throw new ThocError("invalid_argument", `image name "${name}": use NAME[:TAG], NAME of lower-case letters, digits, '.', '_' and '-' (no registry path: those are pulled)`, { image: name });
  return c;
}

const stripId = (id: string) => id.replace(/^sha256:/, "");

export class ContainerImageStore {
  readonly bucket: string;
  readonly owner: string;
  /** The bucket and its records (objectstore's ReservedBucket, as VM images). */
  private readonly store: ReservedBucket<ContainerImageRecord>;
  /** Loads in progress, per engine, by name@sha256: concurrent ensures share one. */
  private readonly loading = new WeakMap<ContainerEngine, Map<string, Promise<EnsuredImage>>>();

  constructor(readonly blobs: BlobStore, opts: { bucket?: string; owner?: string; now?: () => number } = {}) {
    this.bucket = opts.bucket ?? CONTAINER_IMAGE_BUCKET;
    this.owner = opts.owner ?? CONTAINER_IMAGE_OWNER;
    this.now = opts.now ?? Date.now;
    this.store = new ReservedBucket(blobs, this.bucket, this.owner, "container images");
  }
  private readonly now: () => number;

  /** Creates the reserved bucket (idempotent); refuses one an S3 user took first rather than trust its contents. */
  ensureBucket(): Promise<void> { return this.store.ensure(); }

  /**
   * Streams an archive into the bucket, checking it is an image archive and,
   * when given, its size and SHA-256 before the image exists. On any failure
   * nothing is left (and an image being replaced is unchanged).
   */
  async import(nameIn: string, body: AsyncIterable<Uint8Array>, o: ImportOptions = {}): Promise<ContainerImageRecord> {
    const name = checkImageName(nameIn);
    const want = o.sha256?.toLowerCase();
    if (want !== undefined && want !== "" && !/^[0-9a-f]{64}$/.test(want)) throw new ThocError("invalid_argument", `sha256 "${o.sha256}": give 64 hex digits`);
    await this.ensureBucket();
    const old = await this.get(name);
    if (old && !o.replace) throw new ThocError("already_exists", `container image ${name} already exists: delete it first (thoc-node ct image delete ${name}) or import with --replace`, { image: name });
    const key = `${name}/archive-${randomUUID()}`;
    const scan = new ArchiveScanner();
    const hash = createHash("sha256");
    let size = 0;
    async function* tee(): AsyncGenerator<Uint8Array> {
      for await (const c of body) {
        if (!c.length) continue;
        hash.update(c);
        scan.write(c);
        size += c.length;
        yield c;
      }
    }
    try {
      try {
        // The store checks what it writes: a wrong size or checksum is refused before the object exists.
        await this.store.put(key, tee(), "application/x-tar", { ...(o.size ? { size: o.size } : {}), ...(want ? { sha256: want } : {}) });
      } catch (err) {
        const got = hash.digest("hex");
        if (isBlobError(err, "BadDigest")) throw new ThocError("invalid_argument", `container image ${name}: the archive's SHA-256 is ${got}, not the ${want} given (the file changed or was damaged on the way); nothing was kept`, { image: name }, { cause: err });
        if (isBlobError(err, "IncompleteBody")) throw new ThocError("invalid_argument", `container image ${name}: ${size} bytes arrived, not the ${o.size} announced; nothing was kept`, { image: name }, { cause: err });
        throw err;
      }
      const info = await scan.end().catch((err: unknown) => {
        const e = ThocError.from(err);
        throw new ThocError(e.code, `container image ${name}: ${e.message}; nothing was kept`, { image: name }, { cause: err });
      });
      const rec: ContainerImageRecord = { name, sha256: hash.digest("hex"), size, importedAt: this.now(), refs: info.refs, imageId: info.imageId, format: info.format, key };
      // The record last: until it is written the image does not exist (or is still the old one).
      await this.store.write(rec);
      if (old && old.key !== key) await this.blobs.deleteObject(this.bucket, old.key).catch(() => {});
      return rec;
    } catch (err) {
      await this.blobs.deleteObject(this.bucket, key).catch(() => {});
      throw err;
    }
  }

  async get(nameIn: string): Promise<ContainerImageRecord | undefined> {
    const name = canonicalImageName(nameIn);
    if (!name) return undefined;
    return this.store.read(name);
  }

  list(): Promise<ContainerImageRecord[]> { return this.store.list((n) => this.get(n)); }

  /** Removes the image from the bucket (engines keep copies they loaded until their containers are gone). */
  async delete(nameIn: string): Promise<ContainerImageRecord> {
    const rec = await this.get(nameIn);
    if (!rec) throw new ThocError("not_found", `container image ${nameIn} is not imported (thoc-node ct image list)`, { image: nameIn });
    // Record first: a delete cut short leaves no half image visible, only an unreferenced archive.
    await this.store.unlink(rec.name);
    await this.blobs.deleteObject(this.bucket, rec.key);
    return rec;
  }

  /**
   * Makes `engine` hold the imported image `ref` names, loading its archive
   * once (concurrent calls share the load; later calls find it loaded).
   * Undefined when no image of that name was imported: the caller pulls.
   */
  async ensure(engine: ContainerEngine, ref: string): Promise<EnsuredImage | undefined> {
    const rec = await this.get(ref);
    if (!rec) return undefined;
    let byName = this.loading.get(engine);
    if (!byName) this.loading.set(engine, byName = new Map());
    const k = `${rec.name}@${rec.sha256}`;
    let p = byName.get(k);
    if (!p) {
      p = this.load(engine, rec).finally(() => byName.delete(k));
      byName.set(k, p);
    }
    return p;
  }

  private async load(engine: ContainerEngine, rec: ContainerImageRecord): Promise<EnsuredImage> {
    const have = await this.loadedAs(engine, rec);
    if (have) return have;
    let refs: string[];
    try {
      const { body } = await this.blobs.getObject(this.bucket, rec.key);
      refs = await engine.loadImage(Readable.from(body, { objectMode: false }));
    } catch (err) {
      const e = ThocError.from(err);
      if (isMissingBlob(err)) throw new ThocError("data_loss", `container image ${rec.name}: its archive is missing from the object store; import it again (thoc-node ct image import ${rec.name} FILE --replace)`, { image: rec.name }, { cause: err });
      throw new ThocError(e.code, `container image ${rec.name}: loading it into the engine failed: ${e.message}`, { ...e.details, image: rec.name }, { cause: err });
    }
    const ref = refs[0] ?? rec.refs[0] ?? rec.imageId;
    const id = (await engine.imageId(ref)) ?? rec.imageId;
    return { name: rec.name, ref, imageId: id };
  }

  /** The engine already holds this very image (same config digest when the archive named one). */
  private async loadedAs(engine: ContainerEngine, rec: ContainerImageRecord): Promise<EnsuredImage | undefined> {
    for (const ref of [...rec.refs, ...(rec.imageId ? [rec.imageId] : [])]) {
      const id = await engine.imageId(ref);
      if (id && (!rec.imageId || stripId(id) === stripId(rec.imageId))) return { name: rec.name, ref, imageId: id };
    }
    return undefined;
  }
}

/**
 * The container manager's `ensureImage(ref, auth?)`: an imported image is
 * loaded from the bucket; anything else is used when the engine has it, else
 * pulled. Returns the engine's image id, which the container must be created
 * from: the engine knows an imported image by the archive's own references
 * (RepoTags), not by the name it was imported as.
 */
export function imageEnsurer(store: ContainerImageStore, engine: ContainerEngine): (ref: string, auth?: { username: string; password: string }) => Promise<string> {
  return async (ref, auth) => {
    const imported = await store.ensure(engine, ref);
    if (imported) return imported.imageId || imported.ref;
    const have = await engine.imageId(ref);
    if (have) return have;
    try {
      await engine.pullImage(ref, auth);
    } catch (err) {
      const e = ThocError.from(err);
      const hint = canonicalImageName(ref) ? ` (no imported image ${ref} either: thoc-node ct image list)` : "";
      throw new ThocError(e.code, `image ${ref}: ${e.message}${hint}`, { ...e.details, image: ref }, { cause: err });
    }
    const id = await engine.imageId(ref);
    if (!id) throw new ThocError("not_found", `image ${ref}: pulled, but the engine does not list it`, { image: ref });
    return id;
  };
}
