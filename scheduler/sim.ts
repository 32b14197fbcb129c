/**
 * A simulated cluster for the election (tests and benchmarks): real Election
 * and Fence code on a FakeClock, an in-memory network with per-message loss,
 * delay and partitions, crash/restart that keeps each node's stores, and a
 * checker that records every invariant violation it sees.
 */
import { FakeClock, seededRandom } from "../core/index.js";
import { Election, type ElectionEvent, type ElectionOptions } from "./election.js";
import { Fence, MemoryFenceStore } from "./fence.js";
import { MemoryElectionStore, type ElectionTransport, type VoteRequest } from "./messages.js";
import { compareConfig, quorum, voterDiff, type VoterConfig } from "./voters.js";

export interface Timers { electionTimeout: number; heartbeatInterval: number; leaseDuration: number }
/** config/schema.ts's defaults (scheduler.*). */
export const LAN_TIMERS: Timers = { electionTimeout: 2000, heartbeatInterval: 400, leaseDuration: 800 };
/** The `local` preset's scheduler timers (etcd's defaults), which the multi-agent tests run with. */
export const LOCAL_PRESET_TIMERS: Timers = { electionTimeout: 1000, heartbeatInterval: 100, leaseDuration: 500 };
export const LOCAL_TIMERS: Timers = { electionTimeout: 300, heartbeatInterval: 60, leaseDuration: 240 };

/**
 * The checker's self-test: a node that grants every vote it is asked for
 * (twice in a term, while hearing a leader). Two leaders in one term follow.
 */
export class PromiscuousElection extends Election {
  protected override hearingLeaderRefusal(): string | undefined { return undefined; }
  protected override voteRefusal(_req: VoteRequest): string | undefined { return undefined; }
}

export interface ElectionSimOptions {
  n: number;
  seed: number;
  timers?: Timers;
  maxVoters?: number;
  /** One-way delay range in ms. */
  latency?: [number, number];
  loss?: number;
  /** Nodes run PromiscuousElection (checker self-test). */
  broken?: boolean;
  /** Acting leaders send fenced commands to random nodes each step. */
  commands?: boolean;
}

export interface SimNode {
  id: string;
  store: MemoryElectionStore;
  fenceStore: MemoryFenceStore;
  election: Election | undefined;
  fence: Fence | undefined;
  up: boolean;
  joined: boolean;
  /** Highest command term this node accepted (the checker's own record, across restarts). */
  accepted: number;
}

export class ElectionSim {
  readonly clock = new FakeClock(0);
  readonly random: () => number;
  readonly timers: Timers;
  readonly nodes = new Map<string, SimNode>();
  readonly violations: string[] = [];
  readonly leaders = new Map<number, string>();
  /** Committed configs by version. */
  readonly committed = new Map<number, VoterConfig>();
  loss: number;
  latency: [number, number];
  commandsAccepted = 0;
  commandsRefused = 0;
  /** Partition group per node; nodes talk only within a group. */
  private group = new Map<string, number>();
  private steps = 0;
  private undurable = false;

  constructor(readonly o: ElectionSimOptions) {
    this.random = seededRandom(o.seed);
    this.timers = o.timers ?? LOCAL_TIMERS;
    this.loss = o.loss ?? 0;
    this.latency = o.latency ?? [1, 5];
    for (let i = 0; i < o.n; i++) {
      const id = `n${i}`;
      this.nodes.set(id, { id, store: new MemoryElectionStore(), fenceStore: new MemoryFenceStore(), election: undefined, fence: undefined, up: false, joined: false, accepted: 0 });
    }
  }

  node(id: string): SimNode { return this.nodes.get(id)!; }
  ids(): string[] { return [...this.nodes.keys()]; }
  upIds(): string[] { return this.ids().filter((id) => this.node(id).up); }

  async start(id: string, bootstrap = false): Promise<void> {
    const n = this.node(id);
    if (n.up) return;
    n.joined = true;
    n.fence = await Fence.open(n.fenceStore);
    const opts: ElectionOptions = {
      id, store: n.store, transport: this.transport(id), clock: this.clock, random: this.random, ...this.timers,
      bootstrap, fence: n.fence, maxVoters: this.o.maxVoters,
      members: () => this.ids().filter((m) => this.node(m).joined),
      isAlive: (m) => this.node(m).up,
      // A crashed leader's port refuses connections ("dead"), if the network between them works; a partition is "unknown".
      probeLeader: (leader) => new Promise((resolve) => {
        const sameSide = (this.group.get(id) ?? 0) === (this.group.get(leader) ?? 0);
        const verdict = !sameSide ? "unknown" : this.node(leader).up ? "alive" : "dead";
        this.clock.after(this.delay(), () => resolve(verdict));
      }),
    };
    const e = this.o.broken ? new PromiscuousElection(opts) : new Election(opts);
    e.onChange((ev) => this.record(id, ev));
    n.election = e;
    n.up = true;
    await e.start();
  }

  crash(id: string): void {
    const n = this.node(id);
    if (!n.up) return;
    n.election?.stop();
    n.election = undefined;
    n.fence = undefined;
    n.up = false;
  }

  /** Splits the nodes into groups (each a list of ids); unnamed nodes form their own group. */
  partition(groups: string[][]): void {
    this.group.clear();
    groups.forEach((g, i) => g.forEach((id) => this.group.set(id, i + 1)));
  }
  heal(): void { this.group.clear(); }

  reachable(a: string, b: string): boolean {
    return this.node(a).up && this.node(b).up && (this.group.get(a) ?? 0) === (this.group.get(b) ?? 0);
  }

  /** Acting leaders now (per their own lease on the shared clock). */
  acting(): string[] { return this.upIds().filter((id) => this.node(id).election?.isActing()); }

  /**
   * Advances time in steps, checking lease safety at every step and sending
   * fenced commands from acting leaders; stops early when until() holds.
   */
  async run(ms: number, step = 10, until?: () => boolean): Promise<boolean> {
    const end = this.clock.now() + ms;
    while (this.clock.now() < end) {
      await this.clock.advance(Math.min(step, end - this.clock.now()));
      // Let serial queues finish at this instant (FakeClock settles only a few turns).
      for (let i = 0; i < 16; i++) await Promise.resolve();
      const acting = this.acting();
      if (acting.length > 1) {
        this.violate(`lease: ${acting.map((a) => `${a} (term ${this.node(a).election!.status().term})`).join(" and ")} both acting at t=${this.clock.now()}`);
      }
      ++this.steps;
      if (this.o.commands && this.steps % 3 === 0) for (const a of acting) this.command(a);
      if (this.steps % 10 === 0) this.checkDurable();
      if (until?.()) return true;
    }
    return until?.() ?? false;
  }

  /** One line per node for a violation message: role, term, leader, config. */
  describe(ids = this.ids()): string {
    return ids.map((id) => {
      const s = this.node(id).election?.status();
      return s ? `${id} ${s.role} t${s.term} leader=${s.leader ?? "-"} cfg v${s.config.version}/t${s.config.term} [${s.config.voters}]${s.configCommitted ? "" : " (pending)"}` : `${id} down`;
    }).join("; ");
  }

  /** The highest committed config (by version). */
  latestCommitted(): VoterConfig | undefined {
    let best: VoterConfig | undefined;
    for (const c of this.committed.values()) if (!best || c.version > best.version) best = c;
    return best;
  }

  /** A committed config stays held (saved) by a majority of its voters: a later leader must come from them. */
  checkDurable(): void {
    const c = this.latestCommitted();
    if (!c) return;
    const holders = c.voters.filter((v) => { const s = this.node(v).store.state; return s && compareConfig(s.config, c) >= 0; });
    if (holders.length < quorum(c.voters.length) && !this.undurable) this.undurable = true, this.violate(`committed config version ${c.version} [${c.voters}] is held only by ${holders.join(",") || "none"} at t=${this.clock.now()}: ${this.describe()}`);
  }

  violate(what: string): void { if (this.violations.length < 20) this.violations.push(`seed ${this.o.seed}: ${what}`); }

  private command(from: string): void {
    const e = this.node(from).election!;
    let term: number;
    try { term = e.fence(); } catch { return; }
    const ids = this.ids();
    const to = ids[Math.floor(this.random() * ids.length)]!;
    this.deliver(from, to, async (n) => {
      await n.fence!.accept(term, `command from ${from}`);
      if (term < n.accepted) this.violate(`fence: ${to} accepted term ${term} after term ${n.accepted}`);
      n.accepted = Math.max(n.accepted, term);
    }).then(() => this.commandsAccepted++, () => this.commandsRefused++);
  }

  private record(id: string, ev: ElectionEvent): void {
    if (ev.role === "leader") {
      const prev = this.leaders.get(ev.term);
      if (prev !== undefined && prev !== id) this.violate(`two leaders in term ${ev.term}: ${prev} and ${id}`);
      this.leaders.set(ev.term, id);
      if (ev.reason === "config" && ev.configCommitted) this.commit(ev.config);
    }
  }

  private commit(c: VoterConfig): void {
    const same = this.committed.get(c.version);
    if (same && voterDiff(same.voters, c.voters).length > 0) this.violate(`config version ${c.version} committed as ${same.voters} and as ${c.voters}`);
    // Single-server changes: neighbouring committed configs differ by at most
    // one voter, so any two of their majorities intersect.
    let lower: VoterConfig | undefined, higher: VoterConfig | undefined;
    for (const k of this.committed.values()) {
      if (k.version < c.version && (!lower || k.version > lower.version)) lower = k;
      if (k.version > c.version && (!higher || k.version < higher.version)) higher = k;
    }
    for (const k of [lower, higher]) {
      if (k && voterDiff(k.voters, c.voters).length > 1) this.violate(`committed configs ${k.version} [${k.voters}] and ${c.version} [${c.voters}] differ by more than one voter`);
    }
    this.committed.set(c.version, { ...c, voters: [...c.voters] });
  }

  /** Heartbeats sent to each node (the fan-out a leader costs). */
  readonly heartbeatsTo = new Map<string, number>();

  private transport(from: string): ElectionTransport {
    return {
      requestVote: (to, req) => this.deliver(from, to, (n) => n.election!.handleVote(req)),
      heartbeat: (to, req) => {
        this.heartbeatsTo.set(to, (this.heartbeatsTo.get(to) ?? 0) + 1);
        return this.deliver(from, to, (n) => n.election!.handleHeartbeat(req));
      },
    };
  }

  /** One request and its reply over the lossy network; a lost message never answers (the caller times out). */
  private deliver<T>(from: string, to: string, fn: (n: SimNode) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.random() < this.loss) return;
      this.clock.after(this.delay(), () => {
        if (!this.reachable(from, to)) return;
        const target = this.node(to);
        const lostReply = this.random() < this.loss;
        fn(target).then((v) => {
          this.clock.after(this.delay(), () => { if (!lostReply && this.reachable(to, from)) resolve(v); });
        }, (err: unknown) => {
          this.clock.after(this.delay(), () => { if (!lostReply && this.reachable(to, from)) reject(err); });
        });
      });
    });
  }

  private delay(): number {
    const [a, b] = this.latency;
    return a + (b - a) * this.random();
  }
}
