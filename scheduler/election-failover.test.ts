/**
 * Leader failover on the fake clock: a settled 3-voter cluster loses its
 * acting leader at a random moment; how long until another node is acting?
 * The numbers feed the benchmark docs (docs/benchmarks).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { failoverMs, percentile } from "./scenarios.js";
import { LAN_TIMERS, LOCAL_TIMERS, type Timers } from "./sim.js";

const SEEDS = Number(process.env.THOC_FAILOVER_SEEDS ?? 1000);

async function failover(name: string, timers: Timers) {
  const t0 = performance.now();
  const xs: number[] = [];
  for (let s = 1; s <= SEEDS; s++) xs.push(await failoverMs(s, timers));
  const p50 = percentile(xs, 50), p99 = percentile(xs, 99);
  console.log(`failover ${name} (electionTimeout ${timers.electionTimeout} ms, heartbeat ${timers.heartbeatInterval} ms, lease ${timers.leaseDuration} ms): p50 ${p50} ms, p99 ${p99} ms, min ${Math.min(...xs)} ms, max ${Math.max(...xs)} ms over ${SEEDS} seeds (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return { p50, p99, min: Math.min(...xs) };
}

for (const [name, timers] of [["lan", LAN_TIMERS], ["local", LOCAL_TIMERS], ["candidate lan setting", { electionTimeout: 600, heartbeatInterval: 100, leaseDuration: 480 }]] as const) {
  test(`failover to the next acting leader, ${name} timers, ${SEEDS} seeds`, async () => {
    const t = timers.electionTimeout;
    const r = await failover(name, timers);
    // A follower waits at least t - one heartbeat after the kill, and a split
    // vote costs another [t, 2t): bounds that catch a stall or an early vote.
    assert.ok(r.min >= t - timers.heartbeatInterval, `failover in ${r.min} ms is faster than the election timeout allows`);
    assert.ok(r.p99 < 3 * t, `p99 ${r.p99} ms`);
  });
}
