/**
 * VM placement for the scheduler leader, as a pure function of the leader's
 * view of every node: filters (up, pinned node, capacity by the same fit()
 * the node re-checks, free disk, image, anti-affinity), then a score
 * (binpack or spread). The leader sends a fenced create to ranked[0]; the
 * node re-runs fit() against its own records, and on a refusal (the view was
 * stale, another create raced it) the leader tries ranked[1], and so on.
 *
 * Cost: O(nodes) filtering, then ordering the nodes that pass: a full sort,
 * or with `limit` a bounded selection of the best few (sorting 1,000 nodes
 * costs more than filtering them). A view carrying `used` (the allocations'
 * sums, kept by the leader as replies come in) spares adding up every VM on
 * every candidate (bench/scheduler-placement.ts measures both).
 *
 * Containers are placed by the same filters and scores (their CPUs may be
 * fractional), with two more: the node runs a container engine, and none of
 * the node's containers binds a host port the request asks for. A node's
 * allocations hold its VMs and containers alike, so capacity, GPUs and
 * anti-affinity groups count both.
 */
import { ThocError } from "../errors/index.js";
import { fit, usageOf, withinBudget, type FitRefusal, type FitRequest, type FitResource, type NodeCapacity, type Reservation, type Usage } from "../vm/index.js";

const MiB = 1048576;
const GiB = 1073741824;
const GROUP_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** How many refused nodes an error names; the rest are counted by what they lack. */
const NAMED = 3;

/** What one VM or container on a node holds, with the anti-affinity group it was created in (and a container's host ports). */
export type GroupedReservation = Reservation & { group?: string; kind?: "container"; ports?: readonly string[] };

/** The allocations' sums and the groups (and host ports) among them, kept by a caller that updates them as VMs come and go. */
export interface NodeUsage extends Usage { groups?: ReadonlySet<string>; ports?: ReadonlySet<string> }

/** The leader's view of one node. */
export interface NodeView {
  id: string;
  name: string;
  up: boolean;
  capacity: NodeCapacity;
  diskFreeBytes: number;
  allocations: readonly GroupedReservation[];
  /**
   * The images this node can use. Undefined means every node can fetch any
   * image from the replicated object store (the leader passes undefined when
   * the cluster's image store is shared), so the image filter lets it through;
   * a list means node-local images: a node without the image is refused.
   */
  images?: readonly string[];
  /** Fast path: must equal usageOf(allocations) (and the set of their groups, when given). */
  used?: NodeUsage;
  /** Whether the node runs a container engine; false refuses containers (undefined: not known, let through). */
  containers?: boolean;
}

export interface PlacementRequest {
  fit: FitRequest;
  /** Disk the VM's overlay may grow to, GiB; 0 = no disk (kernel boot), no disk filter. */
  diskGB: number;
  image: string;
  /** Anti-affinity group: no two VMs of a group on one node (a hard filter, like Nomad's distinct_hosts). */
  group?: string;
  /** A pinned node, by name or id: placement considers it alone. */
  node?: string;
  /** "container" for a container create (fit.vcpus are then its CPUs, possibly fractional). */
  kind?: "container";
  /** A container's host ports ("8080/tcp"): a node where one is bound already is refused. */
  ports?: readonly string[];
}

export type Strategy = "binpack" | "spread";

export type PlacementResource = FitResource | "down" | "disk" | "image" | "group" | "engine" | "ports";

export interface Refusal {
  node: NodeView;
  /** What the node lacks, in words (for a capacity refusal, the node's own fit() reason). */
  reason: string;
  resource: PlacementResource;
  /** In the resource's unit (vCPUs, MiB, GiB): asked for, free, the node's total for VMs (when known). */
  short?: { need: number; free: number; total?: number };
  /** A GPU the node does not have at all (not merely busy). */
  absent?: boolean;
}

export interface Ranking { ranked: NodeView[]; refused: Refusal[] }

export interface RankOptions {
  /**
   * Rank only the best `limit` nodes (default: all). The leader passes a few
   * (8) and ranks again, with the view its refusals refreshed, if all of them
   * refuse; `refused` always lists every node filtered out.
   */
  limit?: number;
}

interface Scored { node: NodeView; ram: number; cpu: number; vms: number }

/**
 * The nodes that can take the VM, best first, and why the others cannot.
 * Throws invalid_argument for a bad group name, not_found for a pinned node
 * the view does not have; an empty `ranked` is for noPlacementError.
 */
export function rankNodes(req: PlacementRequest, nodes: readonly NodeView[], strategy: Strategy, opts: RankOptions = {}): Ranking {
  checkGroup(req.group);
  const candidates = req.node === undefined ? nodes : [pinned(req.node, nodes)];
  const scored: Scored[] = [];
  const refused: Refusal[] = [];
  const { fit: want, group, image } = req;
  const diskBytes = req.diskGB * GiB;
  const gpuOnly = want.gpu !== undefined && (want.gpu.mode === "mig" || want.gpu.deviceIds.length > 0);
  const cmp = strategy === "binpack" ? byBinpack : bySpread;
  const limit = Math.max(1, opts.limit ?? Infinity);
  /** Each candidate's score, reused: only those that make the list are copied. */
  const probe: Scored = { node: candidates[0]!, ram: 0, cpu: 0, vms: 0 };
  for (const node of candidates) {
    if (!node.up) { refused.push({ node, resource: "down", reason: "down" }); continue; }
    if (req.kind === "container" && node.containers === false) { refused.push({ node, resource: "engine", reason: "no container engine (thoc-node ct runtime)" }); continue; }
    const cap = node.capacity;
    // A GPU request on a GPU-less node: fit() would say so by catching a thrown error, which costs microseconds a node.
    if (gpuOnly && cap.gpus.length === 0) { refused.push({ node, resource: "gpu", reason: "no GPUs", absent: true }); continue; }
    const used = node.used ?? usageOf(node.allocations);
    // Most nodes of a busy cluster are full: say so without building the reason, until an error needs it.
    if (!withinBudget(want, cap, used)) { refused.push(new BudgetRefusal(node, want, { vcpus: used.vcpus, ramMB: used.ramMB })); continue; }
    const v = fit(want, node.allocations, cap, used);
    if (!v.fits) {
      refused.push({ node, resource: v.resource, reason: v.reason, short: v.need !== undefined ? { need: v.need, free: v.free ?? 0, total: v.total }: undefined, ...(v.resource === "gpu" && v.code === "not_found" ? { absent: true } : {}) });
      continue;
    }
    if (diskBytes > 0 && node.diskFreeBytes < diskBytes) {
      const free = Math.floor(node.diskFreeBytes / GiB);
      refused.push({ node, resource: "disk", reason: `disk short by ${req.diskGB - free} GiB (${free} GiB free)`, short: { need: req.diskGB, free } });
      continue;
    }
    if (node.images && !node.images.includes(image)) { refused.push({ node, resource: "image", reason: `no image ${image}` }); continue; }
    if (group !== undefined && hasGroup(node, group)) {
      const holder = node.allocations.find((a) => a.group === group);
      refused.push({ node, resource: "group", reason: `already runs a ${holder?.kind === "container" ? "container" : "VM"} of group ${group}` });
      continue;
    }
    const port = req.ports?.find((p) => hasPort(node, p));
    if (port !== undefined) {
      const holder = node.allocations.find((a) => a.ports?.includes(port));
      refused.push({ node, resource: "ports", reason: `host port ${port} is bound already${holder ? ` (container ${holder.name})` : ""}` });
      continue;
    }
    // budgetOf(cap), without an object per node.
    probe.node = node;
    probe.ram = Math.floor((cap.memoryBytes * cap.loadFactor) / MiB) - used.ramMB - want.ramMB;
    probe.cpu = Math.floor(cap.cpus * cap.loadFactor) - used.vcpus - want.vcpus;
    probe.vms = node.allocations.length;
    if (limit === Infinity) scored.push({ ...probe });
    else offer(scored, limit, probe, cmp);
  }
  if (limit === Infinity) scored.sort(cmp);
  return { ranked: scored.map((s) => s.node), refused };
}

/**
 * Keeps `top` the k best in order, by insertion into a short sorted list:
 * O(nodes) over a whole ranking when k is small, since most nodes lose to the
 * k-th at once and are never copied. Sorting all 1,000 scored nodes costs
 * more than filtering them, for a list whose first entry the leader takes
 * 99% of the time.
 */
function offer(top: Scored[], k: number, x: Scored, cmp: (a: Scored, b: Scored) => number): void {
  if (top.length === k) {
    if (cmp(x, top[k - 1]!) >= 0) return;
    top.pop();
  }
  let i = top.length;
  while (i > 0 && cmp(x, top[i - 1]!) < 0) i--;
  top.splice(i, 0, { ...x });
}

/** A refusal by fit()'s CPU or RAM rules, explained by fit() (with the usage it was decided on) when first read. */
class BudgetRefusal implements Refusal {
  private verdict?: FitRefusal;
  constructor(readonly node: NodeView, private readonly want: FitRequest, private readonly used: Usage) {}
  private explain(): FitRefusal {
    return (this.verdict ??= fit(this.want, [], this.node.capacity, this.used) as FitRefusal);
  }
  get reason(): string { return this.explain().reason; }
  get resource(): PlacementResource { return this.explain().resource; }
  get short(): Refusal["short"] {
    const v = this.explain();
    return v.need === undefined ? undefined : { need: v.need, free: v.free ?? 0, total: v.total };
  }
}

/** Fills nodes: the least RAM left after placing it, then the fewest vCPUs, then by name (deterministic). */
function byBinpack(a: Scored, b: Scored): number {
  return a.ram - b.ram || a.cpu - b.cpu || byName(a, b);
}

/** Balances: the most RAM left, then the most vCPUs, then the fewest VMs (equal nodes take turns), then by name. */
function bySpread(a: Scored, b: Scored): number {
  return b.ram - a.ram || b.cpu - a.cpu || a.vms - b.vms || byName(a, b);
}

function byName(a: Scored, b: Scored): number {
  return a.node.name < b.node.name ? -1 : a.node.name > b.node.name ? 1 : 0;
}

function hasGroup(node: NodeView, group: string): boolean {
  if (node.used?.groups) return node.used.groups.has(group);
  return node.allocations.some((a) => a.group === group);
}

function hasPort(node: NodeView, port: string): boolean {
  if (node.used?.ports) return node.used.ports.has(port);
  return node.allocations.some((a) => a.ports?.includes(port));
}

function checkGroup(group: string | undefined): void {
  if (group === undefined || GROUP_RE.test(group)) return;
  throw new ThocError("invalid_argument", `group: "${group}" is not a valid group name: use 1-63 lowercase letters, digits and hyphens, starting with a letter or digit`, { field: "group" });
}

function pinned(want: string, nodes: readonly NodeView[]): NodeView {
  const n = nodes.find((x) => x.name === want) ?? nodes.find((x) => x.id === want);
  if (n) return n;
  const names = nodes.map((x) => x.name).sort();
  const known = names.length === 0 ? "the cluster has no nodes yet"
    : `pin one of ${names.slice(0, 10).join(", ")}${names.length > 10 ? ` (and ${names.length - 10} more: thoc-node members)` : ""}`;
  throw new ThocError("not_found", `node: no node named ${want} in the cluster: ${known}`, { field: "node", node: want });
}

/**
 * The error for a request no node took: unavailable when no node is up (or
 * known), resource_exhausted otherwise, saying what the best candidates lack
 * (closest first, at most three named, the rest counted), or, for a request
 * larger than any node, invalid_argument (no retry can help; a single node
 * answers the same) with the largest node's size.
 */
export function noPlacementError(req: PlacementRequest, refused: readonly Refusal[], nodes: readonly NodeView[]): ThocError {
  const what = `${req.kind === "container" ? "container" : "vm"} ${describe(req)}`;
  const details = { [req.kind === "container" ? "container" : "vm"]: req.fit.name, nodes: nodes.length, refused: refused.length };
  if (nodes.length === 0) return new ThocError("unavailable", `no node can take ${what}: the cluster view has no nodes yet; wait for the members to join (thoc-node members)`, details);
  if (!nodes.some((n) => n.up)) return new ThocError("unavailable", `no node can take ${what}: none of the ${nodes.length} nodes is up; see thoc-node members`, details);
  const largest = largerThanAny(req.fit, nodes);
  if (largest) {
    const c = largest.capacity;
    return new ThocError("invalid_argument", `${what} is larger than any node: the largest node, ${largest.name}, has ${c.cpus} CPUs and ${Math.floor(c.memoryBytes / MiB)} MiB; ask for at most that`, { ...details, largest: largest.name });
  }
  if (refused.length > 0 && refused.every((r) => r.resource === "down")) {
    return new ThocError("unavailable", `no node can take ${what}: ${refused.map((r) => r.node.name).slice(0, NAMED).join(", ")}${refused.length > NAMED ? " and others" : ""} ${refused.length === 1 ? "is" : "are"} down; retry when ${refused.length === 1 ? "it is" : "they are"} back or pin an up node`, details);
  }
  const up = refused.filter((r) => r.resource !== "down");
  if (up.length > 0 && up.every((r) => r.absent)) {
    // Not a full cluster: the device asked for exists nowhere (a typo, or the wrong cluster).
    return new ThocError("not_found", `no node can take ${what}: no up node has that GPU (${up.slice(0, NAMED).map((r) => `${r.node.name}: ${r.reason}`).join("; ")}); see thoc-node vm gpus on each node`, details);
  }
  if (up.length > 0 && up.every((r) => r.resource === "engine")) {
    return new ThocError("failed_precondition", `no node can take ${what}: no up node runs a container engine (podman or Docker; docs/containers.md, thoc-node ct runtime)`, details);
  }
  const best = [...refused].sort((a, b) => closeness(a) - closeness(b) || (a.node.name < b.node.name ? -1 : 1));
  const named = best.slice(0, NAMED).map((r) => `${r.node.name}: ${shortText(r)}`);
  const rest = best.slice(NAMED);
  let tail = "";
  if (rest.length) {
    const counts = new Map<string, number>();
    for (const r of rest) counts.set(r.resource, (counts.get(r.resource) ?? 0) + 1);
    tail = `; and ${rest.length} more (${[...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(", ")})`;
  }
  const body = named.length ? named.join("; ") + tail : "every node that passed the filters refused it";
  return new ThocError("resource_exhausted", `no node can take ${what}: ${body}`, details);
}

function describe(req: PlacementRequest): string {
  const f = req.fit;
  const parts = [req.kind === "container" ? `${f.vcpus} CPUs` : `${f.vcpus} vCPUs`, `${f.ramMB} MiB`];
  if (req.diskGB > 0) parts.push(`${req.diskGB} GiB disk`);
  if (f.gpu) parts.push(f.gpu.mode === "mig" ? `MIG ${f.gpu.migProfile}` : `GPU ${f.gpu.deviceIds.join(",")}`);
  if (req.group !== undefined) parts.push(`group ${req.group}`);
  if (req.ports?.length) parts.push(`ports ${req.ports.join(",")}`);
  return `${f.name} (${parts.join(", ")})`;
}

/** The node whose size the request exceeds: the most CPUs when vCPUs are too many, else the most memory. */
function largerThanAny(f: FitRequest, nodes: readonly NodeView[]): NodeView | undefined {
  let cpu = nodes[0]!, mem = nodes[0]!;
  for (const n of nodes) {
    const c = n.capacity, bc = cpu.capacity, bm = mem.capacity;
    if (c.cpus > bc.cpus || (c.cpus === bc.cpus && c.memoryBytes > bc.memoryBytes)) cpu = n;
    if (c.memoryBytes > bm.memoryBytes || (c.memoryBytes === bm.memoryBytes && c.cpus > bm.cpus)) mem = n;
  }
  if (f.vcpus > cpu.capacity.cpus) return cpu;
  if (f.ramMB > Math.floor(mem.capacity.memoryBytes / MiB)) return mem;
  return undefined;
}

/** Lower is closer to taking the VM: a numeric shortfall by its fraction of the need, then the other refusals, down nodes last. */
function closeness(r: Refusal): number {
  if (r.resource === "down") return 3;
  // A node without the device is further than one whose device is busy.
  if (r.absent) return 2.5;
  if (r.short && r.short.need > 0) return Math.min(1, (r.short.need - r.short.free) / r.short.need);
  return 2;
}

function shortText(r: Refusal): string {
  const s = r.short;
  if (!s || (r.resource !== "ramMB" && r.resource !== "vcpus")) return r.reason;
  const unit = r.resource === "ramMB" ? " MiB" : "";
  // Containers' CPUs are fractional: no 0.09999999999999998 in a message.
  const n = (x: number) => Math.round(x * 1000) / 1000;
  if (s.total !== undefined && s.need > s.total) return `${r.resource}: ${n(s.need)}${unit} is more than its ${n(s.total)}${unit} in all`;
  return `${r.resource} short by ${n(s.need - s.free)}${unit} (${n(s.free)} of ${n(s.total ?? s.free)}${unit} free)`;
}
