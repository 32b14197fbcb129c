/**
 * The container and VM publishers side by side over real cluster tables (in
 * memory): each keeps its own kind of entry for its node and leaves the
 * other's alone (a VM reconcile once removed every entry of the node it had
 * no VM record for), forced deletes go to the kind they name, and a change
 * of a container record is written or tombstoned at once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ClusterTable, HlcClock, MemoryTableBackend, ReplicatedTable } from "../cluster/index.js";
import { ContainerSpecSchema } from "../proto/index.js";
import type { VmManager } from "../vm/index.js";
import { ContainerPublisher } from "./container-publisher.js";
import { MemContainerNode, specOf } from "./container-testing.js";
import { Publisher } from "./publisher.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables, type VmEntry } from "./vm-table.js";

const log = { info() {}, warn() {}, debug() {}, error() {}, child() { return log; } } as never;

async function tables(): Promise<VmTables> {
  const hlc = new HlcClock("n1");
  const t = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), {
    hlc, ringNodes: () => ["n1"], self: "n1", isUp: () => true, peer: () => { throw new Error("no peers here"); },
  });
  return new VmTables(await t(VM_TABLE), await t(HOST_TABLE), await t(EVICTION_TABLE));
}

const vmEntry = (name: string, nodeId: string): VmEntry => ({ name, uuid: `u-${name}`, nodeId, nodeName: nodeId, status: "running", detail: "", image: "img", imageKind: "kernel", vcpus: 1, ramMB: 64, diskGB: 1, gpus: [], group: "", requestId: "", createdAt: 1, mac: "" });
const spec = (name: string, ports: number[] = []) => specOf(create(ContainerSpecSchema, { name, image: "localhost/bb:1", cpus: 0.25, memoryMb: 96, ports: ports.map((p) => ({ containerPort: 80, hostPort: p })) }));

/** This node's VMs: the one VM record "vm1" (a VmManager's calls the publisher makes). */
function vmManager(names: string[]): VmManager {
  const recs = names.map((name) => ({ name, uuid: `u-${name}`, node: "n1", status: "running", detail: "", imageKind: "kernel", gpus: [], createdAt: 1, mac: "", spec: { image: "img", vcpus: 1, ramMB: 64, diskGB: 1, network: { mode: "none" } } }));
  return { list: async () => recs, get: async (n: string) => { const r = recs.find((x) => x.name === n); if (!r) throw new Error("not found"); return r; }, deleteVm: async () => {}, gpus: async () => [] } as unknown as VmManager;
}

test("each publisher keeps its own kind: a VM pass leaves containers, a container pass leaves VMs", async () => {
  const t = await tables();
  const node = new MemContainerNode("n1");
  await node.create(spec("web", [8080]), { requestId: "r-web" });
  const cts = new ContainerPublisher({ tables: t, nodeId: "n1", node: () => node, log });
  const vms = new Publisher({
    tables: t, nodeId: "n1", manager: () => vmManager(["vm1"]), log, intervalMs: 1000, containers: cts,
    host: async () => ({ id: "n1", name: "n1", cpus: 4, memoryBytes: 2 ** 33, diskFreeBytes: 2 ** 36, loadFactor: 1, gpus: [], version: "t", containers: true }),
  });
  // Stale entries of this node: a container and a VM it no longer has; another node's container.
  await t.vms.put("old-ct", JSON.stringify({ ...vmEntry("old-ct", "n1"), kind: "container", cpus: 0.1, ports: [] }));
  await t.vms.put("old-vm", JSON.stringify(vmEntry("old-vm", "n1")));
  await t.vms.put("far", JSON.stringify({ ...vmEntry("far", "n2"), kind: "container", cpus: 1, ports: ["80/tcp"] }));
  await vms.reconcile();
  const names = t.all().map((e) => `${e.name}:${e.kind ?? "vm"}:${e.nodeId}`).sort();
  assert.deepEqual(names, ["far:container:n2", "vm1:vm:n1", "web:container:n1"]);
  const web = t.local("web")!;
  assert.deepEqual([web.cpus, web.vcpus, web.ramMB, web.ports, web.requestId, web.ct?.mappings], [0.25, 0, 96, ["8080/tcp"], "r-web", [{ containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "" }]]);
  assert.equal(t.host("n1")?.containers, true, "the host entry says the node runs an engine");

  // A VM-only pass (no container publisher): the container entry stays.
  const vmOnly = new Publisher({ tables: t, nodeId: "n1", manager: () => vmManager(["vm1"]), log, intervalMs: 1000, host: async () => ({ id: "n1", name: "n1", cpus: 4, memoryBytes: 2 ** 33, diskFreeBytes: 2 ** 36, loadFactor: 1, gpus: [], version: "t" }) });
  await vmOnly.reconcile();
  assert.equal(t.local("web")?.kind, "container");
  // A VM's delete does not tombstone a container entry of the name, nor a container's delete a VM entry.
  await vms.onChange({ name: "web", by: "user" });
  assert.ok(t.local("web"));
  await cts.onChange({ name: "vm1", by: "user" });
  assert.ok(t.local("vm1"));
});

test("forced deletes: the container publisher deletes its container (volumes as asked), the VM publisher leaves container evictions alone", async () => {
  const t = await tables();
  const node = new MemContainerNode("n1");
  const rec = await node.create(spec("gone"), {});
  await node.create(spec("newer"), {});
  const cts = new ContainerPublisher({ tables: t, nodeId: "n1", node: () => node, log });
  await t.evictions.put("gone", JSON.stringify({ nodeId: "n1", uuid: rec.uuid, atMs: 1, kind: "container", keepVolumes: true }));
  // An eviction of an older container of the name: the one here now stays.
  await t.evictions.put("newer", JSON.stringify({ nodeId: "n1", uuid: "u-older", atMs: 1, kind: "container" }));
  const vmOnly = new Publisher({ tables: t, nodeId: "n1", manager: () => vmManager([]), log, intervalMs: 1000, host: async () => ({ id: "n1", name: "n1", cpus: 4, memoryBytes: 2 ** 33, diskFreeBytes: 2 ** 36, loadFactor: 1, gpus: [], version: "t" }) });
  await vmOnly.reconcile();
  assert.equal(t.evictionsFor("n1").length, 2, "the VM publisher did not consume container evictions");
  await cts.reconcile();
  assert.deepEqual(node.deletes, [{ name: "gone", keepVolumes: true }]);
  assert.deepEqual(t.evictionsFor("n1"), []);
  assert.deepEqual(t.all().map((e) => e.name), ["newer"]);
});

test("a change is written at once: creating is not news, a delete tombstones our own entry only", async () => {
  const t = await tables();
  const node = new MemContainerNode("n1");
  const cts = new ContainerPublisher({ tables: t, nodeId: "n1", node: () => node, log });
  const r = await node.create(spec("api"), {});
  await cts.onChange({ name: "api", now: { ...r, status: "creating" }, by: "user" });
  assert.equal(t.local("api"), undefined);
  await cts.onChange({ name: "api", now: { ...r, status: "unhealthy", health: "unhealthy" }, by: "health" });
  assert.deepEqual([t.local("api")?.status, t.local("api")?.ct?.health], ["unhealthy", "unhealthy"]);
  await cts.onChange({ name: "api", previous: r, by: "user" });
  assert.equal(t.local("api"), undefined);
  // The name re-used on another node after a forced delete: our late delete leaves it.
  await t.vms.put("api", JSON.stringify({ ...vmEntry("api", "n2"), kind: "container" }));
  await cts.onChange({ name: "api", previous: r, by: "user" });
  assert.equal(t.local("api")?.nodeId, "n2");
});
