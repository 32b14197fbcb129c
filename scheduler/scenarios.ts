/**
 * Whole simulation runs over one seed, shared by the simulation tests and the
 * failover measurement: growth of the voter set while nodes join, chaos
 * (crashes, restarts, partitions, loss), then a stable majority that must
 * elect a leader.
 */
import { Worker } from "node:worker_threads";
import { ElectionSim, LOCAL_TIMERS, type Timers } from "./sim.js";
import { quorum } from "./voters.js";

export interface ChaosOptions { n: number; maxVoters: number; broken?: boolean; timers?: Timers; chaosRounds?: number }

export interface SeedResult { violations: string[]; terms: number; commands: number; refused: number }

export async function runChaosSeed(seed: number, o: ChaosOptions): Promise<SeedResult> {
  const t = o.timers ?? LOCAL_TIMERS;
  const et = t.electionTimeout;
  const sim = new ElectionSim({ n: o.n, seed, timers: t, maxVoters: o.maxVoters, broken: o.broken, commands: true, loss: 0.01, latency: [1, 8] });
  const ids = sim.ids();
  await sim.start(ids[0]!, true);
  // Nodes join one by one over a few election timeouts.
  for (const id of ids.slice(1)) {
    await sim.run(Math.floor(sim.random() * et));
    await sim.start(id);
  }
  const want = Math.min(o.maxVoters, o.n);
  const grown = await sim.run(30 * et, 10, () => (sim.latestCommitted()?.voters.length ?? 0) >= want);
  if (!grown && !o.broken) sim.violate(`voters did not grow to ${want}: latest committed ${JSON.stringify(sim.latestCommitted())}`);

  for (let round = 0; round < (o.chaosRounds ?? 2); round++) {
    // Chaos: every half election timeout, one random disturbance.
    for (let k = 0; k < 12; k++) {
      const r = sim.random();
      const pick = ids[Math.floor(sim.random() * ids.length)]!;
      if (r < 0.25) sim.crash(pick);
      else if (r < 0.5) await sim.start(pick);
      else if (r < 0.7) {
        const shuffled = [...ids].sort(() => sim.random() - 0.5);
        const cut = 1 + Math.floor(sim.random() * (ids.length - 1));
        sim.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
      } else if (r < 0.85) sim.heal();
      else sim.loss = sim.random() * 0.3;
      await sim.run(Math.floor(et / 2 + sim.random() * et / 2));
    }
    // Stable: a bare majority of the voters (plus every non-voter) up and
    // connected, the rest down or cut off; a leader must follow.
    const voters = sim.latestCommitted()?.voters ?? [ids[0]!];
    const out = [...voters].sort(() => sim.random() - 0.5).slice(0, voters.length - quorum(voters.length));
    const side = ids.filter((id) => !out.includes(id));
    for (const id of out) if (sim.random() < 0.5) sim.crash(id);
    sim.partition([side]);
    sim.loss = sim.random() * 0.05;
    for (const id of side) await sim.start(id);
    const ok = await sim.run(10 * et, 10, () => sim.acting().some((a) => side.includes(a)));
    if (!ok && !o.broken) sim.violate(`liveness: no acting leader within ${10 * et} ms among ${side.join(",")} (out: ${out.join(",") || "none"}): ${sim.describe(side)}`);
    sim.heal();
    for (const id of out) await sim.start(id);
  }
  for (const id of ids) sim.crash(id);
  return { violations: sim.violations, terms: sim.leaders.size, commands: sim.commandsAccepted, refused: sim.commandsRefused };
}

/**
 * Kills the acting leader of a settled 3-voter cluster at a random moment and
 * returns the ms until another node is acting (on the fake clock).
 */
/** "crash": the leader's process dies (its port refuses: followers' fast path); "isolate": it is cut off (a hang or a partition: the full timeout). */
export async function failoverMs(seed: number, timers: Timers, how: "crash" | "isolate" = "crash"): Promise<number> {
  const sim = new ElectionSim({ n: 3, seed, timers, maxVoters: 3, latency: [0.2, 1] });
  const ids = sim.ids();
  await sim.start(ids[0]!, true);
  for (const id of ids.slice(1)) await sim.start(id);
  const et = timers.electionTimeout;
  // Coarse steps until the kill: only the failover itself is timed finely.
  const ready = await sim.run(40 * et, Math.max(10, Math.round(et / 15)), () => (sim.latestCommitted()?.voters.length ?? 0) === 3 && sim.acting().length === 1);
  if (!ready) throw new Error(`seed ${seed}: the cluster did not settle`);
  // A random phase against the heartbeat schedule.
  await sim.run(et + Math.floor(sim.random() * timers.heartbeatInterval), Math.max(10, Math.round(et / 15)));
  const leader = sim.acting()[0];
  if (!leader) throw new Error(`seed ${seed}: no acting leader before the kill`);
  if (how === "crash") sim.crash(leader);
  else sim.partition([[leader]]);
  const t0 = sim.clock.now();
  // Sampled every et/300 ms (3 ms with lan timers): the result is that much coarse at most.
  const ok = await sim.run(40 * et, Math.max(1, Math.round(et / 300)), () => sim.acting().filter((id) => id !== leader).length === 1);
  if (!ok) throw new Error(`seed ${seed}: no new leader within ${40 * et} ms`);
  return sim.clock.now() - t0;
}

/** A run of consecutive seeds: chaos runs (runChaosSeed) or failover measurements (failoverMs). */
export type SweepJob =
  | { kind: "chaos"; first: number; seeds: number; options: ChaosOptions }
  | { kind: "failover"; first: number; seeds: number; timers: Timers; how: "crash" | "isolate" };
type SweepOutput<J extends SweepJob> = J extends { kind: "chaos" } ? SeedResult[] : number[];

/** Runs a sweep here, seed after seed; the results in seed order. */
export async function runSweep<J extends SweepJob>(job: J): Promise<SweepOutput<J>> {
  const out: (SeedResult | number)[] = [];
  for (let s = job.first; s < job.first + job.seeds; s++) {
    out.push(job.kind === "chaos" ? await runChaosSeed(s, job.options) : await failoverMs(s, job.timers, job.how));
  }
  return out as SweepOutput<J>;
}

/**
 * Runs a sweep on a worker thread (sim-worker.ts): the same code and seeds,
 * so the same results, but outside node:test's process. The test runner
 * tracks every async resource a test creates (an async_hooks init and destroy
 * hook, to blame errors on the right test); a simulation creates millions of
 * promises, and that tracking took about 90% of the CPU (13 instead of about
 * 200 chaos seeds per CPU second). A worker is its own isolate without it.
 */
export function sweepInWorker<J extends SweepJob>(job: J): Promise<SweepOutput<J>> {
  return new Promise((resolve, reject) => {
    // No inherited flags: the test runner's options mean nothing to a worker.
    const w = new Worker(new URL("./sim-worker.js", import.meta.url), { workerData: job, execArgv: [] });
    let done = false;
    w.once("message", (r: SweepOutput<J>) => { done = true; resolve(r); });
    w.once("error", (e) => { done = true; reject(e); });
    w.once("exit", (code) => { if (!done) reject(new Error(`simulation worker exited with code ${code} and no result`)); });
  });
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
