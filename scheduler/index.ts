/**
 * The compute control plane (SPEC §4): an elected scheduler leader over a
 * fixed, versioned voter set, with a lease and the term as a fencing token
 * (election.ts, fence.ts); placement by filters and scoring (placement.ts)
 * with the node's own fit() re-checking every fenced create (placer.ts,
 * service.ts); the cluster's VM table (vm-table.ts, publisher.ts); VmService
 * as every agent answers it, routed to the VM's node (routing.ts); the
 * "scheduler" subsystem that wires them (subsystem.ts, wiring.ts); containers
 * in the same table and placement (container-table.ts, container-publisher.ts,
 * container-routing.ts), with what both kinds share in entry-publisher.ts and
 * route-by-name.ts.
 */
export { SchedulerSubsystem, type SchedulerDeps } from "./subsystem.js";
export { SCHEDULER_TABLES, VM_TABLE, HOST_TABLE, EVICTION_TABLE, type VmEntry, type HostEntry } from "./vm-table.js";
export { Election, type ElectionOptions, type ElectionStatus, type ElectionEvent, type ElectionRole } from "./election.js";
export { Fence, MemoryFenceStore, type FenceStore } from "./fence.js";
export { MemoryElectionStore, type ElectionStore, type ElectionTransport, type VoteRequest, type VoteReply, type HeartbeatRequest, type HeartbeatReply, type PersistedElection } from "./messages.js";
export { rankNodes, noPlacementError, type NodeView, type PlacementRequest, type Strategy, type GroupedReservation, type NodeUsage, type Refusal } from "./placement.js";
export { Placer, type PlacerOptions } from "./placer.js";
export { ROUTED_HEADER } from "./routing.js";
export { MIN_CPUS, MIN_MEMORY_MB, type ContainerNode, type ContainerInit } from "./container-table.js";
export type { ContainerImpl } from "./container-routing.js";
