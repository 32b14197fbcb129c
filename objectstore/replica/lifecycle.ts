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
import { currentExpiry, needsTags, uploadAbortAt, type LifecycleRule } from "../blob/index.js";
import { isManifest, storedOf } from "./blob-meta.js";
import { UPLOAD_PREFIX } from "./blob-multipart.js";
import type { Coordinator, CoordinatorLog } from "./coordinator.js";
import type { ReplicaRecord, ReplicaStore } from "./replica-store.js";
import { placementKey, type Ring } from "./ring.js";

export interface LifecycleWorkerOptions {
  self: string;
  /** This node's replicas. */
  store: ReplicaStore;
  coordinator: Coordinator;
  ring: () => Ring;
  isUp: (nodeId: string) => boolean;
  /** Buckets that have lifecycle rules, with the rules (read from the replicated bucket table). */
  rules: () => Promise<{ bucket: string; rules: LifecycleRule[] }[]>;
  /** Aborts an upload the way AbortMultipartUpload does (upload record and parts). */
  abortUpload: (bucket: string, key: string, uploadId: string) => Promise<void>;
  /** The object's current tags (side records included), for rules that filter on tags. */
  tagsOf?: (bucket: string, key: string) => Promise<Record<string, string> | undefined>;
  /** Upper bound on deletes and aborts per second on this node. */
  deletesPerSecond: number;
  /** The lifecycle clock (tests advance it by days); default Date.now. */
  now?: () => number;
  log?: CoordinatorLog;
}

export interface LifecycleStats {
  /** Keys this node acts for that were looked at. */
  examined: number;
  expired: number;
  aborted: number;
  failed: number;
}

export class LifecycleWorker {
  private running?: Promise<LifecycleStats>;
  readonly totals = { passes: 0, expired: 0, aborted: 0, failed: 0 };
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
    const st: LifecycleStats = { examined: 0, expired: 0, aborted: 0, failed: 0 };
    for (const { bucket, rules } of await this.o.rules()) {
      const live = rules.filter((r) => r.enabled);
      if (!live.length) continue;
      if (live.some((r) => r.expiration && (r.expiration.days !== undefined || r.expiration.date !== undefined))) await this.expireCurrent(bucket, live, st);
      if (live.some((r) => r.abortIncompleteMultipartUpload)) await this.abortUploads(bucket, live, st);
    }
    this.totals.passes++;
    this.totals.expired += st.expired;
    this.totals.aborted += st.aborted;
    this.totals.failed += st.failed;
    if (st.expired || st.aborted || st.failed) this.o.log?.info({ ...st }, "object store: lifecycle pass");
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

  private async act(st: LifecycleStats, what: "expired" | "aborted", where: Record<string, string>, fn: () => Promise<unknown>): Promise<void> {
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
    const prefs = ring.preferenceList(placementKey(bucket, key), this.o.coordinator.quorum(ring).n);
    return prefs.find((id) => id === this.o.self || this.o.isUp(id)) === this.o.self;
  }
}

/** Every bucket's lifecycle rules from the replicated bucket table (its "<bucket>\u0000lifecycle" entries). */
export async function lifecycleRules(buckets: ClusterTable): Promise<{ bucket: string; rules: LifecycleRule[] }[]> {
  const out: { bucket: string; rules: LifecycleRule[] }[] = [];
  for (const e of await buckets.list()) {
    const i = e.key.indexOf("\u0000");
    if (i < 0 || e.key.slice(i + 1) !== "lifecycle") continue;
    try {
      out.push({ bucket: e.key.slice(0, i), rules: JSON.parse(e.value) as LifecycleRule[] });
    } catch {
      // A section that does not parse was never written by this code: skip it rather than stop every bucket's rules.
    }
  }
  return out;
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
