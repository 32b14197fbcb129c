/**
 * Cluster membership: SWIM gossip with the Lifeguard refinements, push-pull
 * sync, sealed datagrams (AES-256-GCM key ring) and node metadata. The agent
 * runs it as the "membership" subsystem; other subsystems use the Membership
 * interface: ctx.subsystem<MembershipSubsystem>("membership").
 * ClusterService methods added later (GetLeader, GetRing) plug in with
 * MembershipSubsystem.extendClusterService(). See docs/membership.md.
 */
export type { Member, MemberState, MemberEvent, MemberEventType, NodeMeta, Clock, Timer, Transport } from "./types.js";
export { realClock } from "./types.js";
export { GossipNode, checkMeta, metaSize, type Membership, type GossipNodeOptions } from "./node.js";
export { MembershipSubsystem, capacityMeta } from "./subsystem.js";
export { Keyring, ReplayGuard, type DropReason } from "./keyring.js";
export { NetTransport, hostPort } from "./net-transport.js";
export { MemoryNetwork, MemoryTransport, type NetworkOptions } from "./memory-transport.js";
export { FakeClock, seededRandom } from "./clock.js";
export { Sim, presetTimers, testMeta, type SimOptions } from "./sim.js";
export type { GossipTimers, SwimStats } from "./swim.js";
