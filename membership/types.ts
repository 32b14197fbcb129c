/**
 * The seams of the membership layer: a clock and a transport, so the same
 * SWIM code runs on real sockets and in deterministic simulations.
 */

export type MemberState = "alive" | "suspect" | "dead" | "left";

/** What a node tells the cluster about itself (kept under gossip.maxMetaBytes). */
export interface NodeMeta {
  name: string;
  version: string;
  /** host:port of the node's listeners. */
  grpc: string;
  s3: string;
  gossip: string;
  cpus: number;
  memBytes: number;
  memFreeBytes: number;
  diskBytes: number;
  diskFreeBytes: number;
  gpus: number;
  /** Free-form labels (rack, zone...). */
  tags?: Record<string, string>;
}

export interface Member {
  id: string;
  name: string;
  /** Gossip address, host:port. */
  address: string;
  state: MemberState;
  incarnation: number;
  meta: NodeMeta;
  /** Clock time of the last state change (drives reaping and suspicion). */
  stateChangedAt: number;
}

export type MemberEventType = "join" | "update" | "suspect" | "alive" | "dead" | "left" | "reap";

export interface MemberEvent {
  type: MemberEventType;
  member: Member;
}

export interface Timer { cancel(): void }

export interface Clock {
  now(): number;
  /** Runs fn once after ms; the returned handle cancels it. */
  after(ms: number, fn: () => void): Timer;
}

/** Datagrams (UDP) and request/response streams (TCP) between gossip addresses. */
export interface Transport {
  /** host:port others reach this node on. */
  readonly address: string;
  /** Fire and forget: never throws; failures are counted by the caller's hooks. */
  sendPacket(to: string, data: Uint8Array): void;
  /** One request, one response over a reliable stream; rejects on error or timeout. */
  request(to: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Installs the receivers (once). */
  listen(handlers: {
    packet(data: Uint8Array, from: string): void;
    request(data: Uint8Array, from: string): Promise<Uint8Array>;
  }): void;
  close(): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};
