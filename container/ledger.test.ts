/**
 * One ledger for VMs and containers on a node: a real VmManager (libvirt's
 * test driver with GPUs) and a ContainerManager wired to each other as
 * agent/root.ts wires them. A GPU or CPUs one holds, the other cannot take.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LibvirtHypervisor } from "../hypervisor/index.js";
import { MemoryEngine } from "../engine/index.js";
import type { ContainerManager } from "./manager.js";
import { fixture as vmFixture, gpuDriverUri } from "../vm/testutil.js";
import { fixture, spec } from "./testutil.js";

const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

test("VMs and containers never share a GPU and together stay within the node's CPUs", async () => {
  const ct = await fixture({ host: () => ({ cpus: 8, memoryBytes: 16 * 2 ** 30 }) }, new MemoryEngine({ gpus: true }));
  let cm: ContainerManager = ct.m;
  const uri = await gpuDriverUri(ct.dir);
  const hv = new LibvirtHypervisor(uri);
  const vm = await vmFixture(hv, { foreignReservations: () => cm.reservations() });
  try {
    await hv.open();
    await vm.m.start();
    // A kernel image and no disk: nothing here needs qemu-img.
    const w = await vm.images.begin("kern", { cmdline: "console=ttyS0" });
    await w.write("kernel", Buffer.alloc(4096, 7));
    await w.commit();
    cm = await ct.reopen({ vm: vm.m });
    const base = { image: "kern", vcpus: 1, ramMB: 128, diskGB: 0 };

    await vm.m.create({ ...base, name: "v0", gpu: { mode: "passthrough", deviceIds: ["GPU-0"] } });
    await assert.rejects(cm.create(spec({ name: "c0", gpuDeviceIds: ["GPU-0"] })), code("resource_exhausted", /GPU GPU-0 \(0000:3b:00.0\) is already assigned to VM v0/));
    const c1 = await cm.create(spec({ name: "c1", gpuDeviceIds: ["GPU-1"] }));
    assert.deepEqual(c1.gpus.map((g) => g.pciAddress), ["0000:5e:00.0"]);
    assert.deepEqual(ct.engine.createdWith("thoc-c1").devices, ["nvidia.com/gpu=1"]);
    await assert.rejects(vm.m.create({ ...base, name: "v1", gpu: { mode: "passthrough", deviceIds: ["GPU-1"] } }), code("resource_exhausted", /already assigned to container c1: .* or delete c1/));
    await assert.rejects(vm.m.create({ ...base, name: "v1", gpu: { mode: "mig", migProfile: "1g.10gb", deviceIds: ["GPU-1"] } }), code("resource_exhausted", /slices are taken \(GPU-1: container c1\); delete a container or/));

    // CPUs: the VM holds 1 and the container 0.1 (it asked for none); 6 more fit, 7 do not.
    await cm.create(spec({ name: "c2", cpus: 6 }));
    await assert.rejects(vm.m.create({ ...base, name: "v2" }), code("resource_exhausted", /vcpus: 1 vCPUs do not fit/));
    await cm.delete("c2");
    await vm.m.create({ ...base, name: "v2" });
    await assert.rejects(cm.create(spec({ name: "c3", cpus: 6 })), code("resource_exhausted", /vcpus/));

    // A VM and a container asking for the same free GPU at once: one gets it.
    const both = await Promise.allSettled([
      vm.m.create({ ...base, name: "v3", gpu: { mode: "passthrough", deviceIds: ["GPU-2"] } }),
      cm.create(spec({ name: "c4", gpuDeviceIds: ["GPU-2"] })),
    ]);
    assert.equal(both.filter((r) => r.status === "fulfilled").length, 1, JSON.stringify(both.map((r) => r.status)));
    const holders = [...(await vm.m.reservations()), ...(await cm.reservations())].filter((r) => r.gpus.some((g) => g.pciAddress === "0000:af:00.0"));
    assert.equal(holders.length, 1);

    // A deleted container's GPU is free for a VM.
    await cm.delete("c1");
    const v1 = await vm.m.create({ ...base, name: "v1", gpu: { mode: "passthrough", deviceIds: ["GPU-1"] } });
    assert.deepEqual(v1.gpus.map((g) => g.pciAddress), ["0000:5e:00.0"]);
  } finally {
    await vm.cleanup();
    await hv.close();
    await ct.cleanup();
  }
});
