/**
 * The scheduler leader election (SPEC 4): Raft's election over a versioned
 * voter set and nothing else, with pre-vote, a leader lease and single-server
 * voter changes. Pure and transport-agnostic: time comes from a Clock, chance
 * from `random`, peers through an ElectionTransport, durability through an
 * ElectionStore, so the same code runs in the agent and in the simulation.
 *
 * Every state change runs in one serial queue and is saved before the answer
 * that depends on it leaves; replies to our own calls re-enter the queue, so
 * no handler ever waits on the network.
 */
import { ThocError } from "../errors/index.js";
import type { HeartbeatReply, HeartbeatRequest, VoteReply, VoteRequest } from "./messages.js";
import { checkConfig, checkCount, checkId, checkTerm, compareConfig, copyConfig, describeConfig, NO_CONFIG, quorum, sameConfig, type VoterConfig } from "./voters.js";
import { LeaderState } from "./leader.js";
import { MovingDeadline } from "./deadline.js";
import type { ElectionEvent, ElectionOptions, ElectionRole, ElectionStatus } from "./options.js";

export type { ElectionRole, ElectionOptions, ElectionStatus, ElectionEvent } from "./options.js";

export class Election {
  protected term = 0;
  protected votedFor = "";
  protected config: VoterConfig = NO_CONFIG;
  protected role: ElectionRole = "observer";
  protected leader: string | undefined;
  private leaderSince: number | undefined;
  /** When we last accepted a leader's heartbeat (or booted): no vote for anyone before electionTimeout has passed. */
  protected lastLeaderContact = 0;
  private configCommitted = false;
  private running = false;
  private stopped = false;
  /** Bumped whenever a campaign must be abandoned (heartbeat, new term, leadership). */
  private campaign = 0;
  private lead: LeaderState | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(e: ElectionEvent) => void>();
  readonly id: string;

  constructor(protected readonly o: ElectionOptions) {
    this.electionTimer = new MovingDeadline(o.clock,
      () => { void this.serial(() => this.onElectionTimeout()).catch(() => undefined); },
      () => !this.stopped && this.role !== "leader");
    this.probeTimer = new MovingDeadline(o.clock,
      () => { if (this.probeFor) void this.probe(this.probeFor.leader, this.probeFor.campaign); },
      () => !this.stopped && !!this.probeFor);
    this.id = checkId(o.id, "election id");
    if (!(o.heartbeatInterval > 0 && o.heartbeatInterval < o.electionTimeout)) throw new ThocError("invalid_argument", "scheduler.heartbeatInterval must be above 0 and below scheduler.electionTimeout");
    if (!(o.leaseDuration > 0 && o.leaseDuration < o.electionTimeout)) throw new ThocError("invalid_argument", "scheduler.leaseDuration must be above 0 and below scheduler.electionTimeout, so an old leader's lease ends before a new one can be elected");
  }

  async start(): Promise<void> {
    if (this.running || this.stopped) throw new ThocError("failed_precondition", "an Election starts once: build a new one on the same store to restart");
    await this.serial(async () => {
      const s = await this.o.store.load();
      if (s) {
        this.term = checkCount(s.term, "stored term");
        this.votedFor = s.votedFor;
        this.config = checkConfig(s.config, "stored config");
      } else if (this.o.bootstrap) {
        this.config = { version: 1, term: 0, voters: [this.id] };
        await this.persist();
      }
      const h = this.o.fence?.highestTerm ?? 0;
      if (h > this.term) { this.term = h; this.votedFor = ""; await this.persist(); }
      await this.o.fence?.observe(this.term);
      this.role = this.isVoter() ? "follower" : "observer";
      // A node that acked a live leader's heartbeat just before it crashed
      // must not vote before that heartbeat could have expired: the leader's
      // lease counts on it.
      this.lastLeaderContact = this.now();
      this.running = true;
      this.armElectionTimer();
    });
  }

  stop(): void {
    this.stopped = true;
    this.running = false;
    this.electionTimer.cancel();
    this.probeTimer.cancel();
    this.lead?.close(new ThocError("unavailable", "the scheduler election stopped on this node"));
    this.lead = undefined;
  }

  onChange(fn: (e: ElectionEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // ---- handlers (called by the transport on this node) ----

  handleVote(req: VoteRequest): Promise<VoteReply> {
    return this.serial(async () => {
      this.checkRunning();
      checkTerm(req.term, this.term, "vote term");
      checkId(req.candidateId, "candidateId");
      checkCount(req.configVersion, "configVersion");
      checkCount(req.configTerm, "configTerm");
      if (req.term < this.term) return this.refuse(`stale term ${req.term}: this node is at term ${this.term}`);
      const busy = this.hearingLeaderRefusal();
      if (busy) return this.refuse(busy);
      const why = this.voteRefusal(req);
      if (req.preVote) return why ? this.refuse(why) : { term: this.term, granted: true };
      const before = { term: this.term, role: this.role, leader: this.leader };
      if (req.term > this.term) this.enterTerm(req.term);
      if (!why && req.term === this.term) {
        this.votedFor = req.candidateId;
        this.armElectionTimer();
      }
      if (before.term !== this.term || !why) await this.persist();
      this.announce(before);
      return why ? this.refuse(why) : { term: this.term, granted: true };
    });
  }

  handleHeartbeat(req: HeartbeatRequest): Promise<HeartbeatReply> {
    return this.serial(async () => {
      this.checkRunning();
      checkTerm(req.term, this.term, "heartbeat term");
      checkId(req.leaderId, "leaderId");
      const config = checkConfig(req.config, "heartbeat config", req.term);
      if (req.term < this.term) return { term: this.term, success: false, configVersion: this.config.version };
      const before = { term: this.term, role: this.role, leader: this.leader };
      let dirty = false;
      if (req.term > this.term || this.role === "candidate" || this.role === "leader") { this.enterTerm(req.term); dirty = req.term !== before.term; }
      // Raft: a config takes effect as soon as it is received. The leader
      // re-stamps its config in its own term before its first heartbeat, so
      // its config is newer than any a follower holds (an uncommitted one of
      // a deposed leader included); an older one is a reordered heartbeat of
      // this leader and must not roll a committed config back.
      const newer = compareConfig(config, this.config) > 0;
      if (newer) { this.config = config; dirty = true; }
      if (dirty) await this.persist();
      this.configCommitted = sameConfig(config, this.config) && req.configCommitted;
      if (this.leader !== req.leaderId) { this.leader = req.leaderId; this.leaderSince = this.now(); }
      this.role = this.isVoter() ? "follower" : "observer";
      this.lastLeaderContact = this.now();
      this.campaign++;
      this.armElectionTimer();
      this.announce(before, dirty && before.term === this.term);
      return { term: this.term, success: true, configVersion: this.config.version };
    });
  }

  // ---- the leader's face ----

  isActing(): boolean {
    return this.running && this.role === "leader" && !!this.lead && this.lead.fresh(this.config.voters, this.now(), this.o.leaseDuration) >= quorum(this.config.voters.length);
  }

  /** The term to stamp on a placement command, or why this node may not issue one. */
  fence(): number {
    if (this.isActing()) return this.term;
    if (this.role !== "leader" || !this.lead) {
      throw new ThocError("unavailable", `not the leader: ${this.leader ? `the leader of term ${this.term} is ${this.leader}` : `no leader is known in term ${this.term}`}`, { term: this.term, leader: this.leader });
    }
    const fresh = this.lead.fresh(this.config.voters, this.now(), this.o.leaseDuration);
    throw new ThocError("unavailable",
      `lease lost: a majority of voters has not answered within ${this.o.leaseDuration} ms (${fresh} of ${quorum(this.config.voters.length)} needed; voters: ${this.config.voters.join(", ")})`,
      { term: this.term, fresh, needed: quorum(this.config.voters.length) });
  }

  /** Adds a voter (Raft single-server change); resolves once a majority of the new set has it. */
  addVoter(id: string): Promise<void> { return this.change(checkId(id, "voter id"), "add"); }

  /** Removes a voter (operator `node remove` only, never because it is down). */
  removeVoter(id: string): Promise<void> { return this.change(checkId(id, "voter id"), "remove"); }

  status(): ElectionStatus {
    const now = this.now();
    return {
      role: this.role, term: this.term, leader: this.leader, leaderSince: this.leaderSince,
      voters: this.config.voters.map((v) => this.lead?.voterStatus(v, now, this.o.electionTimeout) ?? { id: v, state: v === this.leader ? "leader" : v === this.id ? "self" : "unknown" }),
      config: copyConfig(this.config), configCommitted: this.configCommitted, acting: this.isActing(),
    };
  }

  // ---- rules a test may break on purpose (the checker's self-test) ----

  /** Why this node will not vote at all right now: it hears a live leader (or is one). */
  /**
   * How long after the last heartbeat (or start) this node refuses votes: the
   * leader's lease with a margin for clocks that run at slightly different
   * rates. A leader acts only while a majority acknowledged a heartbeat SENT
   * within the lease, so once every voter of some majority has held for this
   * long since it last acknowledged one, the old leader has stopped acting.
   */
  protected get voteHold(): number {
    return Math.min(this.o.electionTimeout, Math.ceil(this.o.leaseDuration * 1.1) + 5);
  }

  protected hearingLeaderRefusal(): string | undefined {
    if (this.role === "leader") return `this node is the leader of term ${this.term}`;
    const ago = this.now() - this.lastLeaderContact;
    if (ago < this.voteHold) {
      return this.leader ? `heard from leader ${this.leader} ${ago} ms ago, within its lease (${this.voteHold} ms)` : `started ${ago} ms ago, within a lease (${this.voteHold} ms)`;
    }
    return undefined;
  }

  /** Why this candidate does not get our vote: one vote per term, and only to a config at least as new as ours. */
  protected voteRefusal(req: VoteRequest): string | undefined {
    if (req.term === this.term && this.votedFor !== "" && this.votedFor !== req.candidateId) return `already voted for ${this.votedFor} in term ${this.term}`;
    if (compareConfig({ term: req.configTerm, version: req.configVersion }, this.config) < 0) {
      return `candidate's voter config (version ${req.configVersion}, term ${req.configTerm}) is older than this node's (${describeConfig(this.config)})`;
    }
    return undefined;
  }

  // ---- campaign ----

  /** Every heartbeat pushes the election deadline (and the leader probe's) out; see MovingDeadline. */
  private armElectionTimer(): void {
    if (this.stopped || this.role === "leader") {
      this.electionTimer.cancel();
      this.probeTimer.cancel();
      return;
    }
    const t = this.o.electionTimeout;
    this.electionTimer.set(this.now() + t + Math.floor(this.o.random() * t));
    // Heartbeats stopped: ask whether the leader's process is gone (a refused connection, as after a crash).
    if (this.o.probeLeader && this.leader && this.role === "follower") {
      this.probeFor = { leader: this.leader, campaign: this.campaign };
      // After 2.5 missed heartbeats, or once the lease is over if that comes first (long heartbeats):
      // asking earlier than the vote hold would not let this node stand any sooner.
      this.probeTimer.set(this.now() + Math.min(Math.ceil(this.o.heartbeatInterval * 2.5), this.voteHold));
    } else {
      this.probeTimer.cancel();
    }
  }

  private readonly electionTimer: MovingDeadline;
  private readonly probeTimer: MovingDeadline;
  private probeFor: { leader: string; campaign: number } | undefined;

  /** The fast path after a crash: stand once the dead leader's lease is surely over, not after the full timeout. */
  private async probe(leader: string, campaign: number): Promise<void> {
    const verdict = await this.o.probeLeader!(leader).catch(() => "unknown" as const);
    if (verdict !== "dead") return;
    await this.serial(async () => {
      if (!this.running || this.campaign !== campaign || this.leader !== leader || this.role !== "follower") return;
      // The jitter counts from when standing is possible, the probe's answer included: followers that
      // probed together would otherwise stand together and split the vote.
      const at = Math.max(this.lastLeaderContact + this.voteHold, this.now()) + Math.floor(this.o.random() * this.o.heartbeatInterval);
      if (at >= this.electionTimer.at) return;
      this.electionTimer.set(at);
    }).catch(() => undefined);
  }

  private async onElectionTimeout(): Promise<void> {
    if (!this.running || this.role === "leader") return;
    this.armElectionTimer();
    if (!this.isVoter()) {
      // Observers never stand, but a leader they stopped hearing from is not theirs to name any more
      // (a non-voter cut off with a deposed leader would go on sending creates to it).
      if (this.leader !== undefined) {
        const before = this.snapshot();
        this.leader = undefined;
        this.leaderSince = undefined;
        this.announce(before);
      }
      return;
    }
    await this.poll(true);
  }

  /** One round of pre-vote (preVote) or vote; a majority of the config's voters moves on. */
  private async poll(preVote: boolean): Promise<void> {
    const before = { term: this.term, role: this.role, leader: this.leader };
    if (!preVote) {
      this.enterTerm(this.term + 1);
      this.votedFor = this.id;
      this.role = "candidate";
      await this.persist();
      this.announce(before);
      this.armElectionTimer();
    }
    const seq = ++this.campaign;
    const term = this.term;
    const cfg = this.config;
    const granted = new Set([this.id]);
    const req: VoteRequest = { term: preVote ? term + 1 : term, candidateId: this.id, configVersion: cfg.version, configTerm: cfg.term, preVote };
    const tally = async (): Promise<void> => {
      if (granted.size < quorum(cfg.voters.length) || seq !== this.campaign) return;
      this.campaign++;
      if (preVote) await this.poll(false);
      else await this.becomeLeader();
    };
    for (const peer of cfg.voters) {
      if (peer === this.id) continue;
      void this.call(this.o.transport.requestVote(peer, { ...req }), this.o.electionTimeout).then((r) => this.serial(async () => {
        if (!r || !this.running || seq !== this.campaign || this.term !== term) return;
        if (r.term > this.term && !r.granted) { const b = this.snapshot(); this.enterTerm(r.term); await this.persist(); this.announce(b); return; }
        if (r.granted) { granted.add(peer); await tally(); }
      })).catch(() => undefined);
    }
    await tally();
  }

  private async becomeLeader(): Promise<void> {
    const before = this.snapshot();
    this.role = "leader";
    this.leader = this.id;
    this.leaderSince = this.now();
    this.electionTimer.cancel();
    this.probeTimer.cancel();
    // Re-stamping the config in our own term, and committing that before any
    // change, is the fix for Raft's single-server-change bug.
    this.config = { version: this.config.version + 1, term: this.term, voters: [...this.config.voters] };
    this.configCommitted = false;
    await this.persist();
    this.lead = new LeaderState(this.id, this.now());
    this.announce(before);
    await this.checkCommit();
    this.tick();
  }

  // ---- leader loop ----

  private tick(): void {
    const lead = this.lead;
    if (!lead || this.role !== "leader" || !this.running) return;
    const now = this.now();
    const need = quorum(this.config.voters.length);
    if (now - lead.since >= this.o.electionTimeout && lead.fresh(this.config.voters, now, this.o.electionTimeout) < need) {
      // Check-quorum: a leader cut off from its majority gives up, so that
      // clients asking it learn quickly that it is not the leader.
      this.stepDown(this.term, "no majority answered within the election timeout");
      return;
    }
    this.sendHeartbeats();
    this.grow();
    lead.timer = this.o.clock.after(this.o.heartbeatInterval, () => { void this.serial(async () => this.tick()).catch(() => undefined); });
  }

  private sendHeartbeats(): void {
    const term = this.term;
    const targets = new Set(this.config.voters);
    // Non-voters only learn who leads and the voter set; they never stand, so
    // they hear every observerEvery-th beat (still twice per election timeout,
    // so none of them drops the leader) and an idle leader makes fewer calls.
    if (this.lead!.ticks++ % this.observerEvery === 0) for (const m of this.o.members?.() ?? []) targets.add(m);
    targets.delete(this.id);
    for (const peer of targets) {
      const sent = this.now();
      const req: HeartbeatRequest = { term, leaderId: this.id, config: copyConfig(this.config), configCommitted: this.configCommitted };
      void this.call(this.o.transport.heartbeat(peer, req), 2 * this.o.heartbeatInterval).then((r) => this.serial(async () => {
        if (!r || !this.running || this.role !== "leader" || this.term !== term || !this.lead) return;
        if (r.term > this.term) { this.stepDown(r.term, `${peer} is at term ${r.term}`); await this.persist(); return; }
        if (!r.success) return;
        this.lead.ack(peer, sent, r.configVersion);
        await this.checkCommit();
      })).catch(() => undefined);
    }
  }

  private async checkCommit(): Promise<void> {
    if (this.configCommitted || !this.lead) return;
    if (this.lead.holding(this.config) < quorum(this.config.voters.length)) return;
    this.configCommitted = true;
    this.lead.committed(this.config.version);
    this.emit("config");
    if (!this.isVoter()) this.stepDown(this.term, "this node was removed from the voter set");
  }

  /** Automatic growth: one live, caught-up non-voter at a time, up to maxVoters. */
  private grow(): void {
    const lead = this.lead;
    if (!lead || !this.configCommitted || this.config.voters.length >= (this.o.maxVoters ?? 3) || !this.isActing()) return;
    const now = this.now();
    const next = (this.o.members?.() ?? []).filter((m) => m !== this.id && !this.config.voters.includes(m) && (this.o.isAlive?.(m) ?? true) && lead.caughtUp(m, this.config.version, now, this.observerWindow)).sort()[0];
    if (next) void this.propose(next, "add").then((p) => p.wait).catch(() => undefined);
  }

  private async change(id: string, op: "add" | "remove"): Promise<void> {
    // The wait is boxed: the queue must not hold on to the commit, which
    // needs the queue to process the acks.
    const { wait } = await this.serial(async () => this.propose(id, op));
    await wait;
  }

  /** Installs the new config (saved first) and returns the wait for its commit. */
  private async propose(id: string, op: "add" | "remove"): Promise<{ wait: Promise<void> }> {
    if (!this.running || this.role !== "leader" || !this.lead) {
      throw new ThocError("failed_precondition", `voters change only on the leader: ${this.leader ? `ask ${this.leader}` : "no leader is known yet, retry in a moment"}`, { leader: this.leader });
    }
    const has = this.config.voters.includes(id);
    if ((op === "add") === has) return { wait: Promise.resolve() };
    if (!this.configCommitted) {
      throw new ThocError("failed_precondition", `a voter-set change (${describeConfig(this.config)}) is still pending: wait until a majority of those voters has it, then retry`, { version: this.config.version });
    }
    // A voter that does not answer would stall the commit and, with a small
    // set (1 -> 2), the cluster's majority: only a member that answers now is added.
    if (op === "add" && !this.lead.caughtUp(id, 0, this.now(), this.observerWindow)) {
      throw new ThocError("failed_precondition", `${id} has not answered the leader's heartbeats within ${this.observerWindow} ms: start it (and check that it is a member) before making it a voter`, { id });
    }
    if (op === "remove" && this.config.voters.length === 1) throw new ThocError("failed_precondition", `${id} is the last voter: add another voter before removing it`);
    const voters = op === "add" ? [...this.config.voters, id].sort() : this.config.voters.filter((v) => v !== id);
    this.config = { version: this.config.version + 1, term: this.term, voters };
    this.configCommitted = false;
    await this.persist();
    const wait = this.lead.pendingChange(this.config, this.o.clock, this.o.changeTimeout ?? 10 * this.o.electionTimeout);
    this.emit("config");
    this.sendHeartbeats();
    await this.checkCommit();
    return { wait };
  }

  // ---- plumbing ----

  private stepDown(term: number, why: string): void {
    const before = this.snapshot();
    if (term > this.term) this.enterTerm(term);
    this.lead?.close(new ThocError("unavailable", `lost the scheduler leadership in term ${before.term}: ${why}`));
    this.lead = undefined;
    if (this.role === "leader") { this.role = this.isVoter() ? "follower" : "observer"; this.leader = undefined; }
    this.armElectionTimer();
    this.announce(before);
  }

  /** A later term: forget the vote and any leader (the caller persists). */
  private enterTerm(term: number): void {
    if (term > this.term) { this.term = term; this.votedFor = ""; this.leader = undefined; this.leaderSince = undefined; }
    this.campaign++;
    if (this.role === "leader") { this.lead?.close(new ThocError("unavailable", `lost the scheduler leadership: term ${term} began`)); this.lead = undefined; }
    this.role = this.isVoter() ? "follower" : "observer";
    this.armElectionTimer();
  }

  private async persist(): Promise<void> {
    await this.o.store.save({ term: this.term, votedFor: this.votedFor, config: copyConfig(this.config) });
    await this.o.fence?.observe(this.term);
  }

  private isVoter(): boolean { return this.config.voters.includes(this.id); }
  private now(): number { return this.o.clock.now(); }
  private snapshot() { return { term: this.term, role: this.role, leader: this.leader }; }
  private refuse(reason: string): VoteReply { return { term: this.term, granted: false, reason }; }

  private checkRunning(): void {
    if (!this.running) throw new ThocError("unavailable", `the scheduler election on ${this.id} is ${this.stopped ? "stopped" : "not started yet"}`);
  }

  private announce(before: { term: number; role: ElectionRole; leader: string | undefined }, config = false): void {
    if (before.term !== this.term) this.emit("term");
    else if (before.role !== this.role) this.emit("role");
    else if (before.leader !== this.leader) this.emit("leader");
    else if (config) this.emit("config");
  }

  private emit(reason: ElectionEvent["reason"]): void {
    const e: ElectionEvent = { reason, role: this.role, term: this.term, leader: this.leader, config: copyConfig(this.config), configCommitted: this.configCommitted };
    for (const fn of this.listeners) { try { fn(e); } catch { /* a listener's failure is not the election's */ } }
  }

  /** A peer call with a deadline: a black-holed peer must not stall the loop. */
  /** A non-voter gets every this-many-th heartbeat: at least two per election timeout. */
  private get observerEvery(): number {
    return Math.max(1, Math.floor(this.o.electionTimeout / (2 * this.o.heartbeatInterval)));
  }

  /** How recent a non-voter's last ack must be to count as answering (one lease past its beat period). */
  private get observerWindow(): number {
    return this.o.leaseDuration + (this.observerEvery - 1) * this.o.heartbeatInterval;
  }

  private call<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
    return new Promise((resolve) => {
      const t = this.o.clock.after(ms, () => resolve(undefined));
      p.then((v) => { t.cancel(); resolve(v); }, () => { t.cancel(); resolve(undefined); });
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }
}
