/**
 * The event seam: what any part of the agent may publish to the cluster's
 * event stream (EventService.WatchEvents), without importing agent/. The
 * agent owns the history and the stream (agent/events.ts); a subsystem gets
 * an EventSink through its AgentContext (`ctx.events`) and publishes plain
 * values. Audit records are the agent's own and do not come through here.
 */
import type { Membership } from "./membership.js";

export type EventKind = "audit" | "vm" | "node" | "leader" | "container";
export const EVENT_KINDS: readonly EventKind[] = ["audit", "vm", "node", "leader", "container"];

/**
 * What happened to a VM (docs/events.md maps record statuses to these).
 * "starting" is reserved: VM records have no starting status today, a start
 * is reported as "running" once the domain runs.
 */
export type VmAction = "created" | "starting" | "running" | "stopping" | "stopped" | "paused" | "deleted" | "failed";
export type VmEventTrigger = "user" | "scheduler" | "libvirt" | "reconcile" | "autostart";

export interface VmEventInput {
  kind: "vm";
  vm: string;
  action: VmAction;
  /** Record statuses now and before ("" when created from nothing / deleted). */
  status: string;
  previousStatus: string;
  by: VmEventTrigger;
  detail?: string;
}

/** What happened to a container (container/events.ts maps record statuses to these). */
export type ContainerAction = "created" | "running" | "unhealthy" | "stopped" | "exited" | "restarting" | "deleted" | "failed";
export type ContainerEventTrigger = "user" | "scheduler" | "engine" | "reconcile" | "health" | "restart-policy";

export interface ContainerEventInput {
  kind: "container";
  container: string;
  action: ContainerAction;
  status: string;
  previousStatus: string;
  by: ContainerEventTrigger;
  detail?: string;
  exitCode?: number;
  restartCount?: number;
}

/** A member as this node's gossip view saw it change; "removed" is `thoc-node node remove`. */
export type NodeAction = "joined" | "alive" | "suspect" | "dead" | "left" | "removed";

export interface NodeEventInput {
  kind: "node";
  id: string;
  name: string;
  action: NodeAction;
  address?: string;
}

/** A scheduler leader change, published by the node that became leader (or saw the change). */
export interface LeaderEventInput {
  kind: "leader";
  leaderId: string;
  leaderName: string;
  term: number;
}

export type ClusterEventInput = VmEventInput | NodeEventInput | LeaderEventInput | ContainerEventInput;

/** Where subsystems publish events; publishing never throws and never blocks. */
export interface EventSink {
  publish(e: ClusterEventInput): void;
}

/**
 * The agent's event hub as the context gives it: a sink, and where the
 * membership subsystem hands over its view (node events, and the live
 * members WatchEvents fans in from).
 */
export interface EventHub extends EventSink {
  attachMembership(m: Membership): void;
}
