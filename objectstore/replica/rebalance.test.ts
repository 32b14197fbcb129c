import { test } from "node:test";
import assert from "node:assert/strict";
import { syncWithPeer } from "./anti-entropy.js";
import { expireTombstones, rebalance } from "./rebalance.js";
import { RepairPool } from "./repair.js";
import { HlcClock, encodeHlc } from "../../cluster/index.js";
import { RateLimiter } from "../../cluster/index.js";
import { MemoryReplicaStore, knownWrite, once, tombstoneRecord } from "./replica-store.js";
import { Ring, placementKey } from "./ring.js";
import { bytes, startTestCluster } from "./fixture.js";

const quiet = { info() {}, warn() {} };

test("adding a 4th node: it pulls its keys from the owners that hold them (each once), old owners drop theirs only when every owner has a copy", async () => {
  const c = await startTestCluster(4);
  try {
    const ring3 = new Ring(["node-1", "node-2", "node-3"].map((nodeId) => ({ nodeId, weight: 1 })), 64);
    const ring4 = new Ring(c.nodes.map((x) => ({ nodeId: x.id, weight: 1 })), 64);
    let ring = ring3;
    const { coord } = c.coordinator(0, { ring: () => ring, log: quiet });
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    for (const k of keys) await coord.put({ bucket: "b", key: k, meta: "{}" }, bytes(`body of ${k}`));
    // A deleted key node-4 will own: its tombstone has to move there like any record.
    const gone = keys.find((k) => ring4.preferenceList(placementKey("b", k), 3).includes("node-4"))!;
    await coord.delete("b", gone);
    await coord.settled();
    assert.equal(c.byId("node-4").store.records().length, 0);

    ring = ring4;
    const run = (i: number, limiter = new RateLimiter(50 << 20)) => rebalance({ self: c.nodes[i]!.id, local: c.nodes[i]!.store, ring: ring4, n: 3, target: c.coordinator(i).target, limiter, log: quiet });

    // While node-4 is down nothing is dropped: the misplaced copies are all there is.
    c.byId("node-4").kill();
    const blocked = await run(0);
    assert.ok(blocked.misplaced > 20);
    assert.equal(blocked.dropped, 0);
    await c.byId("node-4").start();

    // The old owners first: every key they no longer own is held by an owner that
    // stayed, so they copy nothing and keep their copies for now...
    const reads0 = c.nodes.reduce((n, x) => n + x.store.bodyReads, 0);
    let pushed = 0;
    for (let i = 0; i < 3; i++) {
      const s = await run(i);
      assert.equal(s.copied, 0, `node-${i + 1} left the copies to node-4's own repair`);
      pushed += s.copied;
    }
    assert.equal(c.nodes.reduce((n, x) => n + x.store.bodyReads, 0), reads0);
    // ...node-4's anti-entropy with them (what ReplicationNode runs on the ring change) pulls each once...
    const pool = new RepairPool();
    for (const peer of ["node-1", "node-2", "node-3"]) {
      await syncWithPeer({ self: "node-4", local: c.byId("node-4").store, ring: ring4, n: 3, limiter: new RateLimiter(50 << 20), repair: pool, log: quiet }, c.coordinator(3).peers.get(peer));
    }
    // ...and then they drop theirs.
    for (let i = 0; i < 3; i++) {
      for (let attempt = 0; ; attempt++) {
        const s = await run(i);
        pushed += s.copied;
        if (s.kept === 0) break;
        assert.ok(attempt < 40, "node-4 became reachable again");
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const bodies = c.byId("node-4").store.records().filter((r) => !r.tombstone).length;
    assert.equal(pool.stats.copies + pushed, c.byId("node-4").store.records().length, "one copy per record node-4 took over");
    assert.equal(c.nodes.reduce((n, x) => n + x.store.bodyReads, 0) - reads0, bodies, "each body sent once");
    let onNew = 0;
    for (const k of keys) {
      const owners = ring4.preferenceList(placementKey("b", k), 3).sort();
      const holding: string[] = [];
      for (const n of c.nodes) if (await n.store.head("b", k)) holding.push(n.id);
      assert.deepEqual(holding.sort(), owners, `${k} is exactly on its new owners`);
      if (owners.includes("node-4")) onNew++;
    }
    const moved = await c.byId("node-4").store.head("b", gone);
    assert.ok(moved, `node-4 holds a copy of the deleted ${gone}`);
    assert.equal(moved.tombstone, true, "tombstones move too");
    assert.ok(onNew / keys.length > 0.6 && onNew / keys.length < 0.9, `node-4 took ~3/4 of the replica sets (${onNew})`);
    const again = await run(0);
    assert.equal(again.misplaced, 0);
  } finally {
    await c.close();
  }
});

test("tombstones older than the grace period are dropped, newer ones kept", async () => {
  const s = new MemoryReplicaStore();
  const now = 10_000_000;
  await s.put(knownWrite(tombstoneRecord("b", "old", encodeHlc({ physical: now - 5000, logical: 0, node: "a" })), once()));
  await s.put(knownWrite(tombstoneRecord("b", "new", encodeHlc({ physical: now - 10, logical: 0, node: "a" })), once()));
  const live = new HlcClock("a", { clock: { now: () => now - 9000 } }).now();
  await s.put(knownWrite({ bucket: "b", key: "live", version: live, tombstone: false, size: 0, sha256: tombstoneRecord("b", "x", live).sha256, meta: "" }, once()));
  assert.equal(await expireTombstones(s, 1000, now), 1);
  assert.deepEqual(s.records().map((r) => r.key).sort(), ["live", "new"]);
});
