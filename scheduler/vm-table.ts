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
 */
import type { ClusterTable } from "../cluster/index.js";
import type { GpuAllocation, HostGpu, VmRecord } from "../vm/index.js";

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
}

export interface Eviction { nodeId: string; uuid: string; atMs: number }

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
   * VM. Pulls both tables from the live peers first: the node has just come
   * back and its copy may be stale; with no peer answering, its copy decides.
   */
  async autostartVeto(self: string, r: { name: string; uuid: string }): Promise<string | undefined> {
    await Promise.all([this.evictions.pull(), this.vms.pull()]).catch(() => {});
    const evicted = this.evictionsFor(self).find((x) => x.name === r.name && x.e.uuid === r.uuid);
    if (evicted) return `deleted with --force at ${new Date(evicted.e.atMs).toISOString()} while this node was down: the scheduler deletes it here`;
    const e = this.local(r.name);
    if (e && e.nodeId !== self && e.uuid !== r.uuid) return `the name ${r.name} now belongs to another VM, on node ${e.nodeName}`;
    return undefined;
  }
}
