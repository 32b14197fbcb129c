import { test } from "node:test";
import assert from "node:assert/strict";
import { startReplicatedCluster } from "./replicated-fixture.js";
import type { Peer } from "./peer.js";
import { HlcClock } from "../../cluster/index.js";

/** Counts the replica calls one peer client makes (the real calls still go out). */
function spy(peer: Peer): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const m of ["syncDigests", "syncTable", "mergeRing"] as const) {
    const real = peer[m].bind(peer) as (...a: unknown[]) => Promise<unknown>;
    (peer as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => { calls[m] = (calls[m] ?? 0) + 1; return real(...a); };
  }
  return calls;
}

test("a sync round between nodes that agree is one SyncDigests call; a difference exchanges only what differs", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
    await a.node.syncWith(b.id);
    const calls = spy(a.node.peers.get(b.id));

    await a.node.syncWith(b.id);
    assert.deepEqual({ ...calls }, { syncDigests: 1 }, "equal ring and tables: digests only");

    // A bucket only b holds (written while a was cut off): the table is exchanged, the ring is not.
    await b.node.table("buckets").table.merge([{ key: "late", version: "0000000000ff.00000000.node-2", deleted: false, value: "{}" }]);
    await a.node.syncWith(b.id);
    assert.equal(calls.syncDigests, 2);
    assert.ok((calls.syncTable ?? 0) >= 1, "the differing table is synced");
    assert.equal(calls.mergeRing, undefined, "the equal ring is not sent");
    assert.equal(a.node.table("buckets").table.get("late"), "{}");
    assert.equal(a.node.table("buckets").table.digest(), b.node.table("buckets").table.digest());

    // A ring change b alone has heard of: the ring is merged, the (equal) table is not.
    const next = b.ring.state().clone();
    assert.ok(next.remove(c.nodes[2]!.id, new HlcClock("node-2").now()));
    await b.ring.merge(next.toJSON());
    const before = { ...calls };
    await a.node.syncWith(b.id);
    assert.equal(calls.mergeRing, 1);
    assert.equal(calls.syncTable, before.syncTable);
    assert.equal(a.ring.state().digest(), b.ring.state().digest());
    assert.equal(a.node.ring().size, 2);
  } finally {
    await c.close();
  }
});
