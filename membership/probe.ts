/**
 * SWIM probing with memberlist's refinements: a shuffled round-robin over
 * members, direct ping, indirect pings through k helpers (who nack when the
 * target stays silent), a TCP fallback ping, Lifeguard awareness updates,
 * and the buddy system (a ping to a suspect carries the suspicion). Acks
 * count only from the authenticated member they are expected from.
 */
import type { Msg } from "./messages.js";
import { shuffle } from "../core/index.js";
import type { MemberEntry, ProbeApi, Swim } from "./swim.js";
import type { Timer } from "./types.js";

interface AckWait { allowed: Set<string>; done: boolean; nacks: number; onAck: () => void }

export class Prober implements ProbeApi {
  private readonly acks = new Map<number, AckWait>();
  private seq: number;
  private order: string[] = [];
  private index = 0;

  constructor(private readonly s: Swim) {
    this.seq = Math.floor(s.random() * 2 ** 31);
  }

  schedule(delay: number): void {
    const s = this.s;
    s.track(s.clock.after(delay, () => {
      if (!s.running) return;
      const started = s.clock.now();
      this.probe();
      // A struggling node (awareness > 0) probes less often, as memberlist does.
      this.schedule(Math.max(s.t.probeInterval, s.scale(s.t.probeInterval)) - (s.clock.now() - started));
    }));
  }

  /** New members go at a random place in the rest of this round, as memberlist does. */
  insert(id: string): void {
    this.order.splice(this.index + Math.floor(this.s.random() * (this.order.length - this.index + 1)), 0, id);
  }

  private nextTarget(): MemberEntry | undefined {
    const s = this.s;
    for (let tries = 0; tries < s.members.size + 1; tries++) {
      if (this.index >= this.order.length) {
        this.order = shuffle([...s.members.keys()].filter((id) => id !== s.id), s.random);
        this.index = 0;
        if (this.order.length === 0) return undefined;
      }
      const m = s.members.get(this.order[this.index++]!);
      if (m && (m.state === "alive" || m.state === "suspect")) return m;
    }
    return undefined;
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) % 2 ** 32;
    return this.seq;
  }

  private probe(): void {
    const s = this.s;
    const target = this.nextTarget();
    if (!target || s.leaving) return;
    s.stats.probes++;
    const seq = this.nextSeq();
    const interval = s.scale(s.t.probeInterval);
    const timeout = s.scale(s.t.probeTimeout);
    const ping: Msg = { t: "ping", seq, id: target.id };
    // Buddy system: tell the suspect directly, so it can refute at once.
    if (target.state === "suspect") ping.sus = { t: "suspect", id: target.id, inc: target.incarnation, from: s.id };
    let expectedNacks = 0;
    const finish: Timer[] = [];
    const w: AckWait = {
      allowed: new Set([target.id]), done: false, nacks: 0,
      onAck: () => {
        for (const t of finish) t.cancel();
        this.acks.delete(seq);
        s.adjustAwareness(-1);
      },
    };
    this.acks.set(seq, w);
    const sent = s.clock.now();
    s.send(target.address, [ping]);
    finish.push(s.clock.after(timeout, () => {
      if (w.done || !s.running) return;
      const helpers = shuffle([...s.members.values()].filter((m) => m.state === "alive" && m.id !== s.id && m.id !== target.id), s.random)
        .slice(0, s.t.indirectChecks);
      expectedNacks = helpers.length;
      this.streamProbe(target, seq, w, interval - timeout);
      for (const h of helpers) {
        w.allowed.add(h.id);
        s.stats.indirectProbes++;
        s.send(h.address, [{ t: "preq", seq, id: target.id, addr: target.address }]);
      }
    }));
    finish.push(s.clock.after(interval, () => {
      if (w.done || !s.running) { this.acks.delete(seq); return; }
      // Node runs due timers before it reads its sockets: after a stall (GC, a busy CPU, our own
      // start-up) this fires with the ack possibly already waiting unread, so one more loop turn
      // reads it first. A stall longer than the probe timeout also fired the indirect probes
      // just now, leaving helpers no time: they get one more timeout. Such a stall is our own
      // health problem, not the target's (Lifeguard's local health), so it stretches our timers.
      const stalled = s.clock.now() - sent - interval > timeout;
      if (stalled) s.adjustAwareness(1);
      finish.push(s.clock.after(stalled ? timeout : 0, () => this.failed(target, seq, w, expectedNacks)));
    }));
  }

  private failed(target: MemberEntry, seq: number, w: AckWait, expectedNacks: number): void {
    const s = this.s;
    this.acks.delete(seq);
    if (w.done || !s.running) return;
    s.stats.probeFailures++;
    // Lifeguard: missing nacks mean our own network or CPU is the problem, not (only) the target.
    s.adjustAwareness(expectedNacks > 0 ? Math.max(0, expectedNacks - w.nacks) : 1);
    const cur = s.members.get(target.id);
    if (cur && cur.state !== "dead" && cur.state !== "left") {
      s.log.debug({ member: cur.meta.name, id: cur.id }, "probe failed: suspecting");
      s.onSuspect({ t: "suspect", id: cur.id, inc: cur.incarnation, from: s.id });
    }
  }

  /** memberlist's TCP fallback probe: a reliable ping that gets through where datagrams are being lost. */
  private streamProbe(target: MemberEntry, seq: number, w: AckWait, timeoutMs: number): void {
    const s = this.s;
    const req = s.sealStream(Buffer.from(JSON.stringify({ t: "ping", seq, id: target.id })));
    s.transport.request(target.address, req, Math.max(1, timeoutMs)).then((resp) => {
      const o = s.openStream(resp);
      if (!o || o.from !== target.id || w.done) return;
      const ack = streamPing(o.body, "ack");
      if (ack && ack.seq === seq) { w.done = true; w.onAck(); }
    }, () => { /* counted as a failed probe when the interval ends */ });
  }

  /** Answers a TCP ping (sealed ack), or undefined when the body is not one. */
  onStreamPing(body: Buffer): Buffer | undefined {
    const ping = streamPing(body);
    if (!ping) return undefined;
    // Answered while leaving too: until we exit, nobody should suspect us (we are `left`, not dead).
    if (ping.id !== this.s.id) throw new Error("not me");
    return this.s.sealStream(Buffer.from(JSON.stringify({ t: "ack", seq: ping.seq })));
  }

  onPing(m: Extract<Msg, { t: "ping" }>, fromAddr: string): void {
    const s = this.s;
    // Acked while leaving too (until stop): a member that has not heard our leave yet must not suspect us.
    if (m.id !== s.id) return; // meant for a node that used to have this address
    if (m.sus && m.sus.id === s.id) s.onSuspect(m.sus);
    s.send(fromAddr, [{ t: "ack", seq: m.seq }]);
  }

  onAck(seq: number, from: string): void {
    const w = this.acks.get(seq);
    // Matched by sequence number AND authenticated sender: a forged or misrouted ack does not count.
    if (w && !w.done && w.allowed.has(from)) { w.done = true; w.onAck(); }
  }

  onNack(seq: number, from: string): void {
    const w = this.acks.get(seq);
    if (w && w.allowed.has(from)) w.nacks++;
  }

  /** Probes a target for a member whose direct probe failed; acks back, or nacks when the target stays silent. */
  indirectPing(origSeq: number, id: string, addr: string, requesterAddr: string): void {
    const s = this.s;
    // Still helping while we leave: a requester that gets no nack from us would blame its own health.
    const seq = this.nextSeq();
    const t = s.clock.after(s.t.probeTimeout, () => {
      this.acks.delete(seq);
      if (!w.done) s.send(requesterAddr, [{ t: "nack", seq: origSeq }], false);
    });
    const w: AckWait = {
      allowed: new Set([id]), done: false, nacks: 0,
      onAck: () => { t.cancel(); this.acks.delete(seq); s.send(requesterAddr, [{ t: "ack", seq: origSeq }]); },
    };
    this.acks.set(seq, w);
    s.send(addr, [{ t: "ping", seq, id }]);
  }
}

function streamPing(body: Buffer, t: "ping" | "ack" = "ping"): { seq: number; id?: string } | undefined {
  if (body.length > 512) return undefined;
  try {
    const v = JSON.parse(body.toString()) as { t?: unknown; seq?: unknown; id?: unknown };
    if (v.t !== t || !Number.isSafeInteger(v.seq)) return undefined;
    if (t === "ping" && typeof v.id !== "string") return undefined;
    return { seq: v.seq as number, id: v.id as string | undefined };
  } catch { return undefined; }
}
