/** Before the scheduler has started, the routed VmService and ContainerService refuse every call as unavailable (streams too). */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ContainerImpl } from "./container-routing.js";
import { SchedulerSubsystem, type SchedulerDeps } from "./subsystem.js";

const starting = (e: { code?: string; message: string }) => {
  assert.equal(e.code, "unavailable", e.message);
  assert.match(e.message, /the scheduler is starting: try again in a moment/);
  return true;
};

test("unary calls reject and streams fail with unavailable until start() built the routing", async () => {
  // Nothing of the deps is read before start().
  const s = new SchedulerSubsystem({} as SchedulerDeps);
  const vm = s.routeVmService({} as Parameters<SchedulerSubsystem["routeVmService"]>[0]);
  const ct = s.routeContainerService({} as ContainerImpl);
  const call = <T>(impl: T, m: string, ...a: unknown[]) => (impl as Record<string, (...x: unknown[]) => unknown>)[m]!(...a);
  const drain = async (it: unknown) => { for await (const _ of it as AsyncIterable<unknown>) { /* nothing comes */ } };
  await assert.rejects(call(vm, "getVm", { name: "a" }, {}) as Promise<unknown>, starting);
  await assert.rejects(drain(call(vm, "logs", { name: "a" }, {})), starting);
  await assert.rejects(drain(call(vm, "console", (async function* () {})(), {})), starting);
  await assert.rejects(call(ct, "getContainer", { name: "a" }, {}) as Promise<unknown>, starting);
  await assert.rejects(drain(call(ct, "containerLogs", { name: "a" }, {})), starting);
  await assert.rejects(drain(call(ct, "exec", (async function* () {})(), {})), starting);
});
