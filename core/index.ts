/**
 * The seams every part of thoc-node stands on, and nothing else: the
 * Subsystem contract and the AgentContext it is started with, the logger,
 * capacity, the Clock/Timer seam with its simulation fake and seeded PRNG, the
 * membership interface, the package version, the listener helper and the
 * certificate files of the agent's TLS listeners.
 *
 * core/ imports no subsystem, no cluster code and no native module (koffi,
 * LevelDB): the CLI loads it for VERSION. It names the foundation's types
 * (Config, RpcServer, LocalStore) in AgentContext with type-only imports.
 */
export type { Subsystem, SubsystemHealth, HealthStatus, AgentContext, PeerTransport, ClusterHooks, TlsMaterial } from "./subsystem.js";
export { createLogger, REDACT_PATHS, type Logger } from "./logger.js";
export type { CapacityInfo, GpuInfo } from "./capacity.js";
export { realClock, FakeClock, seededRandom, shuffle, type Clock, type Timer, type WallClock } from "./clock.js";
export type { Membership, Member, MemberState, MemberEvent, MemberEventType, NodeMeta } from "./membership.js";
export { EVENT_KINDS, type EventKind, type EventSink, type EventHub, type ClusterEventInput, type VmEventInput, type VmAction, type VmEventTrigger, type NodeEventInput, type NodeAction, type LeaderEventInput, type ContainerEventInput, type ContainerAction, type ContainerEventTrigger } from "./events.js";
export { VERSION } from "./version.js";
export { listen } from "./net.js";
export { readTlsPair, checkConfigFiles, agentTlsFiles, followTlsPair, type TlsPair, type TlsFiles } from "./tls.js";
