/** rankNodes / noPlacementError: the leader's filters and scores, and the refusal an operator reads. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ThocError } from "../errors/index.js";
import type { GpuAllocation, HostGpu } from "../vm/index.js";
import { noPlacementError, rankNodes, type GroupedReservation, type NodeView, type PlacementRequest, type Strategy } from "./placement.js";

const MiB = 1048576;
const GiB = 1073741824;

const node = (name: string, over: Partial<NodeView> & { cpus?: number; memMB?: number; gpus?: HostGpu[] } = {}): NodeView => {
  const { cpus = 8, memMB = 16384, gpus = [], ...rest } = over;
  return { id: `id-${name}`, name, up: true, capacity: { cpus, memoryBytes: memMB * MiB, gpus, loadFactor: 1 }, diskFreeBytes: 100 * GiB, allocations: [], ...rest };
};
const ask = (name: string, vcpus: number, ramMB: number, over: Partial<PlacementRequest> = {}): PlacementRequest =>
  ({ fit: { name, vcpus, ramMB }, diskGB: 10, image: "debian-12", ...over });
const names = (ns: readonly NodeView[]) => ns.map((n) => n.name);
const gpu = (pci: string): HostGpu => ({ id: "GPU-0", pciAddress: pci, nodeDevice: `pci_${pci.replace(/[:.]/g, "_")}`, vendor: "NVIDIA Corporation", vendorId: "0x10de", model: "RTX", productId: "0x2204", migModel: "" });

/** Places `count` VMs one after the other as the leader would (first ranked node), returning where each went. */
function placeAll(nodes: NodeView[], count: number, strategy: Strategy, req: (i: number) => PlacementRequest): string[] {
  const where: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = req(i);
    const { ranked } = rankNodes(r, nodes, strategy);
    const to = ranked[0]!;
    (to.allocations as GroupedReservation[]).push({ name: r.fit.name, vcpus: r.fit.vcpus, ramMB: r.fit.ramMB, gpus: [], ...(r.group ? { group: r.group } : {}) });
    where.push(to.name);
  }
  return where;
}

test("binpack fills one node before the next; spread takes equal nodes in turn", () => {
  const five = () => ["n1", "n2", "n3", "n4", "n5"].map((n) => node(n, { cpus: 4, memMB: 8192 }));
  const req = (i: number) => ask(`vm${i}`, 1, 2048);
  assert.deepEqual(placeAll(five(), 10, "binpack", req), ["n1", "n1", "n1", "n1", "n2", "n2", "n2", "n2", "n3", "n3"]);
  assert.deepEqual(placeAll(five(), 10, "spread", req), ["n1", "n2", "n3", "n4", "n5", "n1", "n2", "n3", "n4", "n5"]);
});

test("binpack prefers the tightest fit; spread the most room; vCPUs break RAM ties, then the number of VMs, then the name", () => {
  const small = node("small", { memMB: 4096 }), big = node("big", { memMB: 65536 });
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [big, small], "binpack").ranked), ["small", "big"]);
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [small, big], "spread").ranked), ["big", "small"]);
  // Names opposite to the expected order, so the name is not what decides.
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [node("a-many", { cpus: 16 }), node("z-few", { cpus: 2 })], "binpack").ranked), ["z-few", "a-many"]);
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [node("a-few", { cpus: 2 }), node("z-many", { cpus: 16 })], "spread").ranked), ["z-many", "a-few"]);
  // Same room left, but one node holds two small VMs and the other one larger: spread goes to the one with fewer.
  const two = node("a-two", { allocations: [{ name: "x", vcpus: 1, ramMB: 1024, gpus: [] }, { name: "y", vcpus: 1, ramMB: 1024, gpus: [] }] });
  const one = node("z-one", { allocations: [{ name: "z", vcpus: 2, ramMB: 2048, gpus: [] }] });
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [two, one], "spread").ranked), ["z-one", "a-two"]);
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), [one, two], "binpack").ranked), ["a-two", "z-one"], "binpack: then by name");
});

test("a GPU request lands only on the node that has the device", () => {
  const held: GpuAllocation = { vm: "g0", mode: "passthrough", pciAddress: "0000:af:00.0" };
  const nodes = [node("plain1"), node("gpu-busy", { gpus: [gpu("0000:af:00.0")], allocations: [{ name: "g0", vcpus: 1, ramMB: 512, gpus: [held] }] }),
    node("gpu-free", { gpus: [gpu("0000:af:00.0")] }), node("plain2")];
  const req = ask("g1", 1, 1024, { fit: { name: "g1", vcpus: 1, ramMB: 1024, gpu: { enabled: true, mode: "passthrough", deviceIds: ["0000:af:00.0"], migProfile: "" } } });
  for (const s of ["binpack", "spread"] as const) {
    const { ranked, refused } = rankNodes(req, nodes, s);
    assert.deepEqual(names(ranked), ["gpu-free"], s);
    assert.deepEqual(refused.map((r) => [r.node.name, r.resource]), [["plain1", "gpu"], ["gpu-busy", "gpu"], ["plain2", "gpu"]]);
    assert.match(refused[1]!.reason, /already assigned to VM g0/);
  }
});

test("anti-affinity spreads a group, even under binpack, and refuses when every node has one", () => {
  const nodes = ["n1", "n2", "n3"].map((n) => node(n));
  const req = (i: number) => ask(`db${i}`, 1, 1024, { group: "db" });
  assert.deepEqual(placeAll(nodes, 3, "binpack", req).sort(), ["n1", "n2", "n3"]);
  const { ranked, refused } = rankNodes(req(3), nodes, "binpack");
  assert.deepEqual(ranked, []);
  assert.deepEqual(refused.map((r) => r.resource), ["group", "group", "group"]);
  const e = noPlacementError(req(3), refused, nodes);
  assert.equal(e.code, "resource_exhausted");
  assert.match(e.message, /^no node can take vm db3 \(1 vCPUs, 1024 MiB, 10 GiB disk, group db\): n1: already runs a VM of group db; n2: .*; n3: .*$/);
  // Another group, or none, is not held back; precomputed groups count like the allocations.
  assert.equal(rankNodes(ask("web", 1, 1024, { group: "web" }), nodes, "binpack").ranked.length, 3);
  const fast = nodes.map((n) => ({ ...n, used: { vcpus: 1, ramMB: 1024, groups: new Set(["db"]) } }));
  assert.deepEqual(rankNodes(req(3), fast, "binpack").ranked, []);
  assert.throws(() => rankNodes(ask("x", 1, 1, { group: "Bad_Group" }), nodes, "spread"),
    (err: ThocError) => err.code === "invalid_argument" && /group: "Bad_Group" is not a valid group name/.test(err.message));
});

test("a pinned node, by name or id, is the only candidate; an unknown one is not_found naming the known nodes", () => {
  const nodes = [node("n1"), node("n2"), node("n3")];
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024, { node: "n3" }), nodes, "binpack").ranked), ["n3"]);
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024, { node: "id-n2" }), nodes, "binpack").ranked), ["n2"]);
  assert.throws(() => rankNodes(ask("a", 1, 1024, { node: "n9" }), nodes, "binpack"),
    (err: ThocError) => err.code === "not_found" && err.message === "node: no node named n9 in the cluster: pin one of n1, n2, n3");
  const full = { ...nodes[1]!, allocations: [{ name: "z", vcpus: 1, ramMB: 16000, gpus: [] }] };
  const r = rankNodes(ask("a", 1, 1024, { node: "n2" }), [nodes[0]!, full], "binpack");
  assert.deepEqual([r.ranked, r.refused.map((x) => x.node.name)], [[], ["n2"]], "a pinned node that is full is not swapped for another");
});

test("a request larger than any node names the largest node's size", () => {
  const nodes = [node("s", { cpus: 4, memMB: 8192 }), node("m", { cpus: 16, memMB: 32768 }), node("l", { cpus: 8, memMB: 65536 })];
  const cpuHeavy = ask("huge", 32, 1024);
  const e = noPlacementError(cpuHeavy, rankNodes(cpuHeavy, nodes, "binpack").refused, nodes);
  assert.equal(e.code, "invalid_argument", "no retry can help: the request is bad for this cluster");
  assert.equal(e.message, "vm huge (32 vCPUs, 1024 MiB, 10 GiB disk) is larger than any node: the largest node, m, has 16 CPUs and 32768 MiB; ask for at most that");
  const ramHeavy = ask("fat", 2, 100_000);
  assert.match(noPlacementError(ramHeavy, rankNodes(ramHeavy, nodes, "binpack").refused, nodes).message, /larger than any node: the largest node, l, has 8 CPUs and 65536 MiB/);
});

test("the refusal names what is short on the closest candidates first, at most three, and counts the rest", () => {
  const holding = (ramMB: number, vcpus = 1): GroupedReservation[] => [{ name: "o", vcpus, ramMB, gpus: [] }];
  const nodes = [
    node("far", { allocations: holding(15000) }),
    node("near", { allocations: holding(10240) }),
    node("cpu", { allocations: holding(1024, 6) }),
    node("mid", { allocations: holding(12288) }),
    node("down", { up: false }),
    node("nodisk", { diskFreeBytes: 3 * GiB }),
  ];
  const req = ask("x", 4, 8192);
  const { ranked, refused } = rankNodes(req, nodes, "spread");
  assert.deepEqual(ranked, []);
  const e = noPlacementError(req, refused, nodes);
  assert.equal(e.code, "resource_exhausted");
  assert.equal(e.message, "no node can take vm x (4 vCPUs, 8192 MiB, 10 GiB disk): near: ramMB short by 2048 MiB (6144 of 16384 MiB free); "
    + "cpu: vcpus short by 2 (2 of 8 free); mid: ramMB short by 4096 MiB (4096 of 16384 MiB free); and 3 more (1 disk, 1 ramMB, 1 down)");
  assert.deepEqual(refused.find((r) => r.node.name === "nodisk")?.short, { need: 10, free: 3 });
  assert.equal(refused.find((r) => r.node.name === "nodisk")?.reason, "disk short by 7 GiB (3 GiB free)");
});

test("disk: a node with less free disk than the VM's overlay may grow to is refused; a diskless VM ignores disk", () => {
  const nodes = [node("tight", { diskFreeBytes: 10 * GiB - 1 }), node("roomy", { diskFreeBytes: 10 * GiB })];
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024), nodes, "binpack").ranked), ["roomy"]);
  assert.deepEqual(names(rankNodes(ask("a", 1, 1024, { diskGB: 0 }), nodes, "binpack").ranked), ["roomy", "tight"]);
});

test("images: a node that lists its images and lacks this one is refused; a node without a list can fetch it", () => {
  const nodes = [node("has", { images: ["debian-12"] }), node("lacks", { images: ["alpine"] }), node("shared")];
  const { ranked, refused } = rankNodes(ask("a", 1, 1024), nodes, "binpack");
  assert.deepEqual(names(ranked), ["has", "shared"]);
  assert.deepEqual(refused.map((r) => [r.node.name, r.resource, r.reason]), [["lacks", "image", "no image debian-12"]]);
});

test("down nodes are skipped; none up, or no node at all, is unavailable", () => {
  const nodes = [node("n1", { up: false }), node("n2"), node("n3", { up: false })];
  const r = rankNodes(ask("a", 1, 1024), nodes, "spread");
  assert.deepEqual(names(r.ranked), ["n2"]);
  assert.deepEqual(r.refused.map((x) => [x.node.name, x.resource]), [["n1", "down"], ["n3", "down"]]);
  const allDown = nodes.map((n) => ({ ...n, up: false }));
  const e = noPlacementError(ask("a", 1, 1024), rankNodes(ask("a", 1, 1024), allDown, "spread").refused, allDown);
  assert.equal(e.code, "unavailable");
  assert.match(e.message, /none of the 3 nodes is up/);
  assert.equal(noPlacementError(ask("a", 1, 1024), [], []).code, "unavailable");
  const pinnedDown = rankNodes(ask("a", 1, 1024, { node: "n1" }), nodes, "spread");
  const p = noPlacementError(ask("a", 1, 1024, { node: "n1" }), pinnedDown.refused, nodes);
  assert.deepEqual([p.code, p.message], ["unavailable", "no node can take vm a (1 vCPUs, 1024 MiB, 10 GiB disk): n1 is down; retry when it is back or pin an up node"]);
});

test("precomputed usage ranks exactly as adding up the allocations does", () => {
  const nodes = Array.from({ length: 20 }, (_, i) => node(`n${String(i).padStart(2, "0")}`, {
    cpus: 4 + (i % 3) * 4, memMB: 8192 * (1 + (i % 4)),
    allocations: Array.from({ length: i % 5 }, (_, j) => ({ name: `v${j}`, vcpus: 1 + (j % 2), ramMB: 1024 * (1 + j), gpus: [] })),
  }));
  const fast = nodes.map((n) => ({ ...n, used: { vcpus: n.allocations.reduce((s, a) => s + a.vcpus, 0), ramMB: n.allocations.reduce((s, a) => s + a.ramMB, 0) } }));
  for (const s of ["binpack", "spread"] as const) {
    for (const req of [ask("a", 1, 1024), ask("b", 4, 12000), ask("c", 8, 2048)]) {
      const slow = rankNodes(req, nodes, s), quick = rankNodes(req, fast, s);
      assert.deepEqual(names(quick.ranked), names(slow.ranked), `${s} ${req.fit.name}`);
      assert.deepEqual(quick.refused.map((r) => r.reason), slow.refused.map((r) => r.reason));
    }
  }
});

test("limit: the best few in the same order as the full ranking, every refusal still listed", () => {
  const nodes = Array.from({ length: 40 }, (_, i) => node(`n${String(i).padStart(2, "0")}`, {
    memMB: 8192 * (1 + (i * 7) % 5), cpus: 4 + (i % 3) * 4, up: i % 11 !== 0,
    allocations: Array.from({ length: i % 4 }, (_, j) => ({ name: `v${j}`, vcpus: 1, ramMB: 2048 * (1 + ((i + j) % 3)), gpus: [] })),
  }));
  for (const s of ["binpack", "spread"] as const) {
    const all = rankNodes(ask("a", 2, 4096), nodes, s);
    for (const limit of [1, 3, 8, 100]) {
      const some = rankNodes(ask("a", 2, 4096), nodes, s, { limit });
      assert.deepEqual(names(some.ranked), names(all.ranked).slice(0, limit), `${s} limit ${limit}`);
      assert.deepEqual(some.refused.map((r) => r.node.name), all.refused.map((r) => r.node.name));
    }
  }
});
