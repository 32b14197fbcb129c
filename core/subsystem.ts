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
import type { RpcServer } from "../rpc/index.js";
import type { LocalStore } from "../store/index.js";
import type { CapacityInfo } from "./capacity.js";
import type { Logger } from "./logger.js";

export type HealthStatus = "up" | "starting" | "degraded" | "down";

export interface SubsystemHealth {
  status: HealthStatus;
  detail?: string;
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
}

export interface Subsystem {
  readonly name: string;
  /** Registers gRPC services, binds listeners, starts timers. Throw to abort the agent's start. */
  start(ctx: AgentContext): Promise<void>;
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
