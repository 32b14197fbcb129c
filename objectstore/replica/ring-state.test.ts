import { test } from "node:test";
import assert from "node:assert/strict";
import { RingState, isActive, type RingStateData } from "./ring-state.js";
import { HlcClock, decodeHlc, encodeHlc } from "../../cluster/index.js";
import { placementKey } from "./ring.js";
import { FakeClock, seededRandom as prng, shuffle } from "../../core/index.js";

const manualClock = (start: number) => new FakeClock(start);
import { ThocError } from "../../errors/index.js";

const sampleKeys = Array.from({ length: 2000 }, (_, i) => placementKey("b", `k${i}`));

/** Each op is the state one node shipped after a local change (a state-based CRDT delta). */
function randomHistory(seed: number): RingStateData[] {
  const rnd = prng(seed);
  const wall = manualClock(1_000);
  const actors = ["a", "b", "c"].map((id) => ({ id, hlc: new HlcClock(id, { clock: wall }), state: new RingState() }));
  const out: RingStateData[] = [];
  for (let step = 0; step < 40; step++) {
    wall.set(wall.now() + Math.floor(rnd() * 3));
    const actor = actors[Math.floor(rnd() * actors.length)]!;
    // Actors sometimes learn from one another before acting (so removes observe joins).
    if (rnd() < 0.5) actor.state.merge(actors[Math.floor(rnd() * actors.length)]!.state);
    const r = rnd();
    const target = `node-${1 + Math.floor(rnd() * 6)}`;
    if (r < 0.5) actor.state.join(target, `name-${target}`, 1 + Math.floor(rnd() * 3), actor.hlc.now());
    else if (r < 0.7 && actor.state.get(target)) actor.state.remove(target, actor.hlc.now());
    else if (actor.state.get(target)) actor.state.update(target, { weight: 1 + Math.floor(rnd() * 4) }, actor.hlc.now());
    out.push(actor.state.toJSON());
  }
  return out;
}

test("nodes that merged the same updates in any order (with duplicates) compute identical preference lists", () => {
  for (let seed = 1; seed <= 25; seed++) {
    const history = randomHistory(seed);
    const rnd = prng(seed * 7919);
    const replicas = Array.from({ length: 4 }, () => {
      const s = new RingState();
      const order = shuffle([...history, ...history.slice(0, 10)], rnd);
      for (const u of order) s.merge(u);
      return s;
    });
    const digests = new Set(replicas.map((r) => r.digest()));
    assert.equal(digests.size, 1, `seed ${seed}: same state everywhere`);
    const lists = replicas.map((r) => { const ring = r.ring(16); return sampleKeys.map((k) => ring.preferenceList(k, 3).join(",")).join(";"); });
    assert.ok(lists.every((l) => l === lists[0]), `seed ${seed}: same preference lists everywhere`);
  }
});

test("merge is commutative, associative and idempotent", () => {
  for (let seed = 100; seed < 120; seed++) {
    const h = randomHistory(seed);
    const [x, y, z] = [h[5]!, h[20]!, h[39]!];
    const m = (...parts: RingStateData[]) => { const s = new RingState(); for (const p of parts) s.merge(p); return s.digest(); };
    assert.equal(m(x, y), m(y, x));
    assert.equal(m(x, y, z), m(z, y, x));
    const xy = new RingState(); xy.merge(x); xy.merge(y);
    const yz = new RingState(); yz.merge(y); yz.merge(z);
    assert.equal(m(xy.toJSON(), z), m(x, yz.toJSON()));
    assert.equal(m(x, x, x), m(x));
    const s = new RingState(); s.merge(x);
    assert.equal(s.merge(x), false, "merging again reports no change");
  }
});

test("an operator remove is a tombstone that older states cannot undo; a join it did not see wins", () => {
  const wall = manualClock(5_000);
  const a = new HlcClock("a", { clock: wall });
  const s = new RingState();
  s.join("n1", "one", 1, a.now());
  s.join("n2", "two", 1, a.now());
  const old = s.clone();
  assert.equal(s.join("n1", "renamed", 5, a.now()), false, "a restart does not rejoin or re-weigh");
  s.remove("n1", a.now());
  assert.deepEqual(s.active().map((m) => m.nodeId), ["n2"]);
  s.merge(old);
  assert.deepEqual(s.active().map((m) => m.nodeId), ["n2"], "merging a pre-remove state does not resurrect");
  assert.equal(s.ring(8).has("n1"), false);
  // A join with an addedAt the remove never observed (concurrent) stays: add-wins,
  // even if that join's wall clock was behind the remove's.
  const removed = s.get("n1")!;
  const seen = decodeHlc(removed.removedAdd!);
  const { removedAdd: _ra, removedAt: _rt, ...alive } = removed;
  const concurrentJoin = { ...alive, addedAt: encodeHlc({ ...seen, node: "b" }) };
  assert.ok(concurrentJoin.addedAt < removed.removedAt!, "its timestamp is older than the remove");
  const t = s.clone();
  t.merge({ members: [concurrentJoin] });
  assert.ok(isActive(t.get("n1")!));
  assert.throws(() => s.remove("nope", a.now()), (e: ThocError) => e.code === "not_found");
});

test("LWW weight updates and a stable ring cache", () => {
  const wall = manualClock(5_000);
  const s1 = new RingState();
  s1.join("n1", "one", 1, new HlcClock("x", { clock: wall }).now());
  const s2 = s1.clone();
  const a = new HlcClock("y", { clock: wall });
  const b = new HlcClock("z", { clock: wall });
  s1.update("n1", { weight: 2 }, a.now());
  s2.update("n1", { weight: 3 }, b.now()); // same wall time and counter: node id "z" > "y" wins
  s1.merge(s2); s2.merge(s1);
  assert.equal(s1.get("n1")!.weight, 3);
  assert.equal(s1.digest(), s2.digest());
  const r = s1.ring(8);
  assert.equal(s1.ring(8), r, "ring is cached while the state is unchanged");
  assert.equal(r.pointCount, 24);
  assert.throws(() => RingState.fromJSON({ members: [{ nodeId: "x" }] }), (e: ThocError) => e.code === "invalid_argument");
  assert.deepEqual(RingState.fromJSON(JSON.parse(JSON.stringify(s1.toJSON()))).digest(), s1.digest());
});
