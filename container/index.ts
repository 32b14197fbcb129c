/**
 * The container subsystem: containers beside VMs, on a Docker-API engine
 * (engine/), placed by the scheduler like VMs (docs/containers.md).
 */
export type * from "./types.js";
