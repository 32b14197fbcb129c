/** Multipart uploads through @aws-sdk/client-s3: ETags as S3 computes them, part rules, idempotent completion, copies, checksums. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { digestOf } from "../blob/index.js";
import { codeOf, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

const MiB = 1024 * 1024;
type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
const rejectsWith = (p: Promise<unknown>, name: string, status: number) =>
  assert.rejects(p, (e: SdkErr) => { assert.equal(e.name, name); assert.equal(e.$metadata.httpStatusCode, status); return true; });

export function multipartSuite(makeStore: MakeStore): void {
  describe("S3 multipart via @aws-sdk/client-s3", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const B = "uploads";
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    test("DeleteBucket with an upload in progress deletes the upload with it; a bucket with an object is still refused", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "rb-force" }));
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "rb-force", Key: "half.bin" }));
      await c.send(new s3.UploadPartCommand({ Bucket: "rb-force", Key: "half.bin", UploadId, PartNumber: 1, Body: randomBytes(1000) }));
      await c.send(new s3.PutObjectCommand({ Bucket: "rb-force", Key: "kept", Body: "x" }));
      await rejectsWith(c.send(new s3.DeleteBucketCommand({ Bucket: "rb-force" })), "BucketNotEmpty", 409);
      const still = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: "rb-force" }));
      assert.equal(still.Uploads?.length, 1, "a refused DeleteBucket changes nothing");
      await c.send(new s3.DeleteObjectCommand({ Bucket: "rb-force", Key: "kept" }));
      await c.send(new s3.DeleteBucketCommand({ Bucket: "rb-force" }));
      await rejectsWith(c.send(new s3.HeadBucketCommand({ Bucket: "rb-force" })), "NotFound", 404);
      await c.send(new s3.CreateBucketCommand({ Bucket: "rb-force" }));
      const lu = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: "rb-force" }));
      assert.equal(lu.Uploads?.length ?? 0, 0, "the re-created bucket has no upload left over");
      await rejectsWith(c.send(new s3.UploadPartCommand({ Bucket: "rb-force", Key: "half.bin", UploadId, PartNumber: 2, Body: "y" })), "NoSuchUpload", 404);
      await c.send(new s3.DeleteBucketCommand({ Bucket: "rb-force" }));
    });

    test("create, upload parts, list, complete → '<md5 of md5s>-N'; completing again returns the same; GET by partNumber", async () => {
      const p1 = randomBytes(5 * MiB), p2 = randomBytes(5 * MiB + 17), p3 = randomBytes(1000);
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "big.bin", ContentType: "application/x-big", Metadata: { who: "me" } }));
      assert.ok(UploadId);
      const etags: string[] = [];
      for (const [i, p] of [p1, p2, p3].entries()) {
        const r: s3.UploadPartCommandOutput = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: "big.bin", UploadId, PartNumber: i + 1, Body: p }));
        assert.equal(r.ETag, `"${createHash("md5").update(p).digest("hex")}"`);
        etags.push(r.ETag!);
      }
      const lp = await c.send(new s3.ListPartsCommand({ Bucket: B, Key: "big.bin", UploadId, MaxParts: 2 }));
      assert.deepEqual(lp.Parts!.map((p) => [p.PartNumber, p.Size]), [[1, p1.length], [2, p2.length]]);
      assert.equal(lp.IsTruncated, true);
      const lp2 = await c.send(new s3.ListPartsCommand({ Bucket: B, Key: "big.bin", UploadId, PartNumberMarker: lp.NextPartNumberMarker }));
      assert.deepEqual(lp2.Parts!.map((p) => p.PartNumber), [3]);
      const lu = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: B }));
      assert.deepEqual(lu.Uploads!.map((u) => [u.Key, u.UploadId]), [["big.bin", UploadId]]);
      const parts = etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 }));
      const done = await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "big.bin", UploadId, MultipartUpload: { Parts: parts } }));
      const md5s = Buffer.concat([p1, p2, p3].map((p) => createHash("md5").update(p).digest()));
      const want = `"${createHash("md5").update(md5s).digest("hex")}-3"`;
      assert.equal(done.ETag, want);
      const again = await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "big.bin", UploadId, MultipartUpload: { Parts: parts } }));
      assert.equal(again.ETag, want, "a retried completion answers the same");
      const h = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "big.bin" }));
      assert.equal(h.ETag, want);
      assert.equal(h.ContentLength, p1.length + p2.length + p3.length);
      assert.equal(h.ContentType, "application/x-big");
      assert.deepEqual(h.Metadata, { who: "me" });
      const g2 = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big.bin", PartNumber: 2 }));
      assert.equal(g2.$metadata.httpStatusCode, 206);
      assert.equal(g2.PartsCount, 3);
      assert.equal(g2.ContentRange, `bytes ${p1.length}-${p1.length + p2.length - 1}/${h.ContentLength}`);
      assert.ok(Buffer.from(await g2.Body!.transformToByteArray()).equals(p2));
      const all = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big.bin" }));
      const whole = Buffer.concat([p1, p2, p3]);
      assert.ok(Buffer.from(await all.Body!.transformToByteArray()).equals(whole));
      assert.equal((await c.send(new s3.ListMultipartUploadsCommand({ Bucket: B }))).Uploads, undefined);
      // Ranges that cross part boundaries (one, then both), HEAD of a part, and the listing's size.
      for (const [s, e] of [[p1.length - 5, p1.length + 4], [100, whole.length - 2]] as const) {
        const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big.bin", Range: `bytes=${s}-${e}` }));
        assert.equal(r.ContentRange, `bytes ${s}-${e}/${whole.length}`);
        assert.ok(Buffer.from(await r.Body!.transformToByteArray()).equals(whole.subarray(s, e + 1)), `bytes ${s}-${e}`);
      }
      const hp = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "big.bin", PartNumber: 3 }));
      assert.equal(hp.PartsCount, 3);
      assert.equal(hp.ContentLength, p3.length);
      const listed = await c.send(new s3.ListObjectsV2Command({ Bucket: B, Prefix: "big.bin" }));
      assert.deepEqual(listed.Contents?.map((o) => o.Size), [whole.length]);
    });

    test("EntityTooSmall, InvalidPartOrder, InvalidPart, NoSuchUpload, bad part numbers, MalformedXML", async () => {
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "small" }));
      const a = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: "small", UploadId, PartNumber: 1, Body: "aaa" }));
      const b = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: "small", UploadId, PartNumber: 2, Body: "bbb" }));
      const complete = (Parts: s3.CompletedPart[]) => c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "small", UploadId, MultipartUpload: { Parts } }));
      await rejectsWith(complete([{ PartNumber: 1, ETag: a.ETag }, { PartNumber: 2, ETag: b.ETag }]), "EntityTooSmall", 400);
      await rejectsWith(complete([{ PartNumber: 2, ETag: b.ETag }, { PartNumber: 1, ETag: a.ETag }]), "InvalidPartOrder", 400);
      await rejectsWith(complete([{ PartNumber: 1, ETag: '"0123456789abcdef0123456789abcdef"' }]), "InvalidPart", 400);
      await rejectsWith(complete([{ PartNumber: 3, ETag: a.ETag }]), "InvalidPart", 400);
      await rejectsWith(c.send(new s3.UploadPartCommand({ Bucket: B, Key: "small", UploadId, PartNumber: 10001, Body: "x" })), "InvalidArgument", 400);
      await rejectsWith(c.send(new s3.UploadPartCommand({ Bucket: B, Key: "small", UploadId: "nope", PartNumber: 1, Body: "x" })), "NoSuchUpload", 404);
      const bad = await raw(f, { method: "POST", path: "/uploads/small", query: { uploadId: UploadId! }, body: "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>" });
      assert.equal(bad.status, 400);
      assert.equal(codeOf(bad.body), "MalformedXML");
      const empty = await raw(f, { method: "POST", path: "/uploads/small", query: { uploadId: UploadId! }, body: "<CompleteMultipartUpload></CompleteMultipartUpload>" });
      assert.equal(codeOf(empty.body), "MalformedXML");
      const one = await complete([{ PartNumber: 2, ETag: b.ETag }]); // a single (last) part may be small
      assert.match(one.ETag!, /-1"$/);
      await rejectsWith(c.send(new s3.AbortMultipartUploadCommand({ Bucket: B, Key: "small", UploadId: "nope" })), "NoSuchUpload", 404);
    });

    test("abort removes the upload; UploadPartCopy copies a byte range", async () => {
      const { UploadId: dead } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "aborted" }));
      await c.send(new s3.AbortMultipartUploadCommand({ Bucket: B, Key: "aborted", UploadId: dead }));
      await rejectsWith(c.send(new s3.ListPartsCommand({ Bucket: B, Key: "aborted", UploadId: dead })), "NoSuchUpload", 404);

      const src = randomBytes(6 * MiB);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "src", Body: src }));
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "copied" }));
      const r1 = await c.send(new s3.UploadPartCopyCommand({ Bucket: B, Key: "copied", UploadId, PartNumber: 1, CopySource: `${B}/src`, CopySourceRange: `bytes=0-${5 * MiB - 1}` }));
      const r2 = await c.send(new s3.UploadPartCopyCommand({ Bucket: B, Key: "copied", UploadId, PartNumber: 2, CopySource: `${B}/src`, CopySourceRange: `bytes=${5 * MiB}-${6 * MiB - 1}` }));
      assert.equal(r1.CopyPartResult?.ETag, `"${createHash("md5").update(src.subarray(0, 5 * MiB)).digest("hex")}"`);
      await rejectsWith(c.send(new s3.UploadPartCopyCommand({ Bucket: B, Key: "copied", UploadId, PartNumber: 3, CopySource: `${B}/src`, CopySourceRange: `bytes=${7 * MiB}-${8 * MiB}` })), "InvalidRange", 416);
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "copied", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: r1.CopyPartResult!.ETag }, { PartNumber: 2, ETag: r2.CopyPartResult!.ETag }] } }));
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "copied" }));
      assert.ok(Buffer.from(await g.Body!.transformToByteArray()).equals(src));
    });

    test("a CRC32 multipart upload: part checksums verified, composite checksum '<crc of crcs>-N' on completion", async () => {
      const p1 = randomBytes(5 * MiB), p2 = randomBytes(300);
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "crc", ChecksumAlgorithm: "CRC32" }));
      const parts: s3.CompletedPart[] = [];
      for (const [i, p] of [p1, p2].entries()) {
        const r: s3.UploadPartCommandOutput = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: "crc", UploadId, PartNumber: i + 1, Body: p, ChecksumAlgorithm: "CRC32" }));
        assert.equal(r.ChecksumCRC32, digestOf("crc32", p));
        parts.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumCRC32: r.ChecksumCRC32 });
      }
      const done = await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "crc", UploadId, MultipartUpload: { Parts: parts } }));
      const composite = digestOf("crc32", Buffer.concat([p1, p2].map((p) => Buffer.from(digestOf("crc32", p), "base64"))));
      assert.equal(done.ChecksumCRC32, `${composite}-2`);
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "crc", ChecksumMode: "ENABLED" }));
      assert.ok(Buffer.from(await g.Body!.transformToByteArray()).equals(Buffer.concat([p1, p2])));
    });

    test("ListMultipartUploads pages by key-marker / upload-id-marker and rolls up by delimiter", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "up-list" }));
      const ids: string[] = [];
      for (const k of ["a/1", "a/1", "b", "c/x"]) ids.push((await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "up-list", Key: k }))).UploadId!);
      const seen: [string, string][] = [];
      let km: string | undefined, um: string | undefined;
      for (let page = 0; ; page++) {
        assert.ok(page < 10, `paging does not end: ${JSON.stringify(seen)}`);
        const r = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: "up-list", MaxUploads: 1, KeyMarker: km, UploadIdMarker: um }));
        seen.push(...(r.Uploads ?? []).map((u) => [u.Key!, u.UploadId!] as [string, string]));
        if (!r.IsTruncated) break;
        km = r.NextKeyMarker;
        um = r.NextUploadIdMarker;
      }
      assert.equal(seen.length, 4);
      assert.deepEqual(seen.map((s) => s[0]), ["a/1", "a/1", "b", "c/x"]);
      assert.deepEqual(new Set(seen.map((s) => s[1])), new Set(ids));
      const d = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: "up-list", Delimiter: "/" }));
      assert.deepEqual(d.CommonPrefixes!.map((p) => p.Prefix), ["a/", "c/"]);
      assert.deepEqual(d.Uploads!.map((u) => u.Key), ["b"]);
    });
  });
}
