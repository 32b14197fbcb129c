/**
 * Merkle-tree anti-entropy between this node and one replica peer, Dynamo
 * style. The arcs of the ring whose preference list holds both nodes are
 * compared by their root digests in one call (DigestArcs; both sides answer
 * from one pass over their position index, or from a cache while nothing
 * changed), so a round with a peer that is in sync is a single request. Only
 * arcs whose roots differ are descended: `parts` equal sub-arcs per level
 * (DigestRange), down to leaves whose record lists are exchanged.
 *
 * Repair is pull-only: a node copies the records it lacks (or holds older)
 * from the peer, through its RepairPool (a bounded number of transfers at
 * once, paced by objectstore.repairBytesPerSecond); what the peer lacks, the
 * peer pulls in its own round. So each missing replica is copied by exactly
 * one node, the one missing it, however many peers notice the gap: a push
 * from every holder would race the others (see docs/objectstore.md, "Repair").
 * Only keys both nodes should hold are compared, so a node never receives
 * keys it does not own.
 */
import { ThocError } from "../../errors/index.js";
import { knownWrite, once, subRange, tombstoneRecord, type PosRange, type RangeDigest, type ReplicaRecord, type ReplicaStore } from "./replica-store.js";
import { RepairPool } from "./repair.js";
import { placementKey, type Ring } from "./ring.js";
import type { RateLimiter } from "../../cluster/index.js";

/** What anti-entropy needs of the other replica (Peer implements it). */
export interface RemoteReplica {
  readonly nodeId: string;
  digestArcs(arcs: readonly PosRange[]): Promise<RangeDigest[]>;
  digest(range: PosRange, parts: number): Promise<RangeDigest[]>;
  list(range: PosRange, opts?: { after?: { pos: number; pkey: string }; limit?: number }): AsyncIterable<ReplicaRecord>;
  /** The record and its body, checked against the record's size and sha256 as it is read (the body throws at its end on a mismatch). */
  get(bucket: string, key: string): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }>;
}

export interface AntiEntropyOptions {
  self: string;
  local: ReplicaStore;
  ring: Ring;
  /** Replicas per key (the effective N). */
  n: number;
  limiter: RateLimiter;
  /** This node's copies (shared with its other rounds, so a key is never copied twice at once). */
  repair?: RepairPool;
  /** Fan-out of each tree level. */
  parts?: number;
  /** A differing sub-arc with at most this many records is reconciled record by record. */
  leafSize?: number;
  maxDepth?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface AntiEntropyStats {
  /** Arcs both nodes hold, compared by their root digests in one call. */
  arcs: number;
  /** Of those, arcs whose roots differed (descended). */
  differing: number;
  /** Digest requests to the peer (1 when nothing differs). */
  digests: number;
  leaves: number;
  /** Records copied from the peer that changed the local replica. */
  pulled: number;
  bytes: number;
  /** Records the peer lacks or holds older: it pulls them in its own round. */
  behind: number;
}

export async function syncWithPeer(o: AntiEntropyOptions, peer: RemoteReplica): Promise<AntiEntropyStats> {
  const parts = o.parts ?? 16;
  const leafSize = o.leafSize ?? 64;
  const maxDepth = o.maxDepth ?? 8;
  const pool = o.repair ?? new RepairPool();
  const stats: AntiEntropyStats = { arcs: 0, differing: 0, digests: 0, leaves: 0, pulled: 0, bytes: 0, behind: 0 };
  const copies: Promise<void>[] = [];
  const failures: unknown[] = [];

  const descend = async (range: PosRange, a: RangeDigest, b: RangeDigest, depth: number): Promise<void> => {
    if (Math.max(a.count, b.count) <= leafSize || depth >= maxDepth) return reconcile(range);
    const [mine, theirs] = await Promise.all([o.local.digest(range, parts), peer.digest(range, parts)]);
    stats.digests++;
    if (theirs.length !== parts) throw new ThocError("data_loss", `anti-entropy: ${peer.nodeId} answered ${theirs.length} digests for ${parts} parts`);
    for (let i = 0; i < parts; i++) {
      if (mine[i]!.hash !== theirs[i]!.hash) await descend(subRange(range, parts, i), mine[i]!, theirs[i]!, depth + 1);
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
      if (!t || t.version < r.version) stats.behind++;
    }
    for (const [pk, t] of theirs) {
      const r = mine.get(pk);
      if (r && r.version >= t.version) continue;
      const started = await pool.submit(pk, () => pull(t));
      if (started) copies.push(started.done.catch((err: unknown) => { failures.push(err); }));
    }
  };

  const pull = async (t: ReplicaRecord): Promise<{ applied: boolean; bytes: number } | undefined> => {
    // Another round (or a client write) may have brought it meanwhile: no transfer then.
    const cur = await o.local.head(t.bucket, t.key);
    if (cur && cur.version >= t.version) return undefined;
    let out: { applied: boolean; bytes: number };
    if (t.tombstone) {
      await o.limiter.take(256);
      out = { applied: (await o.local.put(knownWrite(tombstoneRecord(t.bucket, t.key, t.version), once()))).applied, bytes: 0 };
    } else {
      const got = await peer.get(t.bucket, t.key);
      // The peer's body is hashed and checked as it arrives (RemoteReplica.get): the store,
      // which commits only once the body ended without error, need not hash it a second time.
      const w = { ...knownWrite(got.record, o.limiter.pace(got.body)), local: true };
      out = { applied: (await o.local.put(w)).applied, bytes: got.record.size };
    }
    if (out.applied) {
      stats.pulled++;
      stats.bytes += out.bytes;
    }
    return out;
  };

  const shared: PosRange[] = [];
  for (const seg of o.ring.segments()) {
    if (!seg.whole && seg.start === seg.end) continue;
    const owners = o.ring.preferenceAt(seg.point, o.n);
    if (owners.includes(o.self) && owners.includes(peer.nodeId)) shared.push({ start: seg.start, end: seg.end, whole: seg.whole });
  }
  stats.arcs = shared.length;
  if (shared.length) {
    const [mine, theirs] = await Promise.all([o.local.digestArcs(shared), peer.digestArcs(shared)]);
    stats.digests++;
    try {
      for (const [i, arc] of shared.entries()) {
        if (mine[i]!.hash === theirs[i]!.hash) continue;
        stats.differing++;
        await descend(arc, mine[i]!, theirs[i]!, 0);
      }
    } finally {
      await Promise.all(copies);
    }
  }
  if (failures.length) {
    throw new ThocError("unavailable", `anti-entropy with ${peer.nodeId}: ${failures.length} cop${failures.length === 1 ? "y" : "ies"} failed (retried next round): ${ThocError.from(failures[0]).message}`, { peer: peer.nodeId });
  }
  if (stats.pulled) o.log?.info({ peer: peer.nodeId, ...stats }, "object store: anti-entropy repaired replicas");
  return stats;
}

/** Whether a key at this position is one both nodes should hold (for tests and rebalancing). */
export function sharedBy(ring: Ring, n: number, pkey: string, a: string, b: string): boolean {
  const owners = ring.preferenceList(pkey, n);
  return owners.includes(a) && owners.includes(b);
}
