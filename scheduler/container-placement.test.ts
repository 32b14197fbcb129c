/**
 * Containers in rankNodes / noPlacementError: the host-port and engine
 * filters, fractional CPUs, and allocations that mix VMs and containers
 * (capacity, GPUs and anti-affinity groups count both kinds).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ContainerSpecSchema } from "../proto/index.js";
import type { HostGpu } from "../vm/index.js";
import { containerPlacement, MIN_CPUS, MIN_MEMORY_MB } from "./container-table.js";
import { noPlacementError, rankNodes, type GroupedReservation, type NodeView, type PlacementRequest } from "./placement.js";

const MiB = 1048576;
const GiB = 1073741824;

const node = (name: string, over: Partial<NodeView> & { cpus?: number; memMB?: number; gpus?: HostGpu[] } = {}): NodeView => {
  const { cpus = 4, memMB = 8192, gpus = [], ...rest } = over;
  return { id: `id-${name}`, name, up: true, capacity: { cpus, memoryBytes: memMB * MiB, gpus, loadFactor: 1 }, diskFreeBytes: 100 * GiB, allocations: [], containers: true, ...rest };
};
const ct = (name: string, cpus: number, ramMB: number, over: Partial<PlacementRequest> = {}): PlacementRequest =>
  ({ kind: "container", fit: { name, vcpus: cpus, ramMB }, diskGB: 0, image: "localhost/bb:1", ...over });
const vmRes = (name: string, vcpus: number, ramMB: number, group?: string): GroupedReservation => ({ name, vcpus, ramMB, gpus: [], ...(group ? { group } : {}) });
const ctRes = (name: string, cpus: number, ramMB: number, ports: string[] = [], group?: string): GroupedReservation =>
  ({ name, vcpus: cpus, ramMB, gpus: [], kind: "container", ports, ...(group ? { group } : {}) });
const names = (ns: readonly NodeView[]) => ns.map((n) => n.name);
const gpu = (pci: string): HostGpu => ({ id: "GPU-0", pciAddress: pci, nodeDevice: "d", vendor: "NVIDIA", vendorId: "0x10de", model: "RTX", productId: "0x2204", migModel: "" });

test("a node whose container binds the host port is filtered, saying which; another protocol or port passes", () => {
  const a = node("a", { allocations: [ctRes("web-1", 0.5, 256, ["8080/tcp"])] });
  const b = node("b", { allocations: [vmRes("big", 3, 6000)] });
  // Spread would pick a (more room left): the port decides.
  const { ranked, refused } = rankNodes(ct("web-2", 0.5, 256, { ports: ["8080/tcp"] }), [a, b], "spread");
  assert.deepEqual(names(ranked), ["b"]);
  assert.deepEqual(refused.map((r) => [r.node.name, r.resource, r.reason]), [["a", "ports", "host port 8080/tcp is bound already (container web-1)"]]);
  assert.deepEqual(names(rankNodes(ct("dns", 0.5, 256, { ports: ["8080/udp"] }), [a, b], "spread").ranked), ["a", "b"]);
  assert.deepEqual(names(rankNodes(ct("web-3", 0.5, 256, { ports: ["8081/tcp"] }), [a, b], "spread").ranked), ["a", "b"]);
  // The precomputed usage's port set decides like the allocations do.
  const fast = { ...a, allocations: [], used: { vcpus: 0.5, ramMB: 256, ports: new Set(["8080/tcp"]) } };
  assert.deepEqual(rankNodes(ct("web-2", 0.5, 256, { ports: ["8080/tcp"] }), [fast], "spread").ranked, []);
  // Every node binds it: the error names the port on each.
  const e = noPlacementError(ct("web-2", 0.5, 256, { ports: ["8080/tcp"] }), rankNodes(ct("web-2", 0.5, 256, { ports: ["8080/tcp"] }), [a], "spread").refused, [a]);
  assert.equal(e.code, "resource_exhausted");
  assert.equal(e.message, "no node can take container web-2 (0.5 CPUs, 256 MiB, ports 8080/tcp): a: host port 8080/tcp is bound already (container web-1)");
  assert.equal(e.details?.container, "web-2");
});

test("nodes without a container engine take no containers (VMs still go there); none at all is a precondition, not a full cluster", () => {
  const noEngine = node("bare", { containers: false });
  const unknown = node("old", { containers: undefined });
  const { ranked, refused } = rankNodes(ct("x", 1, 128), [noEngine, unknown], "binpack");
  assert.deepEqual(names(ranked), ["old"], "a node that says nothing (older version) is let through; its commit answers");
  assert.deepEqual(refused.map((r) => [r.node.name, r.resource]), [["bare", "engine"]]);
  const vm = { fit: { name: "v", vcpus: 1, ramMB: 128 }, diskGB: 0, image: "img" };
  assert.deepEqual(names(rankNodes(vm, [noEngine], "binpack").ranked), ["bare"]);
  const only = rankNodes(ct("x", 1, 128), [noEngine, node("bare2", { containers: false })], "binpack");
  const e = noPlacementError(ct("x", 1, 128), only.refused, [noEngine]);
  assert.equal(e.code, "failed_precondition");
  assert.match(e.message, /^no node can take container x .*: no up node runs a container engine/);
});

test("VMs and containers share a node's CPUs and RAM, fractional CPUs included", () => {
  // 4 CPUs: a 3-vCPU VM and 0.75 CPUs of containers leave 0.25.
  const n = node("n", { allocations: [vmRes("vm", 3, 1024), ctRes("c1", 0.5, 64), ctRes("c2", 0.25, 64)] });
  assert.deepEqual(names(rankNodes(ct("c3", 0.25, 64), [n], "binpack").ranked), ["n"]);
  const r = rankNodes(ct("c4", 0.5, 64), [n], "binpack");
  assert.deepEqual(r.ranked, []);
  assert.equal(r.refused[0]!.resource, "vcpus");
  // A VM counts the containers too.
  assert.deepEqual(rankNodes({ fit: { name: "v2", vcpus: 1, ramMB: 64 }, diskGB: 0, image: "img" }, [n], "binpack").ranked, []);
  // RAM: containers' memory counts against a VM.
  const m = node("m", { memMB: 2048, allocations: [ctRes("big", 0.1, 1536)] });
  const v = rankNodes({ fit: { name: "v3", vcpus: 1, ramMB: 1024 }, diskGB: 0, image: "img" }, [m], "binpack");
  assert.equal(v.refused[0]?.resource, "ramMB");
  // Binpack packs a container next to a VM rather than on an empty node.
  assert.deepEqual(names(rankNodes(ct("c5", 0.5, 64), [node("empty"), node("busy", { allocations: [vmRes("vm", 2, 4096)] })], "binpack").ranked), ["busy", "empty"]);
});

test("an anti-affinity group holds across VMs and containers, and the refusal names the kind that holds it", () => {
  const withCt = node("a", { allocations: [ctRes("db-ct", 0.5, 64, [], "db")] });
  const withVm = node("b", { allocations: [vmRes("db-vm", 1, 512, "db")] });
  const free = node("c");
  const { ranked, refused } = rankNodes(ct("db-2", 0.5, 64, { group: "db" }), [withCt, withVm, free], "binpack");
  assert.deepEqual(names(ranked), ["c"]);
  assert.deepEqual(refused.map((r) => r.reason), ["already runs a container of group db", "already runs a VM of group db"]);
  const vm = rankNodes({ fit: { name: "db-3", vcpus: 1, ramMB: 64 }, diskGB: 0, image: "img", group: "db" }, [withCt], "binpack");
  assert.deepEqual(vm.ranked, [], "a VM of the group is kept off a node with a container of it");
});

test("a container's GPU request lands where the device is free of VMs", () => {
  const held: GroupedReservation = { name: "train", vcpus: 1, ramMB: 512, gpus: [{ vm: "train", mode: "passthrough", pciAddress: "0000:af:00.0" }] };
  const busy = node("busy", { gpus: [gpu("0000:af:00.0")], allocations: [held] });
  const freeGpu = node("free", { gpus: [gpu("0000:af:00.0")] });
  const p = containerPlacement(create(ContainerSpecSchema, { name: "infer", image: "img", gpuDeviceIds: ["GPU-0"] }));
  const { ranked, refused } = rankNodes({ kind: "container", fit: p.fit, diskGB: 0, image: p.image }, [busy, freeGpu, node("plain")], "binpack");
  assert.deepEqual(names(ranked), ["free"]);
  assert.match(refused[0]!.reason, /already assigned to VM train/);
  assert.equal(refused[1]!.resource, "gpu");
});

test("containerPlacement: the reservation of a spec (0 means the minimum) and what it refuses", () => {
  const p = containerPlacement(create(ContainerSpecSchema, { name: "web", image: "img", ports: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 53, hostPort: 5353, protocol: "udp" }, { containerPort: 9000 }] }));
  assert.deepEqual(p.ports, ["8080/tcp", "5353/udp"], "host port 0 (the engine picks) binds nothing known");
  assert.equal(p.fit.vcpus, MIN_CPUS);
  assert.equal(p.fit.ramMB, MIN_MEMORY_MB);
  assert.equal(containerPlacement(create(ContainerSpecSchema, { name: "w", image: "i", cpus: 1.5, memoryMb: 300 })).fit.vcpus, 1.5);
  const bad = (over: object, re: RegExp) => assert.throws(() => containerPlacement(create(ContainerSpecSchema, { name: "w", image: "i", ...over })), (e: Error & { code?: string }) => e.code === "invalid_argument" && re.test(e.message));
  bad({ name: "Web_1" }, /name: "Web_1" is not a valid container name/);
  bad({ image: "" }, /image: missing/);
  bad({ cpus: -1 }, /cpus: -1/);
  bad({ ports: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 81, hostPort: 8080 }] }, /host port 8080\/tcp is mapped twice/);
  bad({ ports: [{ containerPort: 0, hostPort: 8080 }] }, /ports are 1-65535/);
  bad({ ports: [{ containerPort: 80, hostPort: 8080, protocol: "sctp" }] }, /protocol "sctp"/);
  // With container/'s validation, its words win.
  assert.throws(() => containerPlacement(create(ContainerSpecSchema, { name: "w", image: "i" }), () => { throw Object.assign(new Error("env: bad key"), { code: "invalid_argument" }); }), /env: bad key/);
});
