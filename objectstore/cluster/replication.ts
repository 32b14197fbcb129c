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
import type { RpcServer } from "../../rpc/index.js";
import { syncWithPeer, type AntiEntropyStats } from "./anti-entropy.js";
import { PeerAuth, authenticated } from "./auth.js";
import { Coordinator, LocalReplica, type CoordinatorLog, type Liveness, type ReplicaTarget } from "./coordinator.js";
import { HlcClock } from "./hlc.js";
import { deliverHints, type HintStore } from "./hints.js";
import { Peers, type PeerDirectory } from "./peer.js";
import { RateLimiter } from "./rate.js";
import { expireTombstones, rebalance, type RebalanceStats } from "./rebalance.js";
import type { ReplicaStore } from "./replica-store.js";
import type { Ring } from "./ring.js";
import { syncRing } from "./ring-store.js";
import { replicaService, type RingHolder } from "./service.js";

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
  liveness?: Liveness;
  log?: CoordinatorLog;
  hlc?: HlcClock;
}

export class ReplicationNode {
  readonly hlc: HlcClock;
  readonly peers: Peers;
  readonly coordinator: Coordinator;
  readonly limiter: RateLimiter;
  private readonly local: LocalReplica;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly busy = new Map<string, Promise<unknown>>();
  private stopped = false;

  constructor(private readonly o: ReplicationNodeOptions) {
    this.hlc = o.hlc ?? new HlcClock(o.nodeId);
    const auth = new PeerAuth({ clusterName: o.clusterName, keys: o.keys, nodeId: o.nodeId });
    this.peers = new Peers({ auth, directory: o.directory, hlc: this.hlc, timeoutMs: o.config.peerTimeout });
    this.limiter = new RateLimiter(o.config.repairBytesPerSecond);
    this.local = new LocalReplica(o.nodeId, o.store, o.hints);
    this.coordinator = new Coordinator({
      self: o.nodeId, ring: () => this.ring(), target: (id) => this.target(id), hlc: this.hlc,
      replicas: o.config.replicas, writeQuorum: o.config.writeQuorum, readQuorum: o.config.readQuorum,
      liveness: o.liveness, log: o.log,
    });
    const svc = replicaService({ store: o.store, hints: o.hints, hlc: this.hlc, ring: o.ring, idleTimeoutMs: o.config.peerTimeout });
    o.rpc.add(ObjectStoreService, authenticated(ObjectStoreService, svc, auth));
  }

  ring(): Ring {
    return this.o.ring.state().ring(this.o.config.vnodes);
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
    this.o.ring.onChange(() => { void this.once("rebalance", () => this.rebalance()); });
    const every = (ms: number, name: string, fn: () => Promise<unknown>) => {
      const t = setInterval(() => { void this.once(name, fn); }, ms);
      t.unref();
      this.timers.push(t);
    };
    const ae = this.o.config.antiEntropyInterval;
    // Rebalancing also retries here: right after a ring change the new owner may not be reachable yet.
    every(ae, "anti-entropy", async () => { await this.antiEntropy(); await this.once("rebalance", () => this.rebalance()); });
    every(Math.max(50, Math.floor(ae / 4)), "handoff", () => this.deliverHints());
    every(Math.max(100, Math.min(this.o.config.tombstoneGrace / 4, 3_600_000)), "tombstones", () => expireTombstones(this.o.store, this.o.config.tombstoneGrace));
  }

  /** Runs a background task unless the same one is still running; failures are logged, never thrown. */
  private once<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    const running = this.busy.get(name);
    if (running) return running as Promise<T | undefined>;
    const p = fn().catch((err: unknown) => {
      this.o.log?.warn({ task: name, err: ThocError.from(err).message }, "object store: background task failed");
      return undefined;
    }).finally(() => this.busy.delete(name));
    this.busy.set(name, p);
    return p;
  }

  /** Push-pull of the ring state with one member (call on every membership push-pull / join). */
  syncRingWith(nodeId: string): Promise<boolean> {
    return syncRing(this.o.ring, this.peers.get(nodeId));
  }

  /** Call when membership sees a node come back (alive after dead): hints go out now, not at the next tick. */
  nodeUp(): void {
    void this.once("handoff", () => this.deliverHints());
  }

  deliverHints(): Promise<{ delivered: number; pending: number }> {
    return deliverHints({ hints: this.o.hints, target: (id) => this.target(id), isUp: (id) => this.isUp(id), limiter: this.limiter, log: this.o.log });
  }

  /** One anti-entropy pass with every live node this one shares arcs with. */
  async antiEntropy(): Promise<Map<string, AntiEntropyStats>> {
    const ring = this.ring();
    const n = this.coordinator.quorum(ring).n;
    const out = new Map<string, AntiEntropyStats>();
    for (const peer of ring.nodes) {
      if (peer === this.o.nodeId || !this.isUp(peer) || this.stopped) continue;
      try {
        out.set(peer, await syncWithPeer({ self: this.o.nodeId, local: this.o.store, ring, n, limiter: this.limiter, log: this.o.log }, this.peers.get(peer)));
      } catch (err) {
        this.o.log?.warn({ peer, err: ThocError.from(err).message }, "object store: anti-entropy with peer failed");
      }
    }
    return out;
  }

  rebalance(): Promise<RebalanceStats> {
    const ring = this.ring();
    return rebalance({ self: this.o.nodeId, local: this.o.store, ring, n: this.coordinator.quorum(ring).n, target: (id) => this.target(id), limiter: this.limiter, log: this.o.log });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.busy.values()]);
    await this.coordinator.settled();
    this.peers.close();
  }
}
