/**
 * Lifeguard's k confirmations (issue 19): a dead verdict is never reached at
 * the minimum timeout with 0 confirmations while other members exist who
 * could confirm, including the small views a cluster has while it forms.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sim } from "./sim.js";
import { confirmationsExpected, suspicionTimeouts } from "./suspicion.js";

test("k = min(suspicionMult - 2, n - 2): only a 2-member view expects no confirmation", () => {
  assert.equal(confirmationsExpected(2, 4), 0, "nobody but the accuser and the suspect");
  assert.equal(confirmationsExpected(3, 4), 1, "memberlist drops this to 0: one other member can confirm");
  assert.equal(confirmationsExpected(4, 4), 2);
  assert.equal(confirmationsExpected(50, 4), 2);
  assert.equal(confirmationsExpected(50, 6), 4);
  assert.equal(confirmationsExpected(1, 4), 0);
  assert.equal(confirmationsExpected(5, 2), 0, "suspicionMult 2 expects none");
});

test("a lone accuser in a 3-member view waits the maximum timeout, not the minimum (local timers)", async () => {
  const sim = new Sim({ n: 3, seed: 21, preset: "test" });
  sim.start();
  await sim.until(() => sim.converged(), 30_000, 100);
  const { min, max } = suspicionTimeouts(3, sim.timers.probeInterval, sim.timers.suspicionMult, sim.timers.suspicionMaxTimeoutMult);
  const n0 = sim.nodes[0]!.node;
  const suspectedAt = new Map<string, number>();
  const deadAfter = new Map<string, number>();
  n0.subscribe((e) => {
    if (e.type === "suspect") suspectedAt.set(e.member.name, sim.clock.now());
    if (e.type === "dead") deadAfter.set(e.member.name, sim.clock.now() - suspectedAt.get(e.member.name)!);
  });
  // Both others go silent: node 0 suspects each alone, and the other one, silent too, never confirms.
  await sim.crash(1);
  await sim.crash(2);
  await sim.until(() => deadAfter.size === 2, 4 * max, 50);
  for (const [name, ms] of deadAfter) {
    assert.ok(ms >= max, `${name} declared dead ${ms} ms after the suspicion, before the maximum ${max} ms (min ${min} ms)`);
    assert.ok(ms <= max + 2000, `${name}: a real failure still ends in a verdict (${ms} ms)`);
  }
});

test("a real failure seen by several members still shrinks to the minimum (5 members, local timers)", async () => {
  const sim = new Sim({ n: 5, seed: 22, preset: "test" });
  sim.start();
  await sim.until(() => sim.converged(), 30_000, 100);
  const { max } = suspicionTimeouts(5, sim.timers.probeInterval, sim.timers.suspicionMult, sim.timers.suspicionMaxTimeoutMult);
  const t0 = sim.clock.now();
  await sim.crash(4);
  const ms = await sim.until(() => sim.live().every((x) => x.node.member("id-4")?.state === "dead"), 4 * max, 50);
  assert.ok(ms < max, `dead everywhere after ${ms} ms: confirmations brought it below the ${max} ms maximum`);
  assert.ok(sim.clock.now() - t0 === ms);
});
