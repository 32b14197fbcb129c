/**
 * This node's side of the VM table: every change of one of its VM records
 * is written to the cluster's table (entry, or tombstone on delete), and a
 * periodic pass re-writes whatever the table has wrong about this node's VMs
 * (a write that missed its majority, a node that was down while the others
 * changed nothing, a record the table lost). Forced deletes of this node's
 * VMs made while it was down are carried out here. Its capacity goes to the
 * host table when it changes. Container entries are container-publisher.ts's
 * (run from this publisher's pass); this one leaves them alone.
 */
import { ThocError } from "../errors/index.js";
import type { Logger } from "../core/index.js";
import type { HostGpu, VmChange, VmManager, VmRecord } from "../vm/index.js";
import type { ContainerPublisher } from "./container-publisher.js";
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

const same = (a: VmEntry, b: VmEntry) => JSON.stringify(a) === JSON.stringify(b);

export class Publisher {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private lastHost = "";
  private stopped = false;

  constructor(private readonly o: PublisherOptions) {}

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
  async onChange(c: VmChange): Promise<void> {
    // A create's "creating" step is not news to the cluster: the create publishes its outcome (or leaves nothing).
    if (c.now?.status === "creating") return;
    try {
      if (c.now) await this.publish(c.now);
      // A name a forced delete freed may already be another node's VM: only our own entry goes.
      else {
        const e = this.o.tables.local(c.name);
        if (e && e.nodeId === this.o.nodeId && !isContainer(e)) await this.o.tables.vms.put(c.name, null);
      }
    } catch (err) {
      this.o.log.debug({ vm: c.name, err: ThocError.from(err).message }, "scheduler: VM table write missed its majority; the next pass retries");
    }
  }

  /** Writes in flight, by VM: the same entry asked for twice (the change hook and the Commit) is written once. */
  private readonly writing = new Map<string, { text: string; done: Promise<unknown> }>();

  /** Puts the record's entry in the table (resolves once a majority holds it). */
  async publish(r: VmRecord): Promise<VmEntry> {
    const e = entryOf(r, this.o.nodeId);
    const text = JSON.stringify(e);
    const w = this.writing.get(r.name);
    if (w?.text === text) { await w.done; return e; }
    const done = this.o.tables.vms.put(r.name, text);
    const mine = { text, done };
    this.writing.set(r.name, mine);
    try { await done; } finally { if (this.writing.get(r.name) === mine) this.writing.delete(r.name); }
    return e;
  }

  /** Brings the table in line with this node's records, carries out evictions, publishes capacity. */
  async reconcile(): Promise<void> {
    const m = this.o.manager();
    if (!m) return;
    await this.evict(m);
    const mine = new Map((await m.list()).map((r) => [r.name, r]));
    for (const r of mine.values()) {
      const have = this.o.tables.local(r.name);
      // Another node's entry under this name (a forced delete re-used the name meanwhile) is not ours to overwrite.
      if (have && (have.nodeId !== this.o.nodeId || isContainer(have)) && !this.o.tables.evictionsFor(this.o.nodeId).some((x) => x.name === r.name)) continue;
      if (!have || !same(have, entryOf(r, this.o.nodeId))) await this.publish(r);
    }
    for (const e of this.o.tables.all()) {
      if (e.nodeId === this.o.nodeId && !isContainer(e) && !mine.has(e.name)) await this.o.tables.vms.put(e.name, null);
    }
    await this.o.containers?.reconcile().catch((err) => this.o.log.debug({ err: ThocError.from(err).message }, "scheduler: container table reconcile failed; retrying"));
    const h = await this.o.host();
    const text = JSON.stringify({ ...h, diskFreeBytes: Math.round(h.diskFreeBytes / 2 ** 30) });
    if (text !== this.lastHost || !this.o.tables.host(this.o.nodeId)) {
      await this.o.tables.hosts.put(this.o.nodeId, JSON.stringify(h));
      this.lastHost = text;
    }
  }

  /** VMs deleted with --force while this node was down: delete them here too, then drop the eviction. */
  private async evict(m: VmManager): Promise<void> {
    for (const { name, e } of this.o.tables.evictionsFor(this.o.nodeId)) {
      if (e.kind === "container") continue;
      const r = await m.get(name).catch(() => undefined);
      if (r && r.uuid === e.uuid) {
        this.o.log.info({ vm: name }, "scheduler: deleting a VM that was removed with --force while this node was down");
        await m.deleteVm(name);
      }
      await this.o.tables.evictions.put(name, null);
    }
  }
}
