/**
 * The leader's placement loop over real cluster tables (in memory, one
 * node): the name check across the cluster, idempotent retries, a raced
 * node refusing and the next candidate taking the VM, the fence stopping a
 * deposed leader before it commands anyone, and a deleted VM's capacity
 * coming back at once (the leader's memory of its own placements follows the
 * table, deletes included).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ClusterTable, HlcClock, MemoryTableBackend, ReplicatedTable } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import { CreateVmRequestSchema, type CreateVmRequest } from "../proto/index.js";
import { Placer } from "./placer.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables, type HostEntry, type VmEntry } from "./vm-table.js";

async function tables(): Promise<VmTables> {
  const hlc = new HlcClock("L");
  const t = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), {
    hlc, ringNodes: () => ["L"], self: "L", isUp: () => true, peer: () => { throw new Error("no peers here"); },
  });
  return new VmTables(await t(VM_TABLE), await t(HOST_TABLE), await t(EVICTION_TABLE));
}

const host = (id: string, cpus: number): HostEntry => ({ id, name: id, cpus, memoryBytes: 8 * 2 ** 30, diskFreeBytes: 100 * 2 ** 30, loadFactor: 1, gpus: [], version: "t" });
const req = (name: string, vcpus = 1, extra: { requestId?: string; group?: string } = {}) =>
  create(CreateVmRequestSchema, { spec: { name, image: "img", vcpus, ramMb: 64, diskGb: 1, network: { mode: "none" } }, requestId: `r-${name}`, ...extra });

/** Nodes that accept a commit while they have room, as a node's fit() would, and publish the VM to the table. */
function cluster(t: VmTables, cpus: Record<string, number>, opts: { raceOnce?: string } = {}) {
  const used: Record<string, number> = Object.fromEntries(Object.keys(cpus).map((k) => [k, 0]));
  const commits: string[] = [];
  let raced = false;
  return {
    commits, used,
    async commit(nodeId: string, term: number, r: CreateVmRequest) {
      commits.push(`${nodeId}@${term}`);
      const spec = r.spec!;
      if (opts.raceOnce === nodeId && !raced) { raced = true; throw new ThocError("resource_exhausted", "vcpus: taken a moment ago"); }
      if (used[nodeId]! + spec.vcpus > cpus[nodeId]!) throw new ThocError("resource_exhausted", "vcpus: no room");
      used[nodeId]! += spec.vcpus;
      const e: VmEntry = { name: spec.name, uuid: `u-${spec.name}`, nodeId, nodeName: nodeId, status: "running", detail: "", image: "img", imageKind: "kernel", vcpus: spec.vcpus, ramMB: spec.ramMb, diskGB: spec.diskGb, gpus: [], group: r.group, requestId: r.requestId, createdAt: 1, mac: "" };
      await t.vms.put(spec.name, JSON.stringify(e));
      return { name: spec.name, node: nodeId, uuid: e.uuid };
    },
  };
}

async function setup(cpus: Record<string, number>, o: { raceOnce?: string; fence?: () => number } = {}) {
  const t = await tables();
  for (const [id, n] of Object.entries(cpus)) await t.hosts.put(id, JSON.stringify(host(id, n)));
  const c = cluster(t, cpus, o);
  const placer = new Placer({ tables: t, fence: o.fence ?? (() => 7), isUp: () => true, nodeName: (id) => id, commit: c.commit, strategy: () => "binpack" });
  return { t, c, placer };
}

test("binpack fills a node; a name is unique in the cluster; the same request id answers with the VM it made", async () => {
  const { c, placer } = await setup({ a: 2, b: 2 });
  const x = await placer.place(req("x"));
  const y = await placer.place(req("y"));
  assert.equal(x.node, y.node, "binpack: the second VM joins the first");
  assert.deepEqual(c.commits, [`${x.node}@7`, `${y.node}@7`], "every command carries the term");
  await assert.rejects(placer.place(req("x", 1, { requestId: "other" })), (e: ThocError) => e.code === "already_exists" && /already exists on node/.test(e.message));
  const again = await placer.place(req("x"));
  assert.equal(again.uuid, "u-x");
  assert.equal(c.commits.length, 2, "a retry commands no node");
});

test("a node that raced another create refuses; the next candidate takes the VM", async () => {
  const { c, placer } = await setup({ a: 4, b: 2 }, { raceOnce: "b" });
  const v = await placer.place(req("x"));
  assert.equal(v.node, "a");
  assert.deepEqual(c.commits, ["b@7", "a@7"]);
});

test("a leader that lost its lease commands nobody", async () => {
  const { c, placer } = await setup({ a: 2 }, { fence: () => { throw new ThocError("unavailable", "lease lost"); } });
  await assert.rejects(placer.place(req("x")), (e: ThocError) => e.code === "unavailable");
  assert.deepEqual(c.commits, []);
});

test("a deleted VM's room is free again at once; a full cluster says what is short", async () => {
  const { t, c, placer } = await setup({ a: 1 });
  await placer.place(req("x"));
  // Deleted before the leader looked at the table again.
  await t.vms.put("x", null);
  c.used.a = 0;
  const y = await placer.place(req("y"));
  assert.equal(y.node, "a");
  await assert.rejects(placer.place(req("z")), (e: ThocError) => e.code === "resource_exhausted" && /a: vcpus/.test(e.message));
});
