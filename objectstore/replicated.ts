/**
 * Wires the replicated store into an agent: the durable replica and hint
 * stores, the ring (persisted, joined at first start), the buckets and S3 key
 * tables, the replica protocol on the agent's gRPC server, and the gossip view
 * as liveness and address book, and the sweeper that collects multipart parts
 * no object uses any more (replica/part-sweeper.ts). Ring administration (GetRing, RemoveNode),
 * the join gate and the metrics are beside it (ring-admin.ts, join-gate.ts,
 * metrics.ts).
 */
import path from "node:path";
import { clusterView, filesMaterial, LevelTableBackend, peerCredentials, ReplicatedTable, type ClusterTable } from "../cluster/index.js";
import type { AgentContext, Logger, Membership } from "../core/index.js";
import type { ThocError } from "../errors/index.js";
import { JoinGate } from "./join-gate.js";
import type { KeyLocker } from "./blob/index.js";
import type { KeyTable, StoredKey } from "./keys/index.js";
import { registerReplicaMetrics } from "./metrics.js";
import { DurableHintStore, DurableReplicaStore, DurableRingHolder, LifecycleWorker, PartSweeper, lifecycleRules, lifecycleVersions, ReplicatedBlobStore, ReplicationNode, weightForDisk } from "./replica/index.js";
import { ringAdmin, type RingAdmin } from "./ring-admin.js";

const REMOVED_TABLE = "removed-nodes";
const REVOKED_TABLE = "revoked-certs";

export interface Replicated {
  node: ReplicationNode;
  /** This node's durable replicas. */
  store: DurableReplicaStore;
  blobs: ReplicatedBlobStore;
  /** S3 keys, replicated to every node (secrets travel only over authenticated peer calls). */
  keyTable: KeyTable;
  /**
   * The lock of conditional S3 writes: a lease from a majority of each key's
   * replicas (replica/key-lock.ts); on a ring of one, this node's own table.
   */
  keyLocker: KeyLocker;
  /** GetRing / RemoveNode for ClusterService. */
  admin: RingAdmin;
  /** A table replicated to every node: the object store's own and those asked for with tuning.tables. */
  table(name: string): ClusterTable;
  /** One line for `status`: ring size and effective N/W/R. */
  summary(): string;
  /** False while a joining node has not received the ring (S3 answers 503): the agent is not ready then. */
  serving(): boolean;
  stop(): Promise<void>;
}

/** `tuning` passes store thresholds through (tests set inlineMax: 0 to keep every body in a file). */
export async function openReplicated(ctx: AgentContext, membership: Membership, log: Logger, onDataLoss: (e: ThocError) => void, tuning: { inlineMax?: number; tables?: readonly string[] } = {}): Promise<Replicated> {
  const { config } = ctx;
  const dir = path.join(ctx.store.dataDir, "replicas");
  const directWrites = config.objectstore.directWrites;
  const store = await DurableReplicaStore.open({ store: ctx.store, dir: path.join(dir, "objects"), name: "replicas", onDataLoss, directWrites, ...tuning });
  const hints = await DurableHintStore.open({ store: ctx.store, dir: path.join(dir, "hints"), onDataLoss, directWrites });
  const rec = store.recovery;
  if (rec.tmpFiles || rec.orphanFiles) log.info({ ...rec }, "replica store: cleaned up after an unclean stop");
  const ring = await DurableRingHolder.open(ctx.store);
  const buckets = await ReplicatedTable.open("buckets", new LevelTableBackend(ctx.store, "buckets"));
  const s3keys = await ReplicatedTable.open("s3keys", new LevelTableBackend(ctx.store, "s3keys"));
  // Nodes taken out with `thoc-node node remove`: every member refuses their certificates (docs/security.md).
  const removed = await ReplicatedTable.open(REMOVED_TABLE, new LevelTableBackend(ctx.store, REMOVED_TABLE));
  // Certificate serials taken back with `thoc-node cert revoke`: every member refuses them.
  const revoked = await ReplicatedTable.open(REVOKED_TABLE, new LevelTableBackend(ctx.store, REVOKED_TABLE));
  // Tables other subsystems keep here (the scheduler's VM table): same replication, their own names.
  const extra = await Promise.all((tuning.tables ?? []).map((n) => ReplicatedTable.open(n, new LevelTableBackend(ctx.store, n))));
  const transport = ctx.peerTransport;

  const view = clusterView(membership, { id: ctx.nodeId, grpcAddress: () => ctx.addresses.grpc });
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
    directory: view,
    credentials: transport?.credentials ?? peerCredentials(config.tls),
    ...(transport ? { checkCaller: transport.checkCaller.bind(transport) } : {}),
    // Bodies on the bulk data path, secured exactly as the gRPC port is; a receiver waits through
    // the sender's own source pausing as long as the S3 layer waits for its client's body.
    bulk: { tls: () => transport ? transport.tlsMaterial() : filesMaterial(config.tls), sourceIdleMs: config.s3.idleTimeout + config.objectstore.peerTimeout },
    liveness: view,
    log,
    tables: [buckets, s3keys, removed, revoked, ...extra],
    members: view.alive,
    syncInterval: Math.max(200, Math.min(config.gossip.pushPullInterval, 5000)),
  });
  await node.start();
  transport?.attachCluster({
    isRemoved: (id) => removed.get(id) !== undefined,
    isRevoked: (serial) => revoked.get(serial) !== undefined,
    revoke: async (serial, reason) => {
      const at = Date.now();
      await node.table(REVOKED_TABLE).put(serial, JSON.stringify({ reason, revokedAtMs: at }));
      return at;
    },
    members: () => view.alive().filter((id) => id !== ctx.nodeId).map((id) => ({ id, grpc: view.address(id) ?? "" })),
  });
  const gate = new JoinGate({ node, ring, membership, self: ctx.nodeId, joining: config.join.length > 0, log });

  const blobs = new ReplicatedBlobStore({
    coordinator: node.coordinator, buckets: node.table("buckets"), listBucket: (b, o) => node.listBucket(b, o),
    gather: (b, p, o) => node.gather(b, p, o), ready: () => gate.check(),
  });
  const bucketTable = node.table("buckets");
  const sweeper = new PartSweeper({
    self: ctx.nodeId, store, coordinator: node.coordinator, ring: () => node.ring(), isUp: (id) => view.isUp(id),
    // This node's copy of the bucket table (see lifecycleRules): a pass needs no pull from every peer.
    buckets: async () => bucketTable.table.live().map((e) => e.key).filter((k) => !k.includes("\u0000")), graceMs: config.objectstore.partGrace, log,
    listBucket: (b, o) => node.listBucket(b, o),
  });
  const sweepTimer = setInterval(() => {
    if (gate.synced()) void sweeper.sweep().catch((err: Error) => log.warn({ err: err.message }, "object store: part sweep failed; will try again"));
  }, config.objectstore.partSweepInterval);
  sweepTimer.unref();
  const lifecycle = new LifecycleWorker({
    self: ctx.nodeId, store, coordinator: node.coordinator, ring: () => node.ring(), isUp: (id) => view.isUp(id), log,
    rules: () => lifecycleRules(bucketTable),
    abortUpload: (b, k, id) => blobs.abortMultipartUpload(b, k, id),
    tagsOf: async (b, k) => (await blobs.headObject(b, k)).tags,
    versions: lifecycleVersions(blobs),
    deletesPerSecond: config.objectstore.lifecycleDeletesPerSecond,
  });
  const lifecycleTimer = setInterval(() => {
    if (gate.synced()) void lifecycle.run().catch((err: Error) => log.warn({ err: err.message }, "object store: lifecycle pass failed; will try again"));
  }, config.objectstore.lifecycleInterval);
  lifecycleTimer.unref();
  const keyLocker = node.keyLocker(config.objectstore.conditionalLease);
  registerReplicaMetrics(ctx.metrics, node, store, hints, sweeper, lifecycle, keyLocker);

  const quorumText = () => {
    const r = node.ring();
    const q = node.coordinator.quorum(r);
    const c = config.objectstore;
    const lowered = q.n < c.replicas || q.w < c.writeQuorum || q.r < c.readQuorum;
    if (!gate.synced()) return "joining: waiting for the ring from the cluster (S3 answers 503 until then)";
    return `ring ${r.size} node${r.size === 1 ? "" : "s"}, N/W/R ${q.n}/${q.w}/${q.r}${lowered ? ` (lowered from ${c.replicas}/${c.writeQuorum}/${c.readQuorum} until more nodes join)` : ""}`;
  };
  log.info({ node: ctx.nodeId }, `object store: ${quorumText()}`);
  return {
    node,
    store,
    blobs,
    keyLocker,
    keyTable: keyTableOver(node.table("s3keys")),
    admin: ringAdmin({ node, ring, hints, view, config: config.objectstore, self: ctx.nodeId, removedTable: REMOVED_TABLE, ...(ctx.events ? { events: ctx.events } : {}) }),
    table: (name) => node.table(name),
    summary: quorumText,
    serving: () => gate.synced(),
    async stop() {
      clearInterval(sweepTimer);
      clearInterval(lifecycleTimer);
      await sweeper.idle();
      await lifecycle.idle();
      gate.stop();
      await node.stop();
      await hints.close().catch(() => {});
      await store.close().catch(() => {});
    },
  };
}

/** S3 keys as JSON values of a cluster-wide table. */
function keyTableOver(kt: ClusterTable): KeyTable {
  return {
    async get(id) { const v = await kt.lookup(id); return v === undefined ? undefined : (JSON.parse(v) as StoredKey); },
    async put(k) { await kt.put(k.accessKeyId, JSON.stringify(k)); },
    async del(id) { await kt.put(id, null); },
    async list() { return (await kt.list()).map((e) => JSON.parse(e.value) as StoredKey); },
  };
}
