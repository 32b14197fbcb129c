/**
 * openEngine: the engine behind container.runtimeUri. "memory:" is the
 * in-process MemoryEngine (tests, and agents started to try the container API
 * without podman); any other URI is a Docker-API engine.
 */
import { DockerEngine } from "./docker-engine.js";
import { MemoryEngine } from "./memory.js";
import type { ContainerEngine } from "./types.js";
import { UnavailableEngine } from "./unavailable.js";

export function openEngine(uri: string): ContainerEngine {
  if (/^memory:/.test(uri)) return new MemoryEngine({ uri });
  try {
    return new DockerEngine({ uri });
  } catch (err) {
    // A URI DockerEngine cannot parse: every call says why (the config check accepts only the forms it parses).
    return new UnavailableEngine(uri, (err as Error).message);
  }
}
