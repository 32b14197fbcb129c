/**
 * VM admission as a pure function of plain data: does a request fit a node,
 * given what the node has and what its VMs already hold? The scheduler
 * leader asks it of every candidate node; the node asks it again inside
 * VmManager.create's serialized reserve step, so placement and the final
 * check cannot disagree. No libvirt, store or manager types cross it.
 *
 * The rules: a VM never asks for more vCPUs than the node has, nor more RAM
 * than it physically has; the VMs' vCPUs together stay within CPUs ×
 * limits.loadFactor and their RAM within memory × limits.loadFactor (one
 * factor for both: the operator's single overcommit knob); GPUs (whole
 * devices or MIG slices) are never given twice.
 */
import { ThocError, type ErrorCode, type ErrorDetails } from "../errors/index.js";
import { allocateGpus, type GpuAllocation, type HostGpu } from "./gpu.js";
import type { GpuSpec } from "./spec.js";

/** What a VM asks for (a validated spec has these fields). */
export interface FitRequest { name: string; vcpus: number; ramMB: number; gpu?: GpuSpec }

/** What one VM (or container: kind "container") on the node already holds. */
export interface Reservation { name: string; vcpus: number; ramMB: number; gpus: GpuAllocation[]; kind?: "container" }

/** What the node has. */
export interface NodeCapacity { cpus: number; memoryBytes: number; gpus: HostGpu[]; loadFactor: number }

/**
 * The sums of the allocations' vCPUs and RAM. A caller that keeps them
 * (the scheduler leader's view of a thousand nodes) passes them so fit()
 * does not add up every VM on every candidate; they must equal the sums.
 */
export interface Usage { vcpus: number; ramMB: number }

export type FitResource = "capacity" | "vcpus" | "ramMB" | "gpu";

export type FitResult =
  /** The GPUs the VM would get; MIG slices carry no mdevUuid yet (the node names its mediated device). */
  | { fits: true; gpus: GpuAllocation[] }
  | {
    fits: false;
    /** What is short. */
    resource: FitResource;
    /** The ThocError code the node answers with (resource_exhausted, or not_found / invalid_argument for a GPU the node lacks). */
    code: ErrorCode;
    /** Says what is short and by how much; the node's error message. */
    reason: string;
    details: ErrorDetails;
    /** In the resource's unit (vCPUs, MiB): asked for, still free, the node's total for VMs. */
    need?: number;
    free?: number;
    total?: number;
  };

export type FitRefusal = Extract<FitResult, { fits: false }>;

const MiB = 1048576;

export function fit(request: FitRequest, allocations: readonly Reservation[], capacity: NodeCapacity, used?: Usage): FitResult {
  const u = used ?? usageOf(allocations);
  return capacityRead(capacity)
    ?? vcpusFitHost(request, capacity)
    ?? ramFitsHost(request, capacity)
    ?? vcpusFitBudget(request, u.vcpus, capacity)
    ?? ramFitsBudget(request, u.ramMB, capacity)
    ?? gpusFit(request, allocations, capacity);
}

/**
 * fit()'s CPU and RAM rules alone, as one yes or no without building a
 * refusal: what the leader asks of a thousand nodes, most of them full, per
 * decision. When it says no, fit() with the same usage says why (and never
 * gets as far as GPUs); fit.test.ts holds the two to the same answers.
 */
export function withinBudget(r: FitRequest, c: NodeCapacity, used: Usage): boolean {
  return c.cpus > 0 && c.memoryBytes > 0 && r.vcpus <= c.cpus && r.ramMB <= Math.floor(c.memoryBytes / MiB)
    && used.vcpus + r.vcpus <= Math.floor(c.cpus * c.loadFactor) && used.ramMB + r.ramMB <= Math.floor((c.memoryBytes * c.loadFactor) / MiB);
}

/** The vCPUs and RAM the allocations hold together. */
export function usageOf(allocations: readonly Reservation[]): Usage {
  let vcpus = 0, ramMB = 0;
  for (const a of allocations) { vcpus += a.vcpus; ramMB += a.ramMB; }
  return { vcpus, ramMB };
}

/** The node's totals for VMs: CPUs and memory × load factor, rounded down (a budget never rounds up into overcommit). */
export function budgetOf(c: NodeCapacity): Usage {
  return { vcpus: Math.floor(c.cpus * c.loadFactor), ramMB: Math.floor((c.memoryBytes * c.loadFactor) / MiB) };
}

/** A refusal as the node answers it: the error create throws. */
export function fitError(r: FitRefusal): ThocError {
  return new ThocError(r.code, r.reason, r.details);
}

/** A node whose CPUs or memory read as zero (capacity not known yet) takes nothing. */
function capacityRead(c: NodeCapacity): FitRefusal | undefined {
  if (c.cpus > 0 && c.memoryBytes > 0) return undefined;
  return {
    fits: false, resource: "capacity", code: "resource_exhausted",
    reason: `this node reports ${c.cpus} CPUs and ${Math.floor(c.memoryBytes / MiB)} MiB of memory: its capacity is not known yet`,
    details: { cpus: c.cpus, memoryBytes: c.memoryBytes },
  };
}

/** One VM never gets more vCPUs than the node has CPUs, whatever the load factor (its threads would contend with each other). */
function vcpusFitHost(r: FitRequest, c: NodeCapacity): FitRefusal | undefined {
  if (r.vcpus <= c.cpus) return undefined;
  return {
    fits: false, resource: "vcpus", code: "resource_exhausted",
    reason: `vcpus: needs ${r.vcpus} vCPUs, this node has ${c.cpus} CPUs`,
    details: { field: "vcpus" }, need: r.vcpus, free: c.cpus, total: c.cpus,
  };
}

/** One VM never gets more RAM than the node physically has, whatever the load factor. */
function ramFitsHost(r: FitRequest, c: NodeCapacity): FitRefusal | undefined {
  const hostMB = Math.floor(c.memoryBytes / MiB);
  if (r.ramMB <= hostMB) return undefined;
  return {
    fits: false, resource: "ramMB", code: "resource_exhausted",
    reason: `ramMB: needs ${r.ramMB} MiB, this node has ${hostMB} MiB of memory`,
    details: { field: "ramMB" }, need: r.ramMB, free: hostMB, total: hostMB,
  };
}

function vcpusFitBudget(r: FitRequest, others: number, c: NodeCapacity): FitRefusal | undefined {
  const budget = Math.floor(c.cpus * c.loadFactor);
  if (others + r.vcpus <= budget) return undefined;
  const free = Math.max(0, budget - others);
  return {
    fits: false, resource: "vcpus", code: "resource_exhausted",
    reason: `vcpus: ${r.vcpus} vCPUs do not fit: VMs on this node already have ${others} of ${budget} vCPUs (${c.cpus} CPUs × limits.loadFactor ${c.loadFactor}); ask for at most ${free} vCPUs, delete a VM or raise limits.loadFactor`,
    details: { field: "vcpus" }, need: r.vcpus, free, total: budget,
  };
}

function ramFitsBudget(r: FitRequest, others: number, c: NodeCapacity): FitRefusal | undefined {
  const budget = Math.floor((c.memoryBytes * c.loadFactor) / MiB);
  if (others + r.ramMB <= budget) return undefined;
  const free = Math.max(0, budget - others);
  return {
    fits: false, resource: "ramMB", code: "resource_exhausted",
    reason: `ramMB: ${r.ramMB} MiB does not fit: VMs on this node already have ${others} of ${budget} MiB; ask for at most ${free} MiB or delete a VM`,
    details: { field: "ramMB" }, need: r.ramMB, free, total: budget,
  };
}

/** The GPU decision itself is allocateGpus's (it throws ThocErrors); here it becomes a result. */
function gpusFit(r: FitRequest, taken: readonly Reservation[], c: NodeCapacity): FitResult {
  if (!r.gpu) return { fits: true, gpus: [] };
  try {
    // A container's allocations carry its kind, so a refusal names it as a container.
    const held = taken.flatMap((v) => (v.kind ? v.gpus.map((g) => ({ ...g, kind: v.kind })) : v.gpus));
    const gpus = allocateGpus(r.gpu, r.name, c.gpus, held, () => "");
    return { fits: true, gpus: gpus.map(({ mdevUuid: _, ...a }) => a) };
  } catch (err) {
    if (!(err instanceof ThocError)) throw err;
    return { fits: false, resource: "gpu", code: err.code, reason: err.message, details: err.details };
  }
}
