/**
 * Push-pull full-state sync over the stream transport, join with retries and
 * backoff, and periodic re-join to seeds and dead members, so that two sides
 * of a healed partition (which have declared each other dead and so never
 * probe each other) exchange state again and re-merge.
 */
import { decodePushPull, type PushPull, type StateEntry } from "./messages.js";
import { shuffle } from "../core/index.js";
import type { Swim } from "./swim.js";

const MAX_STATE_BYTES = 8 << 20;

export class Sync {
  joined = false;
  /** Members a previous run saw alive (set before start): tried with the seeds until a join succeeds. */
  remembered: string[] = [];
  private attempt = 0;

  constructor(private readonly swim: Swim, private readonly seeds: string[]) {
    swim.requestHandler = async (from, body) => {
      const pp = decodePushPull(body);
      if (!pp) { swim.stats.dropped.malformed++; throw new Error("malformed push-pull"); }
      // Merge first, so our answer already carries any refutation it caused.
      this.merge(pp, from);
      return swim.sealStream(Buffer.from(JSON.stringify(this.localState(pp.join))));
    };
    // At least 1 s: the suspect may be a node whose own CPU is busy (starting up, loaded); a
    // crashed process on a live host refuses the connection at once, only a down host costs the wait.
    swim.beforeDead = (addr) => this.pushPull(addr, false, swim.scale(Math.max(1000, swim.t.probeInterval)));
  }

  localState(join: boolean): PushPull {
    const members: StateEntry[] = [];
    for (const m of this.swim.members.values()) members.push({ id: m.id, addr: m.address, inc: m.incarnation, state: m.state, meta: m.meta });
    return { join, members };
  }

  /** memberlist's mergeState: remote dead/suspect verdicts only make us suspect, never kill directly. */
  merge(pp: PushPull, from: string): void {
    const s = this.swim;
    for (const e of pp.members) {
      switch (e.state) {
        case "alive": s.onAlive({ t: "alive", id: e.id, addr: e.addr, inc: e.inc, meta: e.meta }); break;
        case "left": s.onDead({ t: "dead", id: e.id, inc: e.inc, from: e.id }); break;
        default:
          // Unknown members in these states are ignored (suspect of nobody), as in memberlist.
          s.onSuspect({ t: "suspect", id: e.id, inc: e.inc, from });
      }
    }
  }

  /** One exchange with the node at addr; false on any failure (counted). */
  async pushPull(addr: string, join: boolean, timeoutMs?: number): Promise<boolean> {
    const s = this.swim;
    s.stats.pushPulls++;
    try {
      const req = s.sealStream(Buffer.from(JSON.stringify(this.localState(join))));
      const resp = await s.transport.request(addr, req, timeoutMs ?? Math.max(1000, s.t.probeInterval * 5));
      if (resp.length > MAX_STATE_BYTES) throw new Error("state too large");
      const opened = s.openStream(resp);
      if (!opened) throw new Error("response did not open");
      const pp = decodePushPull(opened.body);
      if (!pp) { s.stats.dropped.malformed++; throw new Error("malformed push-pull response"); }
      if (!s.running) return false;
      this.merge(pp, opened.from);
      this.joined = true;
      return true;
    } catch (err) {
      s.stats.pushPullFailures++;
      s.log.debug({ addr, err: (err as Error).message }, "push-pull failed");
      return false;
    }
  }

  /** Tries every seed once; true when at least one answered. */
  async joinOnce(): Promise<boolean> {
    const self = this.swim.transport.address;
    const results = await Promise.all(this.seeds.filter((a) => a !== self).map((a) => this.pushPull(a, true)));
    return results.some(Boolean);
  }

  start(): void {
    const s = this.swim;
    // Push-pull period grows with the cluster past 32 nodes, as memberlist's pushPullScale does.
    s.every(() => {
      const n = s.numAlive();
      const mult = n <= 32 ? 1 : Math.ceil(Math.log2(n) - 5) + 1;
      return s.t.pushPullInterval * mult;
    }, () => {
      const peers = [...s.members.values()].filter((m) => m.id !== s.id && m.state === "alive");
      const p = peers[Math.floor(s.random() * peers.length)];
      if (p) void this.pushPull(p.address, false);
    });
    this.scheduleRejoin(0);
  }

  /** Join with backoff until a seed answers; after that, every rejoinInterval: seeds we do not see, and one dead member. */
  private scheduleRejoin(delay: number): void {
    const s = this.swim;
    const t = s.clock.after(delay, () => {
      if (!s.running || s.leaving) return;
      void this.rejoin().then(() => {
        if (!s.running) return;
        const backoff = Math.min(s.t.rejoinInterval, Math.max(250, s.t.probeInterval) * 2 ** Math.min(this.attempt, 10));
        const jitter = 0.8 + 0.4 * s.random();
        this.scheduleRejoin((this.joined || this.seeds.length + this.remembered.length === 0 ? s.t.rejoinInterval : backoff) * jitter);
      });
    });
    void t;
  }

  private async rejoin(): Promise<void> {
    const s = this.swim;
    const alive = new Set([...s.members.values()].filter((m) => m.state === "alive" || m.state === "suspect").map((m) => m.address));
    // Remembered members only until we are in: afterwards a departed one is not worth retrying forever.
    const seeds = this.joined ? this.seeds : [...new Set([...this.seeds, ...this.remembered])];
    const targets = seeds.filter((a) => a !== s.transport.address && !alive.has(a));
    const dead = shuffle([...s.members.values()].filter((m) => m.state === "dead" && !targets.includes(m.address)), s.random);
    if (dead[0]) targets.push(dead[0].address);
    if (targets.length === 0) return;
    if (!this.joined) this.attempt++;
    const ok = await Promise.all(targets.map((a) => this.pushPull(a, !this.joined)));
    if (ok.some(Boolean)) this.attempt = 0;
  }
}
