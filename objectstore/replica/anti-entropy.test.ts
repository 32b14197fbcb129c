import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { sharedBy, syncWithPeer } from "./anti-entropy.js";
import { HlcClock } from "../../cluster/index.js";
import { RateLimiter } from "../../cluster/index.js";
import { knownWrite, once, tombstoneRecord, type ReplicaRecord } from "./replica-store.js";
import { placementKey } from "./ring.js";
import { startTestCluster } from "./fixture.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const quiet = { info() {}, warn() {} };

test("Merkle anti-entropy: a replica missing objects converges, newer versions win both ways, unshared keys stay put", async () => {
  const c = await startTestCluster(3);
  try {
    const [n1, n2, n3] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
    // Few vnodes: arcs big enough that the comparison has to descend the tree.
    const ring = n1.ring.state().ring(4);
    const N = 2;
    const hlc = new HlcClock("writer");
    const put = async (store: typeof n1.store, bucket: string, key: string, body: Buffer, version = hlc.now()) => {
      const rec: ReplicaRecord = { bucket, key, version, tombstone: false, size: body.length, sha256: sha(body), meta: "{}" };
      await store.put(knownWrite(rec, once(body)));
      return rec;
    };
    const keys = Array.from({ length: 600 }, (_, i) => `obj/${i}`);
    const shared = keys.filter((k) => sharedBy(ring, N, placementKey("b", k), "node-1", "node-2"));
    const onlyMine = keys.filter((k) => !shared.includes(k));
    assert.ok(shared.length > 50 && onlyMine.length > 50);
    // node-1 has everything; node-2 has every other shared key, so it misses half.
    for (const k of keys) await put(n1.store, "b", k, randomBytes(100));
    for (const [i, k] of shared.entries()) if (i % 2 === 0) {
      const got = await n1.store.get("b", k);
      const chunks: Buffer[] = [];
      for await (const x of got!.body) chunks.push(Buffer.from(x));
      await n2.store.put(knownWrite(got!.record, once(Buffer.concat(chunks))));
    }
    // node-2 has newer versions of a few, and a newer tombstone for one.
    const newer = await put(n2.store, "b", shared[0]!, Buffer.from("newer on node-2"));
    const tomb = tombstoneRecord("b", shared[2]!, hlc.now());
    await n2.store.put(knownWrite(tomb, once()));
    // node-2 also has a key node-1 never saw.
    const extra = shared.length ? await put(n2.store, "b", "zzz-only-on-2", Buffer.from("x")) : undefined;
    const extraShared = sharedBy(ring, N, placementKey("b", "zzz-only-on-2"), "node-1", "node-2");

    const peers = c.coordinator(0).peers;
    const opts = { self: "node-1", local: n1.store, ring, n: N, limiter: new RateLimiter(50 << 20), leafSize: 8, log: quiet };
    const stats = await syncWithPeer(opts, peers.get("node-2"));
    assert.ok(stats.digests > stats.arcs, "it descended below the arc level");
    assert.ok(stats.pushed >= Math.floor(shared.length / 2) - 3, `pushed ${stats.pushed}`);

    for (const k of shared) {
      const a = await n1.store.head("b", k);
      const b = await n2.store.head("b", k);
      assert.deepEqual(a, b, `shared key ${k} converged`);
    }
    assert.equal((await n1.store.head("b", shared[0]!))?.version, newer.version, "node-2's newer put won on node-1");
    assert.equal((await n1.store.head("b", shared[2]!))?.tombstone, true, "node-2's newer tombstone won on node-1");
    for (const k of onlyMine) assert.equal(await n2.store.head("b", k), undefined, `${k} is not node-2's to hold`);
    if (extra) assert.equal((await n1.store.head("b", "zzz-only-on-2"))?.version, extraShared ? extra.version : undefined);
    assert.equal(n3.store.records().length, 0);

    // A second round finds nothing to do.
    const again = await syncWithPeer(opts, peers.get("node-2"));
    assert.equal(again.pushed + again.pulled, 0);
    assert.equal(again.leaves, 0);
  } finally {
    await c.close();
  }
});

test("anti-entropy traffic is rate-limited (objectstore.repairBytesPerSecond)", async () => {
  const c = await startTestCluster(2);
  try {
    const [n1, n2] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
    const hlc = new HlcClock("w");
    for (let i = 0; i < 40; i++) {
      const body = randomBytes(10_000);
      await n1.store.put(knownWrite({ bucket: "b", key: `k${i}`, version: hlc.now(), tombstone: false, size: body.length, sha256: sha(body), meta: "" }, once(body)));
    }
    // 400 kB at 200 kB/s with a 100 kB burst: at least about 1.5 s.
    const limiter = new RateLimiter(200_000, Date.now, 100_000);
    const t0 = Date.now();
    const stats = await syncWithPeer({ self: "node-1", local: n1.store, ring: n1.ring.state().ring(16), n: 2, limiter }, c.coordinator(0).peers.get("node-2"));
    const took = Date.now() - t0;
    assert.equal(stats.pushed, 40);
    assert.equal(stats.bytes, 400_000);
    assert.equal(n2.store.records().length, 40);
    assert.ok(took >= 1400, `took ${took} ms`);
    assert.ok(took < 4000, `took ${took} ms`);
  } finally {
    await c.close();
  }
});
