/**
 * Leader failover on the fake clock: a settled 3-voter cluster loses its
 * acting leader at a random moment; how long until another node is acting?
 * With the lan and local presets' timers (config/schema.ts) a crashed leader (its port
 * refuses: followers probe it after a silence) is replaced once its lease has
 * surely run out; a leader that is cut off but alive (a hang, a partition) only
 * after the election timeout. The numbers feed docs/benchmarks.md.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { percentile, sweepInWorker } from "./scenarios.js";
import { LAN_TIMERS, LOCAL_PRESET_TIMERS, type Timers } from "./sim.js";

const SEEDS = Number(process.env.THOC_FAILOVER_SEEDS ?? 300);
async function failover(T: Timers, how: "crash" | "isolate") {
  const t0 = performance.now();
  // On a worker thread: node:test's per-promise tracking would cost many times the CPU (scenarios.ts).
  const xs = await sweepInWorker({ kind: "failover", first: 1, seeds: SEEDS, timers: T, how });
  const r = { p50: percentile(xs, 50), p99: percentile(xs, 99), min: Math.min(...xs), max: Math.max(...xs) };
  console.log(`failover, leader ${how === "crash" ? "crashed" : "cut off"} (electionTimeout ${T.electionTimeout} ms, heartbeat ${T.heartbeatInterval} ms, lease ${T.leaseDuration} ms): p50 ${r.p50} ms, p99 ${r.p99} ms, min ${r.min} ms, max ${r.max} ms over ${SEEDS} seeds (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return r;
}

// lan: the production defaults; local: what --dev and the multi-agent tests run with.
for (const [preset, T] of [["lan", LAN_TIMERS], ["local", LOCAL_PRESET_TIMERS]] as const) {
  const HOLD = Math.ceil(T.leaseDuration * 1.1) + 5;

  test(`${preset} timers: a crashed leader is replaced once its lease is over, p50 <= 1 s (${SEEDS} seeds)`, async () => {
    const r = await failover(T, "crash");
    // Never before the vote hold (the old lease, with its margin) since the last heartbeat: that would break the lease.
    assert.ok(r.min >= HOLD - T.heartbeatInterval, `failover in ${r.min} ms is faster than the lease allows`);
    assert.ok(r.p50 <= 1000, `p50 ${r.p50} ms`);
    assert.ok(r.p99 < 2 * T.electionTimeout, `p99 ${r.p99} ms`);
  });

  test(`${preset} timers: a leader cut off but alive is replaced after the election timeout (${SEEDS} seeds)`, async () => {
    const r = await failover(T, "isolate");
    assert.ok(r.min >= T.electionTimeout - T.heartbeatInterval, `failover in ${r.min} ms is faster than the election timeout allows`);
    assert.ok(r.p99 < 3 * T.electionTimeout, `p99 ${r.p99} ms`);
  });
}
