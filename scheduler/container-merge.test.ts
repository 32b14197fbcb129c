/**
 * After the merge of the container subsystem (issue 18): the scheduler's
 * placement and fenced commit over two real ContainerManagers (MemoryEngine,
 * real LevelDB), joined through the ContainerNode adapter agent/root.ts
 * builds. A node whose engine holds the port refuses and the next takes it;
 * the manager's change hook publishes the entry; a VM's name is refused.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ClusterTable, HlcClock, MemoryTableBackend, ReplicatedTable } from "../cluster/index.js";
import { containerToPb, specFromPb, type ContainerManager } from "../container/index.js";
import { fixture, IMAGE, type Fixture } from "../container/testutil.js";
import { ThocError } from "../errors/index.js";
import { CreateContainerRequestSchema } from "../proto/index.js";
import { MemoryEngine } from "../engine/index.js";
import { ContainerPublisher } from "./container-publisher.js";
import type { ContainerNode } from "./container-table.js";
import { Fence, MemoryFenceStore } from "./fence.js";
import { Placer } from "./placer.js";
import { commitContainerHere } from "./service.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables } from "./vm-table.js";

const log = { info() {}, warn() {}, debug() {}, error() {}, child() { return log; } } as never;
const adapter = (m: ContainerManager): ContainerNode => ({
  available: () => m.engineState().up,
  create: (s, o) => m.create(s, o), get: (n) => m.get(n), list: () => m.list(), delete: (n, o) => m.delete(n, o),
  specFromPb: (pb) => m.validate(specFromPb(pb)), toPb: (r) => containerToPb(r),
});

const hlc = new HlcClock("L");
const tbl = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), { hlc, ringNodes: () => ["L"], self: "L", isUp: () => true, peer: () => { throw new Error("no peers"); } });
const t = new VmTables(await tbl(VM_TABLE), await tbl(HOST_TABLE), await tbl(EVICTION_TABLE));
const fx: Record<string, Fixture> = {};
const pubs: Record<string, ContainerPublisher> = {};
for (const id of ["a", "b"]) {
  let pub: ContainerPublisher | undefined;
  fx[id] = await fixture({ node: id, nodeId: id, onChange: (c) => { void pub?.onChange(c); } }, new MemoryEngine());
  pub = pubs[id] = new ContainerPublisher({ tables: t, nodeId: id, node: () => adapter(fx[id]!.m), log });
  await t.hosts.put(id, JSON.stringify({ id, name: id, cpus: 4, memoryBytes: 2 ** 33, diskFreeBytes: 2 ** 36, loadFactor: 1, gpus: [], version: "t", containers: true }));
}
after(async () => { for (const f of Object.values(fx)) await f.cleanup(); });
const fences = { a: await Fence.open(new MemoryFenceStore()), b: await Fence.open(new MemoryFenceStore()) } as Record<string, Fence>;
const placer = new Placer({
  tables: t, fence: () => 3, isUp: () => true, nodeName: (id) => id, strategy: () => "binpack", commit: async () => { throw new Error("no VMs"); },
  commitContainer: (id, term, req) => commitContainerHere({ fence: fences[id]!, tables: t, self: { id, name: id }, containers: () => adapter(fx[id]!.m), ctPublisher: pubs[id]! }, term, "L", req),
  containerSpec: () => (pb) => fx.a!.m.validate(specFromPb(pb)),
});
const req = (name: string, port: number) => create(CreateContainerRequestSchema, { spec: { name, image: IMAGE, cpus: 0.5, ports: [{ containerPort: 80, hostPort: port }] }, requestId: `r-${name}` });

test("placement over real managers: the port filter, a node's own refusal, the entry published, the request id", async () => {
  const w1 = await placer.placeContainer(req("web-1", 18080));
  assert.equal(w1.nodeId, "a");
  assert.equal(t.local("web-1")?.kind, "container");
  assert.deepEqual(t.local("web-1")?.ports, ["18080/tcp"]);
  assert.equal((await placer.placeContainer(req("web-2", 18080))).nodeId, "b");
  fx.a!.engine.occupyPort(19090);
  assert.equal((await placer.placeContainer(req("metrics", 19090))).nodeId, "b", "a's engine refused the port");
  assert.equal((await fx.a!.m.list()).length, 1, "nothing left behind on a");
  assert.equal((await placer.placeContainer(req("web-1", 18080))).nodeId, "a", "same request id: the same container");
  await assert.rejects(placer.placeContainer(create(CreateContainerRequestSchema, { spec: { name: "bad", image: IMAGE, env: { "1X": "y" } } })), (e: ThocError) => e.code === "invalid_argument");
  await pubs.a!.reconcile();
  await pubs.b!.reconcile();
  assert.deepEqual(t.all().map((e) => `${e.name}@${e.nodeId}`).sort(), ["metrics@b", "web-1@a", "web-2@b"]);
});
