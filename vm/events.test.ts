import { test } from "node:test";
import assert from "node:assert/strict";
import { vmEvent } from "./events.js";
import type { VmRecord, VmStatus } from "./manager.js";

const rec = (status: VmStatus, detail = "") => ({ name: "web", status, detail }) as VmRecord;

test("VM record changes map to lifecycle events; a save that keeps the status is none", () => {
  const act = (prev: VmStatus | undefined, now: VmStatus | undefined) => {
    const e = vmEvent({ name: "web", by: "user", ...(prev ? { previous: rec(prev) } : {}), ...(now ? { now: rec(now, "boom") } : {}) });
    return e ? `${e.action}:${e.previousStatus}>${e.status}` : "none";
  };
  assert.equal(act(undefined, "creating"), "created:>creating");
  assert.equal(act(undefined, "running"), "created:>running", "adopted by reconcile");
  assert.equal(act("creating", "running"), "running:creating>running");
  assert.equal(act("creating", "stopped"), "stopped:creating>stopped");
  assert.equal(act("running", "stopping"), "stopping:running>stopping");
  assert.equal(act("running", "paused"), "paused:running>paused");
  for (const s of ["crashed", "error", "missing", "unknown"] as const) assert.equal(act("running", s), `failed:running>${s}`);
  assert.equal(act("running", undefined), "deleted:running>");
  assert.equal(act("running", "running"), "none");
  const failed = vmEvent({ name: "web", by: "libvirt", previous: rec("running"), now: rec("crashed", "guest panicked") });
  assert.deepEqual(failed, { kind: "vm", vm: "web", action: "failed", status: "crashed", previousStatus: "running", by: "libvirt", detail: "guest panicked" });
});
