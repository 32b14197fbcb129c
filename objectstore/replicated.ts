/**
 * Wires the replicated store into an agent: the durable replica and hint
 * stores, the ring (persisted, joined at first start), the buckets table, the
 * replica protocol on the agent's gRPC server, membership as liveness and
 * address book, GetRing / RemoveNode on ClusterService, and the metrics.
 */
import path from "node:path";
import client from "prom-client";
import type { AgentContext, Logger } from "../agent/index.js";
import { ThocError } from "../errors/index.js";
import type { MembershipSubsystem } from "../membership/index.js";
import type { KeyTable, StoredKey } from "./keys/index.js";
import {
  DurableHintStore, DurableReplicaStore, DurableRingHolder, ReplicatedBlobStore, ReplicatedTable, LevelTableBackend, ReplicationNode,
  isActive, weightForDisk,
} from "./cluster/index.js";

export interface Replicated {
  node: ReplicationNode;
  blobs: ReplicatedBlobStore;
  /** S3 keys, replicated to every node (secrets travel only over authenticated peer calls). */
  keyTable: KeyTable;
  /** One line for `status`: ring size and effective N/W/R. */
  summary(): string;
  stop(): Promise<void>;
}

export async function openReplicated(ctx: AgentContext, log: Logger, onDataLoss: (e: ThocError) => void): Promise<Replicated> {
  const { config } = ctx;
  const membership = ctx.subsystem<MembershipSubsystem>("membership");
  const dir = path.join(ctx.store.dataDir, "replicas");
  const store = await DurableReplicaStore.open({ store: ctx.store, dir: path.join(dir, "objects"), name: "replicas", onDataLoss });
  const hints = await DurableHintStore.open({ store: ctx.store, dir: path.join(dir, "hints"), onDataLoss });
  const rec = store.recovery;
  if (rec.tmpFiles || rec.orphanFiles) log.info({ ...rec }, "replica store: cleaned up after an unclean stop");
  const ring = await DurableRingHolder.open(ctx.store);
  const buckets = await ReplicatedTable.open("buckets", new LevelTableBackend(ctx.store, "buckets"));
  const s3keys = await ReplicatedTable.open("s3keys", new LevelTableBackend(ctx.store, "s3keys"));

  const member = (id: string) => (membership ? safe(() => membership.member(id)) : undefined);
  const isUp = (id: string) => {
    if (id === ctx.nodeId) return true;
    const m = member(id);
    return m !== undefined && (m.state === "alive" || m.state === "suspect");
  };
  const node = new ReplicationNode({
    nodeId: ctx.nodeId,
    name: config.name,
    weight: weightForDisk(ctx.capacity().diskBytes),
    config: config.objectstore,
    clusterName: config.cluster.name,
    keys: config.cluster.keys,
    rpc: ctx.rpc,
    ring,
    store,
    hints,
    directory: { address: (id) => (id === ctx.nodeId ? ctx.addresses.grpc : member(id)?.meta.grpc || undefined) },
    liveness: { isUp },
    log,
    tables: [buckets, s3keys],
    members: () => (membership ? safe(() => membership.members()) ?? [] : []).filter((m) => m.state === "alive").map((m) => m.id),
    syncInterval: Math.max(200, Math.min(config.gossip.pushPullInterval, 5000)),
  });
  await node.start();
  // A node joining an existing cluster must not coordinate requests with a ring of
  // only itself (it would acknowledge writes nobody else holds): until it has
  // exchanged the ring with a peer, S3 answers 503. The first node of a cluster
  // (no --join) and a node whose stored ring already lists others start ready.
  let synced = config.join.length === 0;
  // Any exchange that brought in another member (this one, or the periodic ring sync) will do.
  const isSynced = () => synced || ring.state().all().length > 1;
  const syncNow = (id: string) => node.syncWith(id).then(
    () => {
      if (!synced) log.info({ peer: id, ringNodes: node.ring().size }, "object store: ring received from the cluster; serving S3");
      synced = true;
    },
    (err: unknown) => log.debug({ peer: id, err: ThocError.from(err).message }, "object store: sync with a member failed"),
  );
  const unsubscribe = membership ? safe(() => membership.subscribe((e) => {
    if (e.member.id === ctx.nodeId) return;
    if (e.type === "join" || e.type === "alive") {
      node.nodeUp();
      void syncNow(e.member.id);
    }
  })) : undefined;
  for (const m of (membership ? safe(() => membership.members()) ?? [] : [])) if (m.id !== ctx.nodeId && m.state === "alive") void syncNow(m.id);

  const blobs = new ReplicatedBlobStore({
    coordinator: node.coordinator, buckets: node.table("buckets"), listBucket: (b, o) => node.listBucket(b, o),
    ready: () => {
      if (!isSynced()) throw new ThocError("unavailable", "this node has not received the object store's ring from the cluster yet (joining); retry in a moment", { s3Code: "ServiceUnavailable" });
    },
  });
  registerMetrics(ctx, node, store, hints);

  const quorumText = () => {
    const r = node.ring();
    const q = node.coordinator.quorum(r);
    const c = config.objectstore;
    const lowered = q.n < c.replicas || q.w < c.writeQuorum || q.r < c.readQuorum;
    if (!isSynced()) return "joining: waiting for the ring from the cluster (S3 answers 503 until then)";
    return `ring ${r.size} node${r.size === 1 ? "" : "s"}, N/W/R ${q.n}/${q.w}/${q.r}${lowered ? ` (lowered from ${c.replicas}/${c.writeQuorum}/${c.readQuorum} until more nodes join)` : ""}`;
  };

  membership?.extendClusterService({
    async getRing() {
      const s = ring.state();
      const r = node.ring();
      const q = node.coordinator.quorum(r);
      const own1 = r.ownership(1);
      const ownN = r.ownership(q.n);
      const bal = r.size ? r.balance(s.weights()) : { min: 0, max: 0 };
      const mis = await node.misplaced();
      const c = config.objectstore;
      return {
        nodes: s.all().map((m) => ({
          id: m.nodeId, name: m.name, weight: m.weight, share: own1.get(m.nodeId) ?? 0, replicaShare: ownN.get(m.nodeId) ?? 0,
          state: !isActive(m) ? "removed" : isUp(m.nodeId) ? "up" : "down",
          grpcAddress: m.nodeId === ctx.nodeId ? ctx.addresses.grpc : member(m.nodeId)?.meta.grpc ?? "",
        })),
        replicas: q.n, writeQuorum: q.w, readQuorum: q.r,
        configuredReplicas: c.replicas, configuredWriteQuorum: c.writeQuorum, configuredReadQuorum: c.readQuorum,
        balanceMax: bal.max, balanceMin: bal.min,
        misplacedReplicas: BigInt(mis.records), misplacedBytes: BigInt(mis.bytes), pendingHints: BigInt(await hints.count()),
        digest: s.digest(), localId: ctx.nodeId,
      };
    },
    async removeNode(req) {
      const want = req.node.trim();
      if (!want) throw new ThocError("invalid_argument", "name the node to remove (its name or id, as `thoc-node ring` shows them)");
      const all = ring.state().all();
      const byId = all.filter((m) => m.nodeId === want);
      const activeByName = all.filter((m) => m.name === want && isActive(m));
      const hits = byId.length ? byId : activeByName.length ? activeByName : all.filter((m) => m.name === want);
      if (hits.length === 0) throw new ThocError("not_found", `no node ${JSON.stringify(want)} in the ring: see \`thoc-node ring\``);
      if (hits.length > 1) throw new ThocError("failed_precondition", `${hits.length} ring nodes are named ${JSON.stringify(want)}: remove by id (${hits.map((m) => m.nodeId).join(", ")})`);
      const m = hits[0]!;
      if (m.nodeId === ctx.nodeId) throw new ThocError("failed_precondition", "a node cannot remove itself: run `thoc-node node remove` on another node");
      const removed = await node.removeNode(m.nodeId);
      return { id: m.nodeId, name: m.name, removed };
    },
  });

  log.info({ node: ctx.nodeId }, `object store: ${quorumText()}`);
  const kt = node.table("s3keys");
  const keyTable: KeyTable = {
    async get(id) { const v = await kt.lookup(id); return v === undefined ? undefined : (JSON.parse(v) as StoredKey); },
    async put(k) { await kt.put(k.accessKeyId, JSON.stringify(k)); },
    async del(id) { await kt.put(id, null); },
    async list() { return (await kt.list()).map((e) => JSON.parse(e.value) as StoredKey); },
  };
  return {
    node,
    blobs,
    keyTable,
    summary: quorumText,
    async stop() {
      unsubscribe?.();
      await node.stop();
      await hints.close().catch(() => {});
      await store.close().catch(() => {});
    },
  };
}

function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function registerMetrics(ctx: AgentContext, node: ReplicationNode, store: DurableReplicaStore, hints: DurableHintStore): void {
  const reg = [ctx.metrics];
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
    name: "thoc_objectstore_anti_entropy_repairs_total", help: "Records copied by anti-entropy (pushed and pulled).", registers: reg,
    collect() { this.reset(); this.inc(node.stats.antiEntropyRepairs); },
  });
  new client.Counter({
    name: "thoc_objectstore_hints_delivered_total", help: "Hinted writes delivered to their node.", registers: reg,
    collect() { this.reset(); this.inc(node.stats.hintsDelivered); },
  });
}
