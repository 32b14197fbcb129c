/**
 * The election's options and what it reports (status for the CLI, change
 * events for metrics and the event stream).
 */
import type { Clock } from "../core/index.js";
import type { Fence } from "./fence.js";
import type { VoterStatus } from "./leader.js";
import type { ElectionStore, ElectionTransport } from "./messages.js";
import type { VoterConfig } from "./voters.js";

export type { VoterStatus };

export type ElectionRole = "leader" | "follower" | "candidate" | "observer";

export interface ElectionOptions {
  id: string;
  store: ElectionStore;
  transport: ElectionTransport;
  clock: Clock;
  random: () => number;
  /** Base election timeout t; each wait is drawn from [t, 2t). */
  electionTimeout: number;
  heartbeatInterval: number;
  /** Below electionTimeout (config validates it): the lease must end before anyone may vote for a successor. */
  leaseDuration: number;
  /** First agent of a new cluster: sole voter of config version 1 when the store is empty. */
  bootstrap?: boolean;
  /** This node's fence: the election feeds every term it adopts into it. */
  fence?: Fence;
  /** Every member the leader should tell about itself (non-voters learn the leader this way). */
  members?: () => string[];
  /** Gossip's view; the leader grows the voter set only with live members. */
  isAlive?: (id: string) => boolean;
  /** Automatic growth stops here (default 3). */
  maxVoters?: number;
  /**
   * Asks whether the leader's process is gone (its port refuses connections):
   * "dead" lets followers stand for election as soon as the old leader's
   * lease has run out, instead of waiting out the election timeout. Only a
   * definite answer counts; a timeout (a partition, a hung leader) is "unknown".
   */
  probeLeader?: (leaderId: string) => Promise<"dead" | "alive" | "unknown">;
  /** How long addVoter/removeVoter wait for the commit (default 10 election timeouts). */
  changeTimeout?: number;
}

export interface ElectionStatus {
  role: ElectionRole;
  term: number;
  leader?: string;
  /** Clock ms when this node learned of the current leader. */
  leaderSince?: number;
  voters: VoterStatus[];
  config: VoterConfig;
  configCommitted: boolean;
  acting: boolean;
}

export interface ElectionEvent {
  reason: "role" | "term" | "leader" | "config";
  role: ElectionRole;
  term: number;
  leader?: string;
  config: VoterConfig;
  configCommitted: boolean;
}
