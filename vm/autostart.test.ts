/**
 * Autostart (autostart.ts) on the in-memory hypervisor and on libvirt's test
 * driver: the agent stops, its guests die behind it (a host crash), a new
 * manager over the same store reconciles and starts again exactly the VMs
 * that were meant to run with autostart on; a user's stop, --no-start and
 * --no-autostart are respected, a failure is recorded and never thrown, a
 * cluster veto is obeyed, and the starts are bounded in number.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LibvirtHypervisor, MemoryHypervisor, type Hypervisor } from "../hypervisor/index.js";
import { ThocError } from "../errors/index.js";
import { autostartVms, wantsAutostart, type AutostartOutcome } from "./autostart.js";
import { VmManager } from "./manager.js";
import { vmToPb } from "./rpc.js";
import { fixture, importImages, type Fixture } from "./testutil.js";

/** Counts concurrent starts; fails the domains named in failFor. */
class CountingHypervisor extends MemoryHypervisor {
  failFor = new Set<string>();
  running = 0;
  peak = 0;
  override async start(name: string): Promise<void> {
    this.running++;
    this.peak = Math.max(this.peak, this.running);
    try {
      await new Promise((r) => setTimeout(r, 20));
      if (this.failFor.has(name)) throw new ThocError("internal", `start ${name}: internal error: qemu unexpectedly closed the monitor`);
      return await super.start(name);
    } finally { this.running--; }
  }
}

const small = (name: string, extra: { autostart?: boolean } = {}) => ({ name, image: "kern", vcpus: 1, ramMB: 64, diskGB: 0, network: { mode: "none" as const }, ...extra });

/**
 * The agent goes away (its lifecycle listener with it), then every guest
 * dies behind its back, as in a host crash; the returned manager is the
 * agent's next start over the same store and hypervisor.
 */
async function crashAndRestart(f: Fixture, hv: Hypervisor): Promise<VmManager> {
  f.m.stop();
  for (const d of await hv.list()) if (d.state === "running") await hv.destroy(d.name);
  const m = new VmManager(f.m.o);
  f.m = m;
  await m.start();
  return m;
}

const state = async (hv: Hypervisor, vm: string) => (await hv.lookup(`thoc-${vm}`))?.state;

test("after a crash, only the VMs meant to run with autostart on are started again; a failure is recorded, not thrown", async () => {
  const hv = new CountingHypervisor();
  await hv.open();
  const f = await fixture(hv, { host: () => ({ cpus: 64, memoryBytes: 16 * 2 ** 30 }) });
  try {
    await f.m.start();
    await importImages(f);
    for (const n of ["a1", "a2", "a3", "a4", "a5", "bad"]) await f.m.create(small(n));
    await f.m.create(small("noauto", { autostart: false }));
    await f.m.create(small("nostart"), { start: false });
    await f.m.create(small("userstop"));
    await f.m.stopVm("userstop", { force: true });
    assert.equal((await f.m.get("userstop")).desired, "stopped");
    assert.equal((await f.m.get("a1")).desired, "running");
    assert.equal((await f.m.get("nostart")).desired, "stopped");
    assert.equal((await f.m.get("noauto")).spec.autostart, false);
    assert.equal(vmToPb(await f.m.get("noauto")).spec?.autostart, false);
    assert.equal(vmToPb(await f.m.get("a1")).spec?.autostart, true, "on unless asked otherwise");

    hv.failFor.add("thoc-bad");
    const m = await crashAndRestart(f, hv);
    // Reconcile read libvirt: every guest is shut off now, whatever the records said before.
    for (const r of await m.list()) assert.equal(r.status, "stopped", r.name);
    assert.deepEqual((await m.list()).filter(wantsAutostart).map((r) => r.name), ["a1", "a2", "a3", "a4", "a5", "bad"]);

    const seen: AutostartOutcome[] = [];
    hv.peak = 0;
    const out = await autostartVms(m, { concurrency: 2, onOutcome: (o) => seen.push(o) });
    assert.equal(seen.length, out.length);
    assert.deepEqual(out.filter((o) => o.outcome === "started").map((o) => o.vm).sort(), ["a1", "a2", "a3", "a4", "a5"]);
    assert.deepEqual(out.filter((o) => o.outcome === "failed").map((o) => o.vm), ["bad"]);
    assert.match(out.find((o) => o.vm === "bad")!.reason ?? "", /qemu unexpectedly closed/);
    assert.equal(hv.peak, 2, "at most `concurrency` starts at once");
    for (const n of ["a1", "a2", "a3", "a4", "a5"]) {
      assert.equal(await state(hv, n), "running", n);
      assert.equal((await m.get(n)).status, "running");
    }
    for (const n of ["noauto", "nostart", "userstop", "bad"]) assert.equal(await state(hv, n), "shutoff", n);

    // The failure is in the record (vm show), the status is libvirt's; a later start clears it.
    const bad = await m.get("bad");
    assert.equal(bad.status, "stopped");
    assert.match(bad.autostartError ?? "", /qemu unexpectedly closed/);
    assert.match(vmToPb(bad).autostartError ?? "", /qemu unexpectedly closed/);
    assert.equal(vmToPb(bad).desiredState, "running");
    hv.failFor.clear();
    assert.equal((await m.startVm("bad")).autostartError, undefined);

    // A second pass has nothing to do: everything meant to run runs.
    assert.deepEqual(await autostartVms(m), []);

    // vm autostart off, then a crash: not started; on again: started.
    await m.setAutostart("a1", false);
    assert.equal((await m.get("a1")).spec.autostart, false);
    let m2 = await crashAndRestart(f, hv);
    let names = (await autostartVms(m2)).map((o) => o.vm).sort();
    assert.deepEqual(names, ["a2", "a3", "a4", "a5", "bad"]);
    assert.equal(await state(hv, "a1"), "shutoff");
    await m2.setAutostart("a1", true);
    assert.equal((await m2.get("a1")).spec.autostart, undefined, "on is the default, stored as nothing");
    m2 = await crashAndRestart(f, hv);
    names = (await autostartVms(m2)).map((o) => o.vm).sort();
    assert.deepEqual(names, ["a1", "a2", "a3", "a4", "a5", "bad"]);
  } finally { await f.cleanup(); await hv.close(); }
});

test("a cluster veto keeps a VM down, a veto that throws does not; records from before desired follow their last status; a restart stays meant to run; a busy VM is left alone", async () => {
  const hv = new MemoryHypervisor();
  await hv.open();
  const f = await fixture(hv);
  try {
    await f.m.start();
    await importImages(f);
    for (const n of ["keep", "gone", "flaky"]) await f.m.create(small(n));
    await f.m.create(small("old-run"));
    await f.m.create(small("old-stop"));
    await f.m.stopVm("old-stop", { force: true });
    // As an agent before autostart wrote them: no desired.
    for (const n of ["old-run", "old-stop"]) {
      const { desired: _d, ...r } = await f.m.get(n);
      await f.m.o.records.put(n, r);
    }
    const m = await crashAndRestart(f, hv);
    assert.equal((await m.get("old-run")).desired, "running", "a record last seen running ran until the agent went away");
    assert.equal((await m.get("old-stop")).desired, "stopped");
    const out = await autostartVms(m, {
      veto: async (r) => {
        if (r.name === "flaky") throw new Error("no peer answered");
        return r.name === "gone" ? "deleted with --force while this node was down" : undefined;
      },
    });
    const by = Object.fromEntries(out.map((o) => [o.vm, o.outcome]));
    assert.deepEqual(by, { keep: "started", gone: "vetoed", flaky: "started", "old-run": "started" });
    assert.equal(await state(hv, "gone"), "shutoff");
    assert.equal(await state(hv, "old-stop"), "shutoff");

    // A restart is meant to run throughout: its stop half leaves desired running.
    await m.restartVm("keep", { force: true });
    assert.equal((await m.get("keep")).desired, "running");
    assert.equal((await m.stopVm("keep", { force: true, restarting: true })).desired, "running");

    // A VM another operation holds when autostart reaches it is left to that operation, not marked failed.
    const m2 = await crashAndRestart(f, hv);
    const held = await m2.exclusive("keep", () => autostartVms(m2));
    assert.equal(held.find((o) => o.vm === "keep")?.outcome, "vetoed");
    assert.equal((await m2.get("keep")).autostartError, undefined);
  } finally { await f.cleanup(); await hv.close(); }
});

test("on libvirt's test driver: guests destroyed while the agent was away come back, a user-stopped and a --no-autostart one do not", async () => {
  const hv = new LibvirtHypervisor("test:///default");
  await hv.open();
  const f = await fixture(hv);
  try {
    await f.m.start();
    await importImages(f);
    await f.m.create(small("tauto"));
    await f.m.create(small("tnoauto", { autostart: false }));
    await f.m.create(small("tstopped"));
    await f.m.stopVm("tstopped", { force: true });
    for (const n of ["tauto", "tnoauto"]) assert.equal(await state(hv, n), "running");
    const m = await crashAndRestart(f, hv);
    for (const n of ["tauto", "tnoauto", "tstopped"]) assert.equal(await state(hv, n), "shutoff", n);
    const out = await autostartVms(m);
    assert.deepEqual(out.map((o) => [o.vm, o.outcome]), [["tauto", "started"]]);
    assert.equal(await state(hv, "tauto"), "running");
    assert.equal(await state(hv, "tnoauto"), "shutoff");
    assert.equal(await state(hv, "tstopped"), "shutoff");
    for (const n of ["tauto", "tnoauto", "tstopped"]) await m.deleteVm(n);
  } finally { await f.cleanup(); await hv.close(); }
});
