/**
 * ContainerService routed between two nodes over real gRPC on 127.0.0.1 (one
 * process; --dev trust, as plaintext peers have no certificate): calls naming
 * a container reach its node, server-streaming logs and the bidi Exec stream
 * included; a cluster listing merges the table; a VM's name is not a
 * container's (and VM routing says the converse); a container on a down node
 * is unavailable, and delete --force leaves an eviction for it.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ClusterTable, HlcClock, MemoryTableBackend, PeerPool, ReplicatedTable } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import { ContainerService, ContainerSpecSchema, ExecInputSchema, type ExecInput } from "../proto/index.js";
import { RpcServer, type CallContext } from "../rpc/index.js";
import type { VmManager } from "../vm/index.js";
import { routedContainerService, type ContainerClient, type ContainerImpl } from "./container-routing.js";
import { containerEntryOf, type ContainerNode } from "./container-table.js";
import { MemContainerNode, specOf } from "./container-testing.js";
import { routedVmService } from "./routing.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables, type VmEntry } from "./vm-table.js";

async function tables(): Promise<VmTables> {
  const hlc = new HlcClock("A");
  const t = async (name: string) => new ClusterTable(await ReplicatedTable.open(name, new MemoryTableBackend()), {
    hlc, ringNodes: () => ["A"], self: "A", isUp: () => true, peer: () => { throw new Error("no peers here"); },
  });
  return new VmTables(await t(VM_TABLE), await t(HOST_TABLE), await t(EVICTION_TABLE));
}

const ctx = (): CallContext => ({ signal: new AbortController().signal, metadata: new grpc.Metadata(), peer: "test", caller: { kind: "local", uid: 0, gid: 0, pid: 1 }, requestId: "req-1", timeRemaining: () => Infinity });
const no = () => Promise.reject(new ThocError("unimplemented", "not in this test"));

/** A node's own ContainerService (container/'s in the agent), answering from its records; logs and exec scripted. */
function localService(node: ContainerNode, served: string[]): ContainerImpl {
  return {
    async createContainer() { return no(); },
    async listContainers() { return { containers: (await node.list()).map((r) => node.toPb(r)) }; },
    async getContainer(req) { served.push(`get ${req.name}`); return { container: node.toPb(await node.get(req.name)) }; },
    async startContainer() { return no(); },
    async stopContainer(req) { served.push(`stop ${req.name}`); return { container: node.toPb(await node.get(req.name)) }; },
    async restartContainer() { return no(); },
    async deleteContainer(req) { served.push(`delete ${req.name}`); return { name: req.name, volumesRemoved: await node.delete(req.name, { keepVolumes: req.keepVolumes }) }; },
    async *containerLogs(req) {
      await node.get(req.name);
      for (const line of ["one\n", "two\n"]) yield { data: new TextEncoder().encode(line), stream: "stdout" };
      yield { data: new TextEncoder().encode("oops\n"), stream: "stderr" };
    },
    async *exec(reqs) {
      // A tiny "cat | tr a-z A-Z" that exits 3 when stdin closes.
      for await (const m of reqs) {
        if (m.start) { await node.get(m.start.name); continue; }
        if (m.stdin.length) yield { data: new TextEncoder().encode(new TextDecoder().decode(m.stdin).toUpperCase()), stream: "stdout" };
        if (m.rows) yield { data: new TextEncoder().encode(`[${m.rows}x${m.cols}]`), stream: "stdout" };
        if (m.stdinEof) break;
      }
      yield { exited: true, exitCode: 3 };
    },
    async containerStats(req) { return { name: req.name, cpuSeconds: 1.5 }; },
    async importContainerImage() { return no(); },
    async listContainerImages() { return { images: [] }; },
    async deleteContainerImage() { return no(); },
    async getContainerRuntime() { return { available: true, engine: "podman" }; },
  };
}

const t = await tables();
const nodeA = new MemContainerNode("A"), nodeB = new MemContainerNode("B");
const servedA: string[] = [], servedB: string[] = [];
const up = new Set(["A", "B"]);
const common = { tables: t, nodeName: (id: string) => id, downSince: () => undefined, dev: true, create: () => no() };
const serverB = new RpcServer({});
const routerB = routedContainerService({
  ...common, self: { id: "B", name: "B" }, local: localService(nodeB, servedB), node: () => nodeB,
  view: { self: "B", isUp: (id) => up.has(id), address: () => undefined, alive: () => [...up] },
  peers: new PeerPool<typeof ContainerService.method, ContainerClient>({ service: ContainerService, directory: { address: () => undefined }, make: (_id, c) => c }),
});
serverB.add(ContainerService, routerB);
const portB = await serverB.listen("127.0.0.1", 0);
serverB.setAllServing("SERVING");
const peersA = new PeerPool<typeof ContainerService.method, ContainerClient>({ service: ContainerService, directory: { address: (id) => (id === "B" ? `127.0.0.1:${portB}` : undefined) }, make: (_id, c) => c });
const routerA = routedContainerService({
  ...common, self: { id: "A", name: "A" }, local: localService(nodeA, servedA), node: () => nodeA,
  view: { self: "A", isUp: (id) => up.has(id), address: (id) => (id === "B" ? `127.0.0.1:${portB}` : undefined), alive: () => [...up] }, peers: peersA,
});
after(async () => { peersA.close(); await serverB.shutdown(1000); });

const spec = (name: string) => specOf(create(ContainerSpecSchema, { name, image: "localhost/bb:1", ports: [{ containerPort: 80, hostPort: 8080 }] }));
const vmEntry = (name: string, nodeId: string): VmEntry => ({ name, uuid: `u-${name}`, nodeId, nodeName: nodeId, status: "running", detail: "", image: "img", imageKind: "kernel", vcpus: 1, ramMB: 64, diskGB: 1, gpus: [], group: "", requestId: "", createdAt: 1, mac: "" });
for (const [n, name] of [[nodeA, "web-a"], [nodeB, "web-b"]] as const) {
  const r = await n.create(spec(name), {});
  await t.vms.put(name, JSON.stringify(containerEntryOf(r, n.nodeName)));
}
await t.vms.put("vm1", JSON.stringify(vmEntry("vm1", "B")));
for (const id of ["A", "B"]) await t.hosts.put(id, JSON.stringify({ id, name: id, cpus: 4, memoryBytes: 2 ** 33, diskFreeBytes: 2 ** 36, loadFactor: 1, gpus: [], version: "t", containers: true }));

test("a call naming a container goes to its node; one on this node is served here", async () => {
  const b = await routerA.getContainer({ name: "web-b" } as never, ctx());
  assert.deepEqual([b.container?.name, b.container?.node], ["web-b", "B"]);
  assert.deepEqual(servedB, ["get web-b"], "served by B's own service, not routed again");
  await routerA.getContainer({ name: "web-a" } as never, ctx());
  assert.deepEqual(servedA, ["get web-a"]);
  assert.equal((await routerA.containerStats({ name: "web-b" } as never, ctx())).cpuSeconds, 1.5);
});

test("logs and exec stream through the routing node", async () => {
  const chunks: string[] = [];
  for await (const c of routerA.containerLogs({ name: "web-b", follow: true } as never, ctx())) chunks.push(`${c.stream}:${new TextDecoder().decode(c.data as Uint8Array)}`);
  assert.deepEqual(chunks, ["stdout:one\n", "stdout:two\n", "stderr:oops\n"]);
  async function* input(): AsyncIterable<ExecInput> {
    yield create(ExecInputSchema, { start: { name: "web-b", command: ["sh"], tty: true, stdin: true } });
    yield create(ExecInputSchema, { stdin: new TextEncoder().encode("hello") });
    yield create(ExecInputSchema, { rows: 40, cols: 120 });
    yield create(ExecInputSchema, { stdinEof: true });
  }
  const out: string[] = [];
  let exit: number | undefined;
  for await (const o of routerA.exec(input(), ctx())) {
    if (o.exited) exit = o.exitCode;
    else out.push(new TextDecoder().decode(o.data as Uint8Array));
  }
  assert.deepEqual(out, ["HELLO", "[40x120]"]);
  assert.equal(exit, 3, "the process's exit code comes back through both nodes");
});

test("a cluster listing has every container once, no VMs; --node filters", async () => {
  const all = await routerA.listContainers({ node: "", local: false } as never, ctx());
  assert.deepEqual(all.containers?.map((c) => `${c.name}@${c.node}`), ["web-a@A", "web-b@B"]);
  const b = all.containers!.find((c) => c.name === "web-b")!;
  assert.deepEqual(b.ports?.map((p) => p.hostPort), [8080], "from the table entry");
  const onB = await routerA.listContainers({ node: "B", local: false } as never, ctx());
  assert.deepEqual(onB.containers?.map((c) => c.name), ["web-b"]);
});

test("a VM's name is no container's, and a container's no VM's", async () => {
  await assert.rejects(routerA.getContainer({ name: "vm1" } as never, ctx()), (e: ThocError) => e.code === "not_found" && /vm1 is a VM \(thoc-node vm show vm1\)/.test(e.message));
  await assert.rejects(routerA.getContainer({ name: "nope" } as never, ctx()), (e: ThocError) => e.code === "not_found" && /no container named nope in the cluster/.test(e.message));
  const vmRouter = routedVmService({
    self: { id: "A", name: "A" }, local: {} as never, tables: t, view: { self: "A", isUp: () => true, address: () => undefined, alive: () => [] },
    manager: { get: async () => { throw new ThocError("not_found", "no"); } } as unknown as VmManager,
    nodeName: (id) => id, downSince: () => undefined, peers: {} as never, create: () => no(), dev: true,
  });
  await assert.rejects(vmRouter.getVm({ name: "web-b" } as never, ctx()), (e: ThocError) => e.code === "not_found" && /web-b is a container \(thoc-node ct show web-b\)/.test(e.message));
});

test("a container on a down node is unavailable; delete --force drops its entry and leaves an eviction", async () => {
  up.delete("B");
  try {
    await assert.rejects(routerA.stopContainer({ name: "web-b" } as never, ctx()), (e: ThocError) => e.code === "unavailable" && /on node B, which is down/.test(e.message));
    const d = await routerA.deleteContainer({ name: "web-b", force: true, keepVolumes: true } as never, ctx());
    assert.equal(d.name, "web-b");
    assert.equal(t.local("web-b"), undefined);
    const ev = t.evictionsFor("B");
    assert.deepEqual(ev.map((x) => [x.name, x.e.kind, x.e.keepVolumes]), [["web-b", "container", true]]);
    assert.equal(nodeB.records.has("web-b"), true, "B deletes it itself when it is back");
  } finally { up.add("B"); }
});
