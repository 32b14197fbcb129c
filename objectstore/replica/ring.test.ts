import { test } from "node:test";
import assert from "node:assert/strict";
import { Ring, placementKey, ringHash, inSegment, weightForDisk, RING_SIZE } from "./ring.js";

const keys = Array.from({ length: 20_000 }, (_, i) => placementKey("bucket", `photos/${i}.jpg`));
const nodes = (n: number, weight = 1) => Array.from({ length: n }, (_, i) => ({ nodeId: `node-${i + 1}`, weight }));

test("preference lists: N distinct nodes, deterministic, fewer when the ring is smaller", () => {
  const ring = new Ring(nodes(5));
  const reversed = new Ring([...nodes(5)].reverse());
  for (const k of keys.slice(0, 500)) {
    const p = ring.preferenceList(k, 3);
    assert.equal(p.length, 3);
    assert.equal(new Set(p).size, 3);
    assert.deepEqual(p, reversed.preferenceList(k, 3), "input order does not matter");
    assert.deepEqual(ring.walk(k).slice(0, 3), p);
    assert.equal(ring.walk(k).length, 5);
  }
  assert.deepEqual(new Ring(nodes(2)).preferenceList("b/k", 3).length, 2);
  assert.deepEqual(new Ring([]).preferenceList("b/k", 3), []);
  assert.deepEqual(new Ring(nodes(1)).preferenceList("b/k", 3), ["node-1"]);
});

test("balance: each node's share of the key space and the spread", () => {
  for (const n of [3, 5, 10]) {
    const ring = new Ring(nodes(n), 128);
    const bal = ring.balance(new Map(nodes(n).map((x) => [x.nodeId, 1])));
    const replicaShares = [...ring.ownership(Math.min(3, n)).values()];
    assert.ok(Math.abs(replicaShares.reduce((a, b) => a + b, 0) - Math.min(3, n)) < 1e-9, "replica shares sum to N");
    console.log(`  ${n} nodes x 128 vnodes: primary share / fair share min ${bal.min.toFixed(3)} max ${bal.max.toFixed(3)} spread ${bal.spread.toFixed(3)}`);
    assert.ok(bal.min > 0.75 && bal.max < 1.25, `spread within ±25% (got ${bal.min}..${bal.max})`);
  }
  // Weights: a node twice as big takes about twice the keys.
  const weighted = new Ring([{ nodeId: "small", weight: 1 }, { nodeId: "big", weight: 2 }, { nodeId: "mid", weight: 1.5 }], 128);
  const share = weighted.ownership(1);
  console.log(`  weights 1/2/1.5: shares ${[...share].map(([id, s]) => `${id}=${s.toFixed(3)}`).join(" ")}`);
  assert.ok(share.get("big")! / share.get("small")! > 1.6 && share.get("big")! / share.get("small")! < 2.5);
  const counted = new Map<string, number>();
  for (const k of keys) { const p = weighted.preferenceList(k, 1)[0]!; counted.set(p, (counted.get(p) ?? 0) + 1); }
  for (const [id, s] of share) assert.ok(Math.abs(counted.get(id)! / keys.length - s) < 0.02, "sampled keys follow the computed shares");
});

test("adding a 4th node moves only about 1/4 of the keys, all of them to the new node", () => {
  const before = new Ring(nodes(3));
  const after = new Ring(nodes(4));
  let moved = 0;
  let listsChanged = 0;
  for (const k of keys) {
    const a = before.preferenceList(k, 1)[0];
    const b = after.preferenceList(k, 1)[0];
    if (a !== b) { moved++; assert.equal(b, "node-4"); }
    const pa = before.preferenceList(k, 3);
    const pb = after.preferenceList(k, 3);
    if (pa.join() !== pb.join()) {
      listsChanged++;
      assert.ok(pb.includes("node-4"), "a changed replica set always gains the new node");
      assert.equal(pa.filter((x) => !pb.includes(x)).length, 1, "and loses exactly one old node");
    }
  }
  console.log(`  3→4 nodes: ${((moved / keys.length) * 100).toFixed(1)}% of primaries moved; ${((listsChanged / keys.length) * 100).toFixed(1)}% of replica sets changed`);
  assert.ok(moved / keys.length > 0.18 && moved / keys.length < 0.32, `about 1/4 moved (got ${moved / keys.length})`);
});

test("removing a node moves only its keys", () => {
  const before = new Ring(nodes(5));
  const after = new Ring(nodes(5).filter((n) => n.nodeId !== "node-3"));
  let moved = 0;
  for (const k of keys) {
    const pa = before.preferenceList(k, 3);
    const pb = after.preferenceList(k, 3);
    if (!pa.includes("node-3")) assert.deepEqual(pb, pa, "keys node-3 did not hold keep their replicas");
    else {
      moved++;
      assert.deepEqual(pb.filter((x) => pa.includes(x)), pa.filter((x) => x !== "node-3"), "the survivors keep their order");
    }
  }
  assert.ok(moved / keys.length > 0.45 && moved / keys.length < 0.75, "node-3 held about 3/5 of the replica sets");
});

test("segments tile the circle and ringHash is a 48-bit position", () => {
  const ring = new Ring(nodes(3), 8);
  const segs = ring.segments();
  assert.equal(segs.length, 24);
  for (const k of keys.slice(0, 300)) {
    const pos = ringHash(k);
    assert.ok(pos >= 0 && pos < RING_SIZE);
    const owning = segs.filter((s) => inSegment(pos, s));
    assert.equal(owning.length, 1);
    assert.deepEqual(ring.preferenceAt(owning[0]!.point, 3), ring.preferenceList(k, 3));
  }
  assert.ok(new Ring(nodes(1), 1).segments().every((s) => s.whole));
});

test("weights from disk capacity", () => {
  assert.equal(weightForDisk(50e9), 1);
  assert.equal(weightForDisk(10 * 2 ** 40), 10);
  assert.equal(weightForDisk(2.3 * 2 ** 40), 2.25);
  assert.throws(() => new Ring([{ nodeId: "a", weight: 0 }]));
  assert.throws(() => new Ring([{ nodeId: "a", weight: 1 }, { nodeId: "a", weight: 1 }]));
});
