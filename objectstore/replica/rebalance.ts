/**
 * Background upkeep of a node's replicas after the ring changed:
 *  - rebalance: records this node holds but no longer owns (a node joined and
 *    took over part of the arc, or N shrank) are dropped here only once all
 *    current owners have them. When an owner already holds the version, the
 *    owners lacking it pull it from there by anti-entropy (each copies it
 *    once); this node copies only records no owner holds, so it and the
 *    owners' own repair do not both send the same replica;
 *  - tombstone expiry: tombstones older than objectstore.tombstoneGrace are
 *    dropped, once every replica has had the chance to see them.
 */
import { ThocError } from "../../errors/index.js";
import { decodeHlc } from "../../cluster/index.js";
import type { RateLimiter } from "../../cluster/index.js";
import { knownWrite, type PutOutcome, type ReplicaRecord, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import { placementKey, type Ring } from "./ring.js";

export interface RebalanceTarget {
  head(bucket: string, key: string): Promise<ReplicaRecord | undefined>;
  put(w: ReplicaWrite): Promise<PutOutcome>;
  delete(bucket: string, key: string, version: string): Promise<PutOutcome>;
}

export interface RebalanceOptions {
  self: string;
  local: ReplicaStore;
  ring: Ring;
  n: number;
  target: (nodeId: string) => RebalanceTarget;
  limiter: RateLimiter;
  /** Keys moved at once (latency-bound on small objects; the limiter still caps bytes). */
  concurrency?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface RebalanceStats {
  misplaced: number;
  copied: number;
  dropped: number;
  kept: number;
}

export async function rebalance(o: RebalanceOptions): Promise<RebalanceStats> {
  const stats: RebalanceStats = { misplaced: 0, copied: 0, dropped: 0, kept: 0 };
  const misplaced: ReplicaRecord[] = [];
  for await (const r of o.local.list({ start: 0, end: 0, whole: true })) {
    if (!o.ring.preferenceList(placementKey(r.bucket, r.key), o.n).includes(o.self)) misplaced.push(r);
  }
  stats.misplaced = misplaced.length;
  const move = async (r: ReplicaRecord): Promise<void> => {
    const owners = o.ring.preferenceList(placementKey(r.bucket, r.key), o.n);
    let confirmed = 0;
    const held = new Map<string, ReplicaRecord | undefined>();
    try {
      for (const id of owners) held.set(id, await o.target(id).head(r.bucket, r.key));
    } catch (err) {
      o.log?.warn({ bucket: r.bucket, key: r.key, err: ThocError.from(err).message }, "object store: rebalance: owner unreachable, keeping our copy");
      stats.kept++;
      return;
    }
    // An owner with this version (or newer) is where the others repair from.
    const sourced = [...held.values()].some((t) => t !== undefined && t.version >= r.version);
    for (const id of owners) {
      try {
        const t = o.target(id);
        const theirs = held.get(id);
        if (!theirs || theirs.version < r.version) {
          if (sourced) break;
          if (r.tombstone) {
            await o.limiter.take(256);
            await t.delete(r.bucket, r.key, r.version);
          } else {
            const got = await o.local.get(r.bucket, r.key);
            if (!got || got.record.version !== r.version) break; // replaced meanwhile: next round
            await t.put(knownWrite(got.record, o.limiter.pace(got.body)));
          }
          stats.copied++;
        }
        confirmed++;
      } catch (err) {
        o.log?.warn({ node: id, bucket: r.bucket, key: r.key, err: ThocError.from(err).message }, "object store: rebalance: owner unreachable, keeping our copy");
        break;
      }
    }
    // Only when every owner has it: a copy we drop early could be the last one.
    if (confirmed === owners.length && owners.length > 0 && (await o.local.drop(r.bucket, r.key, r.version))) stats.dropped++;
    else stats.kept++;
  };
  let next = 0;
  const worker = async () => { while (next < misplaced.length) await move(misplaced[next++]!); };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 8) }, worker));
  if (stats.misplaced) o.log?.info({ ...stats }, "object store: rebalanced replicas after a ring change");
  return stats;
}

/** Drops tombstones whose version is older than graceMs; returns how many. */
export async function expireTombstones(store: ReplicaStore, graceMs: number, now: number = Date.now()): Promise<number> {
  const old: ReplicaRecord[] = [];
  for await (const r of store.list({ start: 0, end: 0, whole: true })) {
    if (r.tombstone && decodeHlc(r.version).physical < now - graceMs) old.push(r);
  }
  let n = 0;
  for (const r of old) if (await store.drop(r.bucket, r.key, r.version)) n++;
  return n;
}
