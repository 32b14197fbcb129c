/**
 * Collects multipart parts nothing uses any more. A completed object only
 * references its parts (blob-manifest.ts), so whatever replaces or deletes
 * the object — a PutObject, DeleteObject(s) or another Complete, through any
 * node — leaves its parts behind; Complete and Abort on a node that then
 * fails can leave some too. Rather than make every write path look up what
 * it replaces (a read before every PUT, and still racy across nodes), each
 * node periodically walks the part records it holds and asks the cluster,
 * for each upload, two quorum questions in this order:
 *
 *  1. is the upload record still live? Then it is in progress: keep its parts;
 *  2. otherwise, does the object's current version name this upload and part?
 *
 * The order matters: Complete writes the object before it tombstones the
 * upload, so a sweeper that sees the tombstone also sees the object (R + W > N).
 * A part that is unreferenced is deleted only when it has been seen so on two
 * sweeps at least `graceMs` apart (a GET streaming the old version has that
 * long to finish), and only by the first live node of the part's preference
 * list, so one node acts per part. A node that restarts or takes over starts
 * its own grace period: collection is delayed, never premature.
 */
import { ThocError } from "../../errors/index.js";
import { parsePartKey } from "./blob-manifest.js";
import { isManifest, storedOf } from "./blob-meta.js";
import { uploadKey, type StoredPart } from "./blob-multipart.js";
import { parseVersionKey, versionsPrefix } from "./blob-versions.js";
import type { MergedList } from "./listing.js";
import type { Coordinator, CoordinatorLog } from "./coordinator.js";
import type { ReplicaRecord, ReplicaStore } from "./replica-store.js";
import { actsFor, type Ring } from "./ring.js";

export interface PartSweeperOptions {
  self: string;
  /** This node's replicas: the part records it holds. */
  store: ReplicaStore;
  coordinator: Coordinator;
  ring: () => Ring;
  isUp: (nodeId: string) => boolean;
  /** The cluster's bucket names. */
  buckets: () => Promise<string[]>;
  /**
   * The merged listing of a bucket (ReplicationNode.listBucket): with it, a
   * part that a version record of a versioned bucket still references is kept
   * (without it only the object's current version counts).
   */
  listBucket?: (bucket: string, opts: { prefix?: string }) => Promise<MergedList>;
  /** How long a part must stay unreferenced before it is deleted. */
  graceMs: number;
  log?: CoordinatorLog;
  now?: () => number;
}

export interface SweepStats {
  /** Uploads whose parts this node acts for and asked about. */
  uploads: number;
  /** Parts found unreferenced (deleted or waiting out the grace period). */
  unreferenced: number;
  deleted: number;
}

export class PartSweeper {
  /** Unreferenced parts (bucket, key, version) → when a sweep first saw them so. */
  private seen = new Map<string, number>();
  private running?: Promise<SweepStats>;
  readonly stats = { sweeps: 0, deleted: 0 };
  private readonly now: () => number;

  constructor(private readonly o: PartSweeperOptions) {
    this.now = o.now ?? Date.now;
  }

  /** One pass over every bucket; a call while one runs joins it. */
  sweep(): Promise<SweepStats> {
    this.running ??= this.pass().finally(() => { this.running = undefined; });
    return this.running;
  }

  /** Resolves when no sweep is running (for shutdown). */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  private async pass(): Promise<SweepStats> {
    const st: SweepStats = { uploads: 0, unreferenced: 0, deleted: 0 };
    const next = new Map<string, number>();
    for (const bucket of await this.o.buckets()) {
      let group: ReplicaRecord[] = [];
      let id = "";
      const flush = async () => {
        if (group.length) await this.sweepUpload(bucket, id, group, st, next);
        group = [];
      };
      for await (const r of this.o.store.listBucket(bucket, { prefix: "\u0001p/" })) {
        const p = parsePartKey(r.key);
        if (!p || r.tombstone || !this.acts(bucket, r.key)) continue;
        if (p.uploadId !== id) { await flush(); id = p.uploadId; }
        group.push(r);
      }
      await flush();
    }
    this.seen = next;
    this.stats.sweeps++;
    this.stats.deleted += st.deleted;
    return st;
  }

  /** This node is the first live node of the key's preference list. */
  private acts(bucket: string, key: string): boolean {
    const ring = this.o.ring();
    return actsFor(ring, this.o.coordinator.quorum(ring).n, bucket, key, this.o.self, this.o.isUp);
  }

  private async sweepUpload(bucket: string, uploadId: string, parts: ReplicaRecord[], st: SweepStats, next: Map<string, number>): Promise<void> {
    const objectKey = parts.map((r) => partMeta(r).objectKey).find((k) => k !== undefined);
    // Parts written before parts named their object: nothing can say whether they are used.
    if (objectKey === undefined) return;
    st.uploads++;
    let used: Set<number> | "all";
    try {
      used = await this.referenced(bucket, objectKey, uploadId);
    } catch (err) {
      this.o.log?.warn({ bucket, uploadId, err: ThocError.from(err).message }, "object store: part sweep: cannot tell whether an upload's parts are used; will ask again");
      for (const r of parts) { const k = seenKey(r); const t = this.seen.get(k); if (t !== undefined) next.set(k, t); }
      return;
    }
    if (used === "all") return;
    const now = this.now();
    let deleted = 0;
    for (const r of parts) {
      if (used.has(parsePartKey(r.key)!.partNumber)) continue;
      st.unreferenced++;
      const k = seenKey(r);
      const first = this.seen.get(k) ?? now;
      if (now - first < this.o.graceMs || !this.seen.has(k)) { next.set(k, first); continue; }
      try {
        await this.o.coordinator.delete(bucket, r.key, { after: r.version });
        deleted++;
      } catch (err) {
        next.set(k, first);
        this.o.log?.warn({ bucket, key: r.key, err: ThocError.from(err).message }, "object store: part sweep: deleting an unused part failed; will try again");
      }
    }
    st.deleted += deleted;
    if (deleted) this.o.log?.info({ bucket, uploadId, objectKey, deleted }, "object store: part sweep deleted parts no object uses");
  }

  /**
   * The part numbers the object uses from this upload — its current version
   * and, in a versioned bucket, any of its versions (blob-versions.ts; a
   * pointer carries its version's mpu) — or "all" while the upload is in progress.
   */
  private async referenced(bucket: string, key: string, uploadId: string): Promise<Set<number> | "all"> {
    const up = await this.o.coordinator.head(bucket, uploadKey(key, uploadId));
    if (up.record && !up.record.tombstone) return "all";
    const used = new Set<number>();
    const add = (r: ReplicaRecord | undefined) => {
      if (!r || r.tombstone) return;
      const m = storedOf(r);
      if (m.mpu?.id !== uploadId || !isManifest(m)) return;
      for (const e of m.mpu.sig.split(",")) used.add(Number(e.slice(0, e.indexOf(":"))));
    };
    add((await this.o.coordinator.head(bucket, key)).record);
    if (this.o.listBucket) {
      const list = await this.o.listBucket(bucket, { prefix: versionsPrefix(key) });
      try {
        for (let r = await list.next(); r; r = await list.next()) if (parseVersionKey(r.key)?.key === key) add(r);
      } finally {
        await list.close();
      }
    }
    return used;
  }
}

const seenKey = (r: ReplicaRecord) => `${r.bucket}\u0000${r.key}\u0000${r.version}`;

function partMeta(r: ReplicaRecord): StoredPart {
  try {
    return JSON.parse(r.meta) as StoredPart;
  } catch {
    return {} as StoredPart;
  }
}
