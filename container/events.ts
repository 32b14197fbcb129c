/**
 * Container record changes (ContainerManager's onChange) as cluster events
 * (kind "container"). From record statuses:
 *
 *   new record (creating, or adopted by reconcile)   created
 *   running / unhealthy / stopped / exited / restarting   the same word
 *   error, unknown                                    failed
 *   record deleted                                    deleted
 *
 * A save that keeps the status (a detail, the health going from starting to
 * healthy) is no event.
 */
import type { ContainerAction, ContainerEventInput } from "../core/index.js";
import type { ContainerChange, ContainerStatus } from "./types.js";

const ACTION: Record<ContainerStatus, ContainerAction> = {
  creating: "created", running: "running", unhealthy: "unhealthy", stopped: "stopped", exited: "exited",
  restarting: "restarting", error: "failed", unknown: "failed",
};

export function containerEvent(c: ContainerChange): ContainerEventInput | undefined {
  const before = c.previous?.status ?? "";
  const base = { kind: "container" as const, container: c.name, previousStatus: before, by: c.by };
  if (!c.now) return { ...base, action: "deleted", status: "" };
  if (c.now.status === before) return undefined;
  const action = c.previous ? ACTION[c.now.status] : "created";
  const said = action === "failed" || action === "unhealthy" || action === "restarting" || action === "exited";
  return {
    ...base, action, status: c.now.status,
    ...(said && c.now.detail ? { detail: c.now.detail } : {}),
    ...(action === "exited" || action === "restarting" ? { exitCode: c.now.exitCode } : {}),
    ...(c.now.restartCount ? { restartCount: c.now.restartCount } : {}),
  };
}
