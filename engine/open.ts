/**
 * openEngine: the engine behind container.runtimeUri. "memory:" is the
 * in-process MemoryEngine (tests, and agents started to try the container API
 * without podman); any other URI is a Docker-API engine.
 */
import { MemoryEngine } from "./memory.js";
import type { ContainerEngine } from "./types.js";
import { UnavailableEngine } from "./unavailable.js";

export function openEngine(uri: string): ContainerEngine {
  if (/^memory:/.test(uri)) return new MemoryEngine({ uri });
  // Merge point: the Docker-API client (DockerEngine, engine/docker-engine.ts) replaces this line: `return new DockerEngine(uri);`
  return new UnavailableEngine(uri, "this agent has no Docker-API engine client yet (podman / Docker support is not built in)");
}
