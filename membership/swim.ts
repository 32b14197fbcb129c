/**
 * SWIM failure detection with the Lifeguard refinements, after memberlist:
 * shuffled round-robin probes, indirect probes through k members with nacks,
 * suspicion with incarnations and refutation, piggybacked dissemination,
 * local health awareness, and the suspect message carried on the probe to
 * the suspect (buddy system). Push-pull sync and (re)join live in sync.ts.
 */
import { BroadcastQueue } from "./broadcast.js";
import { Keyring, ReplayGuard, SeqSource, SEAL_OVERHEAD, type DropReason } from "./keyring.js";
import { decodePacket, type AliveMsg, type DeadMsg, type Msg, type SuspectMsg } from "./messages.js";
import { shuffle } from "../core/index.js";
import { Suspicion, confirmationsExpected, suspicionTimeouts } from "./suspicion.js";
import type { Clock, Member, MemberEvent, MemberState, NodeMeta, Timer, Transport } from "./types.js";

export interface GossipTimers {
  probeInterval: number;
  probeTimeout: number;
  indirectChecks: number;
  suspicionMult: number;
  suspicionMaxTimeoutMult: number;
  retransmitMult: number;
  gossipInterval: number;
  gossipNodes: number;
  pushPullInterval: number;
  rejoinInterval: number;
  deadReclaimTime: number;
  awarenessMaxMultiplier: number;
  maxMetaBytes: number;
  udpBufferSize: number;
}

export interface SwimLog {
  debug(o: object, msg: string): void;
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

/** What SWIM's message loop asks of the prober (probe.ts). */
export interface ProbeApi {
  schedule(delay: number): void;
  insert(id: string): void;
  onStreamPing(body: Buffer): Buffer | undefined;
  onPing(m: Extract<Msg, { t: "ping" }>, fromAddr: string): void;
  onAck(seq: number, from: string): void;
  onNack(seq: number, from: string): void;
  indirectPing(origSeq: number, id: string, addr: string, requesterAddr: string): void;
}

export interface SwimOptions {
  id: string;
  meta: NodeMeta;
  transport: Transport;
  clock: Clock;
  keyring: Keyring;
  timers: GossipTimers;
  /** Starting incarnation (persisted across restarts by the caller). */
  incarnation?: number;
  onIncarnation?: (inc: number) => void;
  random?: () => number;
  log?: SwimLog;
}

export interface SwimStats {
  probes: number;
  probeFailures: number;
  indirectProbes: number;
  suspicions: number;
  refutations: number;
  pushPulls: number;
  pushPullFailures: number;
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  dropped: Record<DropReason | "send", number>;
}

export interface MemberEntry extends Member { suspicion?: Suspicion }


const noLog: SwimLog = { debug() {}, info() {}, warn() {} };

export class Swim {
  readonly id: string;
  readonly members = new Map<string, MemberEntry>();
  readonly stats: SwimStats = {
    probes: 0, probeFailures: 0, indirectProbes: 0, suspicions: 0, refutations: 0, pushPulls: 0, pushPullFailures: 0,
    bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0,
    dropped: { malformed: 0, version: 0, auth: 0, replay: 0, stale: 0, send: 0 },
  };
  /** Lifeguard local health: 0 is healthy; timeouts are scaled by (awareness + 1). */
  awareness = 0;
  readonly broadcasts: BroadcastQueue;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly keyring: Keyring;
  readonly t: GossipTimers;
  readonly random: () => number;
  readonly log: SwimLog;
  running = false;
  leaving = false;
  private readonly seq: SeqSource;
  private readonly replay: ReplayGuard;
  private readonly listeners = new Set<(e: MemberEvent) => void>();
  /** Set by node.ts right after construction (probe.ts reads this class, so this file does not import it). */
  prober!: ProbeApi;
  private timers: Timer[] = [];
  /** Internal: persists our incarnation (set from options). */
  readonly onIncarnation?: (inc: number) => void;
  /** Set by sync.ts: a last push-pull with a suspect whose suspicion timed out. */
  beforeDead?: (address: string) => Promise<unknown>;
  /** Set by sync.ts: handles a sealed push-pull request body. */
  requestHandler?: (from: string, body: Buffer) => Promise<Buffer>;

  constructor(o: SwimOptions) {
    this.id = o.id;
    this.transport = o.transport;
    this.clock = o.clock;
    this.keyring = o.keyring;
    this.t = o.timers;
    this.random = o.random ?? Math.random;
    this.log = o.log ?? noLog;
    this.onIncarnation = o.onIncarnation;
    this.seq = new SeqSource(() => this.clock.now());
    this.replay = new ReplayGuard();
    this.broadcasts = new BroadcastQueue(() => this.t.retransmitMult * Math.max(1, Math.ceil(Math.log10(this.numAlive() + 1))));
    this.members.set(this.id, {
      id: this.id, name: o.meta.name, address: this.transport.address, state: "alive",
      incarnation: o.incarnation ?? 1, meta: o.meta, stateChangedAt: this.clock.now(),
    });
  }

  get self(): MemberEntry { return this.members.get(this.id)!; }

  on(fn: (e: MemberEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Internal: tells subscribers. */
  emit(type: MemberEvent["type"], m: MemberEntry): void {
    const member = snapshot(m);
    for (const fn of this.listeners) {
      try { fn({ type, member }); } catch (err) { this.log.warn({ err }, "membership listener failed"); }
    }
  }

  /** Members that count for timeouts: everyone not dead or left, self included. */
  numAlive(): number {
    let n = 0;
    for (const m of this.members.values()) if (m.state === "alive" || m.state === "suspect") n++;
    return n;
  }

  scale(ms: number): number { return ms * (this.awareness + 1); }

  /** Internal: Lifeguard local health score change. */
  adjustAwareness(delta: number): void {
    this.awareness = Math.min(this.t.awarenessMaxMultiplier - 1, Math.max(0, this.awareness + delta));
  }

  start(): void {
    this.transport.listen({
      packet: (d, from) => this.onPacket(d, from),
      request: (d, from) => this.onRequest(d, from),
    });
    this.running = true;
    this.prober.schedule(this.t.probeInterval * this.random());
    this.every(this.t.gossipInterval, () => this.gossip());
    this.every(Math.max(this.t.probeInterval, 1000) * 10, () => this.reap());
  }

  stop(): void {
    this.running = false;
    for (const t of this.timers) t.cancel();
    this.timers = [];
    for (const m of this.members.values()) m.suspicion?.cancel();
  }

  /** Internal: a timer cancelled by stop(). */
  track(t: Timer): void { this.timers.push(t); }

  every(ms: number | (() => number), fn: () => void): void {
    const period = typeof ms === "number" ? () => ms : ms;
    const tick = () => {
      if (!this.running) return;
      fn();
      this.timers.push(this.clock.after(period(), tick));
    };
    this.timers.push(this.clock.after(period() * (0.5 + this.random() / 2), tick));
  }

  // ---- sending ------------------------------------------------------------

  /** Seals and sends msgs plus as many queued updates as fit in one datagram. */
  send(to: string, msgs: Msg[], piggyback = true): void {
    const parts = msgs.map((m) => JSON.stringify(m));
    let used = parts.reduce((n, p) => n + p.length + 1, 2);
    if (piggyback) {
      const room = this.t.udpBufferSize - SEAL_OVERHEAD - Buffer.byteLength(this.id) - used;
      for (const p of this.broadcasts.take(room)) { parts.push(p); used += p.length + 1; }
    }
    if (parts.length === 0) return;
    this.sendRaw(to, Buffer.from(`[${parts.join(",")}]`));
  }

  sendRaw(to: string, body: Buffer): void {
    const sealed = this.keyring.seal("p", this.id, this.seq.next(), body);
    this.stats.bytesOut += sealed.length;
    this.stats.packetsOut++;
    this.transport.sendPacket(to, sealed);
  }

  sealStream(body: Buffer): Buffer {
    const s = this.keyring.seal("s", this.id, this.seq.next(), body);
    this.stats.bytesOut += s.length;
    return s;
  }

  /** Opens a sealed stream frame; undefined (and counted) when it does not open. */
  openStream(data: Uint8Array): { from: string; body: Buffer } | undefined {
    this.stats.bytesIn += data.length;
    const o = this.keyring.open("s", data);
    if (!o.ok) { this.stats.dropped[o.reason]++; return undefined; }
    const r = this.replay.check(o.from, o.seq, this.clock.now());
    if (r !== "ok") { this.stats.dropped[r]++; return undefined; }
    return { from: o.from, body: o.body };
  }

  // ---- receiving ----------------------------------------------------------

  onPacket(data: Uint8Array, fromAddr: string): void {
    this.stats.bytesIn += data.length;
    this.stats.packetsIn++;
    if (!this.running) return;
    const o = this.keyring.open("p", data);
    if (!o.ok) { this.stats.dropped[o.reason]++; return; }
    const msgs = decodePacket(o.body);
    if (!msgs) { this.stats.dropped.malformed++; return; }
    const r = this.replay.check(o.from, o.seq, this.clock.now());
    if (r !== "ok") { this.stats.dropped[r]++; return; }
    if (o.from === this.id) return; // our own datagram reflected back
    for (const m of msgs) this.handle(m, o.from, fromAddr);
  }

  private async onRequest(data: Uint8Array, _fromAddr: string): Promise<Uint8Array> {
    const opened = this.openStream(data);
    if (!opened || !this.running) throw new Error("refused");
    const ack = this.prober.onStreamPing(opened.body);
    if (ack) return ack;
    if (!this.requestHandler) throw new Error("refused");
    return this.requestHandler(opened.from, opened.body);
  }

  private handle(m: Msg, from: string, fromAddr: string): void {
    switch (m.t) {
      case "ping": return this.prober.onPing(m, fromAddr);
      case "ack": return this.prober.onAck(m.seq, from);
      case "nack": return this.prober.onNack(m.seq, from);
      case "preq": return this.prober.indirectPing(m.seq, m.id, m.addr, fromAddr);
      case "alive": return this.onAlive(m);
      case "suspect": return this.onSuspect(m);
      case "dead": return this.onDead(m);
    }
  }

  // ---- state changes (memberlist's aliveNode / suspectNode / deadNode) -----

  /** Bumps our incarnation above inc and tells everyone we are alive. */
  refute(inc: number): void {
    const s = this.self;
    s.incarnation = Math.max(s.incarnation, inc) + 1;
    this.stats.refutations++;
    this.adjustAwareness(1);
    this.onIncarnation?.(s.incarnation);
    this.queueAlive();
  }

  queueAlive(): void {
    const s = this.self;
    this.broadcasts.queue(s.id, { t: "alive", id: s.id, addr: s.address, inc: s.incarnation, meta: s.meta });
  }

  onAlive(m: AliveMsg): void {
    if (m.id === this.id) {
      // Someone holds a newer view of us (our previous life): move past it.
      if (m.inc > this.self.incarnation && !this.leaving) this.refute(m.inc);
      return;
    }
    const cur = this.members.get(m.id);
    if (!cur) {
      const e: MemberEntry = { id: m.id, name: m.meta.name, address: m.addr, state: "alive", incarnation: m.inc, meta: m.meta, stateChangedAt: this.clock.now() };
      this.members.set(m.id, e);
      // New members go at a random place in the probe order, as memberlist does.
      this.prober.insert(m.id);
      this.broadcasts.queue(m.id, m);
      this.emit("join", e);
      return;
    }
    if (m.inc <= cur.incarnation) return;
    const was = cur.state;
    cur.incarnation = m.inc;
    cur.address = m.addr;
    cur.meta = m.meta;
    cur.name = m.meta.name;
    cur.suspicion?.cancel();
    cur.suspicion = undefined;
    this.broadcasts.queue(m.id, m);
    if (was !== "alive") {
      cur.state = "alive";
      cur.stateChangedAt = this.clock.now();
      this.emit(was === "suspect" ? "alive" : "join", cur);
    } else {
      this.emit("update", cur);
    }
  }

  onSuspect(m: SuspectMsg): void {
    const cur = this.members.get(m.id);
    if (!cur || m.inc < cur.incarnation) return;
    if (m.id === this.id) {
      if (!this.leaving) {
        this.log.info({ by: m.from, inc: m.inc }, "suspected by a peer: refuting");
        this.refute(m.inc);
      }
      return;
    }
    if (cur.state === "suspect" && m.inc === cur.incarnation) {
      if (cur.suspicion?.confirm(m.from)) this.broadcasts.queue(m.id, m);
      return;
    }
    if (cur.state === "dead" || cur.state === "left") return;
    const n = this.numAlive();
    const { min, max } = suspicionTimeouts(n, this.t.probeInterval, this.t.suspicionMult, this.t.suspicionMaxTimeoutMult);
    const k = confirmationsExpected(n, this.t.suspicionMult);
    cur.state = "suspect";
    cur.incarnation = m.inc;
    cur.stateChangedAt = this.clock.now();
    cur.suspicion?.cancel();
    const inc = m.inc;
    cur.suspicion = new Suspicion(m.from, k, min, max, this.clock, () => {
      const c = this.members.get(m.id);
      if (!this.running || !c || c.state !== "suspect" || c.incarnation !== inc) return;
      // Last look before a verdict: a full-state exchange with the suspect itself. If it
      // answers, it refutes (or has refuted, in an update we missed) and we learn it.
      const verdict = () => {
        const d = this.members.get(m.id);
        if (!this.running || !d || d.state !== "suspect" || d.incarnation !== inc) return;
        this.log.info({ member: d.meta.name, id: d.id, confirmations: d.suspicion?.confirmations }, "suspicion timed out: declaring dead");
        this.onDead({ t: "dead", id: d.id, inc, from: this.id });
      };
      if (this.beforeDead) this.beforeDead(c.address).then(verdict, verdict);
      else verdict();
    });
    this.stats.suspicions++;
    this.broadcasts.queue(m.id, m);
    this.emit("suspect", cur);
  }

  onDead(m: DeadMsg): void {
    const cur = this.members.get(m.id);
    if (!cur || m.inc < cur.incarnation) return;
    const leftNow = m.from === m.id;
    if (cur.state === "left" || (cur.state === "dead" && !leftNow)) return;
    if (m.id === this.id) {
      if (!this.leaving) this.refute(m.inc);
      return;
    }
    cur.suspicion?.cancel();
    cur.suspicion = undefined;
    cur.state = leftNow ? "left" : "dead";
    cur.incarnation = m.inc;
    cur.stateChangedAt = this.clock.now();
    this.broadcasts.queue(m.id, m);
    this.emit(cur.state as "dead" | "left", cur);
  }

  /** Forgets dead and left members after deadReclaimTime. */
  reap(): void {
    const now = this.clock.now();
    for (const m of [...this.members.values()]) {
      if ((m.state === "dead" || m.state === "left") && now - m.stateChangedAt >= this.t.deadReclaimTime) {
        this.members.delete(m.id);
        this.emit("reap", m);
      }
    }
  }

  // ---- dissemination --------------------------------------------------------

  /** Members gossip goes to: the living, and the recently dead (so a wrongly-dead node hears it and refutes). */
  gossipTargets(): MemberEntry[] {
    const now = this.clock.now();
    const deadWindow = Math.max(this.t.rejoinInterval, 30 * this.t.probeInterval);
    return [...this.members.values()].filter((m) => m.id !== this.id &&
      (m.state === "alive" || m.state === "suspect" || (m.state === "dead" && now - m.stateChangedAt < deadWindow)));
  }

  gossip(): void {
    if (this.broadcasts.size === 0) return;
    for (const m of shuffle(this.gossipTargets(), this.random).slice(0, this.t.gossipNodes)) {
      if (this.broadcasts.size === 0) break;
      this.send(m.address, []);
    }
  }

  setMeta(meta: NodeMeta): void {
    const s = this.self;
    s.meta = meta;
    s.name = meta.name;
    s.incarnation++;
    this.onIncarnation?.(s.incarnation);
    this.queueAlive();
    this.emit("update", s);
  }

  /**
   * Tells the cluster we are leaving (others mark us `left`) and waits up to waitMs for the update to
   * go out its retransmit count. We go on answering probes until stop(): a member that has not heard
   * yet must not suspect us meanwhile (we are leaving, not dead), and each ack carries the news too.
   */
  async leave(waitMs: number): Promise<void> {
    if (this.leaving) return;
    const s = this.self;
    const msg: DeadMsg = { t: "dead", id: s.id, inc: s.incarnation, from: s.id };
    this.leaving = true;
    s.state = "left";
    this.broadcasts.queue(s.id, msg);
    const targets = shuffle(this.gossipTargets().filter((m) => m.state !== "dead"), this.random);
    // Told directly (one small datagram each, so a cluster of up to 16 hears it within a round trip);
    // any more hear it by gossip before we go.
    for (const m of targets.slice(0, Math.max(this.t.gossipNodes, 16))) this.send(m.address, [msg], false);
    const end = this.clock.now() + waitMs;
    while (this.clock.now() < end && this.broadcasts.has(s.id) && this.running) {
      await new Promise<void>((r) => this.clock.after(this.t.gossipInterval, r));
    }
  }
}

export function snapshot(m: Member): Member {
  return { id: m.id, name: m.name, address: m.address, state: m.state, incarnation: m.incarnation, meta: m.meta, stateChangedAt: m.stateChangedAt };
}


export type { MemberState };

