/**
 * This node's containers in the cluster's VM table, as publisher.ts does it
 * for VMs: every change of a container record is written (entry, or
 * tombstone on delete), a periodic pass (run by the VM publisher's timer)
 * re-writes what the table has wrong about this node's containers, and
 * containers deleted with --force while this node was down are deleted here.
 * Only container entries are touched: the VM publisher keeps the VM ones.
 */
import type { ContainerChange, ContainerRecord } from "../container/index.js";
import type { Logger } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { containerEntryOf, type ContainerNode } from "./container-table.js";
import { isContainer, type VmEntry, type VmTables } from "./vm-table.js";

export interface ContainerPublisherOptions {
  tables: VmTables;
  nodeId: string;
  node: () => ContainerNode | undefined;
  log: Logger;
}

const same = (a: VmEntry, b: VmEntry) => JSON.stringify(a) === JSON.stringify(b);

export class ContainerPublisher {
  /** Writes in flight, by name: the same entry asked for twice (the change hook and the commit) is written once. */
  private readonly writing = new Map<string, { text: string; done: Promise<unknown> }>();

  constructor(private readonly o: ContainerPublisherOptions) {}

  /** Writes one change now; a missed majority is left to the next reconcile pass. */
  async onChange(c: ContainerChange): Promise<void> {
    // A create's "creating" step is not news to the cluster: the create publishes its outcome (or leaves nothing).
    if (c.now?.status === "creating") return;
    try {
      if (c.now) await this.publish(c.now);
      else {
        // A name a forced delete freed may already be another node's (or a VM's): only our own container entry goes.
        const e = this.o.tables.local(c.name);
        if (e && e.nodeId === this.o.nodeId && isContainer(e)) await this.o.tables.vms.put(c.name, null);
      }
    } catch (err) {
      this.o.log.debug({ container: c.name, err: ThocError.from(err).message }, "scheduler: container table write missed its majority; the next pass retries");
    }
  }

  /** Puts the record's entry in the table (resolves once a majority holds it). */
  async publish(r: ContainerRecord): Promise<VmEntry> {
    const e = containerEntryOf(r, this.o.nodeId);
    const text = JSON.stringify(e);
    const w = this.writing.get(r.name);
    if (w?.text === text) { await w.done; return e; }
    const done = this.o.tables.vms.put(r.name, text);
    const mine = { text, done };
    this.writing.set(r.name, mine);
    try { await done; } finally { if (this.writing.get(r.name) === mine) this.writing.delete(r.name); }
    return e;
  }

  /** Brings the table's container entries in line with this node's records; carries out forced deletes. */
  async reconcile(): Promise<void> {
    const n = this.o.node();
    if (!n) return;
    const self = this.o.nodeId;
    await this.evict(n);
    const mine = new Map((await n.list()).map((r) => [r.name, r]));
    const evicted = new Set(this.o.tables.evictionsFor(self).map((x) => x.name));
    for (const r of mine.values()) {
      const have = this.o.tables.local(r.name);
      // Another node's entry, or a VM's, under this name is not ours to overwrite.
      if (have && (have.nodeId !== self || !isContainer(have)) && !evicted.has(r.name)) continue;
      if (!have || !same(have, containerEntryOf(r, self))) await this.publish(r);
    }
    for (const e of this.o.tables.all()) {
      if (isContainer(e) && e.nodeId === self && !mine.has(e.name)) await this.o.tables.vms.put(e.name, null);
    }
  }

  /** Containers deleted with --force while this node was down: delete them here too, then drop the eviction. */
  private async evict(n: ContainerNode): Promise<void> {
    for (const { name, e } of this.o.tables.evictionsFor(this.o.nodeId)) {
      if (e.kind !== "container") continue;
      const r = await n.get(name).catch(() => undefined);
      if (r && r.uuid === e.uuid) {
        this.o.log.info({ container: name }, "scheduler: deleting a container that was removed with --force while this node was down");
        await n.delete(name, { keepVolumes: e.keepVolumes ?? false });
      }
      await this.o.tables.evictions.put(name, null);
    }
  }
}
