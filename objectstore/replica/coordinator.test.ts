import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import { deliverHints } from "./hints.js";
import { isHlc } from "../../cluster/index.js";
import { placementKey } from "./ring.js";
import { bytes, readAll, startTestCluster, waitFor, type TestCluster } from "./fixture.js";

const meta = (bucket: string, key: string) => ({ bucket, key, meta: JSON.stringify({ contentType: "text/plain" }) });
const quiet = { info() {}, warn() {} };

async function withCluster(n: number, fn: (c: TestCluster) => Promise<void>): Promise<void> {
  const c = await startTestCluster(n);
  try { await fn(c); } finally { await c.close(); }
}

/** A down set the test controls, standing in for the membership view. */
function liveness() {
  const down = new Set<string>();
  return { down, isUp: (id: string) => !down.has(id) };
}

async function holders(c: TestCluster, bucket: string, key: string): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const n of c.nodes) out.set(n.id, (await n.store.head(bucket, key))?.version);
  return out;
}

test("a write reaches all N replicas over gRPC and a read returns it", async () => {
  await withCluster(3, async (c) => {
    const { coord } = c.coordinator(0, { log: quiet });
    const body = randomBytes(10_000);
    const rec = await coord.put(meta("b", "k"), bytes(body.subarray(0, 3000), body.subarray(3000)));
    assert.ok(isHlc(rec.version));
    assert.equal(rec.size, 10_000);
    await coord.settled();
    assert.deepEqual([...(await holders(c, "b", "k")).values()], [rec.version, rec.version, rec.version]);
    const got = await coord.get("b", "k");
    assert.equal(got.record.version, rec.version);
    assert.deepEqual(await readAll(got.body), body);
    // A coordinator on another node reads it too, and a later write wins there.
    const other = c.coordinator(2, { log: quiet }).coord;
    const rec2 = await other.put(meta("b", "k"), bytes("second"));
    assert.ok(rec2.version > rec.version);
    assert.equal((await readAll((await coord.get("b", "k")).body)).toString(), "second");
    await other.settled();
  });
});

test("one node down: writes and reads succeed, the down node gets a hint, and the hint is delivered when it returns", async () => {
  await withCluster(3, async (c) => {
    const live = liveness();
    const { coord, target } = c.coordinator(0, { liveness: live, log: quiet });
    c.byId("node-3").kill();
    // Membership has not noticed yet: the write tries node-3, fails there, still gets W = 2.
    const r1 = await coord.put(meta("b", "early"), bytes("e"));
    assert.equal(r1.size, 1);
    // Membership marks it dead: the next writes go to the others plus a hint.
    live.down.add("node-3");
    const r2 = await coord.put(meta("b", "k"), bytes("while node-3 was down"));
    await coord.settled();
    assert.equal(await c.byId("node-3").store.head("b", "k"), undefined);
    const hinted = c.nodes.filter((n) => n.hints.count("node-3") > 0);
    assert.equal(hinted.length, 1, "exactly one stand-in keeps the hint");
    assert.equal((await readAll((await coord.get("b", "k")).body)).toString(), "while node-3 was down");
    const del = await coord.delete("b", "early");
    await coord.settled();
    // node-3 comes back.
    await c.byId("node-3").start();
    live.down.delete("node-3");
    const holder = hinted[0]!;
    await waitFor("hints delivered", async () => {
      const res = await deliverHints({ hints: holder.hints, target: (id) => target(id), log: quiet });
      return res.pending === 0 && holder.hints.count() === 0;
    });
    assert.equal((await c.byId("node-3").store.head("b", "k"))?.version, r2.version);
    assert.equal((await c.byId("node-3").store.head("b", "early"))?.version, del.version, "the delete's tombstone was handed off too");
    assert.equal((await c.byId("node-3").store.head("b", "early"))?.tombstone, true);
  });
});

test("two of three down: 503-style quorum error, nothing acknowledged, nothing stored", async () => {
  await withCluster(3, async (c) => {
    const live = liveness();
    const { coord } = c.coordinator(0, { liveness: live, log: quiet });
    c.byId("node-2").kill();
    c.byId("node-3").kill();
    // Not yet known to membership: the write starts, the two remote replicas fail,
    // the write is abandoned before the local copy commits.
    const slowBody = (async function* () { yield Buffer.from("part 1 "); await new Promise((r) => setTimeout(r, 300)); yield Buffer.from("part 2"); })();
    await assert.rejects(coord.put(meta("b", "k"), slowBody), (e: ThocError) => {
      assert.equal(e.code, "unavailable");
      assert.equal(e.grpcStatus, 14);
      assert.match(e.message, /quorum not reached \(0 of 2 needed, 3 replicas/);
      assert.equal(e.details.needed, 2);
      return true;
    });
    await coord.settled();
    assert.equal(await c.byId("node-1").store.head("b", "k"), undefined, "the abandoned write did not commit locally");
    // Membership knows: fail fast, before sending anything.
    live.down.add("node-2");
    live.down.add("node-3");
    await assert.rejects(coord.put(meta("b", "k2"), bytes("x")), (e: ThocError) => e.code === "unavailable" && e.details.got === 1);
    await assert.rejects(coord.delete("b", "k2"), (e: ThocError) => e.code === "unavailable");
    await assert.rejects(coord.get("b", "k2"), (e: ThocError) => e.code === "unavailable" && /GET b\/k2: quorum not reached/.test(e.message));
    for (const n of c.nodes) assert.equal(n.store.records().length, 0);
    // Without the membership hint, reads also fail on the quorum (1 of 2).
    live.down.clear();
    await assert.rejects(coord.get("b", "k2"), (e: ThocError) => e.code === "unavailable" && e.details.got === 1);
  });
});

test("read repair: a replica that missed a write is brought up to date by the next read", async () => {
  await withCluster(3, async (c) => {
    const { coord, peers } = c.coordinator(0, { log: quiet });
    await coord.put(meta("b", "k"), bytes("v1"));
    await coord.settled();
    c.byId("node-3").kill();
    const v2 = await coord.put(meta("b", "k"), bytes("v2"));
    await coord.settled();
    assert.notEqual((await c.byId("node-3").store.head("b", "k"))?.version, v2.version);
    await c.byId("node-3").start();
    await waitFor("node-3 reachable", async () => (await peers.get("node-3").head("b", "k")) !== undefined);
    const got = await coord.get("b", "k");
    assert.equal((await readAll(got.body)).toString(), "v2");
    await coord.settled();
    assert.equal((await c.byId("node-3").store.head("b", "k"))?.version, v2.version);
    assert.equal((await readAll((await c.byId("node-3").store.get("b", "k"))!.body)).toString(), "v2");
  });
});

test("read repair of a large body waits, runs once for concurrent reads, and is skipped when the copy arrived meanwhile", async () => {
  await withCluster(3, async (c) => {
    // Long enough that a loaded machine cannot make the "not before the delay" check race it.
    const delay = 1500;
    const { coord, peers } = c.coordinator(0, { log: quiet, readRepairDelayMs: delay });
    const big = randomBytes(2 << 20);
    c.byId("node-3").kill();
    const v1 = await coord.put(meta("b", "k"), bytes(big));
    await coord.settled();
    await c.byId("node-3").start();
    await waitFor("node-3 reachable", async () => { await peers.get("node-3").head("b", "k"); return true; });
    // Three reads at once find node-3 stale: one repair, and not before the delay.
    await Promise.all([0, 1, 2].map(async () => readAll((await coord.get("b", "k")).body)));
    assert.equal(await c.byId("node-3").store.head("b", "k"), undefined, "not repaired before the delay");
    await waitFor("node-3 repaired", async () => (await c.byId("node-3").store.head("b", "k"))?.version === v1.version, 5000);
    await coord.settled();
    assert.equal(coord.stats.readRepairs, 1, "one repair for three reads");
    // A copy that arrives during the delay (a write's last replica still streaming) is not sent again.
    c.byId("node-3").kill();
    const v2 = await coord.put(meta("b", "k"), bytes(big, "2"));
    await coord.settled();
    await c.byId("node-3").start();
    await waitFor("node-3 reachable", async () => { await peers.get("node-3").head("b", "k"); return true; });
    await readAll((await coord.get("b", "k")).body);
    const src = await c.byId("node-1").store.get("b", "k");
    assert.equal(src?.record.version, v2.version);
    assert.equal((await peers.get("node-3").put({ header: src!.record, body: src!.body, expected: () => ({ size: src!.record.size, sha256: src!.record.sha256 }) })).applied, true);
    await new Promise((r) => setTimeout(r, delay + 1000));
    assert.equal(coord.stats.readRepairs, 1, "no second copy of a body that had arrived");
    // settled() (shutdown) does not wait out a deferred repair: anti-entropy catches it later.
    c.byId("node-3").kill();
    await coord.put(meta("b", "k"), bytes(big, "3"));
    await coord.settled();
    await c.byId("node-3").start();
    await waitFor("node-3 reachable", async () => { await peers.get("node-3").head("b", "k"); return true; });
    const slow = c.coordinator(0, { log: quiet, readRepairDelayMs: 60_000 }).coord;
    await readAll((await slow.get("b", "k")).body);
    const t0 = Date.now();
    await slow.settled();
    assert.ok(Date.now() - t0 < 5000, `settled() took ${Date.now() - t0} ms`);
    assert.equal(slow.stats.readRepairs, 0);
  });
});

test("deletes are tombstones: NoSuchKey after, an older write cannot resurrect, a newer one can", async () => {
  await withCluster(3, async (c) => {
    const { coord, target } = c.coordinator(0, { log: quiet });
    const v1 = await coord.put(meta("b", "k"), bytes("v1"));
    const del = await coord.delete("b", "k");
    assert.ok(del.version > v1.version && del.tombstone);
    await assert.rejects(coord.get("b", "k"), (e: ThocError) => e.code === "not_found" && e.details.blobCode === "NoSuchKey");
    await coord.settled();
    // A late replay of the old put (e.g. a slow hint) loses to the tombstone everywhere.
    const src = await c.byId("node-1").store.get("b", "k");
    assert.equal(src?.record.tombstone, true);
    const out = await target("node-2").put({ header: { ...v1 }, body: bytes("v1"), expected: () => ({ size: v1.size, sha256: v1.sha256 }) });
    assert.deepEqual(out, { applied: false, current: del.version });
    await coord.put(meta("b", "k"), bytes("back"));
    assert.equal((await readAll((await coord.get("b", "k")).body)).toString(), "back");
    await coord.settled();
  });
});

test("N/W/R are lowered (and logged) when the ring has fewer nodes than N", async () => {
  await withCluster(1, async (c) => {
    const warnings: string[] = [];
    const { coord } = c.coordinator(0, { log: { info() {}, warn: (_o, m) => warnings.push(m) } });
    assert.deepEqual(coord.quorum(), { n: 1, w: 1, r: 1 });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /N\/W\/R lowered/);
    await coord.put(meta("b", "solo"), bytes("one copy"));
    assert.equal((await readAll((await coord.get("b", "solo")).body)).toString(), "one copy");
    assert.equal(warnings.length, 1, "logged once, not per request");
  });
  await withCluster(2, async (c) => {
    const { coord } = c.coordinator(1, { log: quiet });
    assert.deepEqual(coord.quorum(), { n: 2, w: 2, r: 2 });
  });
});

test("with a spare node, the hint goes to the next node on the ring (the stand-in)", async () => {
  await withCluster(4, async (c) => {
    const live = liveness();
    const { coord, target } = c.coordinator(0, { liveness: live, log: quiet });
    const ring = c.nodes[0]!.ring.state().ring(64);
    // A key whose preference list holds node-2 and not node-1's... any key with node-2 preferred.
    let key = "";
    for (let i = 0; !key; i++) if (ring.preferenceList(placementKey("b", `k${i}`), 3).includes("node-2")) key = `k${i}`;
    const walk = ring.walk(placementKey("b", key));
    live.down.add("node-2");
    c.byId("node-2").kill();
    await coord.put(meta("b", key), bytes("hinted"));
    await coord.settled();
    assert.equal(c.byId(walk[3]!).hints.count("node-2"), 1, `the stand-in ${walk[3]} (4th on the walk) keeps the hint`);
    await c.byId("node-2").start();
    live.down.delete("node-2");
    await waitFor("delivered", async () => (await deliverHints({ hints: c.byId(walk[3]!).hints, target, log: quiet })).pending === 0);
    assert.equal((await c.byId("node-2").store.head("b", key))?.tombstone, false);
  });
});

test("a preferred node with no known address counts as one failed replica, for writes, deletes and reads", async () => {
  await withCluster(3, async (c) => {
    const base = c.coordinator(0).target;
    const { coord } = c.coordinator(0, {
      log: quiet,
      target: (id) => { if (id === "node-3") throw new ThocError("unavailable", "no address known for node node-3"); return base(id); },
    });
    await coord.put(meta("b", "k"), bytes("v"));
    assert.equal((await readAll((await coord.get("b", "k")).body)).toString(), "v");
    await coord.delete("b", "k");
    await assert.rejects(coord.get("b", "k"), (e: ThocError) => e.code === "not_found");
    await coord.settled();
    assert.equal(await c.byId("node-3").store.head("b", "k"), undefined);
  });
});
