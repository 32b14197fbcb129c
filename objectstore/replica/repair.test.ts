import { test } from "node:test";
import assert from "node:assert/strict";
import { bytes, readAll, waitFor } from "./fixture.js";
import { RepairPool } from "./repair.js";
import { placementKey } from "./ring.js";
import { startReplicatedCluster, type ReplicatedTestCluster } from "./replicated-fixture.js";

const bodyReads = (c: ReplicatedTestCluster) => c.nodes.reduce((n, x) => n + x.store.bodyReads, 0);

test("several nodes find the same gap: the node lacking the records copies each once", async () => {
  const c = await startReplicatedCluster(4);
  try {
    const keys = Array.from({ length: 120 }, (_, i) => `k${i}`);
    for (const k of keys) await c.nodes[0]!.node.coordinator.put({ bucket: "b", key: k, meta: "{}" }, bytes(`body of ${k}`));
    await c.nodes[0]!.node.coordinator.settled();
    // node-4 loses every replica it held: three nodes share each of them with it.
    const victim = c.nodes[3]!;
    const lost = victim.store.records();
    assert.ok(lost.length > 50, `node-4 held ${lost.length}`);
    for (const r of lost) await victim.store.drop(r.bucket, r.key, r.version);
    const reads0 = bodyReads(c);
    // Every node's round at once, and node-4's twice (a ring change and its timer).
    await Promise.all([...c.nodes.map((x) => x.node.antiEntropy()), victim.node.antiEntropy()]);
    const copies = c.nodes.reduce((n, x) => n + x.node.repair.stats.copies, 0);
    assert.equal(copies, lost.length, "as many copies as were missing");
    assert.equal(victim.node.repair.stats.copies, lost.length, "all made by the node that lacked them");
    assert.equal(bodyReads(c) - reads0, lost.length, "each body read (sent) once");
    assert.equal(c.nodes.reduce((n, x) => n + x.node.repair.stats.stale, 0), 0);
    for (const r of lost) assert.equal((await victim.store.head(r.bucket, r.key))?.version, r.version);
  } finally {
    await c.close();
  }
});

test("node remove: re-replication starts at once (not at the next anti-entropy tick) and copies each missing replica once", async () => {
  // The tick is a minute away: only the ring change can start it within the wait below.
  const c = await startReplicatedCluster(4, { antiEntropyInterval: 60_000 });
  try {
    const keys = Array.from({ length: 80 }, (_, i) => `k${i}`);
    for (const k of keys) await c.nodes[0]!.node.coordinator.put({ bucket: "b", key: k, meta: "{}" }, bytes(`body of ${k}`, Buffer.alloc(2000, 7)));
    await c.nodes[0]!.node.coordinator.settled();
    const [n1, , , gone] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
    const rest = c.nodes.slice(0, 3);
    const held = rest.reduce((n, x) => n + x.store.records().length, 0);
    const missing = 3 * keys.length - held;
    assert.ok(missing > 20, `missing ${missing}`);
    c.down.add(gone.id);
    await gone.node.stop();
    await gone.rpc.shutdown(0);
    const reads0 = bodyReads(c);
    const t0 = Date.now();
    assert.equal(await n1.node.removeNode(gone.id), true);
    await waitFor("3 copies of every key on the 3 nodes left", async () => rest.every((x) => x.store.records().length === keys.length), 10_000);
    const took = Date.now() - t0;
    assert.ok(took < 10_000, `took ${took} ms`);
    const copies = rest.reduce((n, x) => n + x.node.repair.stats.copies, 0);
    assert.equal(copies, missing, "as many copies as were missing");
    assert.equal(bodyReads(c) - reads0, missing, "each body sent once");
    for (const k of keys.slice(0, 10)) {
      const got = await rest[2]!.node.coordinator.get("b", k);
      assert.equal((await readAll(got.body)).length, `body of ${k}`.length + 2000);
      assert.deepEqual(rest[2]!.node.ring().preferenceList(placementKey("b", k), 3).sort(), rest.map((x) => x.id).sort());
    }
  } finally {
    await c.close();
  }
});

test("repair pool: at most `concurrency` copies at once, a key under way is not copied twice", async () => {
  const pool = new RepairPool(2);
  let running = 0;
  let peak = 0;
  const job = () => async () => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 20));
    running--;
    return { applied: true, bytes: 10 };
  };
  // Submitted together: the second "a" comes while the first waits or runs.
  const started = await Promise.all(["a", "b", "c", "a", "d", "e"].map((k) => pool.submit(k, job())));
  await Promise.all(started.map((s) => s?.done));
  assert.equal(peak, 2);
  assert.equal(pool.stats.copies, 5);
  assert.equal(pool.stats.bytes, 50);
  assert.equal(pool.stats.deduplicated, 1);
  const failing = await pool.submit("x", async () => { throw new Error("boom"); });
  await assert.rejects(failing!.done, /boom/);
  assert.equal(pool.stats.failed, 1);
  assert.equal(pool.busy, 0);
});

test("idle anti-entropy ticks do not rescan every record for rebalancing once a pass on the current ring left nothing to move", async () => {
  const c = await startReplicatedCluster(3, { antiEntropyInterval: 100 });
  try {
    for (let i = 0; i < 20; i++) await c.nodes[0]!.node.coordinator.put({ bucket: "b", key: `k${i}`, meta: "{}" }, bytes(`v${i}`));
    const n1 = c.nodes[0]!.node;
    const last = await waitFor("a rebalance pass on the 3-node ring", async () => n1.lastRebalance && n1.ring().size === 3 && n1.lastRebalance);
    await new Promise((r) => setTimeout(r, 300)); // a pass still running from start-up settles
    const at = n1.lastRebalance!.at;
    const rounds = n1.stats.antiEntropyRounds;
    await new Promise((r) => setTimeout(r, 800));
    assert.ok(n1.stats.antiEntropyRounds - rounds >= 6, `anti-entropy ticked (${n1.stats.antiEntropyRounds - rounds} rounds)`);
    assert.equal(last.kept, 0);
    assert.equal(n1.lastRebalance!.at, at, "no rebalancing pass on idle ticks");
  } finally {
    await c.close();
  }
});

test("a ring change during a repair round runs another round right after it, on the new ring", async () => {
  // Slow repair (64 KiB/s) and a tick a minute away: only the re-run can finish within the wait.
  const c = await startReplicatedCluster(5, { antiEntropyInterval: 60_000, repairBytesPerSecond: 64 << 10 });
  try {
    const [n1, , , n4, n5] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    for (const k of keys) await n1.node.coordinator.put({ bucket: "b", key: k, meta: "{}" }, bytes(Buffer.alloc(20_000, 1)));
    await n1.node.coordinator.settled();
    for (const x of [n5, n4]) { c.down.add(x.id); await x.node.stop(); await x.rpc.shutdown(0); }
    const owned = () => keys.filter((k) => n1.node.ring().preferenceList(placementKey("b", k), 3).includes(n1.id));
    // Removing node-5 starts node-1's round on the 4-node ring, slowed by the rate limit...
    assert.equal(await n1.node.removeNode(n5.id), true);
    await waitFor("node-1's repair under way", async () => n1.node.repair.busy > 0, 5000);
    // ...and node-4's removal lands while it runs.
    assert.equal(await n1.node.removeNode(n4.id), true);
    assert.equal(n1.node.ring().size, 3);
    await waitFor("node-1 holds every key of the 3-node ring", async () => {
      for (const k of owned()) if (!(await n1.store.head("b", k))) return false;
      return true;
    }, 20_000);
  } finally {
    await c.close();
  }
});
