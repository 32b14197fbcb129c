/**
 * The agent's Prometheus registry: prom-client's default process metrics
 * (minus the gauges it names *_total, which promtool rejects), build info, and
 * gRPC request counters and latency histograms.
 */
import { statfs } from "node:fs/promises";
import client, { Registry } from "prom-client";
import type { CallObserver } from "../rpc/index.js";
import { GrpcStatus } from "../rpc/index.js";

const CODE_NAMES = Object.fromEntries(Object.entries(GrpcStatus).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k])) as Record<number, string>;

/** How often the event-loop lag histogram (nodejs_eventloop_lag_*) samples. */
export const EVENT_LOOP_SAMPLE_MS = 100;

export interface AgentMetrics {
  readonly registry: Registry;
  readonly observeGrpc: CallObserver;
}

export function createMetrics(labels: { version: string; node: string }): AgentMetrics {
  const registry = new Registry();
  // The event-loop lag histogram samples every 100 ms, not prom-client's 10 ms: its libuv timer alone cost
  // 0.5 % of a core in an idle process (0.14 % at 100 ms; docs/benchmarks.md, "Idle footprint"), and the
  // lag alert (p99 > 0.5 s) needs no finer sampling.
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  // Gauges named *_total break the OpenMetrics naming rule promtool enforces.
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as unknown as { name: string }).name;
    const type = (m as unknown as { type?: string }).type;
    if (name.endsWith("_total") && type !== "counter") registry.removeSingleMetric(name);
  }
  new client.Gauge({ name: "thoc_build_info", help: "Build information; always 1.", labelNames: ["version", "node", "nodejs"], registers: [registry] })
    .set({ version: labels.version, node: labels.node, nodejs: process.version }, 1);
  const requests = new client.Counter({ name: "thoc_grpc_requests_total", help: "gRPC calls served, by method and status code.", labelNames: ["method", "code"], registers: [registry] });
  const latency = new client.Histogram({
    name: "thoc_grpc_request_duration_seconds", help: "gRPC call latency, by method.", labelNames: ["method"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
  });
  return {
    registry,
    observeGrpc(method, code, seconds) {
      requests.inc({ method, code: CODE_NAMES[code] ?? String(code) });
      latency.observe({ method }, seconds);
    },
  };
}

/**
 * The filesystem under the data dir (object data, LevelDB, VM disks all live there): its size and what is
 * still available to the agent, read with statfs at each scrape so a "disk nearly full" alert sees the
 * current figure rather than the last capacity reading. A failed statfs reports NaN, not 0 bytes free,
 * which would look like a full disk (a label-less prom-client gauge cannot be left without a sample; NaN
 * compares false in every alert threshold).
 */
export function registerDataDirMetrics(registry: Registry, dataDir: string): void {
  const read = async () => statfs(dataDir).catch(() => undefined);
  const size: client.Gauge = new client.Gauge({
    name: "thoc_data_dir_filesystem_size_bytes", help: "Size of the filesystem holding the data dir.", registers: [registry],
    async collect() { const s = await read(); size.set(s ? s.blocks * s.bsize : NaN); },
  });
  const avail: client.Gauge = new client.Gauge({
    name: "thoc_data_dir_filesystem_avail_bytes", help: "Bytes of the data dir's filesystem available to the agent (statfs bavail, as df shows it: the blocks reserved for root are not counted).", registers: [registry],
    async collect() { const s = await read(); avail.set(s ? s.bavail * s.bsize : NaN); },
  });
}
