import { test } from "node:test";
import assert from "node:assert/strict";
import { isBlobError, type LifecycleRule } from "../blob/index.js";
import { LifecycleWorker, lifecycleRules, lifecycleVersions } from "./lifecycle.js";
import { startReplicatedCluster, type ReplicatedTestNode } from "./replicated-fixture.js";

const DAY = 86_400_000;
const body = (s: string) => (async function* () { yield Buffer.from(s); })();

function worker(n: ReplicatedTestNode, down: Set<string>, clock: { t: number }) {
  return new LifecycleWorker({
    self: n.id, store: n.store, coordinator: n.node.coordinator, ring: () => n.node.ring(), isUp: (id) => !down.has(id),
    rules: () => lifecycleRules(n.node.table("buckets")),
    abortUpload: (b, k, id) => n.blobs.abortMultipartUpload(b, k, id),
    tagsOf: async (b, k) => (await n.blobs.headObject(b, k)).tags,
    versions: lifecycleVersions(n.blobs),
    deletesPerSecond: 10_000, now: () => clock.t,
  });
}

const exists = async (n: ReplicatedTestNode, key: string) => {
  try { await n.blobs.headObject("lc", key); return true; } catch (e) { if (isBlobError(e, "NoSuchKey")) return false; throw e; }
};

test("lifecycle: each expired key is deleted by exactly one node, on S3's day boundaries, by prefix and tags; uploads aborted", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a] = c.nodes;
    await a!.blobs.createBucket("lc", "alice");
    const put = (key: string, tags?: Record<string, string>) =>
      a!.blobs.putObject({ bucket: "lc", key, body: body(key), headers: {}, userMeta: {}, expect: {}, ...(tags ? { extras: { tags } } : {}) });
    const old = Array.from({ length: 12 }, (_, i) => `logs/${i}`);
    for (const k of old) await put(k);
    await put("keep/forever");
    await put("tmp/x", { class: "scratch" });
    await put("tmp/y", { class: "precious" });
    const up = await a!.blobs.createMultipartUpload("lc", "big/file", {}, {});
    const rules: LifecycleRule[] = [
      { id: "logs", enabled: true, filter: { prefix: "logs/" }, expiration: { days: 1 } },
      { id: "scratch", enabled: true, filter: { prefix: "tmp/", tags: { class: "scratch" } }, expiration: { days: 1 } },
      { id: "off", enabled: false, filter: {}, expiration: { days: 1 } },
      { id: "uploads", enabled: true, filter: {}, abortIncompleteMultipartUpload: { daysAfterInitiation: 2 } },
    ];
    await a!.blobs.putBucketConfig("lc", "lifecycle", rules);
    const clock = { t: Date.now() };
    const workers = c.nodes.map((n) => worker(n, c.down, clock));
    const passAll = async () => {
      const st = await Promise.all(workers.map((w) => w.run()));
      return { expired: st.reduce((s, x) => s + x.expired, 0), aborted: st.reduce((s, x) => s + x.aborted, 0) };
    };

    // Day 1 has not ended: nothing expires (S3 rounds creation + days up to the next midnight UTC).
    clock.t = Math.ceil((Date.now() + DAY) / DAY) * DAY - 1;
    assert.deepEqual(await passAll(), { expired: 0, aborted: 0 });
    assert.equal(await exists(a!, "logs/0"), true);

    clock.t += 1;
    const first = await passAll();
    assert.equal(first.expired, old.length + 1, "the 12 logs and the scratch object, each by one node");
    assert.equal(first.aborted, 0, "the upload's 2 days are not over");
    for (const k of old) assert.equal(await exists(c.nodes[2]!, k), false, k);
    assert.equal(await exists(a!, "tmp/x"), false);
    assert.equal(await exists(a!, "tmp/y"), true, "the tag filter keeps the precious one");
    assert.equal(await exists(a!, "keep/forever"), true);
    // A second pass finds nothing left to do: no node deletes twice.
    assert.deepEqual(await passAll(), { expired: 0, aborted: 0 });

    clock.t += 2 * DAY;
    assert.equal((await passAll()).aborted, 1);
    await assert.rejects(a!.blobs.listParts("lc", "big/file", up.uploadId, { maxParts: 10 }), (e) => isBlobError(e, "NoSuchUpload"));
  } finally {
    await c.close();
  }
});

test("lifecycle: an object rewritten after the worker looked survives its delete; a down first replica's keys are handled by the next", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b] = c.nodes;
    await a!.blobs.createBucket("lc", "alice");
    const first = await a!.blobs.putObject({ bucket: "lc", key: "k", body: body("v1"), headers: {}, userMeta: {}, expect: {} });
    // What the worker does after looking at v1: a tombstone just after v1's version.
    await b!.blobs.putObject({ bucket: "lc", key: "k", body: body("v2"), headers: {}, userMeta: {}, expect: {} });
    await a!.node.coordinator.delete("lc", "k", { after: first.version });
    const got = await a!.blobs.getObject("lc", "k");
    let text = "";
    for await (const ch of got.body) text += Buffer.from(ch).toString();
    assert.equal(text, "v2", "the newer write wins over the lifecycle tombstone");

    for (let i = 0; i < 20; i++) await a!.blobs.putObject({ bucket: "lc", key: `e/${i}`, body: body("x"), headers: {}, userMeta: {}, expect: {} });
    await a!.blobs.putBucketConfig("lc", "lifecycle", [{ enabled: true, filter: { prefix: "e/" }, expiration: { date: Date.UTC(2020, 0, 1) } }]);
    c.down.add("node-1");
    const clock = { t: Date.now() };
    const st = await Promise.all(c.nodes.slice(1).map((n) => worker(n, c.down, clock).run()));
    assert.equal(st.reduce((s, x) => s + x.expired, 0), 20, "nodes 2 and 3 cover node 1's keys while it is down");
    c.down.delete("node-1");
  } finally {
    await c.close();
  }
});

test("lifecycle in a versioned bucket: expiry writes a delete marker, noncurrent versions go after their days (the newest kept), lone markers go", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a] = c.nodes;
    const blobs = a!.blobs;
    await blobs.createBucket("lcv", "alice");
    await blobs.putBucketConfig("lcv", "versioning", "Enabled");
    const put = (key: string, s: string) => blobs.putObject({ bucket: "lcv", key, body: body(s), headers: {}, userMeta: {}, expect: {} });
    for (const s of ["v1", "v2", "v3", "v4"]) await put("k", s);
    await put("cur/x", "x");
    await put("gone", "g");
    await blobs.deleteObject("lcv", "gone");
    const versionsOf = async (key: string) => (await blobs.listObjectVersions({ bucket: "lcv", prefix: key, maxKeys: 1000 })).versions.filter((v) => v.key === key);
    assert.equal((await versionsOf("k")).length, 4);
    await blobs.putBucketConfig("lcv", "lifecycle", [
      { id: "nc", enabled: true, filter: { prefix: "k" }, noncurrentVersionExpiration: { noncurrentDays: 1, newerNoncurrentVersions: 1 } },
      { id: "cur", enabled: true, filter: { prefix: "cur/" }, expiration: { days: 1 } },
      { id: "markers", enabled: true, filter: { prefix: "gone" }, expiration: { expiredObjectDeleteMarker: true }, noncurrentVersionExpiration: { noncurrentDays: 1 } },
    ]);
    const clock = { t: Date.now() };
    const workers = c.nodes.map((n) => worker(n, c.down, clock));
    const passAll = async () => {
      const st = await Promise.all(workers.map((w) => w.run()));
      return { expired: st.reduce((s, x) => s + x.expired, 0), removed: st.reduce((s, x) => s + x.removed, 0) };
    };
    assert.deepEqual(await passAll(), { expired: 0, removed: 0 }, "nothing is due yet");
    clock.t += 3 * 86_400_000;
    const first = await passAll();
    assert.equal(first.expired, 1, "cur/x gets a delete marker");
    const k = await versionsOf("k");
    assert.deepEqual(k.map((v) => v.isLatest), [true, false], "the latest and the one newest noncurrent version stay");
    const cur = await versionsOf("cur/x");
    assert.equal(cur.length, 2);
    assert.equal(cur[0]!.deleteMarker, true, "expiry in a versioned bucket is a delete marker, the data stays as a noncurrent version");
    // "gone": its noncurrent version went, and the marker left alone with it (same pass or the next).
    await passAll();
    assert.deepEqual(await versionsOf("gone"), [], "the lone delete marker is removed");
    assert.equal((await versionsOf("cur/x")).length, 2, "cur/x's marker is not alone: it stays");
  } finally {
    await c.close();
  }
});
