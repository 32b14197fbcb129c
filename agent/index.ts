/**
 * The node agent: lifecycle, admin HTTP, metrics, logging, NodeService, and
 * the Subsystem seam every other part of thoc-node plugs into.
 */
export { Agent } from "./agent.js";
export { defaultSubsystems } from "./subsystems.js";
export { createLogger, REDACT_PATHS, type Logger } from "./logger.js";
export { readCapacity, type CapacityInfo, type GpuInfo } from "./capacity.js";
export { VERSION } from "./version.js";
export type { Subsystem, SubsystemHealth, HealthStatus, AgentContext } from "./subsystem.js";
