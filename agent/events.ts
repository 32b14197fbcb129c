/**
 * The agent's event hub (core/ EventHub): numbers every event of this node
 * into its history (history.ts), serves EventService.WatchEvents (the fan-in
 * of every live member's history, fanin.ts) and EventPeerService (this
 * node's own history, to other agents only), and turns the gossip view's
 * changes into node events.
 *
 * Peer streams are authenticated like every node-to-node call: dialled with
 * the peer transport (mutual TLS under the cluster CA in production) and
 * signed with the cluster key for the node they go to; the server checks the
 * MAC and the caller's certificate against the node id it claims.
 */
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import type { Config } from "../config/index.js";
import { PeerAuth, PeerPool, authenticated, clusterView, peerCredentials, type ClusterView } from "../cluster/index.js";
import type { ClusterEventInput, EventHub, Logger, Member, MemberEvent, Membership, NodeAction, PeerTransport } from "../core/index.js";
import { EventPeerService, EventService, type Event } from "../proto/index.js";
import type { Client, RpcServer } from "../rpc/index.js";
import type { AuditRecord } from "./audit.js";
import { fanIn } from "./fanin.js";
import { NodeHistory, type EventBody } from "./history.js";

export interface ClusterEventsOptions {
  config: Config;
  log: Logger;
  rpc: RpcServer;
  nodeId: string;
  /** The store's generation: the epoch of this run's events. */
  epoch: number;
  grpcAddress: () => string;
  transport?: PeerTransport;
  /** Events kept in memory (per node). */
  keep?: number;
}

type PeerMethods = typeof EventPeerService extends GenService<infer T> ? T : never;

const NODE_ACTIONS: Partial<Record<MemberEvent["type"], NodeAction>> = { join: "joined", alive: "alive", suspect: "suspect", dead: "dead", left: "left" };

export function auditBody(r: AuditRecord): EventBody {
  return {
    kind: "audit", timeMs: BigInt(r.timeMs), node: r.node, who: r.who, method: r.method, target: r.target,
    outcome: r.outcome, code: r.code, message: r.message ?? "", requestId: r.requestId, role: r.role,
  };
}

export function eventBody(e: ClusterEventInput): EventBody {
  switch (e.kind) {
    case "vm":
      return { kind: "vm", vm: { $typeName: "thoc.node.v1.VmEvent", name: e.vm, action: e.action, status: e.status, previousStatus: e.previousStatus, triggeredBy: e.by, detail: e.detail ?? "" } };
    case "node":
      return { kind: "node", member: { $typeName: "thoc.node.v1.NodeEvent", id: e.id, name: e.name, action: e.action, address: e.address ?? "" } };
    case "container":
      return {
        kind: "container", container: {
          $typeName: "thoc.node.v1.ContainerEvent", name: e.container, action: e.action, status: e.status, previousStatus: e.previousStatus,
          triggeredBy: e.by, detail: e.detail ?? "", exitCode: e.exitCode ?? 0, restartCount: e.restartCount ?? 0,
        },
      };
    case "leader":
      return { kind: "leader", leader: { $typeName: "thoc.node.v1.LeaderEvent", leaderId: e.leaderId, leaderName: e.leaderName, term: BigInt(e.term) } };
  }
}

export class ClusterEvents implements EventHub {
  history?: NodeHistory;
  private o?: ClusterEventsOptions;
  private membership?: Membership;
  private view?: ClusterView;
  private pool?: PeerPool<PeerMethods, Client<PeerMethods>>;
  private auth?: PeerAuth;
  private unsubscribe?: () => void;

  /** Opens the history and registers both services. */
  start(o: ClusterEventsOptions): void {
    this.o = o;
    this.history = new NodeHistory(o.nodeId, o.config.name, BigInt(o.epoch), o.keep ?? 1000);
    const history = this.history;
    o.rpc.add(EventService, { watchEvents: (req, ctx) => this.watch(req, ctx.signal) });
    // Without a cluster key there are no peers to talk to (and no way to authenticate them).
    if (o.config.cluster.keys.length === 0) return;
    const t = o.transport;
    this.auth = new PeerAuth({
      clusterName: o.config.cluster.name, keys: o.config.cluster.keys, nodeId: o.nodeId,
      ...(t ? { checkCaller: t.checkCaller.bind(t) } : {}),
    });
    o.rpc.add(EventPeerService, authenticated(EventPeerService, {
      watchNodeEvents: (req, ctx) => history.stream({ ...req, local: true }, ctx.signal),
    }, this.auth));
  }

  publish(e: ClusterEventInput): void {
    this.history?.append(eventBody(e));
  }

  audit(r: AuditRecord): void {
    this.history?.append(auditBody(r));
  }

  attachMembership(m: Membership): void {
    const o = this.o;
    if (!o || this.membership) return;
    this.membership = m;
    this.view = clusterView(m, { id: o.nodeId, grpcAddress: o.grpcAddress });
    if (this.auth) {
      this.pool = new PeerPool({
        service: EventPeerService, directory: this.view, auth: this.auth,
        credentials: o.transport?.credentials ?? peerCredentials(o.config.tls),
        make: (_id, client) => client,
      });
    }
    this.unsubscribe = m.subscribe((e) => {
      const action = NODE_ACTIONS[e.type];
      if (!action || e.member.id === o.nodeId) return;
      this.publish({ kind: "node", id: e.member.id, name: e.member.name, action, address: e.member.meta.grpc });
    });
  }

  private upPeers(): string[] {
    const m = this.membership;
    if (!m || !this.pool) return [];
    return m.members().filter((x: Member) => x.id !== this.o!.nodeId && (x.state === "alive" || x.state === "suspect")).map((x) => x.id);
  }

  watch(req: Parameters<typeof fanIn>[1], signal: AbortSignal): AsyncIterable<Event> {
    const history = this.history!;
    return fanIn({
      self: history.nodeId,
      local: (r, s) => history.stream(r, s),
      peer: (id) => (r, s) => this.pool!.get(id).watchNodeEvents(r, { signal: s }),
      members: () => this.upPeers(),
      onMembers: (fn) => this.membership?.subscribe(() => fn()) ?? (() => {}),
      onError: (id, err) => this.o?.log.debug({ node: id, err: (err as Error).message }, "event stream from a member broke; reopening while it is up"),
    }, req, signal);
  }

  /** Ends every follower (agent stop: a followed stream must not hold the gRPC drain open). */
  close(): void {
    this.unsubscribe?.();
    this.history?.close();
    this.pool?.close();
  }
}
