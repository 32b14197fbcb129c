/**
 * Prometheus figures of this node's containers: per container (label
 * `container`) CPU seconds, memory, network and block I/O from the engine's
 * one-shot stats, and the count by status from the records. One stats pass
 * per scrape, shared by every metric and bounded by timeoutMs per container,
 * so an engine that hangs cannot hang /metrics.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { EngineStats } from "../engine/index.js";
import type { ContainerManager } from "./manager.js";
import type { ContainerRecord, ContainerStatus } from "./types.js";

type Reading = { container: string; s: EngineStats };

const within = <T>(p: Promise<T>, ms: number): Promise<T | undefined> => {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p.catch(() => undefined), new Promise<undefined>((r) => { t = setTimeout(() => r(undefined), ms); t.unref(); })]).finally(() => clearTimeout(t));
};

export function registerContainerMetrics(registry: Registry, m: ContainerManager, o: { stats: boolean; timeoutMs: number }): void {
  let listed: { at: number; p: Promise<ContainerRecord[]> } | undefined;
  const records = () => {
    if (!listed || Date.now() - listed.at >= 1000) listed = { at: Date.now(), p: m.list().catch(() => [] as ContainerRecord[]) };
    return listed.p;
  };
  // Every status is exported, 0 included, so an alert on status="unhealthy" has a series; a Record so a new status must be listed.
  const none: Record<ContainerStatus, number> = { creating: 0, running: 0, unhealthy: 0, stopped: 0, exited: 0, restarting: 0, error: 0, unknown: 0 };
  const byStatus: Gauge<"status"> = new Gauge({
    name: "thoc_containers_by_status", help: "Containers on this node, by status (as `ct list` shows it).", labelNames: ["status"], registers: [registry],
    collect: async () => {
      const c = { ...none };
      for (const r of await records()) c[r.status]++;
      for (const [status, v] of Object.entries(c)) byStatus.set({ status }, v);
    },
  });
  if (!o.stats) return;

  let cached: { at: number; p: Promise<Reading[]> } | undefined;
  const reading = () => {
    if (cached && Date.now() - cached.at < 1000) return cached.p;
    const p = (async () => {
      if (!m.engineState().up) return [];
      const running = (await records()).filter((r) => r.engineId && (r.status === "running" || r.status === "unhealthy"));
      const got = await Promise.all(running.map(async (r) => ({ container: r.name, s: await within(m.engine.stats(r.engineId), o.timeoutMs) })));
      return got.filter((x): x is Reading => x.s !== undefined);
    })();
    cached = { at: Date.now(), p };
    return p;
  };
  const metric = (kind: "gauge" | "counter", name: string, help: string, value: (s: EngineStats) => number) => {
    const opts = {
      name, help, labelNames: ["container"] as const, registers: [registry],
      async collect(this: Gauge<"container"> | Counter<"container">) {
        this.reset();
        for (const { container, s } of await reading()) {
          if (this instanceof Gauge) this.set({ container }, value(s)); else this.inc({ container }, value(s));
        }
      },
    };
    return kind === "gauge" ? new Gauge(opts) : new Counter(opts);
  };
  metric("counter", "thoc_container_cpu_seconds_total", "CPU time the container's processes consumed.", (s) => s.cpuSeconds);
  metric("gauge", "thoc_container_memory_bytes", "Memory the container uses now.", (s) => s.memoryBytes);
  metric("counter", "thoc_container_net_rx_bytes_total", "Bytes the container received on its network interfaces.", (s) => s.netRxBytes);
  metric("counter", "thoc_container_net_tx_bytes_total", "Bytes the container sent on its network interfaces.", (s) => s.netTxBytes);
  metric("counter", "thoc_container_block_read_bytes_total", "Bytes the container read from block devices.", (s) => s.blockReadBytes);
  metric("counter", "thoc_container_block_write_bytes_total", "Bytes the container wrote to block devices.", (s) => s.blockWriteBytes);
}
