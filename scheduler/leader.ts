/**
 * What only a leader keeps, for one term: when each peer last acknowledged a
 * heartbeat (the SEND time, so the lease errs on the safe side) and which
 * config version it holds, and the caller waiting for a voter change.
 */
import { ThocError } from "../errors/index.js";
import type { Clock, Timer } from "../core/index.js";
import type { VoterConfig } from "./voters.js";

export interface VoterStatus {
  id: string;
  /** The leader's view: "follower" acked within the lease, else "unreachable"; others know only the leader and themselves. */
  state: "self" | "leader" | "follower" | "unreachable" | "unknown";
  /** Ms since the send time of the latest heartbeat it acknowledged (leader only). */
  lastAckMs?: number;
}

interface Pending { version: number; resolve: () => void; reject: (e: Error) => void; timer: Timer }

export class LeaderState {
  /** The heartbeat timer of the leader loop. */
  timer: Timer | undefined;
  /** Heartbeat rounds sent in this term (non-voters hear every few). */
  ticks = 0;
  private readonly acks = new Map<string, number>();
  private readonly versions = new Map<string, number>();
  private pending: Pending | undefined;

  constructor(readonly self: string, readonly since: number) {}

  ack(peer: string, sent: number, configVersion: number): void {
    if (sent > (this.acks.get(peer) ?? -Infinity)) this.acks.set(peer, sent);
    if (configVersion > (this.versions.get(peer) ?? -1)) this.versions.set(peer, configVersion);
  }

  /** Voters (this node included) that acked a heartbeat sent within window ms. */
  fresh(voters: readonly string[], now: number, window: number): number {
    let n = 0;
    for (const v of voters) if (v === this.self || (this.acks.get(v) ?? -Infinity) > now - window) n++;
    return n;
  }

  /** Voters of config known to hold it (this node saved it before sending). */
  holding(config: VoterConfig): number {
    let n = 0;
    for (const v of config.voters) if (v === this.self || (this.versions.get(v) ?? -1) >= config.version) n++;
    return n;
  }

  /** A member that answers and holds the current config: adding it commits at once. */
  caughtUp(id: string, version: number, now: number, window: number): boolean {
    return (this.acks.get(id) ?? -Infinity) > now - window && (this.versions.get(id) ?? -1) >= version;
  }

  voterStatus(id: string, now: number, lease: number): VoterStatus {
    if (id === this.self) return { id, state: "leader" };
    const a = this.acks.get(id);
    return { id, state: a !== undefined && a > now - lease ? "follower" : "unreachable", lastAckMs: a === undefined ? undefined : now - a };
  }

  pendingChange(config: VoterConfig, clock: Clock, timeout: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = clock.after(timeout, () => {
        if (this.pending?.timer !== timer) return;
        this.pending = undefined;
        reject(new ThocError("deadline_exceeded", `the voter change to version ${config.version} (${config.voters.join(", ")}) was not acknowledged by a majority of the new voters within ${timeout} ms; it stays in effect and pending, check that the voters are up`, { version: config.version }));
      });
      this.pending = { version: config.version, resolve, reject, timer };
    });
  }

  committed(version: number): void {
    const p = this.pending;
    if (p && p.version <= version) { this.pending = undefined; p.timer.cancel(); p.resolve(); }
  }

  close(err: Error): void {
    this.timer?.cancel();
    const p = this.pending;
    this.pending = undefined;
    if (p) { p.timer.cancel(); p.reject(err); }
  }
}
