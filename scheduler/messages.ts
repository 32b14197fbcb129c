/**
 * The election's seams: the messages it exchanges (plain types; the lead maps
 * them to protobuf), the transport that carries them and the store that keeps
 * its persistent state.
 */
import { copyConfig, type VoterConfig } from "./voters.js";

export interface VoteRequest {
  term: number;
  candidateId: string;
  configVersion: number;
  configTerm: number;
  /**
   * Pre-vote (Raft thesis 9.6): "would you vote for me at this term?" without
   * anyone changing state, so a node cut off from a majority never inflates
   * its term and deposes a healthy leader when it comes back.
   */
  preVote?: boolean;
}

export interface VoteReply { term: number; granted: boolean; /** Why not, for logs. */ reason?: string }

export interface HeartbeatRequest { term: number; leaderId: string; config: VoterConfig; configCommitted: boolean }

export interface HeartbeatReply { term: number; success: boolean; configVersion: number }

/** A call that rejects or never answers counts as no answer (the election applies its own timeouts). */
export interface ElectionTransport {
  requestVote(to: string, req: VoteRequest): Promise<VoteReply>;
  heartbeat(to: string, req: HeartbeatRequest): Promise<HeartbeatReply>;
}

export interface PersistedElection {
  term: number;
  /** "" when this node has not voted in term. */
  votedFor: string;
  config: VoterConfig;
  /** Free for a store that keeps the Fence's highest term in the same record. */
  highestTerm?: number;
}

export interface ElectionStore {
  load(): Promise<PersistedElection | undefined>;
  /** Durable (fsync) before it resolves: a vote answered before its save could be given twice after a crash. */
  save(s: PersistedElection): Promise<void>;
}

/**
 * For tests and simulations: a simulated crash keeps this object and builds a
 * new Election on it, which is what surviving a crash means.
 */
export class MemoryElectionStore implements ElectionStore {
  state: PersistedElection | undefined;
  saves = 0;
  constructor(initial?: PersistedElection) { this.state = initial && clone(initial); }
  async load(): Promise<PersistedElection | undefined> { return this.state && clone(this.state); }
  async save(s: PersistedElection): Promise<void> { this.state = clone(s); this.saves++; }
}

function clone(s: PersistedElection): PersistedElection {
  return { ...s, config: copyConfig(s.config) };
}
