/**
 * VmTables.autostartVeto over real cluster tables (in memory, one node): a
 * node that comes back does not start again a VM the cluster deleted with
 * --force while it was down, nor one whose name another node's VM now holds;
 * its other VMs, and a namesake eviction of an older VM, do not stop it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClusterTable, HlcClock, MemoryTableBackend, ReplicatedTable } from "../cluster/index.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables, type VmEntry } from "./vm-table.js";

async function tables(): Promise<VmTables> {
  const hlc = new HlcClock("n1");
  const t = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), {
    hlc, ringNodes: () => ["n1"], self: "n1", isUp: () => true, peer: () => { throw new Error("no peers here"); },
  });
  return new VmTables(await t(VM_TABLE), await t(HOST_TABLE), await t(EVICTION_TABLE));
}

const entry = (name: string, uuid: string, nodeId: string): VmEntry => ({
  name, uuid, nodeId, nodeName: nodeId, status: "running", detail: "", image: "img", imageKind: "kernel", vcpus: 1, ramMB: 64, diskGB: 1, gpus: [], group: "", requestId: "", createdAt: 1, mac: "",
});

test("autostart veto: evicted while down, or the name taken by another node's VM; otherwise none", async () => {
  const t = await tables();
  await t.vms.put("mine", JSON.stringify(entry("mine", "u-mine", "n1")));
  assert.equal(await t.autostartVeto("n1", { name: "mine", uuid: "u-mine" }), undefined, "a VM the cluster still has here");
  assert.equal(await t.autostartVeto("n1", { name: "unknown", uuid: "u-x" }), undefined, "a VM the table never saw");

  // vm delete --force while n1 was down: the eviction, and the entry gone.
  await t.evictions.put("gone", JSON.stringify({ nodeId: "n1", uuid: "u-gone", atMs: Date.UTC(2026, 11, 3) }));
  assert.match(await t.autostartVeto("n1", { name: "gone", uuid: "u-gone" }) ?? "", /^deleted with --force at 2026-12-03T00:00:00.000Z while this node was down/);
  // An eviction of another VM of that name (an older one), or of another node's: not this VM's.
  assert.equal(await t.autostartVeto("n1", { name: "gone", uuid: "u-newer" }), undefined);
  assert.equal(await t.autostartVeto("n2", { name: "gone", uuid: "u-gone" }), undefined);

  // The name was reused on n2 after a forced delete.
  await t.vms.put("reused", JSON.stringify(entry("reused", "u-new", "n2")));
  assert.match(await t.autostartVeto("n1", { name: "reused", uuid: "u-old" }) ?? "", /now belongs to another VM, on node n2/);
  // Containers ask the same: a name taken by a container elsewhere, or a container evicted while down.
  await t.vms.put("app", JSON.stringify({ ...entry("app", "u-ct", "n2"), kind: "container", cpus: 0.5, ports: [] }));
  assert.match(await t.autostartVeto("n1", { name: "app", uuid: "u-vm" }) ?? "", /now belongs to another container, on node n2/);
  await t.evictions.put("ct-gone", JSON.stringify({ nodeId: "n1", uuid: "u-ct-gone", atMs: Date.UTC(2026, 11, 3), kind: "container" }));
  assert.match(await t.autostartVeto("n1", { name: "ct-gone", uuid: "u-ct-gone" }) ?? "", /^deleted with --force/);
});
