/**
 * The container record's helpers shared by the manager and its supervisor:
 * the store it lives in, the engine labels, what a record reserves, and its
 * status read off the engine container.
 */
import type { EngineContainer } from "../engine/index.js";
import type { Reservation } from "../vm/index.js";
import type { ContainerRecord, ContainerStatus } from "./types.js";

/** The store's surface the manager needs (a LocalStore json sublevel fits). */
export interface ContainerRecordStore {
  get(key: string): Promise<ContainerRecord | undefined>;
  put(key: string, value: ContainerRecord): Promise<void>;
  del(key: string): Promise<void>;
  values(): AsyncIterable<ContainerRecord>;
}

/** Engine containers are named thoc-<name>. */
export const ENGINE_PREFIX = "thoc-";
export const LABEL = { managed: "thoc.managed", name: "thoc.name", uuid: "thoc.uuid", node: "thoc.node", nodeId: "thoc.node-id", spec: "thoc.spec" } as const;

/** Placement counts a container that asks for nothing as this much (container.proto). */
export const MIN_CPUS = 0.1, MIN_MEMORY_MB = 64;

/** What a container holds of its node, as fit() counts it. */
export const reservationOf = (r: ContainerRecord): Reservation =>
  ({ name: r.name, vcpus: r.spec.cpus || MIN_CPUS, ramMB: r.spec.memoryMB || MIN_MEMORY_MB, gpus: r.gpus, kind: "container" });

/** The record's status for an engine container's state. */
export function statusOf(c: EngineContainer | undefined, r: Pick<ContainerRecord, "desiredState" | "health">): ContainerStatus {
  if (!c) return "error";
  switch (c.state) {
    case "running": return r.health === "unhealthy" ? "unhealthy" : "running";
    case "created": case "paused": return "stopped";
    case "exited": return r.desiredState === "stopped" ? "stopped" : "exited";
    case "restarting": return "restarting";
    case "dead": return "error";
    default: return "unknown";
  }
}

/** The record as the engine container shows it now (status, ports, exit code, start time). */
export function withEngine(r: ContainerRecord, c: EngineContainer | undefined): ContainerRecord {
  if (!c) return { ...r, status: "error" };
  const running = c.state === "running";
  const health = !running || !r.spec.healthCheckPath ? "" : r.health || "starting";
  return {
    ...r, engineId: c.id, status: statusOf(c, { desiredState: r.desiredState, health }), health, exitCode: c.exitCode,
    startedAt: c.startedAtMs || r.startedAt, ports: running ? c.ports.map((p) => ({ ...p })) : r.ports, imageId: c.imageId || r.imageId,
  };
}

