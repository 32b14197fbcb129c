/** Prometheus metrics for gossip (thoc_gossip_*) and the member view (thoc_members), read from the node's counters at scrape time. */
import client, { type Registry } from "prom-client";
import type { GossipNode } from "./node.js";

export function registerMetrics(registry: Registry, node: () => GossipNode | undefined): void {
  const registers = [registry];
  new client.Gauge({
    name: "thoc_members", help: "Members in this node's view, by state.", labelNames: ["state"], registers,
    collect() {
      const n = node();
      const c: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
      for (const m of n?.swim.members.values() ?? []) c[m.state]!++;
      for (const [state, v] of Object.entries(c)) this.set({ state }, v);
    },
  });
  new client.Gauge({
    name: "thoc_gossip_local_health", help: "Lifeguard local health score (0 is healthy; timeouts scale by score+1).", registers,
    collect() { this.set(node()?.swim.awareness ?? 0); },
  });
  const counter = (name: string, help: string, read: (n: GossipNode) => Record<string, number> | number, label?: string) => {
    const last = new Map<string, number>();
    new client.Counter({
      name, help, labelNames: label ? [label] : [], registers,
      collect() {
        const n = node();
        if (!n) return;
        const v = read(n);
        const entries: [string, number][] = typeof v === "number" ? [["", v]] : Object.entries(v);
        for (const [k, x] of entries) {
          const d = x - (last.get(k) ?? 0);
          last.set(k, x);
          if (d > 0) label ? this.inc({ [label]: k }, d) : this.inc(d);
        }
      },
    });
  };
  counter("thoc_gossip_probes_total", "Direct probes sent.", (n) => n.stats.probes);
  counter("thoc_gossip_probe_failures_total", "Probes with no ack (direct or indirect) within the probe interval.", (n) => n.stats.probeFailures);
  counter("thoc_gossip_indirect_probes_total", "Indirect probe requests sent.", (n) => n.stats.indirectProbes);
  counter("thoc_gossip_suspicions_total", "Members this node started suspecting.", (n) => n.stats.suspicions);
  counter("thoc_gossip_refutations_total", "Times this node refuted a suspicion or death about itself.", (n) => n.stats.refutations);
  counter("thoc_gossip_push_pulls_total", "Full-state syncs attempted.", (n) => n.stats.pushPulls);
  counter("thoc_gossip_push_pull_failures_total", "Full-state syncs that failed.", (n) => n.stats.pushPullFailures);
  counter("thoc_gossip_dropped_total", "Datagrams and stream frames dropped, by reason (auth: no key opened it).", (n) => ({ ...n.stats.dropped }), "reason");
  counter("thoc_gossip_streams_refused_total", "Inbound TCP gossip streams cut before their frame opened, by reason (oversize prefix, overLimit connections, timeout): a stranger or a broken peer.",
    (n) => { const r = (n.swim.transport as { refused?: Record<string, number> }).refused; return r ? { ...r } : {}; }, "reason");
  counter("thoc_gossip_bytes_total", "Gossip bytes sent and received (UDP and TCP, sealed).", (n) => ({ in: n.stats.bytesIn, out: n.stats.bytesOut }), "direction");
}
