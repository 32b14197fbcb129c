/**
 * This node's side of the VM table: every change of one of its VM records
 * is written to the cluster's table (entry, or tombstone on delete), and a
 * periodic pass re-writes whatever the table has wrong about this node's VMs
 * (a write that missed its majority, a node that was down while the others
 * changed nothing, a record the table lost). Forced deletes of this node's
 * VMs made while it was down are carried out here. Its capacity goes to the
 * host table when it changes. The table work is entry-publisher.ts's, shared
 * with container entries, which are container-publisher.ts's (run from this
 * publisher's pass); this one leaves them alone.
 */
import { ThocError } from "../errors/index.js";
import type { Logger } from "../core/index.js";
import type { HostGpu, VmChange, VmManager, VmRecord } from "../vm/index.js";
import type { ContainerPublisher } from "./container-publisher.js";
import { EntryPublisher, type EntryKind } from "./entry-publisher.js";
import { entryOf, isContainer, type HostEntry, type VmEntry, type VmTables } from "./vm-table.js";

export interface PublisherOptions {
  tables: VmTables;
  nodeId: string;
  manager: () => VmManager | undefined;
  host: () => Promise<Omit<HostEntry, "gpus"> & { gpus: HostGpu[] }>;
  log: Logger;
  intervalMs: number;
  /** This node's containers, reconciled in the same pass. */
  containers?: ContainerPublisher;
}

const VM_KIND: EntryKind<VmRecord> = { field: "vm", word: "VM", is: (e) => !isContainer(e), entryOf };

export class Publisher {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private lastHost = "";
  private stopped = false;
  private readonly vms: EntryPublisher<VmRecord>;

  constructor(private readonly o: PublisherOptions) {
    this.vms = new EntryPublisher({
      tables: o.tables, nodeId: o.nodeId, log: o.log, kind: VM_KIND,
      source: () => {
        const m = o.manager();
        return m && { list: () => m.list(), get: (name) => m.get(name), evict: (name) => m.deleteVm(name) };
      },
    });
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.reconcile().catch((err) => this.o.log.debug({ err: ThocError.from(err).message }, "scheduler: VM table reconcile failed; retrying"))
        .finally(() => { if (!this.stopped) this.timer = setTimeout(tick, this.o.intervalMs).unref(); });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }

  /** Writes one change now; a missed majority is left to the next reconcile pass. */
  onChange(c: VmChange): Promise<void> { return this.vms.onChange(c); }

  /** Puts the record's entry in the table (resolves once a majority holds it). */
  publish(r: VmRecord): Promise<VmEntry> { return this.vms.publish(r); }

  /** Brings the table in line with this node's records, carries out evictions, publishes capacity. */
  async reconcile(): Promise<void> {
    if (!this.o.manager()) return;
    await this.vms.reconcile();
    await this.o.containers?.reconcile().catch((err) => this.o.log.debug({ err: ThocError.from(err).message }, "scheduler: container table reconcile failed; retrying"));
    const h = await this.o.host();
    const text = JSON.stringify({ ...h, diskFreeBytes: Math.round(h.diskFreeBytes / 2 ** 30) });
    if (text !== this.lastHost || !this.o.tables.host(this.o.nodeId)) {
      await this.o.tables.hosts.put(this.o.nodeId, JSON.stringify(h));
      this.lastHost = text;
    }
  }
}
