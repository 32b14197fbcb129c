/**
 * This node's side of the cluster's VM table for one kind of entry (VMs in
 * publisher.ts, containers in container-publisher.ts; both kinds share the
 * table, so a name is unique across them): every change of one of its
 * records is written (entry, or tombstone on delete), a reconcile pass
 * re-writes what the table has wrong about this node's entries of the kind
 * (a write that missed its majority, a node that was down while the others
 * changed nothing, a record the table lost), and forced deletes made while
 * this node was down are carried out. Entries of the other kind, and other
 * nodes' entries, are never touched.
 */
import type { Logger } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import type { Eviction, VmEntry, VmTables } from "./vm-table.js";

/** One kind of entry: how it is named in logs and messages, and how a record becomes an entry. */
export interface EntryKind<R> {
  /** The log field naming the entry ("vm", "container"). */
  field: string;
  /** The kind in messages ("VM", "container"). */
  word: string;
  /** Whether a table entry or an eviction is of this kind. */
  is(e: Pick<VmEntry, "kind">): boolean;
  entryOf(r: R, nodeId: string): VmEntry;
}

/** This node's records of the kind (the VM manager, the container node seam). */
export interface EntrySource<R> {
  list(): Promise<R[]>;
  /** Throws (or is undefined) when this node has no record of that name. */
  get(name: string): Promise<R | undefined>;
  /** Deletes the record an eviction names. */
  evict(name: string, e: Eviction): Promise<void>;
}

export interface EntryPublisherOptions<R> {
  tables: VmTables;
  nodeId: string;
  log: Logger;
  kind: EntryKind<R>;
  /** Undefined while the subsystem behind it is not running: nothing is reconciled then. */
  source: () => EntrySource<R> | undefined;
}

type Rec = { name: string; uuid: string; status: string };

const same = (a: VmEntry, b: VmEntry) => JSON.stringify(a) === JSON.stringify(b);

export class EntryPublisher<R extends Rec> {
  /** Writes in flight, by name: the same entry asked for twice (the change hook and the commit) is written once. */
  private readonly writing = new Map<string, { text: string; done: Promise<unknown> }>();

  constructor(private readonly o: EntryPublisherOptions<R>) {}

  /** Writes one change now; a missed majority is left to the next reconcile pass. */
  async onChange(c: { name: string; now?: R }): Promise<void> {
    // A create's "creating" step is not news to the cluster: the create publishes its outcome (or leaves nothing).
    if (c.now?.status === "creating") return;
    try {
      if (c.now) await this.publish(c.now);
      else {
        // A name a forced delete freed may already be another node's (or the other kind's): only our own entry of this kind goes.
        const e = this.o.tables.local(c.name);
        if (e && e.nodeId === this.o.nodeId && this.o.kind.is(e)) await this.o.tables.vms.put(c.name, null);
      }
    } catch (err) {
      this.o.log.debug({ [this.o.kind.field]: c.name, err: ThocError.from(err).message }, `scheduler: ${this.o.kind.word} table write missed its majority; the next pass retries`);
    }
  }

  /** Puts the record's entry in the table (resolves once a majority holds it). */
  async publish(r: R): Promise<VmEntry> {
    const e = this.o.kind.entryOf(r, this.o.nodeId);
    const text = JSON.stringify(e);
    const w = this.writing.get(r.name);
    if (w?.text === text) { await w.done; return e; }
    const done = this.o.tables.vms.put(r.name, text);
    const mine = { text, done };
    this.writing.set(r.name, mine);
    try { await done; } finally { if (this.writing.get(r.name) === mine) this.writing.delete(r.name); }
    return e;
  }

  /** Brings the table's entries of this kind in line with this node's records; carries out forced deletes. */
  async reconcile(): Promise<void> {
    const src = this.o.source();
    if (!src) return;
    const { tables, nodeId: self, kind } = this.o;
    await this.evict(src);
    const mine = new Map((await src.list()).map((r) => [r.name, r]));
    for (const r of mine.values()) {
      const have = tables.local(r.name);
      // Another node's entry, or the other kind's, under this name (a forced delete re-used the name meanwhile) is not ours to overwrite.
      if (have && (have.nodeId !== self || !kind.is(have)) && !tables.evictionsFor(self).some((x) => x.name === r.name)) continue;
      if (!have || !same(have, kind.entryOf(r, self))) await this.publish(r);
    }
    for (const e of tables.all()) {
      if (e.nodeId === self && kind.is(e) && !mine.has(e.name)) await tables.vms.put(e.name, null);
    }
  }

  /** Records deleted with --force while this node was down: delete them here too, then drop the eviction. */
  private async evict(src: EntrySource<R>): Promise<void> {
    const { word, field } = this.o.kind;
    for (const { name, e } of this.o.tables.evictionsFor(this.o.nodeId)) {
      if (!this.o.kind.is(e)) continue;
      const r = await src.get(name).catch(() => undefined);
      if (r && r.uuid === e.uuid) {
        this.o.log.info({ [field]: name }, `scheduler: deleting a ${word} that was removed with --force while this node was down`);
        await src.evict(name, e);
      }
      await this.o.tables.evictions.put(name, null);
    }
  }
}
