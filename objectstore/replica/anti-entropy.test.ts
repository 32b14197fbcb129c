import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { sharedBy, syncWithPeer, type RemoteReplica } from "./anti-entropy.js";
import { HlcClock } from "../../cluster/index.js";
import { RateLimiter } from "../../cluster/index.js";
import { knownWrite, once, tombstoneRecord, type PosRange, type ReplicaRecord } from "./replica-store.js";
import { placementKey } from "./ring.js";
import { startTestCluster } from "./fixture.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const quiet = { info() {}, warn() {} };

test("Merkle anti-entropy: each side pulls what it lacks, newer versions win both ways, unshared keys stay put", async () => {
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

    const opts1 = { self: "node-1", local: n1.store, ring, n: N, limiter: new RateLimiter(50 << 20), leafSize: 8, log: quiet };
    const opts2 = { ...opts1, self: "node-2", local: n2.store };
    // node-1's round takes node-2's newer records and leaves what node-2 lacks to node-2.
    const one = await syncWithPeer(opts1, c.coordinator(0).peers.get("node-2"));
    assert.ok(one.digests > 1, "it descended below the arc level");
    assert.equal(one.pulled, extraShared ? 3 : 2);
    assert.ok(one.behind >= Math.floor(shared.length / 2) - 3, `behind ${one.behind}`);
    assert.equal(n2.store.records().length, Math.ceil(shared.length / 2) + 1, "node-1 sent node-2 nothing");
    const two = await syncWithPeer(opts2, c.coordinator(1).peers.get("node-1"));
    assert.equal(two.pulled, one.behind, "node-2 pulled exactly what node-1 found it lacked");
    assert.equal(two.behind, 0);

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
    const again = await syncWithPeer(opts1, c.coordinator(0).peers.get("node-2"));
    assert.equal(again.pulled + again.behind, 0);
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
    const stats = await syncWithPeer({ self: "node-2", local: n2.store, ring: n1.ring.state().ring(16), n: 2, limiter }, c.coordinator(1).peers.get("node-1"));
    const took = Date.now() - t0;
    assert.equal(stats.pulled, 40);
    assert.equal(stats.bytes, 400_000);
    assert.equal(n2.store.records().length, 40);
    assert.ok(took >= 1400, `took ${took} ms`);
    assert.ok(took < 4000, `took ${took} ms`);
  } finally {
    await c.close();
  }
});

test("anti-entropy with a peer in sync is one request (DigestArcs), and one pass over the local index", async () => {
  const c = await startTestCluster(3);
  try {
    const [n1, n2] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
    const ring = n1.ring.state().ring(64);
    const hlc = new HlcClock("w");
    for (let i = 0; i < 400; i++) {
      const body = Buffer.from(`body ${i}`);
      const rec: ReplicaRecord = { bucket: "b", key: `k${i}`, version: hlc.now(), tombstone: false, size: body.length, sha256: sha(body), meta: "" };
      for (const n of [n1, n2]) await n.store.put(knownWrite(rec, once(body)));
    }
    const remote = c.coordinator(0).peers.get("node-2");
    const calls: string[] = [];
    const counted: RemoteReplica = {
      nodeId: remote.nodeId,
      digestArcs: (arcs) => { calls.push("digestArcs"); return remote.digestArcs(arcs); },
      digest: (r, p) => { calls.push("digest"); return remote.digest(r, p); },
      list: (r, o) => { calls.push("list"); return remote.list(r, o); },
      get: (b, k) => { calls.push("get"); return remote.get(b, k); },
    };
    const local: string[] = [];
    const store = n1.store;
    const localStore = Object.assign(Object.create(store) as typeof store, {
      digestArcs: (arcs: Parameters<typeof store.digestArcs>[0]) => { local.push("digestArcs"); return store.digestArcs(arcs); },
      digest: (r: PosRange, p: number) => { local.push("digest"); return store.digest(r, p); },
      list: (r: PosRange) => { local.push("list"); return store.list(r); },
    });
    const stats = await syncWithPeer({ self: "node-1", local: localStore, ring, n: 3, limiter: new RateLimiter(50 << 20), log: quiet }, counted);
    assert.ok(stats.arcs > 100, `compared ${stats.arcs} arcs`);
    assert.deepEqual(calls, ["digestArcs"]);
    assert.deepEqual(local, ["digestArcs"]);
    assert.equal(stats.digests, 1);
    assert.equal(stats.differing, 0);

    // One record differs: only its arc is descended.
    const body = Buffer.from("newer");
    await n2.store.put(knownWrite({ bucket: "b", key: "k7", version: hlc.now(), tombstone: false, size: body.length, sha256: sha(body), meta: "" }, once(body)));
    calls.length = 0;
    const one = await syncWithPeer({ self: "node-1", local: localStore, ring, n: 3, limiter: new RateLimiter(50 << 20), log: quiet }, counted);
    assert.equal(one.differing, 1);
    assert.equal(one.pulled, 1);
    assert.deepEqual(calls, ["digestArcs", "list", "get"]);
  } finally {
    await c.close();
  }
});

test("DigestArcs answers each arc's root digest, as DigestRange with one part does, over the wire", async () => {
  const c = await startTestCluster(2);
  try {
    const n1 = c.nodes[0]!;
    const hlc = new HlcClock("w");
    for (let i = 0; i < 200; i++) await n1.store.put(knownWrite(tombstoneRecord("b", `t${i}`, hlc.now()), once()));
    const segs = n1.ring.state().ring(8).segments().map((s) => ({ start: s.start, end: s.end }));
    const peer = c.coordinator(1).peers.get("node-1");
    const got = await peer.digestArcs(segs);
    const want = await Promise.all(segs.map(async (s) => (await n1.store.digest(s, 1))[0]!));
    assert.deepEqual(got, want);
    assert.equal(got.reduce((n, d) => n + d.count, 0), 200, "the arcs cover the circle once");
    await assert.rejects(peer.digestArcs([{ start: 0, end: 100 }, { start: 50, end: 150 }]), /overlaps/);
  } finally {
    await c.close();
  }
});

test("a pulled body that does not match its record is refused: nothing stored, the round fails (retried next round)", async () => {
  const c = await startTestCluster(2);
  try {
    const [n1, n2] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
    const body = Buffer.from("the real body");
    const rec: ReplicaRecord = { bucket: "b", key: "rotten", version: new HlcClock("w").now(), tombstone: false, size: body.length, sha256: sha(body), meta: "" };
    await n2.store.put(knownWrite(rec, once(body)));
    // Bit rot on node-2 that keeps the length: only the sha256 can tell.
    const entries = (n2.store as unknown as { entries: Map<string, { body: Buffer[] }> }).entries;
    entries.get(placementKey("b", "rotten"))!.body = [Buffer.from("the evil body")];
    await assert.rejects(
      syncWithPeer({ self: "node-1", local: n1.store, ring: n1.ring.state().ring(8), n: 2, limiter: new RateLimiter(50 << 20), log: quiet }, c.coordinator(0).peers.get("node-2")),
      /1 copy failed.*corrupt/);
    assert.equal(await n1.store.head("b", "rotten"), undefined);
  } finally {
    await c.close();
  }
});
