/**
 * VM record changes (VmManager's onChange) as cluster events. The mapping
 * from record statuses (docs/events.md):
 *
 *   new record (creating, or adopted by reconcile)   created
 *   running                                          running
 *   stopping / stopped / paused                      stopping / stopped / paused
 *   crashed, error, missing, unknown                 failed
 *   record deleted                                   deleted
 *
 * A save that keeps the status (a detail change, a start of a running VM) is
 * no event. "starting" is never emitted: records go straight to running.
 */
import type { VmAction, VmEventInput } from "../core/index.js";
import type { VmChange, VmStatus } from "./manager.js";

const ACTION: Record<VmStatus, VmAction> = {
  creating: "created", running: "running", stopping: "stopping", stopped: "stopped", paused: "paused",
  crashed: "failed", error: "failed", missing: "failed", unknown: "failed",
};

export function vmEvent(c: VmChange): VmEventInput | undefined {
  const before = c.previous?.status ?? "";
  const base = { kind: "vm" as const, vm: c.name, previousStatus: before, by: c.by };
  if (!c.now) return { ...base, action: "deleted", status: "" };
  if (c.now.status === before) return undefined;
  const action = c.previous ? ACTION[c.now.status] : "created";
  return { ...base, action, status: c.now.status, ...(action === "failed" && c.now.detail ? { detail: c.now.detail } : {}) };
}
