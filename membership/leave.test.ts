/**
 * The graceful leave on the simulator (lan timers): the leaver stays
 * answerable until it stops, so the agent's drain, which comes after the
 * leave, never looks like a failure to a member that missed the news.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sim } from "./sim.js";

test("a leaving member answers probes until it stops: one that missed the leave does not suspect it", async () => {
  const sim = new Sim({ n: 5, seed: 21 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000, 500);
  const leaver = sim.nodes[4]!;
  const p = leaver.node.leave(1000);
  await sim.clock.advance(1500);
  await p;
  assert.ok(sim.live().filter((n) => n !== leaver).every((n) => n.node.member("id-4")?.state === "left"), "everyone heard the leave");
  // n0 missed it (as a member behind a lossy link may): it still has the leaver alive and probes it.
  const behind = sim.nodes[0]!;
  const entry = behind.node.swim.members.get("id-4")!;
  entry.state = "alive";
  const seen: string[] = [];
  behind.node.subscribe((e) => { if (e.member.id === "id-4") seen.push(e.type); });
  // The leaver is draining (still running) for 10 s: n0 probes it twice per round of 4 members at least.
  await sim.run(10_000, 100);
  assert.deepEqual(seen, [], "no suspicion of a member that is leaving, not dead");
  assert.ok(behind.node.swim.stats.probes > 0);
});
