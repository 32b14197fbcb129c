/**
 * The ring as operators see and change it: GetRing (shares, balance, N/W/R,
 * what is still to move) and RemoveNode, served on ClusterService.
 */
import type { ClusterView } from "../cluster/index.js";
import type { Config } from "../config/index.js";
import type { EventSink } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import type { ClusterService } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import { isActive, type ReplicationNode, type RingHolder } from "./replica/index.js";

export type RingAdmin = Pick<ImplOf<typeof ClusterService>, "getRing" | "removeNode">;

export interface RingAdminDeps {
  node: ReplicationNode;
  ring: RingHolder;
  hints: { count(): Promise<number> };
  view: ClusterView;
  config: Config["objectstore"];
  self: string;
  /** The cluster table of removed nodes, whose certificates every member refuses. */
  removedTable?: string;
  /** The cluster event stream: a removal is a "removed" node event. */
  events?: EventSink;
}

export function ringAdmin({ node, ring, hints, view, config: c, self, removedTable, events }: RingAdminDeps): RingAdmin {
  return {
    async getRing() {
      const s = ring.state();
      const r = node.ring();
      const q = node.coordinator.quorum(r);
      const own1 = r.ownership(1);
      const ownN = r.ownership(q.n);
      const bal = r.size ? r.balance(s.weights()) : { min: 0, max: 0 };
      const mis = await node.misplaced();
      return {
        nodes: s.all().map((m) => ({
          id: m.nodeId, name: m.name, weight: m.weight, share: own1.get(m.nodeId) ?? 0, replicaShare: ownN.get(m.nodeId) ?? 0,
          state: !isActive(m) ? "removed" : view.isUp(m.nodeId) ? "up" : "down",
          grpcAddress: view.address(m.nodeId) ?? "",
        })),
        replicas: q.n, writeQuorum: q.w, readQuorum: q.r,
        configuredReplicas: c.replicas, configuredWriteQuorum: c.writeQuorum, configuredReadQuorum: c.readQuorum,
        balanceMax: bal.max, balanceMin: bal.min,
        misplacedReplicas: BigInt(mis.records), misplacedBytes: BigInt(mis.bytes), pendingHints: BigInt(await hints.count()),
        digest: s.digest(), localId: self,
      };
    },
    async removeNode(req) {
      const want = req.node.trim();
      if (!want) throw new ThocError("invalid_argument", "name the node to remove (its name or id, as `thoc-node ring` shows them)");
      const all = ring.state().all();
      const byId = all.filter((m) => m.nodeId === want);
      const activeByName = all.filter((m) => m.name === want && isActive(m));
      const hits = byId.length ? byId : activeByName.length ? activeByName : all.filter((m) => m.name === want);
      if (hits.length === 0) throw new ThocError("not_found", `no node ${JSON.stringify(want)} in the ring: see \`thoc-node ring\``);
      if (hits.length > 1) throw new ThocError("failed_precondition", `${hits.length} ring nodes are named ${JSON.stringify(want)}: remove by id (${hits.map((m) => m.nodeId).join(", ")})`);
      const m = hits[0]!;
      if (m.nodeId === self) throw new ThocError("failed_precondition", "a node cannot remove itself: run `thoc-node node remove` on another node");
      const removed = await node.removeNode(m.nodeId);
      if (removedTable) await node.table(removedTable).put(m.nodeId, JSON.stringify({ name: m.name, removedAtMs: Date.now() }));
      events?.publish({ kind: "node", id: m.nodeId, name: m.name, action: "removed" });
      return { id: m.nodeId, name: m.name, removed };
    },
  };
}
