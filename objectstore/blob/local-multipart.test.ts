import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chunks, dataFiles, fixture, isErr, readAll } from "./testutil.js";
import { MIN_PART_SIZE } from "./types.js";

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

test("multipart: upload, replace a part, list, complete (idempotent), ranged and per-part reads", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const up = await s.createMultipartUpload("b", "big", { contentType: "video/mp4" }, { a: "1" }, "sha256");
    const p1 = randomBytes(MIN_PART_SIZE), p2 = randomBytes(MIN_PART_SIZE + 1), p3 = Buffer.from("tail");
    await s.uploadPart("b", "big", up.uploadId, 2, chunks(randomBytes(100)), {}); // replaced below
    const i2 = await s.uploadPart("b", "big", up.uploadId, 2, chunks(p2), {});
    const i1 = await s.uploadPart("b", "big", up.uploadId, 1, chunks(p1), { size: p1.length });
    const i3 = await s.uploadPart("b", "big", up.uploadId, 3, chunks(p3), {});
    await s.uploadPart("b", "big", up.uploadId, 7, chunks(Buffer.from("never used")), {});
    assert.equal(i1.etag, md5(p1));
    assert.equal(i2.etag, md5(p2));
    assert.equal(i1.checksums?.sha256, createHash("sha256").update(p1).digest("base64"));

    const l1 = await s.listParts("b", "big", up.uploadId, { maxParts: 2 });
    assert.deepEqual(l1.parts.map((p) => p.partNumber), [1, 2]);
    assert.equal(l1.isTruncated, true);
    assert.equal(l1.upload.headers.contentType, "video/mp4");
    const l2 = await s.listParts("b", "big", up.uploadId, { maxParts: 2, partNumberMarker: l1.nextPartNumberMarker });
    assert.deepEqual(l2.parts.map((p) => p.partNumber), [3, 7]);
    assert.equal(l2.isTruncated, false);
    assert.equal((await dataFiles(f)).length, 4);

    const list = [{ partNumber: 1, etag: `"${i1.etag}"` }, { partNumber: 2, etag: i2.etag }, { partNumber: 3, etag: i3.etag }];
    await assert.rejects(s.completeMultipartUpload("b", "big", up.uploadId, [list[1]!, list[0]!]), isErr("invalid_argument", "InvalidPartOrder"));
    await assert.rejects(s.completeMultipartUpload("b", "big", up.uploadId, [list[0]!, { partNumber: 2, etag: md5(Buffer.from("no")) }]), isErr("invalid_argument", "InvalidPart"));
    await assert.rejects(s.completeMultipartUpload("b", "big", up.uploadId, [list[0]!, { partNumber: 5, etag: i2.etag }]), isErr("invalid_argument", "InvalidPart"));
    await assert.rejects(s.completeMultipartUpload("b", "big", up.uploadId, [list[2]!, { partNumber: 7, etag: md5(Buffer.from("never used")) }]), isErr("invalid_argument", "EntityTooSmall"));

    const m = await s.completeMultipartUpload("b", "big", up.uploadId, list);
    const whole = Buffer.concat([p1, p2, p3]);
    assert.equal(m.size, whole.length);
    assert.match(m.etag, /^[0-9a-f]{32}-3$/);
    assert.match(m.checksums.sha256 ?? "", /-3$/);
    assert.deepEqual(m.userMeta, { a: "1" });
    assert.equal(m.contentType, "video/mp4");
    assert.deepEqual(m.parts?.map((p) => p.size), [p1.length, p2.length, p3.length]);
    // The unused part 7 and the replaced part 2 are gone; the three chosen files remain.
    assert.equal((await dataFiles(f)).length, 3);

    const again = await s.completeMultipartUpload("b", "big", up.uploadId, list);
    assert.deepEqual(again, m);
    await assert.rejects(s.completeMultipartUpload("b", "big", up.uploadId, list.slice(0, 2)), isErr("not_found", "NoSuchUpload"));
    await assert.rejects(s.uploadPart("b", "big", up.uploadId, 4, chunks(p3), {}), isErr("not_found", "NoSuchUpload"));

    assert.ok((await readAll((await s.getObject("b", "big")).body)).equals(whole));
    const span = await s.getObject("b", "big", { range: { start: MIN_PART_SIZE - 10, end: MIN_PART_SIZE * 2 + 2 } });
    assert.ok((await readAll(span.body)).equals(whole.subarray(MIN_PART_SIZE - 10, MIN_PART_SIZE * 2 + 3)));
    const part2 = await s.getObject("b", "big", { partNumber: 2 });
    assert.deepEqual(part2.range, { start: MIN_PART_SIZE, end: MIN_PART_SIZE * 2 });
    assert.ok((await readAll(part2.body)).equals(p2));
    await assert.rejects(s.getObject("b", "big", { partNumber: 9 }), isErr("invalid_argument", "InvalidPartNumber"));

    await f.reopen();
    assert.ok((await readAll((await f.blobs.getObject("b", "big")).body)).equals(whole));
    await f.blobs.deleteObject("b", "big");
    assert.deepEqual(await dataFiles(f), []);
  } finally {
    await f.dispose();
  }
});

test("multipart: abort removes the parts; unknown uploads are NoSuchUpload", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const up = await s.createMultipartUpload("b", "k", {}, {});
    await s.uploadPart("b", "k", up.uploadId, 1, chunks(randomBytes(1000)), {});
    await s.uploadPart("b", "k", up.uploadId, 2, chunks(randomBytes(1000)), {});
    await assert.rejects(s.uploadPart("b", "k", up.uploadId, 0, chunks(Buffer.from("x")), {}), isErr("invalid_argument"));
    await assert.rejects(s.uploadPart("b", "other-key", up.uploadId, 1, chunks(Buffer.from("x")), {}), isErr("not_found", "NoSuchUpload"));
    await s.abortMultipartUpload("b", "k", up.uploadId);
    assert.deepEqual(await dataFiles(f), []);
    await assert.rejects(s.abortMultipartUpload("b", "k", up.uploadId), isErr("not_found", "NoSuchUpload"));
    await assert.rejects(s.listParts("b", "k", up.uploadId, { maxParts: 10 }), isErr("not_found", "NoSuchUpload"));
    await assert.rejects(s.completeMultipartUpload("b", "k", "nope", [{ partNumber: 1, etag: "x" }]), isErr("not_found", "NoSuchUpload"));
    await assert.rejects(s.createMultipartUpload("missing", "k", {}, {}), isErr("not_found", "NoSuchBucket"));
    assert.equal((await s.listMultipartUploads({ bucket: "b", maxUploads: 10 })).uploads.length, 0);
  } finally {
    await f.dispose();
  }
});

test("ListMultipartUploads: key then initiation order, prefix, delimiter and markers", async () => {
  const f = await fixture();
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const ids: Record<string, string[]> = {};
    for (const k of ["a", "a", "dir/x", "dir/y", "b", "a"]) (ids[k] ??= []).push((await s.createMultipartUpload("b", k, {}, {})).uploadId);
    const all = await s.listMultipartUploads({ bucket: "b", maxUploads: 100 });
    assert.deepEqual(all.uploads.map((u) => [u.key, u.uploadId]), [
      ...ids.a!.map((id) => ["a", id]), ["b", ids.b![0]], ["dir/x", ids["dir/x"]![0]], ["dir/y", ids["dir/y"]![0]],
    ]);
    const p1 = await s.listMultipartUploads({ bucket: "b", maxUploads: 2 });
    assert.equal(p1.isTruncated, true);
    assert.equal(p1.nextKeyMarker, "a");
    assert.equal(p1.nextUploadIdMarker, ids.a![1]);
    const p2 = await s.listMultipartUploads({ bucket: "b", maxUploads: 2, keyMarker: p1.nextKeyMarker, uploadIdMarker: p1.nextUploadIdMarker });
    assert.deepEqual(p2.uploads.map((u) => u.uploadId), [ids.a![2], ids.b![0]]);
    const afterA = await s.listMultipartUploads({ bucket: "b", maxUploads: 100, keyMarker: "a" });
    assert.deepEqual(afterA.uploads.map((u) => u.key), ["b", "dir/x", "dir/y"]);
    const delim = await s.listMultipartUploads({ bucket: "b", maxUploads: 100, delimiter: "/" });
    assert.deepEqual(delim.commonPrefixes, ["dir/"]);
    assert.deepEqual(delim.uploads.map((u) => u.key), ["a", "a", "a", "b"]);
    const pre = await s.listMultipartUploads({ bucket: "b", maxUploads: 100, prefix: "dir/" });
    assert.deepEqual(pre.uploads.map((u) => u.key), ["dir/x", "dir/y"]);
    const d2 = await s.listMultipartUploads({ bucket: "b", maxUploads: 4, delimiter: "/" });
    assert.equal(d2.isTruncated, true);
    const d3 = await s.listMultipartUploads({ bucket: "b", maxUploads: 4, delimiter: "/", keyMarker: d2.nextKeyMarker, uploadIdMarker: d2.nextUploadIdMarker });
    assert.deepEqual(d3.commonPrefixes, ["dir/"]);
    assert.equal(d3.uploads.length, 0);
  } finally {
    await f.dispose();
  }
});
