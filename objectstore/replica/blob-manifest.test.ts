/**
 * Multipart objects as manifests over their parts, on a 3-node in-process
 * cluster: Complete copies nothing, every node reads the object whole, by
 * ranges across part boundaries and by part number, a missing part fails the
 * read, and the part sweeper collects exactly the parts no object uses.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { isBlobError, MIN_PART_SIZE } from "../blob/index.js";
import { encodeManifest, partKey, slicesOf, type Manifest } from "./blob-manifest.js";
import { SMALL_BODY_MAX } from "./coordinator.js";
import { PartSweeper } from "./part-sweeper.js";
import { once } from "./replica-store.js";
import { startReplicatedCluster, type ReplicatedTestCluster, type ReplicatedTestNode } from "./replicated-fixture.js";

const B = "mpu";
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

test("slicesOf maps a byte range onto the parts it crosses", () => {
  const m = { uploadId: "u", parts: [10, 0, 5, 7].map((size, i) => ({ partNumber: i + 1, size, etag: "", version: "v" })) };
  const at = (r?: { start: number; end: number }) => slicesOf(m, r).map((s) => [s.ref.partNumber, s.range ? `${s.range.start}-${s.range.end}` : "all"]);
  assert.deepEqual(at(), [[1, "all"], [3, "all"], [4, "all"]], "whole: every non-empty part");
  assert.deepEqual(at({ start: 8, end: 12 }), [[1, "8-9"], [3, "0-2"]]);
  assert.deepEqual(at({ start: 10, end: 14 }), [[3, "all"]]);
  assert.deepEqual(at({ start: 0, end: 21 }), [[1, "all"], [3, "all"], [4, "all"]]);
  assert.deepEqual(at({ start: 21, end: 21 }), [[4, "6-6"]]);
  assert.deepEqual(at({ start: 5, end: 16 }), [[1, "5-9"], [3, "all"], [4, "0-1"]]);
});

describe("multipart objects reference their parts (3 nodes)", () => {
  let c: ReplicatedTestCluster;
  let n1: ReplicatedTestNode;
  const data = [randomBytes(MIN_PART_SIZE), randomBytes(MIN_PART_SIZE + 17), randomBytes(1000)];
  const whole = Buffer.concat(data);
  let uploadId = "";

  const sweepers = () => c.nodes.map((n) => new PartSweeper({
    self: n.id, store: n.store, coordinator: n.node.coordinator, ring: () => n.node.ring(), isUp: (id) => !c.down.has(id),
    buckets: async () => (await n.node.table("buckets").list()).map((e) => e.key), graceMs: 0,
  }));
  const live = async (key: string) => {
    const { record } = await n1.node.coordinator.head(B, key);
    return record !== undefined && !record.tombstone;
  };
  async function upload(key: string, parts: Buffer[]): Promise<{ id: string; list: { partNumber: number; etag: string }[] }> {
    const u = await n1.blobs.createMultipartUpload(B, key, {}, {});
    const list = [];
    for (const [i, p] of parts.entries()) {
      // Through different nodes: the parts land where the ring puts them whoever receives them.
      const info = await c.nodes[i % 3]!.blobs.uploadPart(B, key, u.uploadId, i + 1, once(p), { size: p.length });
      list.push({ partNumber: i + 1, etag: info.etag });
    }
    return { id: u.uploadId, list };
  }

  before(async () => {
    c = await startReplicatedCluster(3);
    n1 = c.nodes[0]!;
    await n1.blobs.createBucket(B, "me");
    const extra = randomBytes(100);
    const u = await upload("obj", [...data, extra]);
    uploadId = u.id;
    const done = await c.nodes[1]!.blobs.completeMultipartUpload(B, "obj", u.id, u.list.slice(0, 3));
    assert.equal(done.size, whole.length);
    assert.equal(done.etag, `${md5(Buffer.concat(data.map((d) => Buffer.from(md5(d), "hex"))))}-3`);
  });
  after(() => c.close());

  test("Complete copies nothing: the object's replicas hold a small manifest, the chosen parts stay, the unchosen one is gone", async () => {
    for (const n of c.nodes) {
      const rec = await n.store.head(B, "obj");
      if (!rec) continue;
      assert.ok(rec.size < 4096, `the object's record on ${n.id} holds ${rec.size} bytes, not the object's ${whole.length}`);
    }
    for (const p of [1, 2, 3]) assert.equal(await live(partKey(uploadId, p)), true, `part ${p} stays`);
    assert.equal(await live(partKey(uploadId, 4)), false, "a part not chosen is deleted at Complete");
    const u = await n1.blobs.listMultipartUploads({ bucket: B, maxUploads: 10 });
    assert.equal(u.uploads.length, 0, "the completed upload is no longer listed");
  });

  test("a retried Complete returns the same object", async () => {
    const head = await n1.blobs.headObject(B, "obj");
    const again = await n1.blobs.completeMultipartUpload(B, "obj", uploadId, [1, 2, 3].map((n) => ({ partNumber: n, etag: md5(data[n - 1]!) })));
    assert.equal(again.version, head.version);
    assert.equal(again.etag, head.etag);
  });

  test("every node: HEAD and List give the object's size; GET whole, ranges across part boundaries and ?partNumber are byte-exact", async () => {
    const b1 = data[0]!.length, b2 = b1 + data[1]!.length;
    const ranges = [
      { start: b1 - 10, end: b1 + 9 }, { start: 3, end: b2 + 500 }, { start: b2 - 1, end: b2 }, { start: b1, end: b2 - 1 },
      { start: whole.length - 1, end: whole.length - 1 }, { start: 17, end: 4000 },
    ];
    for (const n of c.nodes) {
      const h = await n.blobs.headObject(B, "obj");
      assert.equal(h.size, whole.length);
      assert.deepEqual(h.parts?.map((p) => p.size), data.map((d) => d.length));
      const l = await n.blobs.listObjects({ bucket: B, maxKeys: 10 });
      assert.deepEqual(l.objects.map((o) => [o.key, o.size, o.parts]), [["obj", whole.length, undefined]], "listing rows carry no part list");
      const g = await n.blobs.getObject(B, "obj");
      assert.equal(g.meta.size, whole.length);
      assert.ok((await readAll(g.body)).equals(whole), `whole object through ${n.id}`);
      for (const r of ranges) {
        const got = await n.blobs.getObject(B, "obj", { range: r });
        assert.ok((await readAll(got.body)).equals(whole.subarray(r.start, r.end + 1)), `${r.start}-${r.end} through ${n.id}`);
      }
      const p2 = await n.blobs.getObject(B, "obj", { partNumber: 2 });
      assert.deepEqual(p2.range, { start: b1, end: b2 - 1 });
      assert.ok((await readAll(p2.body)).equals(data[1]!));
    }
  });

  test("the manifest is stored gzip'd, and one written as plain JSON before still reads", async () => {
    const got = await n1.node.coordinator.get(B, "obj");
    const raw = await readAll(got.body);
    assert.deepEqual([raw[0], raw[1]], [0x1f, 0x8b], "a gzip stream");
    const manifest = JSON.parse(gunzipSync(raw).toString("utf8")) as Manifest;
    assert.deepEqual(manifest.parts.map((p) => p.partNumber), [1, 2, 3]);
    // The same object as an older agent wrote it: the manifest as plain JSON.
    const plain = Buffer.from(JSON.stringify(manifest));
    await n1.node.coordinator.put({ bucket: B, key: "legacy", meta: got.record.meta }, once(plain), { size: plain.length });
    for (const n of c.nodes) {
      assert.ok((await readAll((await n.blobs.getObject(B, "legacy")).body)).equals(whole), `the plain-JSON manifest reads through ${n.id}`);
      const r = { start: data[0]!.length - 5, end: data[0]!.length + 5 };
      assert.ok((await readAll((await n.blobs.getObject(B, "legacy", { range: r })).body)).equals(whole.subarray(r.start, r.end + 1)));
    }
    await n1.blobs.deleteObject(B, "legacy");
  });

  test("1,000 parts make a manifest small enough to go to replicas in one request and be kept inline (<= 64 KiB)", () => {
    const parts = Array.from({ length: 1000 }, (_, i) => ({
      partNumber: i + 1, size: MIN_PART_SIZE, etag: randomBytes(16).toString("hex"), lastModified: Date.now() + i * 37,
      version: `${(Date.now() + i * 37).toString(16).padStart(12, "0")}.00000000.${randomUUID()}`,
    }));
    const z = encodeManifest({ uploadId: randomBytes(16).toString("hex"), parts });
    assert.ok(z.length <= SMALL_BODY_MAX, `1,000 parts: ${z.length} bytes`);
  });

  test("a part gone from under the object fails the read with Corrupt, never other bytes", async () => {
    const u = await upload("fragile", [randomBytes(MIN_PART_SIZE), randomBytes(10)]);
    await n1.blobs.completeMultipartUpload(B, "fragile", u.id, u.list);
    await n1.node.coordinator.delete(B, partKey(u.id, 2));
    const g = await n1.blobs.getObject(B, "fragile");
    await assert.rejects(readAll(g.body), (e) => isBlobError(e, "Corrupt") && /part 2 .* gone/.test((e as Error).message));
    await assert.rejects(n1.blobs.getObject(B, "fragile", { range: { start: MIN_PART_SIZE, end: MIN_PART_SIZE + 3 } }), (e) => isBlobError(e, "Corrupt"));
    // Replaced by another version (an UploadPart racing Complete): refused as well.
    const rec = await n1.node.coordinator.put({ bucket: B, key: partKey(u.id, 1), meta: JSON.stringify({ objectKey: "fragile" }) }, once(randomBytes(MIN_PART_SIZE)));
    await assert.rejects(n1.blobs.getObject(B, "fragile"), (e) => isBlobError(e, "Corrupt") && (e as Error).message.includes(`replaced by version ${rec.version}`));
    await n1.blobs.deleteObject(B, "fragile");
  });

  test("the sweeper keeps in-progress and referenced parts, collects an overwritten object's parts once, and DeleteBucket drops leftovers", async () => {
    const pending = await upload("pending", [randomBytes(100)]);
    const s = sweepers();
    const sweep = async () => (await Promise.all(s.map((x) => x.sweep()))).reduce((n, st) => n + st.deleted, 0);
    assert.equal(await sweep(), 0, "the deleted 'fragile' object's part is first only seen unused");
    assert.equal(await sweep(), 1, "and collected on the next sweep");
    for (const p of [1, 2, 3]) assert.equal(await live(partKey(uploadId, p)), true, "a live object's parts stay");
    assert.equal(await live(partKey(pending.id, 1)), true, "an upload in progress keeps its parts");

    // Overwritten through another node: the old parts go, each deleted by one node only.
    await c.nodes[2]!.blobs.putObject({ bucket: B, key: "obj", body: once(Buffer.from("small")), headers: {}, userMeta: {}, expect: {} });
    assert.equal(await sweep(), 0, "first seen unused: wait for the grace period");
    assert.equal(await sweep(), 3, "then every unused part is deleted exactly once");
    for (const p of [1, 2, 3]) assert.equal(await live(partKey(uploadId, p)), false);
    assert.equal(await live(partKey(pending.id, 1)), true);

    // Replaced by another Complete of the same key: the first upload's parts go, the second's stay.
    const first = await upload("twice", [randomBytes(MIN_PART_SIZE), randomBytes(7)]);
    await n1.blobs.completeMultipartUpload(B, "twice", first.id, first.list);
    const second = await upload("twice", [randomBytes(9)]);
    await c.nodes[1]!.blobs.completeMultipartUpload(B, "twice", second.id, second.list);
    await sweep();
    assert.equal(await sweep(), 2);
    assert.equal(await live(partKey(first.id, 1)), false);
    assert.equal(await live(partKey(second.id, 1)), true);
    assert.equal((await readAll((await n1.blobs.getObject(B, "twice")).body)).length, 9);
    await n1.blobs.deleteObject(B, "twice");

    // A completed object deleted, then its bucket: the parts go with the bucket, not with a sweeper that no longer visits it.
    await n1.blobs.completeMultipartUpload(B, "pending", pending.id, pending.list);
    await n1.blobs.deleteObject(B, "pending");
    await n1.blobs.deleteObject(B, "obj");
    await n1.blobs.deleteBucket(B);
    assert.equal(await live(partKey(pending.id, 1)), false);
  });
});
