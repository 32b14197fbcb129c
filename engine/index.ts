/**
 * The container engine seam (types.ts): a Docker-API engine (podman or
 * Docker Engine) for the container subsystem, and an in-memory stand-in.
 */
export type * from "./types.js";
export { MemoryEngine, type MemoryEngineOptions } from "./memory.js";
export { UnavailableEngine } from "./unavailable.js";
export { openEngine } from "./open.js";
