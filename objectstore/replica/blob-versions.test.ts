/**
 * Versions on a 3-node cluster over real gRPC: written through one node and
 * read through another, carried to a node that was down by hints and
 * anti-entropy, deletions that stay deleted, multipart versions whose parts
 * the sweeper keeps, and the pointer after a writer died half-way.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeHlc } from "../../cluster/index.js";
import { isBlobError, type BlobStore } from "../blob/index.js";
import { hlcOfSortId, sortIdOf, versionKey } from "./blob-versions.js";
import { PartSweeper } from "./part-sweeper.js";
import { once } from "./replica-store.js";
import { startReplicatedCluster, type ReplicatedTestCluster } from "./replicated-fixture.js";

const B = "vers";

async function text(s: BlobStore, key: string, versionId?: string): Promise<string> {
  const got = await s.getObject(B, key, versionId !== undefined ? { versionId } : {});
  const chunks: Buffer[] = [];
  for await (const c of got.body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks).toString();
}

const put = async (s: BlobStore, key: string, body: string) =>
  (await s.putObject({ bucket: B, key, body: once(Buffer.from(body)), headers: {}, userMeta: {}, expect: { size: body.length } })).versionId!;

describe("version ids", () => {
  test("sort newest first, also across node ids of different lengths, and decode back", () => {
    const stamps = [[0x18c00000, 0, "a"], [0x18c01, 0, "node-1"], [0x18c01, 1, "node-1"], [0x18c01, 1, "node-10"], [0x18c02, 0, "b"], [0x18c02, 0, "node-2"]]
      .map(([physical, logical, n]) => encodeHlc({ physical: physical as number, logical: logical as number, node: n as string }));
    const sorted = [...stamps].sort();
    const ids = sorted.map(sortIdOf);
    assert.deepEqual([...ids].sort(), [...ids].reverse());
    for (const [i, id] of ids.entries()) assert.equal(hlcOfSortId(id), sorted[i]);
    for (const bad of ["", "null", "zz", "0".repeat(20) + "ff", "not-a-version"]) assert.equal(hlcOfSortId(bad), undefined, bad);
  });
});

describe("versioned objects on a 3-node cluster", () => {
  let c: ReplicatedTestCluster;
  const node = (i: number) => c.nodes[i]!.blobs;

  before(async () => {
    c = await startReplicatedCluster(3);
    await node(0).createBucket(B, "me");
    await node(0).putBucketConfig(B, "versioning", "Enabled");
  });
  after(() => c.close());

  test("versions written through one node read through the others", async () => {
    const v1 = await put(node(0), "k", "one");
    const v2 = await put(node(1), "k", "two");
    assert.notEqual(v1, v2);
    for (const i of [0, 1, 2]) {
      assert.equal(await text(node(i), "k"), "two");
      assert.equal(await text(node(i), "k", v1), "one");
      assert.equal((await node(i).headObject(B, "k")).versionId, v2);
    }
    const l = await node(2).listObjectVersions({ bucket: B, prefix: "k", maxKeys: 10 });
    assert.deepEqual(l.versions.map((v) => [v.versionId, v.isLatest]), [[v2, true], [v1, false]]);
  });

  test("a node down during writes gets its versions and delete markers back (hints, then anti-entropy)", async () => {
    const third = c.nodes[2]!;
    c.down.add(third.id);
    const v1 = await put(node(0), "while-down", "a");
    const v2 = await put(node(1), "while-down", "b");
    const marker = await node(0).deleteObject(B, "while-down");
    assert.equal(marker.deleteMarker, true);
    assert.equal(await third.store.head(B, versionKey("while-down", v1)), undefined);
    c.down.delete(third.id);
    for (const n of c.nodes) await n.node.deliverHints();
    for (const n of c.nodes) await n.node.antiEntropy();
    for (const id of [v1, v2, marker.versionId!]) {
      const r = await third.store.head(B, versionKey("while-down", id));
      assert.ok(r && !r.tombstone, `version ${id} reached the node that was down`);
    }
    const ptr = await third.store.head(B, "while-down");
    assert.match(ptr!.meta, /"deleteMarker":true/);
    // Reads that need node 3 (node 1 down) see the marker too.
    c.down.add(c.nodes[0]!.id);
    try {
      await assert.rejects(node(2).headObject(B, "while-down"), (e) => isBlobError(e, "NoSuchKey"));
      assert.equal(await text(node(2), "while-down", v2), "b");
    } finally {
      c.down.delete(c.nodes[0]!.id);
    }
  });

  test("a version deleted through one node stays deleted everywhere, after anti-entropy too", async () => {
    const v1 = await put(node(0), "gone", "1");
    const v2 = await put(node(0), "gone", "2");
    const r = await node(1).deleteObject(B, "gone", { versionId: v2 });
    assert.deepEqual(r, { versionId: v2 });
    for (const n of c.nodes) await n.node.antiEntropy();
    for (const i of [0, 1, 2]) {
      await assert.rejects(node(i).getObject(B, "gone", { versionId: v2 }), (e) => isBlobError(e, "NoSuchVersion"));
      assert.equal(await text(node(i), "gone"), "1");
    }
    const l = await node(2).listObjectVersions({ bucket: B, prefix: "gone", maxKeys: 10 });
    assert.deepEqual(l.versions.map((v) => [v.versionId, v.isLatest]), [[v1, true]]);
  });

  test("parts of a multipart version stay while a version references them; go once none does", async () => {
    const up = await node(0).createMultipartUpload(B, "mp", {}, {});
    const p = await node(1).uploadPart(B, "mp", up.uploadId, 1, once(Buffer.from("part-one")), { size: 8 });
    const named: string[] = [];
    const done = await node(2).completeMultipartUpload(B, "mp", up.uploadId, [{ partNumber: 1, etag: p.etag }], { onVersionId: (id) => named.push(id) });
    assert.ok(done.versionId);
    assert.deepEqual(named, [done.versionId], "the version id is named (once) before the completion returns, for the S3 layer's early headers");
    await put(node(0), "mp", "plain over it");
    const sweepers = c.nodes.map((n) => new PartSweeper({
      self: n.id, store: n.store, coordinator: n.node.coordinator, ring: () => n.node.ring(), isUp: (id) => !c.down.has(id),
      buckets: async () => [B], graceMs: 0, listBucket: (b, o) => n.node.listBucket(b, o),
    }));
    for (let i = 0; i < 2; i++) for (const s of sweepers) await s.sweep();
    assert.equal(await text(node(1), "mp", done.versionId), "part-one");
    await node(0).deleteObject(B, "mp", { versionId: done.versionId! });
    let deleted = 0;
    for (let i = 0; i < 2; i++) for (const s of sweepers) deleted += (await s.sweep()).deleted;
    assert.equal(deleted, 1);
  });

  test("Suspended: writers racing on one key leave exactly one null version, the one the key reads", async () => {
    await node(0).createBucket("susp", "me");
    await node(0).putBucketConfig("susp", "versioning", "Suspended");
    const putS = (i: number, key: string, body: string) =>
      node(i).putObject({ bucket: "susp", key, body: once(Buffer.from(body)), headers: {}, userMeta: {}, expect: { size: body.length } });
    const keys = Array.from({ length: 6 }, (_, i) => `race-${i}`);
    await Promise.all(keys.flatMap((k) => [putS(0, k, `${k}:a`), putS(1, k, `${k}:b`), putS(2, k, `${k}:c`)]));
    for (const k of keys) {
      const l = await node(2).listObjectVersions({ bucket: "susp", prefix: k, maxKeys: 10 });
      assert.deepEqual(l.versions.map((v) => [v.versionId, v.isLatest]), [["null", true]], k);
      const got = await node(1).getObject("susp", k);
      const chunks: Buffer[] = [];
      for await (const ch of got.body) chunks.push(Buffer.from(ch));
      assert.match(Buffer.concat(chunks).toString(), new RegExp(`^${k}:[abc]$`));
    }
  });

  test("a writer that died between its version and the pointer: reads keep the previous version; the next write re-points", async () => {
    const v1 = await put(node(0), "torn", "before");
    // What a dying writer leaves: a version record that no pointer names.
    const coord = c.nodes[1]!.node.coordinator;
    const orphan = sortIdOf(coord.stamp());
    await coord.put({ bucket: B, key: versionKey("torn", orphan), meta: JSON.stringify({ etag: "x", lastModified: Date.now(), userMeta: {}, checksums: {}, versionId: orphan }) }, once(Buffer.from("orphan")), { size: 6 });
    assert.equal(await text(node(2), "torn"), "before");
    let l = await node(2).listObjectVersions({ bucket: B, prefix: "torn", maxKeys: 10 });
    assert.deepEqual(l.versions.map((v) => [v.versionId, v.isLatest]), [[orphan, false], [v1, true]]);
    const v3 = await put(node(2), "torn", "after");
    assert.equal(await text(node(0), "torn"), "after");
    l = await node(0).listObjectVersions({ bucket: B, prefix: "torn", maxKeys: 10 });
    assert.deepEqual(l.versions.map((v) => [v.versionId, v.isLatest]), [[v3, true], [orphan, false], [v1, false]]);
    // A pointer whose version record went (a deleter that died before re-pointing): the next read re-points it.
    await coord.delete(B, versionKey("torn", v3));
    assert.equal(await text(node(1), "torn"), "orphan");
    assert.equal((await node(1).headObject(B, "torn")).versionId, orphan);
  });

  test("DELETE ?versionId= of the latest version racing a PUT: the PUT's version ends up the latest (also when the delete left no version)", async () => {
    for (const [key, older] of [["race-del-repoint", true], ["race-del-last", false]] as const) {
      if (older) await put(node(0), key, "v0");
      const v1 = await put(node(0), key, "v1");
      // A PUT through node 0 stamps its version, then its body is held back; meanwhile node 1 deletes v1 by id,
      // so its re-point (or the pointer's removal) is stamped after the PUT's pointer.
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const body = (async function* () { await gate; yield Buffer.from("v2"); })();
      const putting = node(0).putObject({ bucket: B, key, body, headers: {}, userMeta: {}, expect: { size: 2 } });
      await new Promise((r) => setTimeout(r, 30));
      await node(1).deleteObject(B, key, { versionId: v1 });
      await new Promise((r) => setTimeout(r, 5));
      release();
      const v2 = (await putting).versionId!;
      for (const i of [0, 1, 2]) {
        assert.equal(await text(node(i), key), "v2", `${key}: node ${i} reads the PUT's version`);
        assert.equal((await node(i).headObject(B, key)).versionId, v2);
      }
      const l = await node(2).listObjectVersions({ bucket: B, prefix: key, maxKeys: 10 });
      assert.deepEqual(l.versions.map((v) => v.isLatest), older ? [true, false] : [true], key);
      assert.equal(l.versions[0]!.versionId, v2);
    }
  });
});
