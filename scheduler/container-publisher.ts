/**
 * This node's containers in the cluster's VM table, as publisher.ts does it
 * for VMs: every change of a container record is written (entry, or
 * tombstone on delete), a periodic pass (run by the VM publisher's timer)
 * re-writes what the table has wrong about this node's containers, and
 * containers deleted with --force while this node was down are deleted here.
 * Only container entries are touched: the VM publisher keeps the VM ones.
 * The table work is entry-publisher.ts's, shared with the VM publisher.
 */
import type { ContainerChange, ContainerRecord } from "../container/index.js";
import type { Logger } from "../core/index.js";
import { containerEntryOf, type ContainerNode } from "./container-table.js";
import { EntryPublisher, type EntryKind } from "./entry-publisher.js";
import { isContainer, type VmEntry, type VmTables } from "./vm-table.js";

export interface ContainerPublisherOptions {
  tables: VmTables;
  nodeId: string;
  node: () => ContainerNode | undefined;
  log: Logger;
}

const CONTAINER_KIND: EntryKind<ContainerRecord> = { field: "container", word: "container", is: isContainer, entryOf: containerEntryOf };

export class ContainerPublisher {
  private readonly entries: EntryPublisher<ContainerRecord>;

  constructor(o: ContainerPublisherOptions) {
    this.entries = new EntryPublisher({
      tables: o.tables, nodeId: o.nodeId, log: o.log, kind: CONTAINER_KIND,
      source: () => {
        const n = o.node();
        return n && { list: () => n.list(), get: (name) => n.get(name), evict: async (name, e) => { await n.delete(name, { keepVolumes: e.keepVolumes ?? false }); } };
      },
    });
  }

  /** Writes one change now; a missed majority is left to the next reconcile pass. */
  onChange(c: ContainerChange): Promise<void> { return this.entries.onChange(c); }

  /** Puts the record's entry in the table (resolves once a majority holds it). */
  publish(r: ContainerRecord): Promise<VmEntry> { return this.entries.publish(r); }

  /** Brings the table's container entries in line with this node's records; carries out forced deletes. */
  reconcile(): Promise<void> { return this.entries.reconcile(); }
}
