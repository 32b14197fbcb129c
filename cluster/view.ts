/**
 * The gossip view as node-to-node code needs it: where a node's gRPC API is,
 * whether it counts as up, and which members are alive. Built over core's
 * Membership interface, so nothing here imports the gossip code.
 *
 * Up means alive or suspect: a suspect node usually answers (Lifeguard
 * suspects slow nodes too), and refusing it would turn every suspicion into
 * hinted handoff. This node is always up and always at its own address.
 */
import type { Membership } from "../core/index.js";
import type { Liveness, PeerDirectory } from "./peers.js";

export interface ClusterView extends PeerDirectory, Liveness {
  readonly self: string;
  /** Ids of the members gossip sees alive (this node included). */
  alive(): string[];
}

export function clusterView(membership: Membership, self: { id: string; grpcAddress: () => string }): ClusterView {
  return {
    self: self.id,
    address: (id) => (id === self.id ? self.grpcAddress() : membership.member(id)?.meta.grpc || undefined),
    isUp(id) {
      if (id === self.id) return true;
      const m = membership.member(id);
      return m !== undefined && (m.state === "alive" || m.state === "suspect");
    },
    alive: () => membership.members().filter((m) => m.state === "alive").map((m) => m.id),
  };
}
