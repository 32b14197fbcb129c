/**
 * The membership seam: what the rest of the agent may know about the cluster's
 * gossip view. `membership/` implements it (SWIM + Lifeguard); `cluster/` and
 * the subsystems read it through this interface only, so none of them imports
 * the gossip code.
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

export interface Membership {
  readonly localId: string;
  /** Every known member, this node included, sorted by name. */
  members(): Member[];
  member(id: string): Member | undefined;
  local(): Member;
  /** Changes this node's metadata (merged over the current one) and gossips it; throws when it gets too large. */
  updateMeta(patch: Partial<NodeMeta>): void;
  /** Calls fn on every change (join, update, suspect, alive, dead, left, reap); returns the unsubscribe. */
  subscribe(fn: (e: MemberEvent) => void): () => void;
}
