import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalStore } from "../../store/index.js";
import { DurableRingHolder, syncRing } from "./ring-store.js";
import { HlcClock } from "../../cluster/index.js";
import { startTestCluster } from "./fixture.js";

test("the ring state survives a restart (real LevelDB) and a known node does not re-join", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-ring-"));
  try {
    const hlc = new HlcClock("a");
    let store = await LocalStore.open(dir);
    let holder = await DurableRingHolder.open(store);
    const seen: number[] = [];
    holder.onChange((s) => seen.push(s.active().length));
    assert.equal(await holder.apply((s) => s.join("node-a", "a", 1, hlc.now())), true);
    assert.equal(await holder.apply((s) => s.join("node-b", "b", 2, hlc.now())), true);
    assert.equal(await holder.apply((s) => s.join("node-a", "a", 5, hlc.now())), false);
    await holder.apply((s) => s.remove("node-b", hlc.now()));
    assert.deepEqual(seen, [1, 2, 1]);
    const digest = holder.state().digest();
    await store.close();
    store = await LocalStore.open(dir);
    holder = await DurableRingHolder.open(store);
    assert.equal(holder.state().digest(), digest);
    assert.deepEqual(holder.state().active().map((m) => m.nodeId), ["node-a"]);
    assert.equal(holder.state().get("node-a")!.weight, 1);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("ring gossip over the replica protocol: one exchange leaves both nodes with the same ring", async () => {
  const c = await startTestCluster(2);
  try {
    const hlc = new HlcClock("op");
    const [n1, n2] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
    await n1.ring.merge({ members: [{ nodeId: "node-3", name: "three", weight: 1, addedAt: hlc.now(), updatedAt: hlc.now() }] });
    const s2 = n2.ring.state().clone();
    s2.remove("node-2", hlc.now());
    await n2.ring.merge(s2.toJSON());
    assert.notEqual(n1.ring.state().digest(), n2.ring.state().digest());
    const peers = c.coordinator(0).peers;
    assert.equal(await syncRing(n1.ring, peers.get("node-2")), true);
    assert.equal(n1.ring.state().digest(), n2.ring.state().digest());
    assert.deepEqual(n1.ring.state().active().map((m) => m.nodeId), ["node-1", "node-3"]);
    assert.equal(await syncRing(n1.ring, peers.get("node-2")), false, "nothing new the second time");
  } finally {
    await c.close();
  }
});
