/**
 * Merkle-tree anti-entropy between this node and one replica peer, Dynamo
 * style: for every arc of the ring whose preference list holds both nodes,
 * compare digests of `parts` equal sub-arcs (one tree level, computed on
 * demand), descend into the sub-arcs that differ, and at the leaves exchange
 * record lists and copy the newer version each way. Only keys both nodes
 * should hold are compared, so a node never receives keys it does not own.
 * All transfers go through the rate limiter (objectstore.repairBytesPerSecond).
 */
import { ThocError } from "../../errors/index.js";
import { knownWrite, once, subRange, tombstoneRecord, type PosRange, type PutOutcome, type RangeDigest, type ReplicaRecord, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import { placementKey, type Ring } from "./ring.js";
import type { RateLimiter } from "../../cluster/index.js";

/** What anti-entropy needs of the other replica (Peer implements it). */
export interface RemoteReplica {
  readonly nodeId: string;
  digest(range: PosRange, parts: number): Promise<RangeDigest[]>;
  list(range: PosRange, opts?: { after?: { pos: number; pkey: string }; limit?: number }): AsyncIterable<ReplicaRecord>;
  get(bucket: string, key: string): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }>;
  put(w: ReplicaWrite): Promise<PutOutcome>;
  delete(bucket: string, key: string, version: string): Promise<PutOutcome>;
}

export interface AntiEntropyOptions {
  self: string;
  local: ReplicaStore;
  ring: Ring;
  /** Replicas per key (the effective N). */
  n: number;
  limiter: RateLimiter;
  /** Fan-out of each tree level. */
  parts?: number;
  /** A differing sub-arc with at most this many records is reconciled record by record. */
  leafSize?: number;
  maxDepth?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface AntiEntropyStats {
  arcs: number;
  digests: number;
  leaves: number;
  pushed: number;
  pulled: number;
  bytes: number;
}

export async function syncWithPeer(o: AntiEntropyOptions, peer: RemoteReplica): Promise<AntiEntropyStats> {
  const parts = o.parts ?? 16;
  const leafSize = o.leafSize ?? 64;
  const maxDepth = o.maxDepth ?? 8;
  const stats: AntiEntropyStats = { arcs: 0, digests: 0, leaves: 0, pushed: 0, pulled: 0, bytes: 0 };

  const compare = async (range: PosRange, depth: number): Promise<void> => {
    const [mine, theirs] = await Promise.all([o.local.digest(range, parts), peer.digest(range, parts)]);
    stats.digests++;
    for (let i = 0; i < parts; i++) {
      const a = mine[i]!;
      const b = theirs[i];
      if (!b) throw new ThocError("data_loss", `anti-entropy: ${peer.nodeId} answered ${theirs.length} digests for ${parts} parts`);
      if (a.hash === b.hash) continue;
      const sub = subRange(range, parts, i);
      if (Math.max(a.count, b.count) <= leafSize || depth >= maxDepth) await reconcile(sub);
      else await compare(sub, depth + 1);
    }
  };

  const reconcile = async (range: PosRange): Promise<void> => {
    stats.leaves++;
    const mine = new Map<string, ReplicaRecord>();
    for await (const r of o.local.list(range)) mine.set(placementKey(r.bucket, r.key), r);
    const theirs = new Map<string, ReplicaRecord>();
    for await (const r of peer.list(range)) theirs.set(placementKey(r.bucket, r.key), r);
    for (const [pk, r] of mine) {
      const t = theirs.get(pk);
      if (!t || t.version < r.version) await push(r);
    }
    for (const [pk, t] of theirs) {
      const r = mine.get(pk);
      if (!r || r.version < t.version) await pull(t);
    }
  };

  const push = async (r: ReplicaRecord): Promise<void> => {
    if (r.tombstone) {
      await o.limiter.take(256);
      await peer.delete(r.bucket, r.key, r.version);
    } else {
      const got = await o.local.get(r.bucket, r.key);
      if (!got || got.record.version !== r.version) return; // replaced meanwhile: next round
      await peer.put(knownWrite(got.record, o.limiter.pace(got.body)));
      stats.bytes += r.size;
    }
    stats.pushed++;
  };

  const pull = async (t: ReplicaRecord): Promise<void> => {
    if (t.tombstone) {
      await o.limiter.take(256);
      await o.local.put(knownWrite(tombstoneRecord(t.bucket, t.key, t.version), once()));
    } else {
      const got = await peer.get(t.bucket, t.key);
      await o.local.put(knownWrite(got.record, o.limiter.pace(got.body)));
      stats.bytes += got.record.size;
    }
    stats.pulled++;
  };

  for (const seg of o.ring.segments()) {
    const owners = o.ring.preferenceAt(seg.point, o.n);
    if (!owners.includes(o.self) || !owners.includes(peer.nodeId)) continue;
    if (!seg.whole && seg.start === seg.end) continue;
    stats.arcs++;
    await compare({ start: seg.start, end: seg.end, whole: seg.whole }, 0);
  }
  if (stats.pushed || stats.pulled) o.log?.info({ peer: peer.nodeId, ...stats }, "object store: anti-entropy repaired replicas");
  return stats;
}

/** Whether a key at this position is one both nodes should hold (for tests and rebalancing). */
export function sharedBy(ring: Ring, n: number, pkey: string, a: string, b: string): boolean {
  const owners = ring.preferenceList(pkey, n);
  return owners.includes(a) && owners.includes(b);
}
