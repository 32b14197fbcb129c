/**
 * The seams of the membership layer: the member types and the Membership
 * interface live in core/ (other folders read the gossip view through them);
 * the transport is membership's own, so the same SWIM code runs on real
 * sockets and in deterministic simulations.
 */
export type { Member, MemberState, MemberEvent, MemberEventType, NodeMeta, Membership, Clock, Timer } from "../core/index.js";
export { realClock } from "../core/index.js";

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
