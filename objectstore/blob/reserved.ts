/**
 * A bucket the node keeps for itself (VM images, container images: vm/ and
 * container/ each hold one), through the blob store seam. It belongs to an
 * internal owner no S3 key has by default, so S3 users neither list nor touch
 * it (S3 access is by owner). An entry `<name>` exists when its JSON record
 * `<name>/record.json` does; its other objects sit beside it under `<name>/`
 * and are the caller's to name. The record is written last and deleted
 * first, so a cut-short import or delete never leaves a half entry visible.
 */
import { ThocError } from "../../errors/index.js";
import { isBlobError } from "./errors.js";
import type { BlobStore } from "./types.js";

const RECORD = "record.json";

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> { yield b; }

/** The object (or the bucket) is not there: what a missing entry looks like. */
export const isMissingBlob = (e: unknown): boolean => isBlobError(e, "NoSuchKey", "NoSuchBucket");

export class ReservedBucket<R extends { name: string }> {
  private ready?: Promise<void>;

  /** `purpose` names the contents in messages ("VM images"). */
  constructor(readonly blobs: BlobStore, readonly bucket: string, readonly owner: string, private readonly purpose: string) {}

  /** Creates the bucket (idempotent); refuses one an S3 user took first rather than trust its contents. */
  ensure(): Promise<void> {
    this.ready ??= (async () => {
      try {
        await this.blobs.createBucket(this.bucket, this.owner);
      } catch (err) {
        if (!isBlobError(err, "BucketAlreadyExists")) throw err;
        const b = await this.blobs.headBucket(this.bucket);
        throw new ThocError("failed_precondition", `the object store bucket ${this.bucket} is reserved for ${this.purpose} but belongs to S3 owner ${b.owner}: empty and delete it with that owner's key (aws s3 rb s3://${this.bucket} --force), then retry`, { bucket: this.bucket }, { cause: err });
      }
    })();
    this.ready.catch(() => { this.ready = undefined; });
    return this.ready;
  }

  /** The entry's record; undefined when it has none (or the bucket is gone). Never reads a bucket an S3 user owns. */
  async read(name: string): Promise<R | undefined> {
    await this.ensure();
    try {
      const { body } = await this.blobs.getObject(this.bucket, `${name}/${RECORD}`);
      const bufs: Buffer[] = [];
      for await (const c of body) bufs.push(Buffer.from(c));
      return JSON.parse(Buffer.concat(bufs).toString("utf8")) as R;
    } catch (err) {
      if (isMissingBlob(err)) return undefined;
      throw err;
    }
  }

  /** Writes the record: from now on the entry exists (or is the new one). */
  async write(rec: R): Promise<void> {
    await this.blobs.putObject({
      bucket: this.bucket, key: `${rec.name}/${RECORD}`, body: once(Buffer.from(JSON.stringify(rec, null, 2))),
      headers: { contentType: "application/json" }, userMeta: {}, expect: {},
    });
  }

  /** Deletes the record: from now on the entry does not exist; its other objects are the caller's to delete. */
  async unlink(name: string): Promise<void> {
    await this.blobs.deleteObject(this.bucket, `${name}/${RECORD}`);
  }

  /** Every entry's record, by name; `read` reads one (the caller's own, which may refuse names it does not accept). */
  async list(read: (name: string) => Promise<R | undefined> = (n) => this.read(n)): Promise<R[]> {
    await this.ensure();
    const names: string[] = [];
    let after: string | undefined;
    try {
      for (;;) {
        const r = await this.blobs.listObjects({ bucket: this.bucket, delimiter: "/", after, maxKeys: 1000 });
        names.push(...r.commonPrefixes.map((p) => p.slice(0, -1)));
        if (!r.isTruncated || !r.nextAfter) break;
        after = r.nextAfter;
      }
    } catch (err) {
      if (isMissingBlob(err)) return [];
      throw err;
    }
    const recs: (R | undefined)[] = await Promise.all(names.map((n) => read(n)));
    return recs.filter((r): r is R => r !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Stores `body` at `key`, checked by the store as it writes: a body whose
   * size or SHA-256 (hex) differs from the one given is refused before the
   * object exists (IncompleteBody, BadDigest). The SHA-256 is also kept in
   * the object's user metadata.
   */
  async put(key: string, body: AsyncIterable<Uint8Array>, contentType: string, check: { size?: number; sha256?: string } = {}): Promise<void> {
    const { size, sha256 } = check;
    await this.blobs.putObject({
      bucket: this.bucket, key, body,
      headers: { contentType },
      userMeta: sha256 ? { sha256 } : {},
      expect: { ...(size !== undefined ? { size } : {}), ...(sha256 ? { checksums: { sha256: Buffer.from(sha256, "hex").toString("base64") } } : {}) },
    });
  }
}
