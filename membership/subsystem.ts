/**
 * The membership subsystem of the agent: binds the gossip port (UDP+TCP),
 * joins the configured seeds, keeps this node's metadata (addresses,
 * capacity, free resources) current, serves ClusterService, and leaves the
 * cluster gracefully on stop. Other subsystems get it from the composition
 * root as a Membership (core/) and, for ClusterService methods of their own,
 * as a ClusterServiceHost.
 */
import type { AgentContext, CapacityInfo, Subsystem, SubsystemHealth } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { ClusterService } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import { Keyring } from "./keyring.js";
import { registerMetrics } from "./metrics.js";
import { NetTransport } from "./net-transport.js";
import { GossipNode } from "./node.js";
import { clusterService } from "./service.js";
import { realClock, type Member, type MemberEvent, type Membership, type NodeMeta } from "./types.js";

/** fsync'd: a restart must never come back below an incarnation already gossiped. */
const INC_KEY = "membership/incarnation";
/**
 * Gossip addresses of the members last seen alive (serf's snapshot, in short): a restarted node
 * joins them as well as its seeds, so a seed (which has no --join) or a node whose seeds are down is
 * back at once, instead of when a peer's periodic re-join (gossip.rejoinInterval, 30 s) finds it.
 */
const PEERS_KEY = "membership/peers";
const MAX_REMEMBERED = 64;

/**
 * How long the leave waits for the `left` update to spread: 3 gossip rounds (each sends it to
 * gossipNodes members, who pass it on), at most 1 s (lan: 600 ms, local: 150 ms). It returns
 * sooner once the update has gone out its retransmit count.
 */
export function leaveWaitMs(gossipInterval: number): number {
  return Math.min(1000, 3 * gossipInterval);
}

/**
 * Lifeguard local health at start-up: the rest of the agent is still opening (LevelDB, libvirt,
 * listeners) and the event loop is busy, so our own probes would time out on *our* slowness. A
 * score of 2 stretches our probe interval and timeout 3x; every acked probe takes 1 off.
 */
const STARTUP_AWARENESS = 2;

/** Free resources move all the time; rounding to 1% of the total keeps them from bumping the incarnation on every reading. */
function round(free: number, total: number): number {
  const step = Math.max(1, Math.floor(total / 100));
  return Math.floor(free / step) * step;
}

export function capacityMeta(c: CapacityInfo): Pick<NodeMeta, "cpus" | "memBytes" | "memFreeBytes" | "diskBytes" | "diskFreeBytes" | "gpus"> {
  return {
    cpus: c.cpus, memBytes: c.memoryBytes, memFreeBytes: round(c.memoryFreeBytes, c.memoryBytes),
    diskBytes: c.diskBytes, diskFreeBytes: round(c.diskFreeBytes, c.diskBytes), gpus: c.gpus.length,
  };
}

/** Where other subsystems plug their ClusterService methods (GetRing, GetLeader) in. */
export interface ClusterServiceHost {
  extendClusterService(methods: Partial<ImplOf<typeof ClusterService>>): void;
}

export class MembershipSubsystem implements Subsystem, Membership, ClusterServiceHost {
  readonly name = "membership";
  node?: GossipNode;
  private ctx?: AgentContext;
  private metaTimer?: NodeJS.Timeout;
  private peersTimer?: NodeJS.Timeout;
  private log?: AgentContext["log"];

  async start(ctx: AgentContext): Promise<void> {
    this.ctx = ctx;
    const cfg = ctx.config;
    const log = ctx.log.child({ subsystem: "membership" });
    this.log = log;
    const keyring = new Keyring(cfg.cluster.keys, cfg.cluster.name);
    let node: GossipNode | undefined;
    const transport = await NetTransport.open({
      bind: cfg.bind, port: cfg.gossipPort, advertise: cfg.advertise,
      maxFrameBytes: cfg.gossip.maxStreamBytes, maxInbound: cfg.gossip.maxInboundStreams, frameTimeoutMs: cfg.gossip.streamTimeout,
      onError: (where, err) => {
        if (node) node.stats.dropped.send++;
        log.debug({ where, err: err.message }, "gossip socket error");
      },
    });
    // A restarted node must come back with a higher incarnation than anything
    // the cluster remembers of its previous life, so the number is persisted.
    const db = ctx.store.db;
    const stored = Number((await db.get(INC_KEY).catch(() => undefined)) ?? 0) || 0;
    const incarnation = Math.max(stored, ctx.store.generation) + 1;
    await db.put(INC_KEY, String(incarnation), { sync: true });
    const remembered = parsePeers(await db.get(PEERS_KEY).catch(() => undefined));
    const a = ctx.addresses;
    node = new GossipNode({
      id: ctx.nodeId, transport, clock: realClock, keyring, timers: cfg.gossip, seeds: cfg.join, incarnation, log,
      onIncarnation: (inc) => { db.put(INC_KEY, String(inc), { sync: true }).catch((err: Error) => log.warn({ err: err.message }, "cannot persist incarnation")); },
      meta: { name: cfg.name, version: ctx.version, grpc: a.grpc, s3: a.s3, gossip: transport.address, ...capacityMeta(ctx.capacity()) },
    });
    this.node = node;
    node.sync.remembered = remembered.filter((x) => x !== transport.address && !cfg.join.includes(x));
    node.subscribe((e) => {
      if (e.type === "update") return;
      log.info({ member: e.member.name, id: e.member.id, address: e.member.address, incarnation: e.member.incarnation }, `member ${e.type}`);
      if (e.type !== "suspect") this.rememberPeers();
    });
    registerMetrics(ctx.metrics, () => this.node);
    ctx.rpc.add(ClusterService, this.clusterImpl());
    // Before start: the first joins are events too.
    ctx.events?.attachMembership(this);
    node.start();
    node.swim.adjustAwareness(STARTUP_AWARENESS);
    log.info({ address: transport.address, seeds: cfg.join, remembered: node.sync.remembered.length, incarnation }, "gossip started");
    this.metaTimer = setInterval(() => {
      try { this.updateMeta(capacityMeta(ctx.capacity())); } catch (err) { log.warn({ err: (err as Error).message }, "cannot update node metadata"); }
    }, cfg.metrics.collectInterval);
    this.metaTimer.unref();
  }

  private readonly extensions: Partial<Record<string, (...a: never[]) => unknown>> = {};

  /**
   * ClusterService is registered here, but later work adds methods to it
   * (GetLeader from the scheduler, GetRing from the object store): they plug
   * their implementations in with this, at any time; until then those methods
   * answer UNIMPLEMENTED.
   */
  extendClusterService(methods: Partial<ImplOf<typeof ClusterService>>): void {
    Object.assign(this.extensions, methods);
  }

  private clusterImpl(): ImplOf<typeof ClusterService> {
    const base = clusterService(this) as Record<string, unknown>;
    const impl: Record<string, unknown> = {};
    for (const m of ClusterService.methods) {
      const name = m.localName;
      if (base[name]) { impl[name] = base[name]; continue; }
      const get = () => {
        const f = this.extensions[name] as ((...a: unknown[]) => unknown) | undefined;
        if (!f) throw new ThocError("unimplemented", `ClusterService.${m.name} is not served by this agent yet`);
        return f;
      };
      impl[name] = m.methodKind === "unary" || m.methodKind === "client_streaming"
        ? async (...a: unknown[]) => get()(...a)
        : async function* (...a: unknown[]) { yield* get()(...a) as AsyncIterable<unknown>; };
    }
    return impl as ImplOf<typeof ClusterService>;
  }

  /** Writes the members seen alive now, a second after the last change (best effort, not fsync'd). */
  private rememberPeers(): void {
    if (this.peersTimer) return;
    this.peersTimer = setTimeout(() => {
      this.peersTimer = undefined;
      const n = this.node;
      if (!n || n.swim.leaving || !n.swim.running) return;
      const peers = n.members().filter((m) => m.id !== n.localId && (m.state === "alive" || m.state === "suspect"))
        .map((m) => m.address).slice(0, MAX_REMEMBERED);
      this.ctx?.store.db.put(PEERS_KEY, JSON.stringify(peers)).catch((err: Error) => this.log?.debug({ err: err.message }, "cannot remember peers"));
    }, 1000);
    this.peersTimer.unref();
  }

  /**
   * The graceful leave, run by the agent first thing on shutdown, before the gRPC drain: peers mark
   * this node `left` (and the ring and the scheduler stop sending it work) while it finishes the
   * calls under way. It keeps answering probes until stop().
   */
  async leave(): Promise<void> {
    clearInterval(this.metaTimer);
    const n = this.node;
    if (!n || n.swim.leaving) return;
    const t0 = Date.now();
    try {
      await n.leave(leaveWaitMs(this.ctx?.config.gossip.gossipInterval ?? 200));
    } catch { /* leaving is best effort */ }
    this.log?.info({ waitedMs: Date.now() - t0 }, "left the cluster");
  }

  async stop(): Promise<void> {
    clearInterval(this.metaTimer);
    clearTimeout(this.peersTimer);
    const n = this.node;
    if (!n) return;
    await this.leave();
    await n.stop().catch(() => {});
  }

  health(): SubsystemHealth {
    const n = this.node;
    if (!n) return { status: "starting" };
    const c: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
    for (const m of n.swim.members.values()) c[m.state]!++;
    const joined = n.sync.joined || (this.ctx?.config.join.length ?? 0) === 0;
    return { status: "up", detail: `${c.alive} alive, ${c.suspect} suspect, ${c.dead} dead, ${c.left} left${joined ? "" : "; no seed answered yet, retrying"}` };
  }

  // ---- Membership face (delegates to the gossip node) ----
  get localId(): string { return this.need().localId; }
  members(): Member[] { return this.need().members(); }
  member(id: string): Member | undefined { return this.need().member(id); }
  local(): Member { return this.need().local(); }
  updateMeta(patch: Partial<NodeMeta>): void { this.need().updateMeta(patch); }
  subscribe(fn: (e: MemberEvent) => void): () => void { return this.need().subscribe(fn); }

  private need(): GossipNode {
    if (!this.node) throw new ThocError("failed_precondition", "membership is not started: the composition root must start it before the subsystems that read the gossip view");
    return this.node;
  }
}

/** The remembered peer list, or none when it is missing or not what we wrote. */
function parsePeers(v: unknown): string[] {
  if (typeof v !== "string") return [];
  try {
    const a: unknown = JSON.parse(v);
    return Array.isArray(a) ? a.filter((x): x is string => typeof x === "string" && /^\S{1,253}:\d{1,5}$/.test(x)).slice(0, MAX_REMEMBERED) : [];
  } catch { return []; }
}
