/**
 * updateObjectMeta on a 3-node cluster over real gRPC: tags and ACL changed
 * through one node are read through the others without touching the object;
 * an overwrite (even a concurrent one) never inherits or loses to them; a
 * node that was down while tagging converges once it is back; side records
 * never show in listings and go with their object and bucket.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isBlobError, type BlobStore } from "../blob/index.js";
import { waitFor } from "./fixture.js";
import { startReplicatedCluster } from "./replicated-fixture.js";
import { SIDE_PREFIX, sideKey } from "./side-meta.js";

const body = (s: string) => (async function* () { yield Buffer.from(s); })();
const put = (s: BlobStore, bucket: string, key: string, text: string, tags?: Record<string, string>) =>
  s.putObject({ bucket, key, body: body(text), headers: {}, userMeta: {}, expect: {}, ...(tags ? { extras: { tags } } : {}) });
async function read(s: BlobStore, bucket: string, key: string) {
  const got = await s.getObject(bucket, key);
  const chunks: Buffer[] = [];
  for await (const c of got.body) chunks.push(Buffer.from(c));
  return { meta: got.meta, text: Buffer.concat(chunks).toString() };
}

test("updateObjectMeta: set through one node, read through the others; object untouched; listings and deletes", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b, d] = c.nodes.map((n): BlobStore => n.blobs) as [BlobStore, BlobStore, BlobStore];
    await a.createBucket("tags", "alice");
    const first = await put(a, "tags", "k", "hello", { from: "put" });
    await put(a, "tags", "untagged", "x");
    // Tags given at PUT time live in the object's own record: the bucket does not start reading side records,
    // and a HEAD costs the one quorum read it always did.
    const flag = (n: typeof c.nodes[0]) => n.node.table("buckets").table.get("tags\u0000sideMeta");
    assert.equal(flag(c.nodes[0]!), undefined);
    const coord = c.nodes[0]!.node.coordinator;
    const head = coord.head.bind(coord);
    let heads = 0;
    coord.head = (...args) => { heads++; return head(...args); };
    assert.deepEqual((await a.headObject("tags", "k")).tags, { from: "put" });
    assert.equal(heads, 1, "no side-record read in a bucket that never had one");
    const done = await a.updateObjectMeta("tags", "k", { tags: { team: "infra", env: "prod" } });
    // A majority has the flag when updateObjectMeta returns; the push to the last node may still be on its way.
    await waitFor("every node has the bucket's flag", async () => c.nodes.every((n) => flag(n) === "true"));
    heads = 0;
    await a.headObject("tags", "k");
    assert.equal(heads, 2, "once flagged, HEAD reads the side record too");
    coord.head = head;
    assert.deepEqual(done.tags, { team: "infra", env: "prod" });
    for (const s of [a, b, d]) {
      const h = await s.headObject("tags", "k");
      assert.deepEqual(h.tags, { team: "infra", env: "prod" });
      assert.equal(h.etag, first.etag);
      assert.equal(h.lastModified, first.lastModified);
      assert.equal(h.version, first.version, "the object's record is not rewritten");
      const g = await read(s, "tags", "k");
      assert.deepEqual(g.meta.tags, { team: "infra", env: "prod" });
      assert.equal(g.text, "hello");
      assert.equal((await s.headObject("tags", "untagged")).tags, undefined, "another object keeps its own (no) tags");
    }
    // The ACL alone: the tags stay; then tags {} removes them and the ACL stays.
    await b.updateObjectMeta("tags", "k", { acl: "public-read" });
    assert.deepEqual(await d.headObject("tags", "k").then((m) => [m.tags, m.acl]), [{ team: "infra", env: "prod" }, "public-read"]);
    await d.updateObjectMeta("tags", "k", { tags: {} });
    assert.deepEqual(await a.headObject("tags", "k").then((m) => [m.tags, m.acl]), [undefined, "public-read"]);
    await a.updateObjectMeta("tags", "k", { acl: "private", tags: { v: "2" } });
    assert.deepEqual(await b.headObject("tags", "k").then((m) => [m.tags, m.acl]), [{ v: "2" }, undefined]);
    // versionId: only the current object ("null") for now.
    await a.updateObjectMeta("tags", "k", { tags: { v: "3" } }, { versionId: "null" });
    await assert.rejects(a.updateObjectMeta("tags", "k", { tags: {} }, { versionId: "abc" }), (e) => isBlobError(e, "NoSuchKey"));
    await assert.rejects(a.updateObjectMeta("tags", "missing", { tags: { a: "b" } }), (e) => isBlobError(e, "NoSuchKey"));
    await assert.rejects(a.updateObjectMeta("nope-bucket", "k", { tags: { a: "b" } }), (e) => isBlobError(e, "NoSuchBucket"));
    await assert.rejects(a.updateObjectMeta("tags", SIDE_PREFIX + "k\u0000", { tags: { a: "b" } }), (e) => isBlobError(e, "InvalidArgument"));
    // Side records are internal: not objects, not listed, not readable as keys.
    assert.deepEqual((await b.listObjects({ bucket: "tags", maxKeys: 1000 })).objects.map((o) => o.key), ["k", "untagged"]);
    assert.equal((await b.listMultipartUploads({ bucket: "tags", maxUploads: 1000 })).uploads.length, 0);
    await assert.rejects(b.headObject("tags", sideKey("k")), (e) => isBlobError(e, "NoSuchKey"));
    // DeleteObject takes the side record with it: a new object under the key starts clean.
    await b.deleteObject("tags", "k");
    await c.nodes[0]!.node.coordinator.settled();
    for (const n of c.nodes) assert.equal((await n.store.head("tags", sideKey("k")))?.tombstone, true, `${n.id}: side record tombstoned`);
    await put(d, "tags", "k", "again");
    assert.equal((await a.headObject("tags", "k")).tags, undefined);
    // DeleteBucket: refused while objects remain (side records do not count), then takes every side record.
    await a.updateObjectMeta("tags", "k", { tags: { last: "1" } });
    await a.deleteObject("tags", "untagged");
    await assert.rejects(a.deleteBucket("tags"), (e) => isBlobError(e, "BucketNotEmpty"));
    // An orphan (say its DeleteObject's best-effort tombstone failed) goes with the bucket too.
    await c.nodes[0]!.node.coordinator.put({ bucket: "tags", key: sideKey("orphan"), meta: JSON.stringify({ forVersion: "x" }) }, body(""), { size: 0 });
    await d.deleteObject("tags", "k");
    await a.deleteBucket("tags");
    await c.nodes[0]!.node.coordinator.settled();
    for (const n of c.nodes) {
      const live = n.store.records().filter((r) => r.bucket === "tags" && !r.tombstone);
      assert.deepEqual(live.map((r) => r.key), [], `${n.id}: nothing of the bucket left`);
    }
    await a.createBucket("tags", "alice");
    assert.equal(await a.getBucketConfig("tags", "sideMeta"), undefined, "a re-created bucket starts without the flag");
  } finally {
    await c.close();
  }
});

test("updateObjectMeta never overwrites or resurrects a concurrent PUT, and old tags never stick to a new object", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b, d] = c.nodes.map((n): BlobStore => n.blobs) as [BlobStore, BlobStore, BlobStore];
    await a.createBucket("race", "alice");
    await put(a, "race", "k", "v0");
    await a.updateObjectMeta("race", "k", { tags: { old: "yes" } });
    // A plain overwrite: the old tags are gone, the new object's own tags stand.
    await put(b, "race", "k", "v1", { own: "1" });
    for (const s of [a, b, d]) assert.deepEqual((await s.headObject("race", "k")).tags, { own: "1" });
    for (let i = 2; i < 12; i++) {
      const [tagged, written] = await Promise.all([
        a.updateObjectMeta("race", "k", { tags: { round: String(i) } }),
        put(d, "race", "k", `v${i}`),
      ]);
      const g = await read(b, "race", "k");
      assert.equal(g.text, `v${i}`, "the concurrent PUT's body is what GET returns");
      assert.equal(g.meta.version, written.version, "the PUT's record is the current one");
      if (tagged.version === written.version) assert.deepEqual(g.meta.tags, { round: String(i) }, "tagged after the PUT: the new object has the tags");
      else assert.equal(g.meta.tags, undefined, "tagged before the PUT: the new object does not inherit them");
    }
    // Deleted while being tagged: never resurrected.
    await Promise.all([a.updateObjectMeta("race", "k", { tags: { z: "1" } }).catch(() => undefined), b.deleteObject("race", "k")]);
    await assert.rejects(d.headObject("race", "k"), (e) => isBlobError(e, "NoSuchKey"));
  } finally {
    await c.close();
  }
});

test("updateObjectMeta with a node down: hinted, and the node converges once it is back", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [n1, n2, n3] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
    await n1.blobs.createBucket("down", "alice");
    const obj = await put(n1.blobs, "down", "k", "body");
    c.down.add(n3.id);
    await n1.blobs.updateObjectMeta("down", "k", { tags: { while: "down" } });
    assert.deepEqual((await n2.blobs.headObject("down", "k")).tags, { while: "down" });
    await n1.node.coordinator.settled();
    assert.equal(await n3.store.head("down", sideKey("k")), undefined, "node-3 missed the side record");
    assert.equal(n3.node.table("buckets").table.get("down\u0000sideMeta"), undefined, "and the bucket's flag");
    c.down.delete(n3.id);
    // Back: hints go out, the bucket table syncs (both run on timers in production).
    await waitFor("hint delivered", async () => {
      await n1.node.deliverHints(); await n2.node.deliverHints();
      return (await n3.store.head("down", sideKey("k")))?.tombstone === false;
    });
    await n3.node.syncWith(n1.id);
    // node-3 now answers alone for its part: with node-1 down it reads from itself and node-2.
    c.down.add(n1.id);
    const h = await n3.blobs.headObject("down", "k");
    assert.deepEqual(h.tags, { while: "down" });
    assert.equal(h.etag, obj.etag);
    assert.equal(h.version, obj.version);
  } finally {
    await c.close();
  }
});
