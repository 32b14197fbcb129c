/**
 * The conditional-write lock across nodes: the lease table one node keeps
 * (grant, renewal, expiry, owner checks, bad input) and the majority lock over
 * three in-process nodes on real gRPC servers (fixture.ts): one holder per key
 * at a time whichever node asks, a lock with one node down, a 409 after the
 * back-off when a majority is out of reach, renewal past the lease's TTL, and
 * the replica protocol's peer authentication on the new calls.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { PeerAuth, HlcClock } from "../../cluster/index.js";
import { ThocError } from "../../errors/index.js";
import { isBlobError, LocalKeyLocker } from "../blob/index.js";
import { KeyLeases, MAX_LEASE_MS } from "./key-leases.js";
import { QuorumKeyLocker } from "./key-lock.js";
import { Peers } from "./peer.js";
import { TEST_CLUSTER, startTestCluster, testKey, type TestCluster } from "./fixture.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("KeyLeases: one owner at a time; the same owner renews; expiry frees; only the owner releases; TTL capped; bad input refused", async () => {
  let now = 1000;
  const l = new KeyLeases(() => now);
  assert.deepEqual(await l.lockKey("b", "k", "a/1", 100), { granted: true, holder: "a/1" });
  assert.deepEqual(await l.lockKey("b", "k", "b/1", 100), { granted: false, holder: "a/1" }, "another owner is refused");
  assert.equal((await l.lockKey("b", "k2", "b/1", 100)).granted, true, "other keys are independent");
  assert.equal((await l.lockKey("other", "k", "b/1", 100)).granted, true, "and other buckets");
  now += 90;
  assert.equal((await l.lockKey("b", "k", "a/1", 100)).granted, true, "renewed by its owner");
  now += 90;
  assert.equal((await l.lockKey("b", "k", "b/1", 100)).granted, false, "the renewal extended it (180 ms after the first grant)");
  assert.equal(await l.unlockKey("b", "k", "b/1"), false, "a non-owner cannot release it");
  assert.equal((await l.lockKey("b", "k", "b/1", 100)).granted, false, "still held");
  now += 101;
  assert.equal((await l.lockKey("b", "k", "b/1", 100)).granted, true, "expired: granted to the next owner");
  assert.equal(await l.unlockKey("b", "k", "a/1"), false, "a stale release of the expired owner does not free its successor's");
  assert.equal((await l.lockKey("b", "k", "c/1", 100)).granted, false);
  assert.equal(await l.unlockKey("b", "k", "b/1"), true, "the owner releases");
  assert.equal((await l.lockKey("b", "k", "c/1", 100)).granted, true, "free at once after a release");
  // However long a lease is asked for, a node grants at most MAX_LEASE_MS.
  assert.equal((await l.lockKey("b", "long", "a/2", 10 * MAX_LEASE_MS)).granted, true);
  now += MAX_LEASE_MS + 1;
  assert.equal((await l.lockKey("b", "long", "b/2", 100)).granted, true, "capped at MAX_LEASE_MS");
  for (const [b, o, t] of [["", "a", 10], ["b", "", 10], ["b", "x".repeat(300), 10], ["b", "a", 0], ["b", "a", 1.5]] as const) {
    await assert.rejects(l.lockKey(b, "k", o, t), (e: ThocError) => e.code === "invalid_argument", `${JSON.stringify([b, o.length, t])}`);
  }
  await assert.rejects(l.unlockKey("b", "k", ""), (e: ThocError) => e.code === "invalid_argument");
  const before = l.size;
  assert.equal((await l.lockKey("b", "k", "c/1", 100)).granted, true);
  assert.equal(l.size, before, "nothing changed by refused input");
});

let c: TestCluster;
after(async () => c?.close());

/** A lock asker on node i of the test cluster, over gRPC to the others. */
function lockerOn(i: number, ttlMs: number, down: Set<string> = new Set()): QuorumKeyLocker {
  const self = c.nodes[i]!;
  const { coord, peers } = c.coordinator(i);
  return new QuorumKeyLocker({
    self: self.id, ttlMs, replicas: (b, k) => coord.preferenceList(b, k),
    target: (id) => (id === self.id ? self.leases : peers.get(id)), isUp: (id) => !down.has(id),
    backoff: { baseMs: 5, maxMs: 50 },
  });
}

test("quorum lock over three gRPC nodes: one holder per key at a time whichever node asks", async () => {
  c = await startTestCluster(3);
  const lockers = [0, 1, 2].map((i) => lockerOn(i, 5000));
  assert.deepEqual(c.coordinator(0).coord.preferenceList("b", "k").sort(), ["node-1", "node-2", "node-3"]);
  let inside = 0, most = 0, done = 0;
  const events: string[] = [];
  // Twelve contenders, four through each node, each holding the lock across a few event-loop turns.
  await Promise.all(Array.from({ length: 12 }, async (_, j) => {
    const release = await lockers[j % 3]!.acquire("b", "k", 20_000);
    inside++;
    most = Math.max(most, inside);
    events.push(`in ${j}`);
    await sleep(5 + Math.random() * 10);
    inside--;
    done++;
    events.push(`out ${j}`);
    release();
  }));
  assert.equal(done, 12);
  assert.equal(most, 1, `never two holders at once: ${events.join(", ")}`);
  assert.ok(lockers.reduce((s, l) => s + l.stats.retries, 0) > 0, "contenders through other nodes had to back off");
  for (const l of lockers) await l.settled();
  // Released everywhere: a fresh owner gets it at once on every node.
  for (const n of c.nodes) assert.equal((await n.leases.lockKey("b", "k", "probe/1", 1000)).granted, true, `${n.id} released it`);
  for (const n of c.nodes) await n.leases.unlockKey("b", "k", "probe/1");
});

test("quorum lock: taken with one of three nodes down; 409 after the back-off when two are; a holder renews past its TTL", async () => {
  // Node 3 is unreachable (its server killed; liveness does not know yet): 2 of 3 grant.
  c.nodes[2]!.kill();
  const a = lockerOn(0, 600);
  const b = lockerOn(1, 600);
  const t0 = Date.now();
  const release = await a.acquire("b", "one-down", 5000);
  assert.ok(Date.now() - t0 < 3000, "no retry loop: two grants are a majority");
  // The holder renews every TTL/3: well past its TTL nobody else gets the key.
  await assert.rejects(b.acquire("b", "one-down", 1500), (e) => isBlobError(e, "ConditionalRequestConflict"));
  assert.ok(b.stats.retries > 2, `it retried with back-off before the 409 (${b.stats.retries})`);
  assert.equal(b.stats.conflicts, 1);
  release();
  await a.settled();
  const r2 = await b.acquire("b", "one-down", 2000);
  r2();
  await b.settled();
  // Nodes 2 and 3 out of reach for node 1: a minority never takes the lock, whatever the wait.
  const lonely = lockerOn(0, 600, new Set(["node-2"]));
  const t1 = Date.now();
  await assert.rejects(lonely.acquire("b", "minority", 400), (e) => isBlobError(e, "ConditionalRequestConflict"));
  assert.ok(Date.now() - t1 >= 300, "it kept trying until its wait ran out");
  assert.equal(lonely.stats.acquired, 0);
  await lonely.settled();
  assert.equal((await c.nodes[0]!.leases.lockKey("b", "minority", "probe/2", 100)).granted, true, "the minority's own grant was released");
  await c.nodes[2]!.start();
});

test("quorum lock: a replica that never answers (a black hole) does not hold the lock up; its late grant is released too", async () => {
  const held: net.Socket[] = [];
  const hole = net.createServer((s) => { held.push(s); });
  await new Promise<void>((r) => hole.listen(0, "127.0.0.1", r));
  c.redirect("node-3", `127.0.0.1:${(hole.address() as net.AddressInfo).port}`);
  try {
    const a = lockerOn(0, 3000);
    const t0 = Date.now();
    const release = await a.acquire("b", "hole", 5000);
    assert.ok(Date.now() - t0 < 1000, `the majority's answers were enough, without waiting for the black hole's deadline (${Date.now() - t0} ms)`);
    release();
    await a.settled();
    for (const n of c.nodes.slice(0, 2)) assert.equal((await n.leases.lockKey("b", "hole", "probe/5", 100)).granted, true, `${n.id} released it`);
  } finally {
    c.redirect("node-3", undefined);
    for (const s of held) s.destroy();
    hole.close();
  }
});

test("quorum lock: the local lock comes first (one contender per node on the wire)", async () => {
  const local = new LocalKeyLocker();
  const self = c.nodes[0]!;
  const { coord, peers } = c.coordinator(0);
  let rounds = 0;
  const l = new QuorumKeyLocker({
    self: self.id, ttlMs: 2000, replicas: (b, k) => coord.preferenceList(b, k), local,
    target: (id) => { rounds++; return id === self.id ? self.leases : peers.get(id); },
  });
  const r1 = await l.acquire("b", "local-first", 5000);
  const asked = rounds;
  const p2 = l.acquire("b", "local-first", 5000);
  await sleep(100);
  assert.equal(rounds, asked, "the second waits on this node's lock and sends nothing meanwhile");
  r1();
  (await p2)();
  await l.settled();
  assert.equal(local.size, 0);
});

test("LockKey and UnlockKey are authenticated like every replica call: a caller without the cluster key is refused", async () => {
  const wrong = new Peers({ auth: new PeerAuth({ clusterName: TEST_CLUSTER, keys: [testKey()], nodeId: "intruder" }), directory: { address: () => c.nodes[0]!.address }, hlc: new HlcClock("x"), timeoutMs: 2000 });
  try {
    await assert.rejects(wrong.get("node-1").lockKey("b", "auth", "intruder/1", 1000), (e: ThocError) => e.code === "unauthenticated");
    assert.equal((await c.nodes[0]!.leases.lockKey("b", "auth", "probe/3", 1000)).granted, true, "nothing granted to it");
    await assert.rejects(wrong.get("node-1").unlockKey("b", "auth", "probe/3"), (e: ThocError) => e.code === "unauthenticated");
    assert.equal((await c.nodes[0]!.leases.lockKey("b", "auth", "probe/4", 1000)).granted, false, "nor released by it");
  } finally {
    wrong.close();
  }
});
