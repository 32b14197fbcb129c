/**
 * Container placement end to end inside one process, over real cluster
 * tables (in memory): the leader's Placer, the fenced commit on each node
 * (commitContainerHere) and the node publishing the entry, with nodes' own
 * containers in memory behind the ContainerNode seam. Names are unique across
 * VMs and containers, host ports and CPUs count both kinds, a node that
 * refuses (its port is taken by another process) passes the container on,
 * and a stale term creates nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ClusterTable, HlcClock, MemoryTableBackend, ReplicatedTable } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import { CreateContainerRequestSchema, CreateVmRequestSchema, type CreateContainerRequest } from "../proto/index.js";
import { ContainerPublisher } from "./container-publisher.js";
import { MemContainerNode } from "./container-testing.js";
import { Fence, MemoryFenceStore } from "./fence.js";
import { Placer } from "./placer.js";
import { commitContainerHere, commitHere } from "./service.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables, type HostEntry, type VmEntry } from "./vm-table.js";

const log = { info() {}, warn() {}, debug() {}, error() {}, child() { return log; } } as never;

async function tables(): Promise<VmTables> {
  const hlc = new HlcClock("L");
  const t = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), {
    hlc, ringNodes: () => ["L"], self: "L", isUp: () => true, peer: () => { throw new Error("no peers here"); },
  });
  return new VmTables(await t(VM_TABLE), await t(HOST_TABLE), await t(EVICTION_TABLE));
}

const host = (id: string, cpus: number, containers = true): HostEntry => ({ id, name: id, cpus, memoryBytes: 8 * 2 ** 30, diskFreeBytes: 100 * 2 ** 30, loadFactor: 1, gpus: [], version: "t", containers });
const vmEntry = (name: string, nodeId: string, vcpus: number): VmEntry => ({ name, uuid: `u-${name}`, nodeId, nodeName: nodeId, status: "running", detail: "", image: "img", imageKind: "kernel", vcpus, ramMB: 64, diskGB: 1, gpus: [], group: "", requestId: "", createdAt: 1, mac: "" });
const ctReq = (name: string, o: { ports?: number[]; cpus?: number; requestId?: string; password?: string } = {}): CreateContainerRequest => create(CreateContainerRequestSchema, {
  spec: { name, image: "localhost/bb:1", cpus: o.cpus ?? 0.5, memoryMb: 128, ports: (o.ports ?? []).map((p) => ({ containerPort: 80, hostPort: p })), ...(o.password ? { registryAuth: { username: "u", password: o.password } } : {}) },
  requestId: o.requestId ?? `r-${name}`,
});

async function setup(cpus: Record<string, number>, o: { noEngine?: string[] } = {}) {
  const t = await tables();
  const nodes: Record<string, { node: MemContainerNode; fence: Fence; pub: ContainerPublisher }> = {};
  for (const [id, n] of Object.entries(cpus)) {
    await t.hosts.put(id, JSON.stringify(host(id, n, !o.noEngine?.includes(id))));
    const node = new MemContainerNode(id);
    nodes[id] = { node, fence: await Fence.open(new MemoryFenceStore()), pub: new ContainerPublisher({ tables: t, nodeId: id, node: () => node, log }) };
  }
  const commits: string[] = [];
  const commitOn = (nodeId: string, term: number, req: CreateContainerRequest) => {
    commits.push(`${nodeId}@${term}`);
    const n = nodes[nodeId]!;
    return commitContainerHere({ fence: n.fence, tables: t, self: { id: nodeId, name: nodeId }, containers: () => n.node, ctPublisher: n.pub }, term, "L", req);
  };
  const placer = new Placer({
    tables: t, fence: () => 7, isUp: () => true, nodeName: (id) => id, strategy: () => "binpack",
    commit: async () => { throw new Error("no VM creates here"); }, commitContainer: commitOn,
  });
  return { t, nodes, commits, placer, commitOn };
}

test("names are unique across VMs and containers, at the leader and at the node", async () => {
  const { t, placer, nodes, commitOn } = await setup({ a: 4 });
  await t.vms.put("db", JSON.stringify(vmEntry("db", "a", 1)));
  await assert.rejects(placer.placeContainer(ctReq("db")), (e: ThocError) => e.code === "already_exists" && /^a VM named db already exists on node a: names are unique in the cluster, across VMs and containers/.test(e.message) && /vm delete db/.test(e.message));
  // A leader whose copy of the table was stale: the node refuses anyway.
  await assert.rejects(commitOn("a", 7, ctReq("db")), (e: ThocError) => e.code === "already_exists" && /a VM named db already exists/.test(e.message));
  assert.equal(nodes.a!.node.records.size, 0);

  const web = await placer.placeContainer(ctReq("web"));
  assert.equal(web.nodeId, "a");
  const e = t.local("web")!;
  assert.equal(e.kind, "container", "the node published a container entry");
  await assert.rejects(placer.place(create(CreateVmRequestSchema, { spec: { name: "web", image: "img", vcpus: 1, ramMb: 64, diskGb: 1, network: { mode: "none" } }, requestId: "r-vm" })),
    (x: ThocError) => x.code === "already_exists" && /^a container named web already exists on node a/.test(x.message) && /ct delete web/.test(x.message));
  // And a VM commit on a node whose table has the container refuses before it creates anything.
  const vmCommit = commitHere({ fence: nodes.a!.fence, tables: t, self: { id: "a", name: "a" }, manager: () => { throw new Error("must not be reached"); }, publisher: undefined as never }, 7, "L",
    create(CreateVmRequestSchema, { spec: { name: "web", image: "img", vcpus: 1, ramMb: 64 }, requestId: "r-vm" }));
  await assert.rejects(vmCommit, (x: ThocError) => x.code === "already_exists" && /a container named web/.test(x.message));
});

test("the same request id answers with the container it made; no second create", async () => {
  const { placer, commits, nodes, commitOn } = await setup({ a: 4, b: 4 });
  const first = await placer.placeContainer(ctReq("x", { requestId: "r1" }));
  const again = await placer.placeContainer(ctReq("x", { requestId: "r1" }));
  assert.equal(again.nodeId, first.nodeId);
  assert.equal(again.status, "running");
  assert.equal(commits.length, 1, "a retry commands no node");
  await assert.rejects(placer.placeContainer(ctReq("x", { requestId: "r2" })), (e: ThocError) => e.code === "already_exists");
  // A commit retried on the node (the answer was lost) answers with the same container.
  const retried = await commitOn(first.nodeId!, 7, ctReq("x", { requestId: "r1" }));
  assert.equal(retried.id, "e1");
  assert.equal(nodes[first.nodeId!]!.node.records.size, 1);
});

test("host ports: a node whose container binds the port is skipped; a node whose port another process holds refuses and the next takes it", async () => {
  const { placer, commits, nodes } = await setup({ a: 4, b: 4, c: 4 });
  const w1 = await placer.placeContainer(ctReq("web-1", { ports: [8080] }));
  assert.equal(w1.nodeId, "a", "binpack: equal nodes by name");
  const w2 = await placer.placeContainer(ctReq("web-2", { ports: [8080] }));
  assert.equal(w2.nodeId, "b", "a binds 8080/tcp already");
  nodes.a!.node.foreignPorts.add("9090/tcp");
  const m = await placer.placeContainer(ctReq("metrics", { ports: [9090] }));
  assert.equal(m.nodeId, "b", "a refused (port used by another process): the next candidate");
  assert.deepEqual(commits, ["a@7", "b@7", "a@7", "b@7"]);
  // Every node binds 8080 now but c; then c does too: no node.
  assert.equal((await placer.placeContainer(ctReq("web-3", { ports: [8080] }))).nodeId, "c");
  await assert.rejects(placer.placeContainer(ctReq("web-4", { ports: [8080] })), (e: ThocError) => e.code === "resource_exhausted" && /host port 8080\/tcp is bound already \(container web-1\)/.test(e.message));
});

test("VMs and containers share the leader's view of a node: CPUs from both, fractional ones summed exactly", async () => {
  const { t, placer } = await setup({ a: 1, b: 4 });
  // 0.2 + 0.4 + 0.3 is 0.9000000000000001 in floating point: the last 0.1 still fits the 1-CPU node.
  for (const [name, cpus] of [["c1", 0.2], ["c2", 0.4], ["c3", 0.3], ["c4", 0.1]] as const) assert.equal((await placer.placeContainer(ctReq(name, { cpus }))).nodeId, "a", name);
  assert.equal((await placer.placeContainer(ctReq("c5", { cpus: 0.1 }))).nodeId, "b");
  await t.vms.put("vm1", JSON.stringify(vmEntry("vm1", "b", 3)));
  await assert.rejects(placer.placeContainer(ctReq("c6", { cpus: 1 })), (e: ThocError) => e.code === "resource_exhausted" && /b: vcpus short by 0\.1 \(0\.9 of 4 free\)/.test(e.message));
  assert.equal((await placer.placeContainer(ctReq("c7", { cpus: 0.9 }))).nodeId, "b");
  const b = placer.views().find((v) => v.id === "b")!;
  assert.equal(b.used?.vcpus, 4);
  assert.deepEqual(b.allocations.map((r) => [r.name, r.vcpus, r.kind ?? "vm"]).sort(), [["c5", 0.1, "container"], ["c7", 0.9, "container"], ["vm1", 3, "vm"]]);
});

test("nodes without an engine are skipped; a stale term creates nothing; the registry password reaches the node's create only", async () => {
  const { placer, nodes, commitOn } = await setup({ a: 4, b: 4 }, { noEngine: ["a"] });
  assert.equal((await placer.placeContainer(ctReq("p", { password: "s3cret" }))).nodeId, "b");
  assert.deepEqual(nodes.b!.node.passwords, ["s3cret"]);
  await nodes.b!.fence.observe(9);
  await assert.rejects(commitOn("b", 8, ctReq("late")), (e: ThocError) => e.code === "aborted" && /stale leader term 8/.test(e.message));
  assert.equal(nodes.b!.node.records.has("late"), false);
  nodes.b!.node.up = false;
  await assert.rejects(commitOn("b", 9, ctReq("q")), (e: ThocError) => e.code === "unavailable" && /runs no container engine/.test(e.message));
});
