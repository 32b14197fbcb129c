/**
 * The container engine seam (types.ts): a Docker-API engine (podman or
 * Docker Engine) for the container subsystem, and an in-memory stand-in.
 * DockerEngine (docker-engine.ts) talks to a real engine through dockerode.
 */
export type * from "./types.js";
export { DockerEngine, DEFAULT_RUNTIME_URI, type DockerEngineOptions } from "./docker-engine.js";
export { MemoryEngine, type MemoryEngineOptions } from "./memory.js";
export { UnavailableEngine } from "./unavailable.js";
export { openEngine } from "./open.js";
