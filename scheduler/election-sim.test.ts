/**
 * Deterministic simulations of the election over thousands of seeds: at most
 * one leader per term, lease safety (never two nodes acting at once), fenced
 * commands never going backwards, liveness with a connected majority, and
 * single-server voter changes. The checker's self-test runs a broken vote rule
 * and must catch it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { sweepInWorker, type ChaosOptions } from "./scenarios.js";

const SEEDS = Number(process.env.THOC_ELECTION_SEEDS ?? 1000);

async function sweep(name: string, seeds: number, first: number, o: ChaosOptions) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const violations: string[] = [];
  let terms = 0, commands = 0, refused = 0;
  // On a worker thread: node:test's per-promise tracking would cost ~15x the CPU (scenarios.ts).
  for (const r of await sweepInWorker({ kind: "chaos", first, seeds, options: o })) {
    violations.push(...r.violations);
    terms += r.terms; commands += r.commands; refused += r.refused;
  }
  const sec = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  console.log(`${name}: ${seeds} seeds in ${sec.toFixed(1)} s wall, ${cpu.toFixed(1)} s CPU (${(seeds / sec).toFixed(0)} seeds/s wall, ${(seeds / cpu).toFixed(0)} per CPU second), ${terms} leader terms, ${commands} fenced commands accepted, ${refused} refused/lost, ${violations.length} violations`);
  return violations;
}

test(`chaos: 5 nodes, 3 voters, ${SEEDS} seeds: no invariant violated`, async () => {
  const v = await sweep("3 voters", SEEDS, 1, { n: 5, maxVoters: 3 });
  assert.deepEqual(v.slice(0, 10), []);
});

test(`chaos: 6 nodes, 5 voters, ${Math.ceil(SEEDS / 3)} seeds: grows to 5, no invariant violated`, async () => {
  const v = await sweep("5 voters", Math.ceil(SEEDS / 3), 100_001, { n: 6, maxVoters: 5 });
  assert.deepEqual(v.slice(0, 10), []);
});

test("checker self-test: a node that votes for every candidate yields two leaders in a term", async () => {
  const v = await sweep("broken vote rule", 100, 1, { n: 5, maxVoters: 3, broken: true, chaosRounds: 1 });
  console.log(`broken vote rule, first violations: ${v.slice(0, 3).join(" | ")}`);
  assert.ok(v.some((x) => x.includes("two leaders in term")), "the checker missed a two-leaders-in-a-term violation");
});
