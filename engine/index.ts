/**
 * The container engine seam (types.ts): a Docker-API engine (podman or
 * Docker Engine) for the container subsystem, and an in-memory stand-in.
 */
export type * from "./types.js";
