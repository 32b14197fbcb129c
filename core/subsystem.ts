/**
 * A subsystem is one part of the agent (membership, object store, VMs,
 * scheduler). The agent starts them in order, stops them in reverse, and is
 * ready (/readyz, gRPC health) only when every one reports "up".
 *
 * What a subsystem needs from another (membership, the blob store) it gets in
 * its constructor from the composition root (agent/root.ts), typed; the
 * context carries only what the agent itself owns.
 */
import type { Registry } from "prom-client";
import type { Config } from "../config/index.js";
import type { Caller, ChannelCredentials, RpcServer } from "../rpc/index.js";
import type { LocalStore } from "../store/index.js";
import type { CapacityInfo } from "./capacity.js";
import type { EventHub } from "./events.js";
import type { Logger } from "./logger.js";

export type HealthStatus = "up" | "starting" | "degraded" | "down";

export interface SubsystemHealth {
  status: HealthStatus;
  detail?: string;
}

/**
 * How this agent dials its peers and recognises their calls (cluster PKI,
 * the operator's tls.* files, or plaintext); the agent builds it.
 */
export interface PeerTransport {
  /** What peer clients dial with; with the cluster PKI it follows renewals. */
  readonly credentials: ChannelCredentials;
  /** Refuses (throws) a peer call whose transport identity does not match the node id its MAC claims. */
  checkCaller(caller: Caller, claimedNodeId: string, method: string): void;
  /** The object store's cluster-wide view: removed nodes, revoked certificates, and live members to forward CA work to. */
  attachCluster(c: ClusterHooks): void;
  /**
   * The PEMs behind `credentials`, for connections that are not gRPC (the
   * object store's bulk data path on the gRPC port); undefined when peers
   * talk plaintext. Asked per new connection, so renewals apply.
   */
  tlsMaterial(): TlsMaterial | undefined;
}

/** A node's TLS identity and the CA its peers are checked against. */
export interface TlsMaterial {
  /** CA certificate(s) that sign peers' (and servers') certificates; absent: the system roots, and peers are not asked for one. */
  ca?: string;
  /** Certificate chain (PEM). */
  cert: string;
  key: string;
}

/** What the peer transport needs from the replicated cluster tables (the object store holds them). */
export interface ClusterHooks {
  isRemoved(nodeId: string): boolean;
  members(): { id: string; grpc: string }[];
  isRevoked?(serial: string): boolean;
  /** Records a revoked certificate serial in the table every member holds; resolves with when (ms). */
  revoke?(serial: string, reason: string): Promise<number>;
}

export interface AgentContext {
  readonly config: Config;
  readonly log: Logger;
  readonly store: LocalStore;
  readonly metrics: Registry;
  readonly rpc: RpcServer;
  readonly nodeId: string;
  readonly version: string;
  /** Advertised host:port of each listener. */
  readonly addresses: { grpc: string; http: string; s3: string; gossip: string };
  /** Latest capacity reading (refreshed every metrics.collectInterval). */
  capacity(): CapacityInfo;
  /** Absent in contexts tests build by hand: peers then dial as config.tls says. */
  readonly peerTransport?: PeerTransport;
  /** The cluster event stream (core/events.ts); absent in contexts tests build by hand. */
  readonly events?: EventHub;
}

export interface Subsystem {
  readonly name: string;
  /**
   * Optional: checks of the host that need the outside world (libvirt), run
   * before the agent opens its store or binds a port, so a host the config
   * cannot work on is refused like a bad value: a configError thrown here is
   * exit 2 with nothing listening.
   */
  preflight?(config: Config, log: Logger): Promise<void>;
  /** Registers gRPC services, binds listeners, starts timers. Throw to abort the agent's start. */
  start(ctx: AgentContext): Promise<void>;
  /**
   * Optional: tell the cluster this node is going, first thing on shutdown,
   * before any listener closes or any call drains (membership: the `left`
   * broadcast, so peers route nothing new here during the drain). Bounded by
   * the subsystem itself (a few gossip rounds); must not throw.
   */
  leave?(): Promise<void>;
  /**
   * Optional: stop taking new work at once (close listeners) while requests
   * under way go on. The agent calls it on every subsystem as shutdown
   * begins, so no listener keeps accepting while another drains.
   */
  quiesce?(): void;
  /** Stops within the agent's shutdown budget; must not throw. */
  stop(): Promise<void>;
  health(): SubsystemHealth;
}
