/**
 * The "vm" subsystem's autostart wiring, in process on the in-memory
 * hypervisor: a second subsystem (the agent's next start) over the same store
 * and hypervisor runs one pass by itself, publishes a `running` event by
 * autostart for a VM it started and a `failed` one for a VM whose start
 * failed, says the failure in its health detail (status) without leaving
 * "up", obeys the cluster's veto, and clears the failure once the VM is
 * started by hand.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { loadConfig } from "../config/index.js";
import { createLogger, type AgentContext, type ClusterEventInput, type EventHub } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { MemoryHypervisor } from "../hypervisor/index.js";
import { RpcServer } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import { VmSubsystem } from "./subsystem.js";

test("the vm subsystem autostarts at its start: events, a failure in status, a veto obeyed", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-vm-autostart-"));
  const config = loadConfig({
    dev: true, file: null, cwd: dir, env: { THOC_VM_VNC_PORT: "0" },
    flags: { "--data-dir": dir, "--bind": "127.0.0.1", "--s3-port": 0, "--gossip-port": 0, "--grpc-port": 0, "--hypervisor-uri": "memory:///" },
  });
  const store = await LocalStore.open(dir);
  const events: ClusterEventInput[] = [];
  const hub: EventHub = { publish: (e) => { events.push(e); }, attachMembership: () => {} };
  const ctx: AgentContext = {
    config, store, log: createLogger("silent"), metrics: new Registry(), rpc: new RpcServer(), nodeId: store.nodeId, version: "test", events: hub,
    addresses: { grpc: "127.0.0.1:1", http: "127.0.0.1:2", s3: "127.0.0.1:3", gossip: "127.0.0.1:4" },
    capacity: () => ({ cpus: 8, cpuModel: "test", memoryBytes: 2 ** 33, memoryFreeBytes: 2 ** 32, diskBytes: 2 ** 34, diskFreeBytes: 2 ** 33, gpus: [] }),
  };
  const subs: VmSubsystem[] = [];
  try {
    const first = new VmSubsystem();
    subs.push(first);
    await first.start(ctx);
    const m1 = first.manager!;
    const hv = first.hv as MemoryHypervisor;
    const w = await m1.o.images.begin("kern", { cmdline: "console=ttyS0" });
    await w.write("kernel", Buffer.alloc(64, 1));
    await w.commit();
    for (const name of ["ok", "bad", "evicted"]) await m1.create({ name, image: "kern", vcpus: 1, ramMB: 64, network: { mode: "none" } });
    assert.deepEqual(await first.autostart, [], "nothing to start at the first start");

    // The agent stops; then the host takes every guest down with it.
    await first.stop();
    await hv.open();
    for (const d of await hv.list()) await hv.destroy(d.name);
    const start = hv.start.bind(hv);
    hv.start = async (name: string) => {
      if (name === "thoc-bad") throw new ThocError("internal", "start thoc-bad: Cannot access storage file 'disk.qcow2': No such file or directory");
      return start(name);
    };
    events.length = 0;

    const second = new VmSubsystem({ autostartVeto: async (r) => (r.name === "evicted" ? "deleted with --force while this node was down" : undefined) });
    subs.push(second);
    second.hv = hv; // the same host: its domains survived the agent
    // A new process: its own gRPC server and metrics registry, the same store.
    await second.start({ ...ctx, rpc: new RpcServer(), metrics: new Registry() });
    const out = await second.autostart;
    assert.deepEqual(Object.fromEntries((out ?? []).map((o) => [o.vm, o.outcome])), { ok: "started", bad: "failed", evicted: "vetoed" });
    assert.equal((await hv.lookup("thoc-ok"))?.state, "running");
    assert.equal((await hv.lookup("thoc-evicted"))?.state, "shutoff");

    const vmEvents = events.filter((e) => e.kind === "vm");
    assert.ok(vmEvents.some((e) => e.vm === "ok" && e.action === "running" && e.by === "autostart"), JSON.stringify(vmEvents));
    const failed = vmEvents.find((e) => e.vm === "bad" && e.action === "failed");
    assert.equal(failed?.by, "autostart");
    assert.match(failed?.detail ?? "", /autostart failed: .*Cannot access storage file/);
    // Reconcile reported each guest stopped (running -> stopped, by reconcile); the veto adds nothing.
    assert.deepEqual(vmEvents.filter((e) => e.vm === "evicted").map((e) => `${e.action} by ${e.by}`), ["stopped by reconcile"]);

    let h = second.health();
    assert.equal(h.status, "up", "a failed autostart does not make the node unready");
    assert.match(h.detail ?? "", /autostart failed for bad \(thoc-node vm show NAME\)/);
    assert.match((await second.manager!.get("bad")).autostartError ?? "", /Cannot access storage file/);

    hv.start = start;
    await second.manager!.startVm("bad");
    h = second.health();
    assert.doesNotMatch(h.detail ?? "", /autostart failed/, "cleared by a start");
  } finally {
    for (const s of subs) await s.stop().catch(() => {});
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
