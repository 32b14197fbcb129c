/** fit(): VM admission as a pure function, table by table (RAM and vCPUs under the load factor, GPUs, capacity not read). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { budgetOf, fit, fitError, usageOf, withinBudget, type FitRefusal, type FitRequest, type FitResult, type NodeCapacity, type Reservation } from "./fit.js";
import { seededRandom } from "../core/index.js";
import type { GpuAllocation, HostGpu } from "./gpu.js";
import type { GpuSpec } from "./spec.js";

const MiB = 1048576;
const node = (over: Partial<NodeCapacity> = {}): NodeCapacity => ({ cpus: 8, memoryBytes: 8192 * MiB, gpus: [], loadFactor: 1, ...over });
const vm = (name: string, ramMB: number, gpus: GpuAllocation[] = [], vcpus = 1): Reservation => ({ name, vcpus, ramMB, gpus });
const ask = (ramMB: number, over: Partial<FitRequest> = {}): FitRequest => ({ name: "new", vcpus: 1, ramMB, ...over });

const gpu = (i: number, pci: string, migModel: string): HostGpu => ({
  id: `GPU-${i}`, pciAddress: pci, nodeDevice: `pci_${pci.replace(/[:.]/g, "_")}`, vendor: "NVIDIA Corporation", vendorId: "0x10de", model: migModel || "RTX", productId: "0x0000", migModel,
});
const GPUS = [gpu(0, "0000:3b:00.0", "A100-40GB"), gpu(1, "0000:5e:00.0", "H100-80GB"), gpu(2, "0000:af:00.0", "")];
const pass = (...deviceIds: string[]): GpuSpec => ({ enabled: true, mode: "passthrough", deviceIds, migProfile: "" });
const mig = (migProfile: string, ...deviceIds: string[]): GpuSpec => ({ enabled: true, mode: "mig", deviceIds, migProfile });
const slice = (vmName: string, pci: string, migProfile: string, slices: number): GpuAllocation => ({ vm: vmName, mode: "mig", pciAddress: pci, migProfile, slices, mdevUuid: `u-${vmName}` });

/** [what, request, allocations, capacity, expected: "fits" or the resource that is short plus a pattern its reason must match]. */
type Row = [string, FitRequest, Reservation[], NodeCapacity, "fits" | [string, string, RegExp]];

const check = (rows: Row[]) => {
  for (const [what, req, taken, cap, want] of rows) {
    const r = fit(req, taken, cap);
    if (want === "fits") {
      assert.equal(r.fits, true, `${what}: ${r.fits ? "" : r.reason}`);
      continue;
    }
    assert.equal(r.fits, false, what);
    if (r.fits) continue;
    const [resource, code, re] = want;
    assert.equal(r.resource, resource, what);
    assert.equal(r.code, code, what);
    assert.match(r.reason, re, what);
  }
};

test("RAM: the VMs together stay within memory × load factor, to the MiB", () => {
  check([
    ["an empty node, exactly all of it", ask(8192), [], node(), "fits"],
    ["beside others, exactly what is left", ask(2048), [vm("a", 4096), vm("b", 2048)], node(), "fits"],
    ["one MiB over what is left", ask(2049), [vm("a", 4096), vm("b", 2048)], node(),
      ["ramMB", "resource_exhausted", /^ramMB: 2049 MiB does not fit: VMs on this node already have 6144 of 8192 MiB; ask for at most 2048 MiB or delete a VM$/]],
    ["memory one byte short of 8192 MiB: the budget rounds down", ask(8192), [], node({ memoryBytes: 8192 * MiB - 1 }),
      ["ramMB", "resource_exhausted", /this node has 8191 MiB of memory/]],
    ["others already over the budget (load factor lowered): at most 0", ask(16), [vm("a", 8192)], node({ loadFactor: 0.5 }),
      ["ramMB", "resource_exhausted", /already have 8192 of 4096 MiB; ask for at most 0 MiB/]],
    ["load factor 0.5 halves the budget", ask(4097), [], node({ loadFactor: 0.5 }), ["ramMB", "resource_exhausted", /0 of 4096 MiB; ask for at most 4096 MiB/]],
    ["load factor 1.5: three 4 GiB VMs on 8 GiB", ask(4096), [vm("a", 4096), vm("b", 4096)], node({ loadFactor: 1.5 }), "fits"],
    ["load factor 1.5: not a fourth", ask(4096), [vm("a", 4096), vm("b", 4096), vm("c", 4096)], node({ loadFactor: 1.5 }),
      ["ramMB", "resource_exhausted", /already have 12288 of 12288 MiB; ask for at most 0 MiB/]],
    ["load factor 2: one VM still gets at most the physical memory", ask(8193), [], node({ loadFactor: 2 }),
      ["ramMB", "resource_exhausted", /^ramMB: needs 8193 MiB, this node has 8192 MiB of memory$/]],
  ]);
});

test("the refusal carries what is short in numbers, and becomes the node's ThocError", () => {
  const r = fit(ask(3000), [vm("a", 6144)], node()) as Extract<FitResult, { fits: false }>;
  assert.deepEqual([r.fits, r.need, r.free, r.total, r.details], [false, 3000, 2048, 8192, { field: "ramMB" }]);
  const e = fitError(r);
  assert.deepEqual([e.name, e.code, e.message, e.details], ["ThocError", "resource_exhausted", r.reason, { field: "ramMB" }]);
});

test("CPUs: one VM gets at most the node's CPUs; the VMs' vCPUs together stay within CPUs × load factor", () => {
  check([
    ["all the CPUs", ask(512, { vcpus: 8 }), [], node(), "fits"],
    ["one more than the CPUs", ask(512, { vcpus: 9 }), [], node(), ["vcpus", "resource_exhausted", /^vcpus: needs 9 vCPUs, this node has 8 CPUs$/]],
    ["load factor 4: one VM still gets at most the CPUs", ask(512, { vcpus: 9 }), [], node({ loadFactor: 4 }), ["vcpus", "resource_exhausted", /^vcpus: needs 9 vCPUs, this node has 8 CPUs$/]],
    ["beside others, exactly what is left", ask(512, { vcpus: 3 }), [vm("a", 512, [], 4), vm("b", 512, [], 1)], node(), "fits"],
    ["one vCPU over what is left", ask(512, { vcpus: 4 }), [vm("a", 512, [], 4), vm("b", 512, [], 1)], node(),
      ["vcpus", "resource_exhausted", /^vcpus: 4 vCPUs do not fit: VMs on this node already have 5 of 8 vCPUs \(8 CPUs × limits.loadFactor 1\); ask for at most 3 vCPUs, delete a VM or raise limits.loadFactor$/]],
    ["others hold every CPU already", ask(512, { vcpus: 1 }), [vm("a", 512, [], 8)], node(), ["vcpus", "resource_exhausted", /already have 8 of 8 vCPUs.*at most 0 vCPUs/]],
    ["load factor 2: two 8-vCPU VMs on 8 CPUs", ask(512, { vcpus: 8 }), [vm("a", 512, [], 8)], node({ loadFactor: 2 }), "fits"],
    ["load factor 2: not a third", ask(512, { vcpus: 1 }), [vm("a", 512, [], 8), vm("b", 512, [], 8)], node({ loadFactor: 2 }), ["vcpus", "resource_exhausted", /already have 16 of 16 vCPUs/]],
    ["load factor 1.5 on 3 CPUs rounds the budget down to 4", ask(512, { vcpus: 1 }), [vm("a", 512, [], 3), vm("b", 512, [], 1)], node({ cpus: 3, loadFactor: 1.5 }), ["vcpus", "resource_exhausted", /already have 4 of 4 vCPUs/]],
    ["vCPUs are checked before RAM's budget", ask(8000, { vcpus: 2 }), [vm("a", 4096, [], 7)], node(), ["vcpus", "resource_exhausted", /already have 7 of 8 vCPUs/]],
  ]);
  const r = fit(ask(512, { vcpus: 4 }), [vm("a", 512, [], 6)], node()) as FitRefusal;
  assert.deepEqual([r.need, r.free, r.total, r.details], [4, 2, 8, { field: "vcpus" }]);
});

test("sums the caller keeps stand in for adding up the allocations, and match them", () => {
  const taken = [vm("a", 4096, [], 4), vm("b", 2048, [], 2)];
  assert.deepEqual(usageOf(taken), { vcpus: 6, ramMB: 6144 });
  assert.deepEqual(budgetOf(node({ cpus: 3, loadFactor: 1.5, memoryBytes: 1000 * MiB + 1 })), { vcpus: 4, ramMB: 1500 });
  for (const req of [ask(2048, { vcpus: 2 }), ask(2049), ask(512, { vcpus: 3 })]) {
    assert.deepEqual(fit(req, [], node(), usageOf(taken)), fit(req, taken, node()), `${req.vcpus} vCPUs ${req.ramMB} MiB`);
  }
});

test("capacity not read yet (zero CPUs or memory) takes nothing", () => {
  check([
    ["zero memory", ask(16), [], node({ memoryBytes: 0 }), ["capacity", "resource_exhausted", /reports 8 CPUs and 0 MiB of memory: its capacity is not known yet/]],
    ["zero CPUs", ask(16), [], node({ cpus: 0 }), ["capacity", "resource_exhausted", /reports 0 CPUs and 8192 MiB/]],
  ]);
});

test("GPUs by passthrough address and by MIG profile, never given twice", () => {
  const cap = node({ gpus: GPUS });
  const held = vm("ga", 512, [{ vm: "ga", mode: "passthrough", pciAddress: "0000:af:00.0" }]);
  const a100Full = [vm("m1", 512, [slice("m1", "0000:3b:00.0", "4g.20gb", 4)]), vm("m2", 512, [slice("m2", "0000:3b:00.0", "3g.20gb", 3)])];
  check([
    ["a free GPU by PCI address", ask(512, { gpu: pass("0000:af:00.0") }), [], cap, "fits"],
    ["a free GPU by short PCI address", ask(512, { gpu: pass("af:00.0") }), [], cap, "fits"],
    ["a GPU another VM holds", ask(512, { gpu: pass("GPU-2") }), [held], cap, ["gpu", "resource_exhausted", /^GPU GPU-2 \(0000:af:00.0\) is already assigned to VM ga/]],
    ["a GPU the node lacks", ask(512, { gpu: pass("GPU-9") }), [], cap, ["gpu", "not_found", /no GPU "GPU-9" on this node/]],
    ["a GPU on a node without any", ask(512, { gpu: pass("GPU-0") }), [], node(), ["gpu", "not_found", /it has none/]],
    ["a MIG profile only the A100 has", ask(512, { gpu: mig("1g.5gb") }), [], cap, "fits"],
    ["a profile the chosen model lacks", ask(512, { gpu: mig("1g.5gb", "GPU-1") }), [], cap, ["gpu", "invalid_argument", /1g.5gb is not a MIG profile of H100-80GB/]],
    ["the A100's 7 slices are taken", ask(512, { gpu: mig("1g.5gb", "GPU-0") }), a100Full, cap, ["gpu", "resource_exhausted", /7 compute slices are taken/]],
    ["passing through a GPU whose slices are handed out", ask(512, { gpu: pass("GPU-0") }), a100Full, cap, ["gpu", "resource_exhausted", /already assigned to VM m1, m2/]],
    ["RAM is short before GPUs are looked at", ask(9000, { gpu: pass("GPU-9") }), [], node({ gpus: GPUS, loadFactor: 2 }), ["ramMB", "resource_exhausted", /needs 9000 MiB/]],
  ]);
});

test("what fits comes back as allocations of plain data, without a mediated device name, and the inputs stay untouched", () => {
  const cap = node({ gpus: GPUS });
  const taken = [vm("m1", 512, [slice("m1", "0000:3b:00.0", "4g.20gb", 4)])];
  const before = JSON.stringify([taken, cap]);
  const r = fit(ask(512, { gpu: mig("3g.20gb") }), taken, cap);
  assert.deepEqual(r, { fits: true, gpus: [{ vm: "new", mode: "mig", pciAddress: "0000:3b:00.0", migProfile: "3g.20gb", slices: 3 }] });
  assert.deepEqual(fit(ask(512, { gpu: pass("GPU-0", "GPU-1") }), [], cap), {
    fits: true, gpus: [{ vm: "new", mode: "passthrough", pciAddress: "0000:3b:00.0" }, { vm: "new", mode: "passthrough", pciAddress: "0000:5e:00.0" }],
  });
  assert.deepEqual(fit(ask(512), [], cap), { fits: true, gpus: [] });
  assert.equal(JSON.stringify([taken, cap]), before);
});

test("withinBudget says yes exactly when fit()'s CPU and RAM rules do", () => {
  const random = seededRandom(7);
  const rnd = (n: number) => Math.floor(random() * n);
  let yes = 0, no = 0;
  for (let i = 0; i < 5000; i++) {
    const cap = node({ cpus: rnd(10), memoryBytes: rnd(6) * 2048 * MiB + rnd(2) * (MiB - 1), loadFactor: [0.5, 1, 1.5, 3][rnd(4)]! });
    const used = { vcpus: rnd(8), ramMB: rnd(8000) };
    const req = ask(1 + rnd(4000), { vcpus: 1 + rnd(4) });
    const verdict = fit(req, [], cap, used);
    const numeric = verdict.fits || verdict.resource === "gpu";
    assert.equal(withinBudget(req, cap, used), numeric, `${JSON.stringify({ cap, used, req })}: ${verdict.fits ? "fits" : verdict.reason}`);
    if (numeric) yes++; else no++;
  }
  assert.ok(yes > 1000 && no > 1000, `both answers are exercised (${yes} yes, ${no} no)`);
});
