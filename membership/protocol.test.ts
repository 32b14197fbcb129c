/** Protocol behaviours that the happn-swim fork got wrong, plus metadata and key rotation. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { DEV_CLUSTER_KEY } from "../config/index.js";
import { ThocError } from "../errors/index.js";
import { Sim } from "./sim.js";

test("suspicion timeouts are honoured: no member is declared dead sooner than the minimum after it was suspected", async () => {
  const sim = new Sim({ n: 8, seed: 31 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const suspectedAt = new Map<string, number>();
  const gaps: number[] = [];
  for (const n of sim.nodes) n.node.subscribe((e) => {
    if (e.member.id !== "id-6") return;
    if (e.type === "suspect") suspectedAt.set(n.name, sim.clock.now());
    if (e.type === "dead") gaps.push(sim.clock.now() - suspectedAt.get(n.name)!);
  });
  await sim.crash(6);
  await sim.until(() => sim.live().every((n) => n.node.member("id-6")?.state === "dead"), 60_000);
  // n = 8: min = 4 * max(1, log10 8) * 1 s = 4 s. The member that suspects first waits at least that.
  assert.ok(gaps.length > 0);
  assert.ok(Math.max(...gaps) >= 4000, `longest suspicion ${Math.max(...gaps)} ms`);
});

test("join retries with backoff until a seed comes up", async () => {
  const sim = new Sim({ n: 6, seed: 32 });
  for (const n of sim.nodes.slice(1)) n.node.start();
  await sim.run(20_000);
  assert.ok(sim.nodes.slice(1).every((n) => n.node.members().length === 1), "nobody to join yet");
  assert.ok(sim.nodes[1]!.node.stats.pushPullFailures >= 3, "retried");
  sim.nodes[0]!.node.start();
  const ms = await sim.until(() => sim.converged(), 60_000);
  assert.ok(ms <= 35_000, `joined ${ms} ms after the seed came up`);
});

test("a dead member that comes back without restarting is probed again and re-merges (no permanent faulty list)", async () => {
  const sim = new Sim({ n: 6, seed: 33 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const lone = sim.nodes[5]!;
  sim.net.partition([sim.nodes.slice(0, 5).map((n) => n.addr), [lone.addr]]);
  await sim.until(() => sim.nodes[0]!.node.member("id-5")?.state === "dead" && lone.node.member("id-0")?.state === "dead", 120_000);
  sim.net.heal();
  await sim.until(() => sim.converged(), 60_000);
});

test("metadata: carried in gossip, updatable at run time, size-bounded with a clear error", async () => {
  const sim = new Sim({ n: 5, seed: 34 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const n1 = sim.nodes[1]!.node;
  n1.updateMeta({ memFreeBytes: 12345, tags: { rack: "r7" } });
  await sim.until(() => sim.nodes.every((n) => n.node.member("id-1")!.meta.tags?.rack === "r7" && n.node.member("id-1")!.meta.memFreeBytes === 12345), 10_000);
  assert.throws(() => n1.updateMeta({ tags: { big: "x".repeat(600) } }),
    (e: ThocError) => e.code === "invalid_argument" && /above gossip.maxMetaBytes \(512\)/.test(e.message));
  assert.equal(n1.local().meta.tags?.rack, "r7", "a refused update changes nothing");
});

test("key rotation without downtime: install, switch and remove keys while the cluster runs", async () => {
  const sim = new Sim({ n: 8, seed: 35 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  let bad = 0;
  for (const n of sim.nodes) n.node.subscribe((e) => { if (e.type === "suspect" || e.type === "dead") bad++; });
  const k2 = randomBytes(32).toString("base64");
  for (const n of sim.nodes) { n.node.keyring.install(k2); await sim.run(1000); }
  for (const n of sim.nodes) { n.node.keyring.use(k2); await sim.run(1000); }
  for (const n of sim.nodes) { n.node.keyring.remove(DEV_CLUSTER_KEY); await sim.run(1000); }
  await sim.run(20_000);
  assert.equal(bad, 0, "no suspicion during the rotation");
  assert.ok(sim.converged());
  assert.equal(sim.nodes.reduce((a, n) => a + n.node.stats.dropped.auth, 0), 0);
});

test("a graceful leaver that restarts comes back alive with a higher incarnation", async () => {
  const sim = new Sim({ n: 5, seed: 36 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const p = sim.nodes[2]!.node.leave(1000);
  await sim.clock.advance(1500);
  await p;
  await sim.crash(2);
  await sim.until(() => sim.live().every((n) => n.node.member("id-2")?.state === "left"), 10_000);
  const inc = sim.nodes[0]!.node.member("id-2")!.incarnation;
  // Restarted from incarnation 1: the protocol must refute the "left" record by itself.
  const n = sim.add(2);
  n.node.start();
  await sim.until(() => sim.converged(), 30_000);
  const chosen = n.node.swim.self.incarnation;
  assert.ok(chosen > inc, `refuted to ${chosen}, above the left life's ${inc}`);
  for (const v of sim.live()) {
    const m = v.node.member("id-2")!;
    assert.equal(m.state, "alive", `${v.name}'s view of n2`);
    assert.equal(m.incarnation, chosen, `${v.name}'s view of n2`);
  }
});
