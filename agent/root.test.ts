import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { loadConfig, type Config } from "../config/index.js";
import { createLogger, type AgentContext } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { RpcServer } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import { createSubsystems } from "./root.js";

async function context(dir: string): Promise<{ ctx: AgentContext; config: Config; close(): Promise<void> }> {
  const config = loadConfig({ dev: true, file: null, env: {}, cwd: dir, flags: { "--data-dir": dir, "--bind": "127.0.0.1", "--s3-port": 0, "--gossip-port": 0, "--grpc-port": 0 } });
  const store = await LocalStore.open(dir);
  const ctx: AgentContext = {
    config, store, log: createLogger("silent"), metrics: new Registry(), rpc: new RpcServer(), nodeId: store.nodeId, version: "test",
    addresses: { grpc: "127.0.0.1:1", http: "127.0.0.1:2", s3: "127.0.0.1:3", gossip: "127.0.0.1:4" },
    capacity: () => ({ cpus: 2, cpuModel: "test", memoryBytes: 2 ** 31, memoryFreeBytes: 2 ** 30, diskBytes: 2 ** 34, diskFreeBytes: 2 ** 33, gpus: [] }),
  };
  return { ctx, config, close: () => store.close() };
}

test("the composition root starts membership, then the object store, then VMs, then containers, then the scheduler", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-root-"));
  try {
    const { config } = await context(dir).then(async (c) => { await c.close(); return c; });
    assert.deepEqual(createSubsystems(config).map((s) => s.name), ["membership", "objectstore", "vm", "container", "scheduler"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a subsystem started before the one it depends on fails with a clear start-up error", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-root-"));
  const c = await context(dir);
  try {
    const [, objectStore, vm, , scheduler] = createSubsystems(c.config);
    // Out of order: the object store before membership, VMs before the object store.
    await assert.rejects(objectStore!.start(c.ctx), (e: unknown) =>
      e instanceof ThocError && e.code === "failed_precondition" && /membership is not started/.test(e.message));
    await assert.rejects(vm!.start(c.ctx), (e: unknown) =>
      e instanceof ThocError && e.code === "failed_precondition" && /object store is not started/.test(e.message));
    await assert.rejects(scheduler!.start(c.ctx), (e: unknown) =>
      e instanceof ThocError && e.code === "failed_precondition" && /VM subsystem started first/.test(e.message));
    await vm!.stop();
  } finally {
    await c.close();
    await rm(dir, { recursive: true, force: true });
  }
});
