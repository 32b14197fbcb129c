/** The scheduler's Prometheus metrics (docs/scheduler.md "Metrics"). */
import { Counter, Gauge, Histogram } from "prom-client";
import type { AgentContext } from "../core/index.js";

export function schedulerMetrics(ctx: AgentContext) {
  const r = [ctx.metrics];
  // Read at scrape time: a timer polling it would wake every idle node several times a second.
  let acting = (): boolean => false;
  return {
    /** Where thoc_scheduler_is_leader reads whether this node is the acting leader. */
    actingFrom(fn: () => boolean): void { acting = fn; },
    term: new Gauge({ name: "thoc_scheduler_term", help: "The highest election term this node has seen.", registers: r }),
    isLeader: new Gauge({ name: "thoc_scheduler_is_leader", help: "1 while this node is the acting scheduler leader (lease held).", registers: r, collect() { this.set(acting() ? 1 : 0); } }),
    elections: new Counter({ name: "thoc_scheduler_elections_total", help: "Elections this node started (as a candidate).", registers: r }),
    leaderChanges: new Counter({ name: "thoc_scheduler_leader_changes_total", help: "Times this node saw the leader change.", registers: r }),
    placement: new Histogram({
      name: "thoc_scheduler_placement_seconds", help: "Time the leader took to place a VM (ranking and the fenced create on the chosen node).",
      labelNames: ["outcome"] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r,
    }),
  };
}
export type SchedulerMetrics = ReturnType<typeof schedulerMetrics>;
