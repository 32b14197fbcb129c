/** GPU inventory from node-device XML, MIG profiles per model, allocation decisions. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { allocateGpus, MIG_PROFILES, parseGpus, type GpuAllocation, type GpuHolding } from "./gpu.js";
import { GPU_NODE_XML } from "./testutil.js";

const devices = GPU_NODE_XML.split("<device>").slice(1).map((d) => `<device>${d.split("</device>")[0]}</device>`);
let n = 0;
const uuid = () => `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`;

test("inventory: NVIDIA display controllers in PCI order, emulated VGA skipped, MIG model from the PCI id", () => {
  const gpus = parseGpus(devices);
  assert.deepEqual(gpus.map((g) => [g.id, g.pciAddress, g.nodeDevice, g.migModel]), [
    ["GPU-0", "0000:3b:00.0", "pci_0000_3b_00_0", "A100-40GB"],
    ["GPU-1", "0000:5e:00.0", "pci_0000_5e_00_0", "H100-80GB"],
    ["GPU-2", "0000:af:00.0", "pci_0000_af_00_0", ""],
  ]);
  assert.equal(gpus[0]?.vendor, "NVIDIA Corporation");
});

test("the same slice size has different names per model: A100-40GB 1g.5gb is H100-80GB 1g.10gb", () => {
  assert.equal(MIG_PROFILES["A100-40GB"]!["1g.5gb"], 1);
  assert.equal(MIG_PROFILES["H100-80GB"]!["1g.5gb"], undefined);
  assert.equal(MIG_PROFILES["H100-80GB"]!["1g.10gb"], 1);
  const gpus = parseGpus(devices);
  const h100 = { enabled: true, mode: "mig" as const, deviceIds: ["GPU-1"], migProfile: "1g.5gb" };
  assert.throws(() => allocateGpus(h100, "a", gpus, [], uuid), (e: { code: string; message: string }) => e.code === "invalid_argument" && /1g.5gb is not a MIG profile of H100-80GB/.test(e.message));
  assert.equal(allocateGpus({ ...h100, migProfile: "1g.10gb" }, "a", gpus, [], uuid)[0]?.pciAddress, "0000:5e:00.0");
  assert.throws(() => allocateGpus({ ...h100, deviceIds: ["GPU-2"], migProfile: "1g.10gb" }, "a", gpus, [], uuid), /no MIG-capable GPU among GPU-2/);
});

test("passthrough by id, PCI address or node device; never twice", () => {
  const gpus = parseGpus(devices);
  const req = (ids: string[]) => ({ enabled: true, mode: "passthrough" as const, deviceIds: ids, migProfile: "" });
  assert.deepEqual(allocateGpus(req(["GPU-0", "0000:5e:00.0", "pci_0000_af_00_0"]), "a", gpus, [], uuid).map((a) => a.pciAddress), ["0000:3b:00.0", "0000:5e:00.0", "0000:af:00.0"]);
  const taken: GpuAllocation[] = [{ vm: "a", mode: "passthrough", pciAddress: "0000:3b:00.0" }];
  assert.throws(() => allocateGpus(req(["GPU-0"]), "b", gpus, taken, uuid), (e: { code: string; message: string }) => e.code === "resource_exhausted" && /already assigned to VM a/.test(e.message));
  assert.throws(() => allocateGpus(req(["GPU-7"]), "b", gpus, taken, uuid), (e: { code: string }) => e.code === "not_found");
  // MIG slices fill a GPU up to 7; the next request moves to another GPU of a fitting model or is refused.
  const mig = (p: string) => ({ enabled: true, mode: "mig" as const, deviceIds: [], migProfile: p });
  const t2: GpuAllocation[] = [];
  for (const p of ["3g.20gb", "3g.20gb", "1g.5gb"]) t2.push(...allocateGpus(mig(p), `v${t2.length}`, gpus, t2, uuid));
  assert.ok(t2.every((a) => a.pciAddress === "0000:3b:00.0"));
  assert.throws(() => allocateGpus(mig("1g.5gb"), "x", gpus, t2, uuid), (e: { code: string }) => e.code === "resource_exhausted");
  assert.equal(allocateGpus(mig("1g.10gb"), "x", gpus, t2, uuid)[0]?.pciAddress, "0000:5e:00.0", "the A100 is full, 1g.10gb also exists on the H100");
});

test("a refusal names each holder's kind: VM or container", () => {
  const gpus = parseGpus(devices);
  const pass = (ids: string[]) => ({ enabled: true, mode: "passthrough" as const, deviceIds: ids, migProfile: "" });
  const mig = (p: string) => ({ enabled: true, mode: "mig" as const, deviceIds: ["GPU-0"], migProfile: p });
  const refused = (f: () => unknown, re: RegExp) => assert.throws(f, (e: { code: string; message: string }) => {
    assert.equal(e.code, "resource_exhausted");
    assert.match(e.message, re);
    return true;
  });
  refused(() => allocateGpus(pass(["GPU-0"]), "b", gpus, [{ vm: "web", mode: "passthrough", pciAddress: "0000:3b:00.0", kind: "container" }], uuid),
    /GPU GPU-0 \(0000:3b:00.0\) is already assigned to container web: pick a free GPU \(thoc-node vm gpus\) or delete web$/);
  const slices: GpuHolding[] = [
    { vm: "v0", mode: "mig", pciAddress: "0000:3b:00.0", migProfile: "3g.20gb", slices: 3 },
    { vm: "c0", mode: "mig", pciAddress: "0000:3b:00.0", migProfile: "3g.20gb", slices: 3, kind: "container" },
    { vm: "c1", mode: "mig", pciAddress: "0000:3b:00.0", migProfile: "1g.5gb", slices: 1, kind: "container" },
  ];
  refused(() => allocateGpus(pass(["GPU-0"]), "b", gpus, slices, uuid), /already assigned to VM v0 and container c0, c1: .* or delete v0, c0, c1$/);
  refused(() => allocateGpus(mig("1g.5gb"), "x", gpus, slices, uuid), /\(GPU-0: VM v0 and container c0, c1\); delete a VM or a container or pick a smaller profile$/);
  refused(() => allocateGpus(mig("1g.5gb"), "x", gpus, slices.slice(1).concat({ ...slices[1]!, vm: "c2", slices: 3 }), uuid), /\(GPU-0: container c0, c1, c2\); delete a container or/);
  refused(() => allocateGpus(mig("1g.5gb"), "x", gpus, slices.map(({ kind: _, ...a }) => a), uuid), /\(GPU-0: VM v0, c0, c1\); delete a VM or pick/);
});
