/**
 * One node's replication machinery, wired together: the authenticated replica
 * service on the agent's gRPC server, the coordinator, and the background
 * work (ring gossip, hinted handoff, anti-entropy, rebalancing after ring
 * changes, tombstone expiry), each rate-limited and never overlapping itself.
 * The objectstore subsystem creates one of these with membership as liveness
 * and address book (see docs/objectstore.md, "Integration").
 */
import type { Config } from "../../config/index.js";
import { ThocError } from "../../errors/index.js";
import { ObjectStoreService } from "../../proto/index.js";
import type { ChannelCredentials, RpcServer } from "../../rpc/index.js";
import { ClusterTable, HlcClock, PeerAuth, RateLimiter, authenticated, type PeerAuthOptions, type Liveness, type PeerDirectory, type ReplicatedTable } from "../../cluster/index.js";
import { syncWithPeer, type AntiEntropyStats } from "./anti-entropy.js";
import { Coordinator, type CoordinatorLog } from "./coordinator.js";
import { LocalReplica, type ReplicaTarget } from "./local-replica.js";
import { deliverHints, type HintStore } from "./hints.js";
import { Peers } from "./peer.js";
import { expireTombstones, rebalance, type RebalanceStats } from "./rebalance.js";
import { KeyLeases } from "./key-leases.js";
import { QuorumKeyLocker } from "./key-lock.js";
import { RepairPool } from "./repair.js";
import type { ReplicaRecord, ReplicaStore } from "./replica-store.js";
import { isActive } from "./ring-state.js";
import { placementKey, type Ring } from "./ring.js";
import { gatherSources, mergeSources, unreachableError, type GatherSource, type ListSource, type MergedList } from "./listing.js";
import { syncRing } from "./ring-store.js";
import { replicaService, type RingHolder } from "./service.js";
import { BulkServer } from "./bulk-server.js";
import { BULK_PREFACE } from "./bulk-wire.js";
import type { TlsMaterial } from "../../core/index.js";

export type ReplicationConfig = Pick<Config["objectstore"],
  "replicas" | "writeQuorum" | "readQuorum" | "vnodes" | "antiEntropyInterval" | "tombstoneGrace" | "repairBytesPerSecond" | "peerTimeout">;

export interface ReplicationNodeOptions {
  nodeId: string;
  name: string;
  /** Ring weight (weightForDisk(capacity.diskBytes)). */
  weight: number;
  config: ReplicationConfig;
  clusterName: string;
  keys: readonly string[];
  rpc: RpcServer;
  ring: RingHolder;
  store: ReplicaStore;
  hints: HintStore;
  directory: PeerDirectory;
  /** How peers are dialled: TLS wherever the gRPC API serves it (cluster/ peerCredentials). */
  credentials?: ChannelCredentials;
  liveness?: Liveness;
  log?: CoordinatorLog;
  hlc?: HlcClock;
  /** Tables replicated to every node (buckets, S3 keys). */
  tables?: ReplicatedTable[];
  /** Other nodes membership sees alive (ring sync candidates, ring members or not yet). */
  members?: () => string[];
  /** How often ring and tables are exchanged with one random peer. */
  syncInterval?: number;
  /** Checks a peer call's transport identity against the node id it claims (cluster PKI; cluster/ PeerAuthOptions.checkCaller). */
  checkCaller?: PeerAuthOptions["checkCaller"];
  /**
   * The bulk data path for replica bodies (bulk-wire.ts), on the gRPC port:
   * its TLS material (the gRPC port's; undefined for plaintext) and how long
   * a receiver waits through a pause of the sender's own source. Default: on,
   * plaintext (a secure gRPC port then refuses bulk connections: pass the material). false: bodies over gRPC.
   */
  bulk?: false | { tls: () => TlsMaterial | undefined; sourceIdleMs?: number };
  /** Repair copies run at once (anti-entropy pulls); default 4. */
  repairConcurrency?: number;
}

export class ReplicationNode {
  readonly hlc: HlcClock;
  readonly peers: Peers;
  readonly coordinator: Coordinator;
  readonly limiter: RateLimiter;
  /** This node's repair copies: bounded, deduplicated, counted (stats.copies is what repair changed here). */
  readonly repair: RepairPool;
  private readonly local: LocalReplica;
  /** The conditional-write leases this node grants (LockKey, UnlockKey). */
  readonly leases = new KeyLeases();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly busy = new Map<string, Promise<unknown>>();
  private readonly rerun = new Set<string>();
  private stopped = false;
  /** Counters for metrics. */
  readonly stats = { antiEntropyRounds: 0, antiEntropyRepairs: 0, hintsDelivered: 0, syncRoundsEqual: 0, syncRoundsDiffered: 0 };
  private readonly tables = new Map<string, ClusterTable>();
  private bulk?: BulkServer;
  /** What the last rebalance pass found still misplaced here (for `thoc-node ring`). */
  lastRebalance?: RebalanceStats & { bytes: number; at: number };
  private rebalancedRing?: Ring;

  constructor(private readonly o: ReplicationNodeOptions) {
    this.hlc = o.hlc ?? new HlcClock(o.nodeId);
    const auth = new PeerAuth({ clusterName: o.clusterName, keys: o.keys, nodeId: o.nodeId, ...(o.checkCaller ? { checkCaller: o.checkCaller } : {}) });
    const bulk = o.bulk === false ? undefined : o.bulk ?? { tls: () => undefined };
    this.peers = new Peers({
      auth, directory: o.directory, hlc: this.hlc, timeoutMs: o.config.peerTimeout,
      ...(o.credentials ? { credentials: o.credentials } : {}), ...(bulk ? { bulk } : {}),
    });
    this.limiter = new RateLimiter(o.config.repairBytesPerSecond);
    this.repair = new RepairPool(o.repairConcurrency ?? 4);
    this.local = new LocalReplica(o.nodeId, o.store, o.hints);
    this.coordinator = new Coordinator({
      self: o.nodeId, ring: () => this.ring(), target: (id) => this.target(id), hlc: this.hlc,
      replicas: o.config.replicas, writeQuorum: o.config.writeQuorum, readQuorum: o.config.readQuorum,
      liveness: o.liveness, log: o.log,
    });
    for (const t of o.tables ?? []) {
      this.tables.set(t.name, new ClusterTable(t, {
        hlc: this.hlc, self: o.nodeId, ringNodes: () => this.ring().nodes as string[], isUp: (id) => this.isUp(id), peer: (id) => this.peers.get(id), log: o.log,
      }));
    }
    const svc = replicaService({ store: o.store, hints: o.hints, hlc: this.hlc, ring: o.ring, idleTimeoutMs: o.config.peerTimeout, tables: (name) => this.tables.get(name)?.table, allTables: () => [...this.tables.values()].map((t) => t.table), leases: this.leases });
    o.rpc.add(ObjectStoreService, authenticated(ObjectStoreService, svc, auth));
    if (bulk) {
      const server = this.bulk = new BulkServer({ store: o.store, hints: o.hints, hlc: this.hlc, auth, tls: bulk.tls, idleTimeoutMs: o.config.peerTimeout, ...(o.log ? { log: o.log } : {}) });
      o.rpc.addPreface(BULK_PREFACE, (sock) => {
        // Never serve bodies in plaintext on a port whose gRPC speaks TLS: that would be a data leak.
        if (o.rpc.isSecure && !bulk.tls()) sock.destroy();
        else server.handle(sock);
      });
    }
  }

  ring(): Ring {
    return this.o.ring.state().ring(this.o.config.vnodes);
  }

  /** A cluster-wide lock of conditional writes whose leases (ttlMs) a majority of each key's preferred nodes grant (key-lock.ts). */
  keyLocker(ttlMs: number): QuorumKeyLocker {
    return new QuorumKeyLocker({
      self: this.o.nodeId, ttlMs, replicas: (b, k) => this.coordinator.preferenceList(b, k),
      target: (id) => (id === this.o.nodeId ? this.leases : this.peers.get(id)),
      isUp: (id) => this.coordinator.isUp(id), ...(this.o.log ? { log: this.o.log } : {}),
    });
  }

  /** The bulk data path's counters (zero when bodies go over gRPC). */
  bulkStats(): BulkServer["stats"] {
    const z = { ok: 0, refused: 0, failed: 0, bytes: 0 };
    return this.bulk?.stats ?? { put: { ...z }, get: { ...z } };
  }

  /** A table replicated to every node, with cluster read/write semantics. */
  table(name: string): ClusterTable {
    const t = this.tables.get(name);
    if (!t) throw new ThocError("internal", `no replicated table ${name}`);
    return t;
  }

  /**
   * A bucket's records merged over the ring's reachable nodes. Complete only
   * when fewer than W nodes are out of reach (every acknowledged write is on W
   * nodes), so otherwise it fails with unavailable (S3 503) rather than
   * return a listing that silently misses objects.
   */
  async listBucket(bucket: string, opts: { prefix?: string; after?: string }): Promise<MergedList> {
    const ring = this.ring();
    const { w } = this.coordinator.quorum(ring);
    const nodes = ring.nodes.length ? [...ring.nodes] : [this.o.nodeId];
    // The coordinator's view: a node whose calls just failed counts as down before membership notices,
    // so a listing right after a node died is made from the others (still complete with fewer than W missing).
    const up = nodes.filter((id) => id === this.o.nodeId || this.coordinator.isUp(id));
    const missing = nodes.filter((id) => !up.includes(id));
    if (missing.length >= w) throw unreachableError(`list ${bucket}`, missing, w);
    const sources: ListSource[] = up.map((id) => id === this.o.nodeId
      ? (lo) => this.o.store.listBucket(bucket, lo)
      : (lo) => this.peers.get(id).listBucket(bucket, lo));
    return mergeSources(sources, opts);
  }

  /**
   * Every record under `prefix` of a bucket (newest version of each key,
   * tombstones included) in key order, for small bounded sets (an upload's
   * part records): each node sends its whole list in one call, and the answer
   * is taken from the first ring size - (W - 1) nodes that answered in full,
   * which is complete (gatherSources) without waiting for the slowest node.
   */
  async gather(bucket: string, prefix: string, opts: { after?: string; limit: number }): Promise<ReplicaRecord[]> {
    const ring = this.ring();
    const { w } = this.coordinator.quorum(ring);
    const nodes = ring.nodes.length ? [...ring.nodes] : [this.o.nodeId];
    const lo = { prefix, limit: opts.limit, ...(opts.after !== undefined ? { after: opts.after } : {}) };
    const collect = async (src: AsyncIterable<ReplicaRecord>) => {
      const out: ReplicaRecord[] = [];
      for await (const r of src) out.push(r);
      return out;
    };
    // This node first (no hop), then the others from a random start: the spare differs from one call to the next.
    const others = nodes.filter((id) => id !== this.o.nodeId && this.coordinator.isUp(id));
    const at = others.length ? Math.floor(Math.random() * others.length) : 0;
    const up = [...(nodes.includes(this.o.nodeId) ? [this.o.nodeId] : []), ...others.slice(at), ...others.slice(0, at)];
    const sources: GatherSource[] = up.map((id) => ({
      node: id,
      // async: a peer with no known address throws, which must reach gatherSources as that source's failure.
      list: async (signal) => (id === this.o.nodeId ? collect(this.o.store.listBucket(bucket, lo)) : collect(this.peers.get(id).listBucket(bucket, lo, signal))),
    }));
    return gatherSources(`list ${bucket}`, sources, Math.max(1, nodes.length - (w - 1)), w, { down: nodes.filter((id) => !up.includes(id)) });
  }

  target(id: string): ReplicaTarget {
    return id === this.o.nodeId ? this.local : this.peers.get(id);
  }

  private isUp(id: string): boolean {
    return this.o.liveness?.isUp(id) ?? true;
  }

  /** Joins the ring on first start (a no-op afterwards) and starts the background work. */
  async start(): Promise<void> {
    const s = this.o.ring.state();
    if (!s.get(this.o.nodeId)) {
      const next = s.clone();
      next.join(this.o.nodeId, this.o.name, this.o.weight, this.hlc.now());
      await this.o.ring.merge(next.toJSON());
      this.o.log?.info({ node: this.o.nodeId, weight: this.o.weight }, "object store: joined the ring");
    }
    // A ring change moves data both ways: what this node no longer owns goes out
    // (rebalance), and what it newly owns — or what a removed node's arcs now
    // need — comes in through anti-entropy, run now rather than at the next tick
    // (antiEntropyInterval is 10 min by default).
    // A round already under way compares against the old ring: it runs once more
    // right after it (forced), not at the next tick.
    this.o.ring.onChange(() => {
      void this.once("rebalance", () => this.rebalance());
      void this.once("anti-entropy", () => this.antiEntropy(), true);
    });
    const every = (ms: number, name: string, fn: () => Promise<unknown>) => {
      const t = setInterval(() => { void this.once(name, fn); }, ms);
      t.unref();
      this.timers.push(t);
    };
    const ae = this.o.config.antiEntropyInterval;
    every(this.o.syncInterval ?? 1000, "sync", () => this.syncRandom());
    // Rebalancing also retries here: right after a ring change the new owner may not be reachable yet.
    every(ae, "anti-entropy", async () => {
      await this.antiEntropy();
      if (this.rebalanceDue()) await this.once("rebalance", () => this.rebalance());
    });
    every(Math.max(50, Math.floor(ae / 4)), "handoff", () => this.deliverHints());
    every(Math.max(100, Math.min(this.o.config.tombstoneGrace / 4, 3_600_000)), "tombstones", () => expireTombstones(this.o.store, this.o.config.tombstoneGrace));
  }

  /** Runs a background task unless the same one is still running; failures are logged, never thrown. */
  private once<T>(name: string, fn: () => Promise<T>, again = false): Promise<T | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    const running = this.busy.get(name);
    if (running) {
      // Rebalancing and handoff asked for while running run once more afterwards:
      // the ring or the set of live nodes changed since that pass began.
      if (again || name === "rebalance" || name === "handoff") this.rerun.add(name);
      return running as Promise<T | undefined>;
    }
    const p = fn().catch((err: unknown) => {
      this.o.log?.warn({ task: name, err: ThocError.from(err).message }, "object store: background task failed");
      return undefined;
    }).finally(() => {
      this.busy.delete(name);
      if (this.rerun.delete(name)) void this.once(name, fn);
    });
    this.busy.set(name, p);
    return p;
  }

  /** Push-pull of the ring state with one member (call on every membership push-pull / join). */
  syncRingWith(nodeId: string): Promise<boolean> {
    return syncRing(this.o.ring, this.peers.get(nodeId));
  }

  /**
   * Ring and tables with one node: both sides end equal. Digests first, all in
   * one call, so a round between nodes that already agree costs one request
   * instead of one per table plus the ring (the idle cluster's steady state).
   */
  async syncWith(nodeId: string): Promise<void> {
    const peer = this.peers.get(nodeId);
    const mine: Record<string, string> = {};
    for (const t of this.tables.values()) mine[t.table.name] = t.table.digest();
    const ringDigest = () => this.o.ring.state().digest();
    let theirs: { ringDigest: string; tables: Record<string, string> } | undefined;
    try {
      theirs = await peer.syncDigests(ringDigest(), mine);
    } catch (err) {
      // A peer that predates SyncDigests (a rolling upgrade): the full exchange.
      if (ThocError.from(err).code !== "unimplemented") throw err;
    }
    let differed = false;
    if (!theirs || theirs.ringDigest !== ringDigest()) { differed = true; await this.syncRingWith(nodeId); }
    for (const t of this.tables.values()) {
      if (!theirs || theirs.tables[t.table.name] !== t.table.digest()) { differed = true; await t.syncWith(nodeId); }
    }
    this.stats[differed ? "syncRoundsDiffered" : "syncRoundsEqual"]++;
  }

  private async syncRandom(): Promise<void> {
    const cands = new Set([...(this.o.members?.() ?? []), ...this.ring().nodes]);
    cands.delete(this.o.nodeId);
    const live = [...cands].filter((id) => this.isUp(id));
    if (!live.length) return;
    const id = live[Math.floor(Math.random() * live.length)]!;
    try {
      await this.syncWith(id);
    } catch (err) {
      this.o.log?.warn({ peer: id, err: ThocError.from(err).message }, "object store: ring/table sync failed");
    }
  }

  /** Takes a node out of the ring for good (operator action); false when it was not active. */
  async removeNode(nodeId: string): Promise<boolean> {
    const s = this.o.ring.state();
    const m = s.get(nodeId);
    if (!m) throw new ThocError("not_found", `node ${nodeId} is not in the ring`);
    const next = s.clone();
    if (!next.remove(nodeId, this.hlc.now())) return false;
    await this.o.ring.merge(next.toJSON());
    this.o.log?.info({ node: nodeId, name: m.name }, "object store: node removed from the ring");
    // Spread the removal now rather than at the next sync tick.
    await Promise.allSettled([...new Set([...(this.o.members?.() ?? []), ...this.ring().nodes])].filter((id) => id !== this.o.nodeId && this.isUp(id)).map((id) => this.syncRingWith(id)));
    return true;
  }

  /** Call when membership sees a node come back (alive after dead): hints go out now, not at the next tick. */
  nodeUp(): void {
    void this.once("handoff", () => this.deliverHints());
    // A new owner that was unreachable when the ring changed can take its data now.
    void this.once("rebalance", () => this.rebalance());
  }

  async deliverHints(): Promise<{ delivered: number; pending: number }> {
    // Hints for a node removed from the ring will never be delivered; the write
    // they stand for was acknowledged by W preferred nodes, and the new owners
    // get it from those (rebalancing, anti-entropy), so they are dropped.
    const state = this.o.ring.state();
    for (const t of await this.o.hints.targets()) {
      const m = state.get(t);
      if (!m || isActive(m)) continue;
      const store = this.o.hints.for(t);
      const all: ReplicaRecord[] = [];
      for await (const r of store.list({ start: 0, end: 0, whole: true })) all.push(r);
      for (const r of all) await store.drop(r.bucket, r.key, r.version);
      if (all.length) this.o.log?.info({ node: t, hints: all.length }, "object store: dropped hints for a node removed from the ring");
    }
    const r = await deliverHints({ hints: this.o.hints, target: (id) => this.target(id), isUp: (id) => this.isUp(id), limiter: this.limiter, log: this.o.log });
    this.stats.hintsDelivered += r.delivered;
    return r;
  }

  /** One anti-entropy pass with every live node this one shares arcs with. */
  async antiEntropy(): Promise<Map<string, AntiEntropyStats>> {
    const ring = this.ring();
    const n = this.coordinator.quorum(ring).n;
    const out = new Map<string, AntiEntropyStats>();
    for (const peer of ring.nodes) {
      if (peer === this.o.nodeId || !this.isUp(peer) || this.stopped) continue;
      try {
        const st = await syncWithPeer({ self: this.o.nodeId, local: this.o.store, ring, n, limiter: this.limiter, repair: this.repair, log: this.o.log }, this.peers.get(peer));
        this.stats.antiEntropyRounds++;
        this.stats.antiEntropyRepairs += st.pulled;
        out.set(peer, st);
      } catch (err) {
        this.o.log?.warn({ peer, err: ThocError.from(err).message }, "object store: anti-entropy with peer failed");
      }
    }
    return out;
  }

  async rebalance(): Promise<RebalanceStats> {
    const ring = this.ring();
    const stats = await rebalance({ self: this.o.nodeId, local: this.o.store, ring, n: this.coordinator.quorum(ring).n, target: (id) => this.target(id), limiter: this.limiter, log: this.o.log });
    this.lastRebalance = { ...stats, bytes: 0, at: Date.now() };
    this.rebalancedRing = ring;
    return stats;
  }

  /**
   * Whether the anti-entropy tick should rebalance: a pass scans every record
   * (most of an idle node's anti-entropy CPU at a 5 s interval), so one that
   * left nothing to move on the current ring is repeated only as a slow
   * safety net (a write from a coordinator with an older ring can land here).
   */
  private rebalanceDue(): boolean {
    const last = this.lastRebalance;
    if (!last || last.kept > 0 || this.rebalancedRing !== this.ring()) return true;
    return Date.now() - last.at >= Math.max(10 * this.o.config.antiEntropyInterval, 60_000);
  }

  /** Replicas held here that the current ring places elsewhere, and their bytes (a full scan). */
  async misplaced(): Promise<{ records: number; bytes: number }> {
    const ring = this.ring();
    const n = this.coordinator.quorum(ring).n;
    let records = 0;
    let bytes = 0;
    for await (const r of this.o.store.list({ start: 0, end: 0, whole: true })) {
      if (!ring.preferenceList(placementKey(r.bucket, r.key), n).includes(this.o.nodeId)) { records++; bytes += r.size; }
    }
    return { records, bytes };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.busy.values()]);
    await this.coordinator.settled();
    this.peers.close();
  }
}
