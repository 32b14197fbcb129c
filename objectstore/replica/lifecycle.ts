/**
 * The lifecycle worker: applies buckets' lifecycle rules (objectstore/blob
 * lifecycle.ts) to the records this node holds. Like the part sweeper, each
 * node walks only its own replicas and acts only on keys whose preference
 * list starts with it among the live nodes, so exactly one node acts on a
 * given key (a node that takes over after a failure acts on what the failed
 * one did not get to; nothing is deleted twice because deletes are
 * idempotent and versioned).
 *
 * Deletes never race a client: an expired object is deleted with a tombstone
 * placed just after the version the worker looked at (coordinator.delete
 * `after`), so a PUT that landed in between is newer and stays. Uploads are
 * aborted through the blob store, as AbortMultipartUpload does.
 *
 * Deletes are paced to `deletesPerSecond` per node so that a rule matching a
 * million objects does not starve clients of the disk.
 */
import type { ClusterTable } from "../../cluster/index.js";
import { ThocError } from "../../errors/index.js";
import { currentExpiry, needsTags, noncurrentDue, removesLoneMarker, uploadAbortAt, type LifecycleRule, type BlobStore, type NoncurrentVersion, type VersionEntry } from "../blob/index.js";
import { isManifest, storedOf } from "./blob-meta.js";
import { UPLOAD_PREFIX } from "./blob-multipart.js";
import type { Coordinator, CoordinatorLog } from "./coordinator.js";
import type { ReplicaRecord, ReplicaStore } from "./replica-store.js";
import { actsFor, type Ring } from "./ring.js";

export interface LifecycleWorkerOptions {
  self: string;
  /** This node's replicas. */
  store: ReplicaStore;
  coordinator: Coordinator;
  ring: () => Ring;
  isUp: (nodeId: string) => boolean;
  /** Buckets that have lifecycle rules, with the rules and whether the bucket has (had) versioning (read from the replicated bucket table). */
  rules: () => Promise<LifecycleBucket[]>;
  /** Aborts an upload the way AbortMultipartUpload does (upload record and parts). */
  abortUpload: (bucket: string, key: string, uploadId: string) => Promise<void>;
  /** The object's current tags (side records included), for rules that filter on tags. */
  tagsOf?: (bucket: string, key: string) => Promise<Record<string, string> | undefined>;
  /**
   * Versioned buckets: the key's versions, newest first (ListObjectVersions);
   * deleting one version for good; expiring the current one (a delete
   * marker, as DeleteObject does).
   */
  versions?: {
    list: (bucket: string, key: string) => Promise<VersionEntry[]>;
    remove: (bucket: string, key: string, versionId: string) => Promise<unknown>;
    expire: (bucket: string, key: string) => Promise<unknown>;
  };
  /** Upper bound on deletes and aborts per second on this node. */
  deletesPerSecond: number;
  /** The lifecycle clock (tests advance it by days); default Date.now. */
  now?: () => number;
  log?: CoordinatorLog;
}

export interface LifecycleBucket {
  bucket: string;
  rules: LifecycleRule[];
  versioned?: boolean;
}

export interface LifecycleStats {
  /** Keys this node acts for that were looked at. */
  examined: number;
  expired: number;
  /** Noncurrent versions and lone delete markers removed (versioned buckets). */
  removed: number;
  aborted: number;
  failed: number;
}

export class LifecycleWorker {
  private running?: Promise<LifecycleStats>;
  readonly totals = { passes: 0, expired: 0, removed: 0, aborted: 0, failed: 0 };
  private readonly now: () => number;
  private nextSlot = 0;

  constructor(private readonly o: LifecycleWorkerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** One pass over every bucket with rules; a call while one runs joins it. */
  run(): Promise<LifecycleStats> {
    this.running ??= this.pass().finally(() => { this.running = undefined; });
    return this.running;
  }

  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  private async pass(): Promise<LifecycleStats> {
    const st: LifecycleStats = { examined: 0, expired: 0, removed: 0, aborted: 0, failed: 0 };
    for (const { bucket, rules, versioned } of await this.o.rules()) {
      const live = rules.filter((r) => r.enabled);
      if (!live.length) continue;
      if (versioned) {
        if (live.some((r) => r.expiration || r.noncurrentVersionExpiration)) await this.versionedKeys(bucket, live, st);
      } else if (live.some((r) => r.expiration && (r.expiration.days !== undefined || r.expiration.date !== undefined))) {
        await this.expireCurrent(bucket, live, st);
      }
      if (live.some((r) => r.abortIncompleteMultipartUpload)) await this.abortUploads(bucket, live, st);
    }
    this.totals.passes++;
    this.totals.expired += st.expired;
    this.totals.removed += st.removed;
    this.totals.aborted += st.aborted;
    this.totals.failed += st.failed;
    if (st.expired || st.removed || st.aborted || st.failed) this.o.log?.info({ ...st }, "object store: lifecycle pass");
    return st;
  }

  private async expireCurrent(bucket: string, rules: LifecycleRule[], st: LifecycleStats): Promise<void> {
    const tags = needsTags(rules);
    const now = this.now();
    for await (const r of this.o.store.listBucket(bucket, { prefix: "" })) {
      if (r.tombstone || !this.acts(bucket, r.key)) continue;
      st.examined++;
      const subject = await this.subject(bucket, r, tags);
      if (!subject) continue;
      const at = currentExpiry(rules, subject);
      if (at === undefined || at > now) continue;
      await this.act(st, "expired", { bucket, key: r.key }, () => this.o.coordinator.delete(bucket, r.key, { after: r.version }));
    }
  }

  /**
   * A versioned bucket's keys (the records at plain keys: pointers to the
   * latest version, or pre-versioning null versions). Expiring the current
   * version writes a delete marker, as S3 does; noncurrent versions past
   * their days go for good; a delete marker left with no version behind it
   * goes when a rule says ExpiredObjectDeleteMarker.
   */
  private async versionedKeys(bucket: string, rules: LifecycleRule[], st: LifecycleStats): Promise<void> {
    const v = this.o.versions;
    if (!v) return;
    const tags = needsTags(rules);
    const now = this.now();
    const noncurrent = rules.some((r) => r.noncurrentVersionExpiration);
    const markers = rules.some((r) => r.expiration?.expiredObjectDeleteMarker);
    for await (const r of this.o.store.listBucket(bucket, { prefix: "" })) {
      if (r.tombstone || !this.acts(bucket, r.key)) continue;
      st.examined++;
      let m;
      try { m = storedOf(r); } catch { continue; }
      const subject = m.deleteMarker ? { key: r.key, size: 0, lastModified: m.lastModified } : await this.subject(bucket, r, tags);
      if (!subject) continue;
      if (!m.deleteMarker) {
        const at = currentExpiry(rules, subject);
        if (at !== undefined && at <= now) await this.act(st, "expired", { bucket, key: r.key }, () => v.expire(bucket, r.key));
      }
      if (!noncurrent && !(markers && m.deleteMarker)) continue;
      let versions: VersionEntry[];
      try {
        versions = await v.list(bucket, r.key);
      } catch (err) {
        st.failed++;
        this.o.log?.warn({ bucket, key: r.key, err: ThocError.from(err).message }, "object store: lifecycle: cannot list a key's versions; the next pass tries again");
        continue;
      }
      if (noncurrent) {
        // A version stopped being current when the next newer one was written.
        const old: NoncurrentVersion[] = [];
        for (let i = 1; i < versions.length; i++) {
          const x = versions[i]!;
          old.push({ key: x.key, size: x.size, versionId: x.versionId, noncurrentSince: versions[i - 1]!.lastModified, ...(x.tags ? { tags: x.tags } : {}) });
        }
        const due = noncurrentDue(rules, old, now);
        for (const x of due) await this.act(st, "removed", { bucket, key: r.key, versionId: x.versionId }, () => v.remove(bucket, r.key, x.versionId));
        if (due.length) versions = versions.filter((x) => !due.some((d) => d.versionId === x.versionId));
      }
      const latest = versions[0];
      if (markers && versions.length === 1 && latest?.deleteMarker && removesLoneMarker(rules, subject)) {
        await this.act(st, "removed", { bucket, key: r.key, versionId: latest.versionId }, () => v.remove(bucket, r.key, latest.versionId));
      }
    }
  }

  private async abortUploads(bucket: string, rules: LifecycleRule[], st: LifecycleStats): Promise<void> {
    const now = this.now();
    for await (const r of this.o.store.listBucket(bucket, { prefix: UPLOAD_PREFIX })) {
      if (r.tombstone || !this.acts(bucket, r.key)) continue;
      st.examined++;
      const up = parseUpload(r);
      if (!up) continue;
      const at = uploadAbortAt(rules, up.key, up.initiated);
      if (at === undefined || at > now) continue;
      await this.act(st, "aborted", { bucket, key: up.key, uploadId: up.uploadId }, async () => {
        try {
          await this.o.abortUpload(bucket, up.key, up.uploadId);
        } catch (err) {
          // Completed or aborted meanwhile: nothing left to do.
          if (ThocError.from(err).code !== "not_found") throw err;
        }
      });
    }
  }

  private async subject(bucket: string, r: ReplicaRecord, withTags: boolean) {
    let m;
    try {
      m = storedOf(r);
    } catch {
      return undefined;
    }
    const size = isManifest(m) ? (m.size ?? 0) : r.size;
    let tags = m.tags;
    if (withTags && this.o.tagsOf) {
      try {
        tags = await this.o.tagsOf(bucket, r.key);
      } catch {
        return undefined;
      }
    }
    return { key: r.key, size, lastModified: m.lastModified, ...(tags ? { tags } : {}) };
  }

  private async act(st: LifecycleStats, what: "expired" | "removed" | "aborted", where: Record<string, string>, fn: () => Promise<unknown>): Promise<void> {
    await this.pace();
    try {
      await fn();
      st[what]++;
    } catch (err) {
      st.failed++;
      this.o.log?.warn({ ...where, err: ThocError.from(err).message }, `object store: lifecycle: could not act (${what}); the next pass tries again`);
    }
  }

  /** Spaces actions 1/deletesPerSecond apart (wall clock, not the lifecycle clock). */
  private async pace(): Promise<void> {
    const gap = 1000 / Math.max(this.o.deletesPerSecond, 0.001);
    const t = Date.now();
    const at = Math.max(t, this.nextSlot);
    this.nextSlot = at + gap;
    if (at > t) await new Promise((r) => setTimeout(r, at - t));
  }

  /** This node is the first live node of the key's preference list. */
  private acts(bucket: string, key: string): boolean {
    const ring = this.o.ring();
    return actsFor(ring, this.o.coordinator.quorum(ring).n, bucket, key, this.o.self, this.o.isUp);
  }
}

/** Every bucket's lifecycle rules from the replicated bucket table (its "<bucket>\u0000lifecycle" entries). */
export async function lifecycleRules(buckets: ClusterTable): Promise<LifecycleBucket[]> {
  const out: LifecycleBucket[] = [];
  // This node's copy, not a pull from every peer: a background pass every lifecycleInterval needs no
  // read-your-writes (rules reach every node when put, and by the sync rounds), and a pull per pass
  // was most of an idle cluster's table calls.
  const entries = buckets.table.live();
  const versioned = new Set(entries.filter((e) => e.key.endsWith("\u0000versioning")).map((e) => e.key.slice(0, -"\u0000versioning".length)));
  for (const e of entries) {
    const i = e.key.indexOf("\u0000");
    if (i < 0 || e.key.slice(i + 1) !== "lifecycle") continue;
    try {
      const bucket = e.key.slice(0, i);
      out.push({ bucket, rules: JSON.parse(e.value) as LifecycleRule[], ...(versioned.has(bucket) ? { versioned: true } : {}) });
    } catch {
      // A section that does not parse was never written by this code: skip it rather than stop every bucket's rules.
    }
  }
  return out;
}

/** LifecycleWorkerOptions.versions over a blob store: one key's versions (every page), removal by id, expiry by delete marker. */
export function lifecycleVersions(blobs: Pick<BlobStore, "listObjectVersions" | "deleteObject">): NonNullable<LifecycleWorkerOptions["versions"]> {
  return {
    async list(bucket, key) {
      const out: VersionEntry[] = [];
      let keyMarker: string | undefined, versionIdMarker: string | undefined;
      for (;;) {
        const r = await blobs.listObjectVersions({ bucket, prefix: key, maxKeys: 1000, ...(keyMarker !== undefined ? { keyMarker } : {}), ...(versionIdMarker !== undefined ? { versionIdMarker } : {}) });
        out.push(...r.versions.filter((v) => v.key === key));
        // Keys sort after their prefix: once a page goes past this key, the rest are other keys.
        if (!r.isTruncated || r.versions.some((v) => v.key !== key)) return out;
        keyMarker = r.nextKeyMarker;
        versionIdMarker = r.nextVersionIdMarker;
      }
    },
    remove: (bucket, key, versionId) => blobs.deleteObject(bucket, key, { versionId }),
    expire: (bucket, key) => blobs.deleteObject(bucket, key),
  };
}

function parseUpload(r: ReplicaRecord): { key: string; uploadId: string; initiated: number } | undefined {
  try {
    const u = JSON.parse(r.meta) as { key?: unknown; uploadId?: unknown; initiated?: unknown };
    if (typeof u.key !== "string" || typeof u.uploadId !== "string" || typeof u.initiated !== "number") return undefined;
    return { key: u.key, uploadId: u.uploadId, initiated: u.initiated };
  } catch {
    return undefined;
  }
}
