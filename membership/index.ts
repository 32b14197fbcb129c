/**
 * Cluster membership: SWIM gossip with the Lifeguard refinements, push-pull
 * sync, sealed datagrams (AES-256-GCM key ring) and node metadata. The agent
 * runs it as the "membership" subsystem; every other folder reads the gossip
 * view through core's Membership interface, which MembershipSubsystem
 * implements and the composition root (agent/root.ts) hands to those that need it.
 * ClusterService methods added later (GetLeader, GetRing) plug in with
 * MembershipSubsystem.extendClusterService(). See docs/membership.md.
 */
export type { Transport } from "./types.js";
export { GossipNode, checkMeta, metaSize, type GossipNodeOptions } from "./node.js";
export { MembershipSubsystem, capacityMeta, type ClusterServiceHost } from "./subsystem.js";
export { Keyring, ReplayGuard, type DropReason } from "./keyring.js";
export { NetTransport } from "./net-transport.js";
export { MemoryNetwork, MemoryTransport, type NetworkOptions } from "./memory-transport.js";
export { Sim, presetTimers, testMeta, type SimOptions } from "./sim.js";
export type { GossipTimers, SwimStats } from "./swim.js";
