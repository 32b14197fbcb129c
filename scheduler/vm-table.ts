/**
 * The cluster's VMs as every node sees them: a table replicated to every
 * node (cluster/ ClusterTable, kept by the object store) with one entry per
 * VM name, written only by the node that runs the VM, from its own records
 * (a node's records are the truth about its VMs; the table is what the
 * others know of them). It gives names cluster-wide uniqueness (the leader
 * checks it before placing), routing (name -> node), `vm list` for the
 * whole cluster, and the leader's view of every node's committed
 * allocations. Beside it: each node's capacity ("vm-hosts"), and forced
 * deletes of VMs whose node was down ("vm-evictions"), which that node
 * carries out when it returns.
 *
 * Containers live in the same table (kind "container"), so a name is unique
 * across VMs and containers and the leader counts both in a node's
 * allocations; VM routing and `vm list` skip container entries and
 * container routing skips VM entries.
 */
import type { ClusterTable } from "../cluster/index.js";
import type { GpuAllocation, HostGpu, Reservation, VmRecord } from "../vm/index.js";

export const VM_TABLE = "vms";
export const HOST_TABLE = "vm-hosts";
export const EVICTION_TABLE = "vm-evictions";
export const SCHEDULER_TABLES = [VM_TABLE, HOST_TABLE, EVICTION_TABLE] as const;

/** What the cluster knows of one VM. */
export interface VmEntry {
  name: string;
  uuid: string;
  nodeId: string;
  nodeName: string;
  status: string;
  detail: string;
  image: string;
  imageKind: string;
  vcpus: number;
  ramMB: number;
  diskGB: number;
  gpus: GpuAllocation[];
  group: string;
  requestId: string;
  createdAt: number;
  mac: string;
  /** Absent for a VM; "container" for a container. */
  kind?: "container";
  /** Containers: the host ports bound on the node ("8080/tcp"), for placement's port filter. */
  ports?: string[];
  /** Containers: CPUs reserved, fractional (a VM's are its vcpus). */
  cpus?: number;
  /** Containers: what a cluster-wide `ct list` shows beyond the fields above. */
  ct?: ContainerFacts;
}

/** A container entry's own facts (container-table.ts fills them from the record). */
export interface ContainerFacts {
  /** app or inference. */
  kind: string;
  health: string;
  desiredState: string;
  restartCount: number;
  exitCode: number;
  startedAt: number;
  memoryMB: number;
  /** As bound by the engine. */
  mappings: { containerPort: number; hostPort: number; protocol: string; hostIp: string }[];
}

export const isContainer = (e: Pick<VmEntry, "kind">): boolean => e.kind === "container";

/** What the entry holds on its node, as placement counts it (VMs and containers alike). */
export function reservationOf(e: VmEntry): Reservation & { group?: string; ports?: string[] } {
  const c = isContainer(e);
  return {
    name: e.name, vcpus: c ? e.cpus ?? 0 : e.vcpus, ramMB: e.ramMB, gpus: e.gpus, ...(e.group ? { group: e.group } : {}),
    ...(c ? { kind: "container" as const, ports: e.ports ?? [] } : {}),
  };
}

/** What a node offers VMs; allocations are the VM table's entries for the node. */
export interface HostEntry {
  id: string;
  name: string;
  cpus: number;
  memoryBytes: number;
  diskFreeBytes: number;
  loadFactor: number;
  gpus: HostGpu[];
  version: string;
  /** Whether the node runs a container engine (absent: a node from before containers, or none). */
  containers?: boolean;
}

/** A forced delete the node carries out when it returns; kind "container" for a container (keepVolumes as asked). */
export interface Eviction { nodeId: string; uuid: string; atMs: number; kind?: "container"; keepVolumes?: boolean }

export function entryOf(r: VmRecord, nodeId: string): VmEntry {
  return {
    name: r.name, uuid: r.uuid, nodeId, nodeName: r.node, status: r.status, detail: r.detail, image: r.spec.image, imageKind: r.imageKind,
    vcpus: r.spec.vcpus, ramMB: r.spec.ramMB, diskGB: r.spec.diskGB, gpus: r.gpus.map(({ mdevUuid: _, ...g }) => g), group: r.group ?? "",
    requestId: r.requestId ?? "", createdAt: r.createdAt, mac: r.spec.network.mode === "none" ? "" : r.mac,
  };
}

const parse = <T>(v: string | undefined): T | undefined => (v === undefined ? undefined : (JSON.parse(v) as T));

/** Typed access to the three tables. */
export class VmTables {
  constructor(readonly vms: ClusterTable, readonly hosts: ClusterTable, readonly evictions: ClusterTable) {}

  /** The entry as this node has it (no network). */
  local(name: string): VmEntry | undefined {
    return parse<VmEntry>(this.vms.table.get(name));
  }

  /** The entry, asking the live peers before declaring it absent. */
  async lookup(name: string): Promise<VmEntry | undefined> {
    return parse<VmEntry>(await this.vms.lookup(name));
  }

  /** Every VM of the cluster, after a pull from the live peers. */
  async list(): Promise<VmEntry[]> {
    return (await this.vms.list()).map((e) => JSON.parse(e.value) as VmEntry);
  }

  /** Every VM as this node has it, no network (the leader's view for placement). */
  all(): VmEntry[] {
    return this.vms.table.live().map((e) => JSON.parse(e.value) as VmEntry);
  }

  hostsNow(): HostEntry[] {
    return this.hosts.table.live().map((e) => JSON.parse(e.value) as HostEntry);
  }

  host(id: string): HostEntry | undefined {
    return parse<HostEntry>(this.hosts.table.get(id));
  }

  evictionsFor(nodeId: string): { name: string; e: Eviction }[] {
    return this.evictions.table.live().map((x) => ({ name: x.key, e: JSON.parse(x.value) as Eviction })).filter((x) => x.e.nodeId === nodeId);
  }

  /**
   * Why node `self` must not start its VM `r` again at its start although its
   * own record wants it running: deleted with --force while the node was down
   * (the publisher deletes it next), or its name now held by another node's
   * VM or container. Containers' autostart asks the same. Pulls both tables from the live peers first: the node has just come
   * back and its copy may be stale; with no peer answering, its copy decides.
   */
  async autostartVeto(self: string, r: { name: string; uuid: string }): Promise<string | undefined> {
    await Promise.all([this.evictions.pull(), this.vms.pull()]).catch(() => {});
    const evicted = this.evictionsFor(self).find((x) => x.name === r.name && x.e.uuid === r.uuid);
    if (evicted) return `deleted with --force at ${new Date(evicted.e.atMs).toISOString()} while this node was down: the scheduler deletes it here`;
    const e = this.local(r.name);
    if (e && e.nodeId !== self && e.uuid !== r.uuid) return `the name ${r.name} now belongs to another ${isContainer(e) ? "container" : "VM"}, on node ${e.nodeName}`;
    return undefined;
  }
}
