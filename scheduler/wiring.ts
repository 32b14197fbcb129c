/**
 * The election as an agent runs it: its state and the fence in the node's
 * LevelDB (fsync'd), votes and heartbeats over SchedulerService on the peer
 * transport, the gossip view for who may become a voter, voters removed when
 * an operator removes their node, and metrics and logs on every change.
 */
import type { ClusterTable, ClusterView, PeerPool } from "../cluster/index.js";
import { realClock, type AgentContext, type Logger, type Membership } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HeartbeatReply, HeartbeatRequestSchema, SchedulerService } from "../proto/index.js";
import { BeatStream } from "./beat-stream.js";
import type { Client } from "../rpc/index.js";
import { Election } from "./election.js";
import { Fence, type FenceStore } from "./fence.js";
import type { ElectionStore, PersistedElection } from "./messages.js";
import type { SchedulerMetrics } from "./metrics.js";

type SchedClient = Client<typeof SchedulerService.method>;
type HbInit = MessageInitShape<typeof HeartbeatRequestSchema>;

/**
 * Heartbeats to each peer on its own stream (beat-stream.ts); a peer that
 * predates HeartbeatStream (UNIMPLEMENTED: a rolling upgrade) gets unary
 * Heartbeat calls, and is asked again for a stream after a while.
 */
class PeerBeats {
  private readonly streams = new Map<string, BeatStream<HbInit, HeartbeatReply>>();
  private readonly unaryUntil = new Map<string, number>();

  constructor(private readonly sched: PeerPool<typeof SchedulerService.method, SchedClient>, private readonly timeoutMs: number) {}

  async send(to: string, req: HbInit): Promise<HeartbeatReply> {
    if ((this.unaryUntil.get(to) ?? 0) > Date.now()) return this.sched.get(to).heartbeat(req, { timeoutMs: this.timeoutMs });
    let s = this.streams.get(to);
    if (!s) {
      s = new BeatStream<HbInit, HeartbeatReply>((reqs, signal) => this.sched.get(to).heartbeatStream(reqs, { signal }), this.timeoutMs);
      this.streams.set(to, s);
    }
    try {
      return await s.send(req);
    } catch (err) {
      if (ThocError.from(err).code !== "unimplemented") throw err;
      this.unaryUntil.set(to, Date.now() + 300_000);
      return this.sched.get(to).heartbeat(req, { timeoutMs: this.timeoutMs });
    }
  }

  close(): void {
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
  }
}

export interface ElectionHandle {
  election: Election;
  fence: Fence;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One line for `status`. */
  summary(): string;
  /** Why this node knows no leader, for UNAVAILABLE messages. */
  noLeaderReason(): string;
}

export interface WiringOptions {
  ctx: AgentContext;
  log: Logger;
  view: ClusterView;
  membership: Membership;
  sched: PeerPool<typeof SchedulerService.method, SchedClient>;
  metrics: SchedulerMetrics;
  nodeName(id: string): string;
  /** Nodes removed by an operator (`thoc-node node remove`): their voter seats go. */
  removed: ClusterTable;
}

function levelStores(ctx: AgentContext): { election: ElectionStore; fence: FenceStore } {
  const sub = ctx.store.json<unknown>("scheduler");
  const put = (key: string, value: unknown) => ctx.store.db.batch([{ type: "put", sublevel: sub, key, value }], { sync: true });
  return {
    election: {
      load: async () => (await sub.get("election")) as PersistedElection | undefined,
      save: (s) => put("election", s),
    },
    fence: {
      load: async () => (await sub.get("fence")) as number | undefined,
      save: (h) => put("fence", h),
    },
  };
}

export async function startElection(o: WiringOptions): Promise<ElectionHandle> {
  const { ctx, log, view } = o;
  const cfg = ctx.config.scheduler;
  const stores = levelStores(ctx);
  const fence = await Fence.open(stores.fence);
  const rpcTimeout = Math.max(100, Math.floor(cfg.electionTimeout / 2));
  const beats = new PeerBeats(o.sched, rpcTimeout);
  const election = new Election({
    id: ctx.nodeId,
    store: stores.election,
    fence,
    clock: realClock,
    random: Math.random,
    electionTimeout: cfg.electionTimeout,
    heartbeatInterval: cfg.heartbeatInterval,
    leaseDuration: cfg.leaseDuration,
    // The first agent of a new cluster (no --join) is its sole voter; every other node joins as a non-voter.
    bootstrap: ctx.config.join.length === 0,
    maxVoters: cfg.voters,
    members: () => o.membership.members().filter((m) => m.id !== ctx.nodeId && (m.state === "alive" || m.state === "suspect")).map((m) => m.id),
    isAlive: (id) => view.isUp(id) && o.removed.table.get(id) === undefined,
    // Any answer, a refusal included, means the leader's process is there; only a refused connection means it is gone.
    async probeLeader(id) {
      try {
        await o.sched.get(id).getLeader({}, { timeoutMs: Math.max(50, cfg.heartbeatInterval * 2) });
        return "alive";
      } catch (err) {
        const e = ThocError.from(err);
        if (e.code !== "unavailable") return e.code === "deadline_exceeded" ? "unknown" : "alive";
        return /ECONNREFUSED|connection refused/i.test(`${e.message} ${String((e as { cause?: unknown }).cause ?? "")}`) ? "dead" : "unknown";
      }
    },
    transport: {
      async requestVote(to, r) {
        const x = await o.sched.get(to).requestVote({ term: BigInt(r.term), candidate: r.candidateId, configVersion: BigInt(r.configVersion), configTerm: BigInt(r.configTerm), preVote: Boolean(r.preVote) }, { timeoutMs: rpcTimeout });
        return { term: Number(x.term), granted: x.granted, reason: x.reason };
      },
      async heartbeat(to, r) {
        const req: HbInit = {
          term: BigInt(r.term), leader: r.leaderId, configCommitted: r.configCommitted,
          config: { version: BigInt(r.config.version), term: BigInt(r.config.term), voters: r.config.voters },
        };
        const x = await beats.send(to, req);
        return { term: Number(x.term), success: x.success, configVersion: Number(x.configVersion) };
      },
    },
  });

  let lastLeader: string | undefined;
  let lastRole = "";
  election.onChange((e) => {
    o.metrics.term.set(e.term);
    if (e.role === "candidate" && lastRole !== "candidate") o.metrics.elections.inc();
    if (e.leader !== lastLeader) {
      if (e.leader) o.metrics.leaderChanges.inc();
      log.info({ leader: e.leader && o.nodeName(e.leader), leaderId: e.leader, term: e.term, role: e.role }, e.leader ? "scheduler: leader elected" : "scheduler: no leader");
      // The new leader says so, once for the cluster (every node publishing what it saw would repeat it N times).
      if (e.leader === ctx.nodeId) ctx.events?.publish({ kind: "leader", leaderId: e.leader, leaderName: o.nodeName(e.leader), term: e.term });
      lastLeader = e.leader;
    }
    if (e.reason === "config") log.info({ voters: e.config.voters.map(o.nodeName), version: e.config.version, committed: e.configCommitted }, "scheduler: voter set changed");
    lastRole = e.role;
    if (e.role === "leader") void dropRemoved();
  });
  o.metrics.actingFrom(() => election.isActing());

  // An operator's `node remove` takes the node's voter seat too (never a node that is merely down).
  const dropRemoved = async () => {
    const s = election.status();
    if (s.role !== "leader") return;
    for (const id of s.config.voters) {
      if (id !== ctx.nodeId && o.removed.table.get(id) !== undefined) {
        try {
          await election.removeVoter(id);
          log.info({ node: o.nodeName(id) }, "scheduler: removed node's voter seat given up");
        } catch (err) {
          log.warn({ node: o.nodeName(id), err: ThocError.from(err).message }, "scheduler: could not remove the voter of a removed node yet; will retry");
        }
        return;
      }
    }
  };
  o.removed.table.onChange(() => { void dropRemoved(); });
  const retry = setInterval(() => { void dropRemoved(); }, Math.max(1000, cfg.electionTimeout * 4)).unref();

  const noLeaderReason = () => {
    const s = election.status();
    if (!s.config.voters.length) return "this node has not heard from a leader yet (it joined as a non-voter and waits for the leader's heartbeat)";
    const up = s.config.voters.filter((id) => view.isUp(id)).length;
    const need = Math.floor(s.config.voters.length / 2) + 1;
    if (up < need) return `only ${up} of ${s.config.voters.length} voters (${s.config.voters.map(o.nodeName).join(", ")}) are reachable and a leader needs ${need}: this side of the cluster cannot schedule`;
    return `an election is in progress (term ${s.term})`;
  };
  return {
    election,
    fence,
    start: () => election.start(),
    async stop() { o.metrics.actingFrom(() => false); clearInterval(retry); election.stop(); beats.close(); },
    summary() {
      const s = election.status();
      const who = s.leader ? `leader ${o.nodeName(s.leader)}` : "no leader";
      return `${who}, term ${s.term}, ${s.role}, voters ${s.config.voters.map(o.nodeName).join(",") || "(none yet)"}`;
    },
    noLeaderReason,
  };
}
