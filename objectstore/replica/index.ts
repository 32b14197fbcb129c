/**
 * The replicated object store: the consistent-hash ring and its CRDT state,
 * the per-node replica store seam and its durable implementation, the replica
 * protocol (ObjectStoreService, authenticated by cluster/), quorum
 * coordination with read repair and hinted handoff, Merkle anti-entropy,
 * rebalancing, and the S3 blob store over all of it. HLC versions, peer
 * authentication, the peer pool and replicated tables come from cluster/.
 * See docs/objectstore.md for the design, guarantees and limits.
 */
export { Ring, ringHash, placementKey, weightForDisk, inSegment, arcLength, RING_BITS, RING_SIZE, type RingNode, type RingSegment } from "./ring.js";
export { RingState, isActive, mergeMember, type RingMember, type RingStateData } from "./ring-state.js";
export { DurableRingHolder, syncRing } from "./ring-store.js";
export {
  MemoryReplicaStore, ArcIndex, knownWrite, tombstoneRecord, readVerified, validateRecord, validateHeader, subArc, subRange, once, EMPTY_SHA256,
  type ReplicaRecord, type ReplicaStore, type ReplicaWrite, type PutOutcome, type PosRange, type RangeDigest,
} from "./replica-store.js";
export { MemoryHintStore, deliverHints, type HintStore, type HandoffOptions } from "./hints.js";
export { DurableReplicaStore, type DurableReplicaStoreOptions } from "./durable-store.js";
export { DurableHintStore, type DurableHintStoreOptions } from "./durable-hints.js";
export { bodyWriteBytes } from "./direct-file.js";
export { replicaService, MemoryRingHolder, rechunk, type RingHolder, type ReplicaServiceDeps } from "./service.js";
export { Peer, Peers, type PeersOptions } from "./peer.js";
export { Coordinator, newestOf, type CoordinatorOptions, type CoordinatorLog, type Quorum } from "./coordinator.js";
export { LocalReplica, type ReplicaTarget } from "./local-replica.js";
export { syncWithPeer, sharedBy, type AntiEntropyOptions, type AntiEntropyStats, type RemoteReplica } from "./anti-entropy.js";
export { RepairPool, type RepairStats, type RepairJob } from "./repair.js";
export { ArcDigestCache } from "./arc-digests.js";
export { Tee, type Branch } from "./tee.js";
export { rebalance, expireTombstones, type RebalanceOptions, type RebalanceStats, type RebalanceTarget } from "./rebalance.js";
export { ReplicationNode, type ReplicationNodeOptions, type ReplicationConfig } from "./replication.js";
export { mergeSources, type MergedList, type ListSource } from "./listing.js";
export { ReplicatedBlobStore } from "./blob-store.js";
export { PartSweeper, type PartSweeperOptions, type SweepStats } from "./part-sweeper.js";
export { LifecycleWorker, lifecycleRules, lifecycleVersions, type LifecycleStats, type LifecycleWorkerOptions } from "./lifecycle.js";
export type { ReplicatedBackend } from "./blob-meta.js";
export { KeyLeases, MAX_LEASE_MS, type LeaseAnswer, type LeaseTarget } from "./key-leases.js";
export { QuorumKeyLocker, type QuorumKeyLockerOptions } from "./key-lock.js";
