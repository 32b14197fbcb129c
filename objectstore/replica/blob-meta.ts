/**
 * What the replicated blob store and its multipart half (blob-multipart.ts)
 * share: the backend they run on, the object metadata stored in a replica
 * record's meta, and the verifying pass over a body.
 */
import { ThocError } from "../../errors/index.js";
import {
  BodyHasher, ChunkHasher, blobError, verifyDigests,
  type BodyDigests, type BodyExpectations, type ChecksumAlgorithm, type ChunkDigests, type ObjectMeta,
} from "../blob/index.js";
import type { ClusterTable } from "../../cluster/index.js";
import type { Coordinator } from "./coordinator.js";
import type { MergedList } from "./listing.js";
import { INTERNAL_KEY_PREFIX, type ReplicaRecord } from "./replica-store.js";

export interface ReplicatedBackend {
  readonly coordinator: Coordinator;
  readonly buckets: ClusterTable;
  /** Merged listing of a bucket over the reachable nodes; unavailable when too few are reachable to be complete. */
  listBucket(bucket: string, opts: { prefix?: string; after?: string }): Promise<MergedList>;
  /**
   * Every record under a prefix (newest of each key, tombstones included), in
   * key order, from just enough nodes to be complete, each answering in one
   * call (ReplicationNode.gather): for small bounded sets. Absent: listBucket.
   */
  gather?(bucket: string, prefix: string, opts: { after?: string; limit: number }): Promise<ReplicaRecord[]>;
  /** Throws (unavailable) while this node cannot coordinate requests yet. */
  ready?: () => void;
}

/** What a record's meta holds: ObjectMeta without what the record itself says, plus internal fields. */
export type StoredMeta = Omit<ObjectMeta, "bucket" | "key" | "version" | "size"> & {
  /** The object's size when the record's body is not the object (a multipart manifest): listings and HEAD read it here. */
  size?: number;
  /**
   * Set on objects made by CompleteMultipartUpload: id and sig (the client's
   * "n:etag" list) make a retried Complete idempotent and tell the part
   * sweeper which parts the object still uses; `parts` (their count) says
   * the body is a manifest of part references (blob-manifest.ts), not the bytes.
   */
  mpu?: { id: string; sig: string; parts?: number };
  /** Set on the plain record of a versioned bucket's key: the sort id of the latest version's record (blob-versions.ts). */
  vref?: string;
};

export function storedOf(rec: ReplicaRecord): StoredMeta {
  try {
    return JSON.parse(rec.meta) as StoredMeta;
  } catch {
    throw blobError("Corrupt", `object ${rec.bucket}/${rec.key}: stored metadata is not JSON`);
  }
}

/** True when the record's body is a multipart manifest rather than the object's bytes. */
export const isManifest = (m: StoredMeta): boolean => m.mpu?.parts !== undefined;

export function metaOf(rec: ReplicaRecord): ObjectMeta {
  const { mpu: _m, vref: _r, size, ...rest } = storedOf(rec);
  return { ...rest, bucket: rec.bucket, key: rec.key, version: rec.version, size: size ?? rec.size };
}

export function storedMeta(m: ObjectMeta | StoredMeta): string {
  const { bucket: _b, key: _k, version: _v, size: _s, ...rest } = m as ObjectMeta;
  return JSON.stringify(rest);
}

export { extrasOf } from "../blob/index.js";

export function checkKey(key: string): void {
  if (!key) throw blobError("InvalidArgument", "object key must not be empty");
  if (key.startsWith(INTERNAL_KEY_PREFIX) || key.startsWith("\u0000")) {
    throw blobError("InvalidArgument", "object keys may not start with U+0000 or U+0001 (reserved for the store's own records)", { key });
  }
  if (Buffer.byteLength(key) > 1024) throw blobError("KeyTooLong", "object key is longer than 1024 bytes");
}

/** Bodies announced at least this large hash on worker threads (blob/hash-chunks.ts); smaller ones inline. */
const OFFLOAD_MIN = 4 << 20;

/**
 * Passes a body through while hashing it; verifies the client's promises
 * before it ends, so a bad body errors the stream instead of completing it.
 * A large body also gets its SHA-256 here, on the hashing workers, for the
 * replicas' trailer (sha256 is then defined: hand it to coordinator.put so
 * the tee does not hash the body again on the event loop).
 */
export function verifying(body: AsyncIterable<Uint8Array>, expect: BodyExpectations, algs: ChecksumAlgorithm[]): { body: AsyncIterable<Uint8Array>; digests(): BodyDigests; sha256?: () => string } {
  let out: ChunkDigests | undefined;
  const tooLong = (n: number) => {
    if (expect.size !== undefined && n > expect.size) {
      throw blobError("IncompleteBody", `the body is longer than the ${expect.size} bytes announced`, { expected: expect.size });
    }
  };
  async function* inline(): AsyncIterable<Uint8Array> {
    const h = new BodyHasher(algs);
    for await (const c of body) {
      h.update(c);
      tooLong(h.size);
      yield c;
    }
    const d = h.finish();
    verifyDigests(d, expect);
    out = d;
  }
  async function* offloaded(): AsyncIterable<Uint8Array> {
    const h = new ChunkHasher(algs, { sha256: true });
    let n = 0;
    try {
      for await (const c of body) {
        n += c.byteLength;
        tooLong(n);
        h.update(c);
        const wait = h.ready();
        if (wait) await wait;
        h.check();
        yield c;
      }
      const d = await h.finish();
      verifyDigests(d, expect);
      out = d;
    } finally {
      if (!out) h.abandon();
    }
  }
  const whole = () => {
    if (!out) throw new ThocError("data_loss", "the body did not arrive whole; nothing stored");
    return out;
  };
  const large = (expect.size ?? 0) >= OFFLOAD_MIN;
  return {
    body: large ? offloaded() : inline(),
    digests: whole,
    ...(large ? { sha256: () => whole().sha256! } : {}),
  };
}
