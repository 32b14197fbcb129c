/** The replicated store's Prometheus metrics (thoc_objectstore_*), read from the node at scrape time. */
import client, { type Registry } from "prom-client";
import { bodyWriteBytes, type DurableHintStore, type DurableReplicaStore, type LifecycleWorker, type PartSweeper, type QuorumKeyLocker, type ReplicationNode } from "./replica/index.js";

export function registerReplicaMetrics(registry: Registry, node: ReplicationNode, store: DurableReplicaStore, hints: DurableHintStore, sweeper: PartSweeper, lifecycle: LifecycleWorker, locker: QuorumKeyLocker): void {
  const reg = [registry];
  new client.Counter({
    name: "thoc_objectstore_conditional_locks_total", help: "Conditional-write locks this node asked for: taken (a majority granted the lease), retry (an attempt short of a majority), conflict (409 after the wait), lost (a renewal short of a majority while held).", labelNames: ["outcome"], registers: reg,
    collect() {
      this.reset();
      this.inc({ outcome: "taken" }, locker.stats.acquired);
      this.inc({ outcome: "retry" }, locker.stats.retries);
      this.inc({ outcome: "conflict" }, locker.stats.conflicts);
      this.inc({ outcome: "lost" }, locker.stats.lost);
    },
  });
  new client.Counter({
    name: "thoc_objectstore_lifecycle_actions_total", help: "Lifecycle actions this node took: expired objects (a delete marker in a versioned bucket), noncurrent versions and lone delete markers removed, aborted uploads, and failures (retried next pass).", labelNames: ["action"], registers: reg,
    collect() {
      this.reset();
      this.inc({ action: "expire" }, lifecycle.totals.expired);
      this.inc({ action: "abort_upload" }, lifecycle.totals.aborted);
      this.inc({ action: "remove_version" }, lifecycle.totals.removed);
      this.inc({ action: "failed" }, lifecycle.totals.failed);
    },
  });
  new client.Counter({
    name: "thoc_objectstore_lifecycle_passes_total", help: "Lifecycle passes over this node's records.", registers: reg,
    collect() { this.reset(); this.inc(lifecycle.totals.passes); },
  });
  new client.Counter({
    name: "thoc_objectstore_body_write_bytes_total", help: "Body bytes written to this node's replica and hint files, by mode: direct (O_DIRECT, past the page cache: objectstore.directWrites) or buffered (the tail of each body, bodies beyond the aligned batches in flight, a filesystem that refused O_DIRECT, or directWrites off).", labelNames: ["mode"], registers: reg,
    collect() {
      this.reset();
      this.inc({ mode: "direct" }, bodyWriteBytes.direct);
      this.inc({ mode: "buffered" }, bodyWriteBytes.buffered);
    },
  });
  new client.Gauge({
    name: "thoc_objectstore_replicas", help: "Replica records held by this node (tombstones included).", registers: reg,
    async collect() { this.set((await store.stats()).records); },
  });
  new client.Gauge({
    name: "thoc_objectstore_replica_bytes", help: "Bytes of replica bodies held by this node.", registers: reg,
    async collect() { this.set((await store.stats()).bytes); },
  });
  new client.Gauge({
    name: "thoc_objectstore_pending_hints", help: "Writes held here for a down replica (hinted handoff), not yet delivered.", registers: reg,
    async collect() { this.set(await hints.count()); },
  });
  new client.Gauge({
    name: "thoc_objectstore_misplaced_replicas", help: "Replicas held here that the ring places elsewhere (rebalancing still to do), as of the last pass.", registers: reg,
    collect() { this.set(node.lastRebalance?.kept ?? 0); },
  });
  new client.Gauge({
    name: "thoc_objectstore_ring_nodes", help: "Active nodes in the object store's ring.", registers: reg,
    collect() { this.set(node.ring().size); },
  });
  new client.Counter({
    name: "thoc_objectstore_quorum_failures_total", help: "Requests refused because a read or write quorum could not be reached.", registers: reg,
    collect() { this.reset(); this.inc(node.coordinator.stats.quorumFailures); },
  });
  new client.Counter({
    name: "thoc_objectstore_read_repairs_total", help: "Stale replicas repaired by reads.", registers: reg,
    collect() { this.reset(); this.inc(node.coordinator.stats.readRepairs); },
  });
  new client.Counter({
    name: "thoc_objectstore_anti_entropy_rounds_total", help: "Anti-entropy passes with a peer.", registers: reg,
    collect() { this.reset(); this.inc(node.stats.antiEntropyRounds); },
  });
  new client.Counter({
    name: "thoc_objectstore_anti_entropy_repairs_total", help: "Records this node copied to itself by anti-entropy (repair pulls what it lacks).", registers: reg,
    collect() { this.reset(); this.inc(node.stats.antiEntropyRepairs); },
  });
  new client.Counter({
    name: "thoc_objectstore_sync_rounds_total", help: "Background ring and table sync rounds with a peer, by result: equal (one SyncDigests call) or differed (what differed was exchanged).", labelNames: ["result"], registers: reg,
    collect() { this.reset(); this.inc({ result: "equal" }, node.stats.syncRoundsEqual); this.inc({ result: "differed" }, node.stats.syncRoundsDiffered); },
  });
  new client.Gauge({
    name: "thoc_objectstore_repairs_in_flight", help: "Repair copies to this node under way or waiting for a slot (at most objectstore repair concurrency run at once).", registers: reg,
    collect() { this.set(node.repair.busy); },
  });
  new client.Counter({
    name: "thoc_objectstore_repair_bytes_total", help: "Body bytes of the records anti-entropy copied to this node.", registers: reg,
    collect() { this.reset(); this.inc(node.repair.stats.bytes); },
  });
  new client.Counter({
    name: "thoc_objectstore_repair_duplicates_total", help: "Repair copies transferred for nothing (a newer version arrived here meanwhile).", registers: reg,
    collect() { this.reset(); this.inc(node.repair.stats.stale); },
  });
  new client.Counter({
    name: "thoc_objectstore_hints_delivered_total", help: "Hinted writes delivered to their node.", registers: reg,
    collect() { this.reset(); this.inc(node.stats.hintsDelivered); },
  });
  const bulk = new client.Counter({
    name: "thoc_objectstore_bulk_requests_total", help: "Replica bodies served by this node's bulk data path, by op (put: received, get: sent) and outcome (ok, refused: authentication, failed: anything else).",
    labelNames: ["op", "outcome"], registers: reg,
    collect() {
      bulk.reset();
      const s = node.bulkStats();
      for (const op of ["put", "get"] as const) for (const outcome of ["ok", "refused", "failed"] as const) bulk.inc({ op, outcome }, s[op][outcome]);
    },
  });
  const bulkBytes = new client.Counter({
    name: "thoc_objectstore_bulk_bytes_total", help: "Body bytes this node's bulk data path received (put) and sent (get) for stored replicas.",
    labelNames: ["op"], registers: reg,
    collect() {
      bulkBytes.reset();
      const s = node.bulkStats();
      bulkBytes.inc({ op: "put" }, s.put.bytes);
      bulkBytes.inc({ op: "get" }, s.get.bytes);
    },
  });
  new client.Counter({
    name: "thoc_objectstore_parts_swept_total", help: "Multipart parts this node deleted because no object version uses them any more (part-sweeper.ts).", registers: reg,
    collect() { this.reset(); this.inc(sweeper.stats.deleted); },
  });
}
