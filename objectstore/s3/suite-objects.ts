/** Bucket and object operations through @aws-sdk/client-s3 against the real server over loopback. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import * as s3 from "@aws-sdk/client-s3";
import { crc32c, digestOf } from "../blob/index.js";
import { OTHER, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
async function rejectsWith(p: Promise<unknown>, name: string, status?: number): Promise<void> {
  await assert.rejects(p, (e: SdkErr) => {
    if (!/^\d+$/.test(name)) assert.equal(e.name, name); // body-less answers (HEAD, 304) have no S3 code to name
    if (status !== undefined) assert.equal(e.$metadata.httpStatusCode, status);
    return true;
  });
}

/** Records the x-amz-content-sha256 / content-encoding of every request the client signs. */
function recordPayloadModes(c: s3.S3Client): string[] {
  const seen: string[] = [];
  c.middlewareStack.add((next) => async (args) => {
    const h = (args.request as { headers: Record<string, string> }).headers;
    seen.push(`${h["x-amz-content-sha256"]}|${h["content-encoding"] ?? ""}|${h["x-amz-trailer"] ?? ""}`);
    return next(args);
  }, { step: "finalizeRequest", priority: "low", name: "recordPayload" });
  return seen;
}

export function objectsSuite(makeStore: MakeStore): void {
  describe("S3 buckets and objects via @aws-sdk/client-s3", () => {
    let f: Fixture;
    let c: s3.S3Client;
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: "photos" }));
    });
    after(() => f.close());

    test("bucket lifecycle: create (idempotent for the owner), head, list, location, delete", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "life-cycle" }));
      await c.send(new s3.CreateBucketCommand({ Bucket: "life-cycle" })); // us-east-1: 200 again, as AWS
      await rejectsWith(f.client({ key: OTHER }).send(new s3.CreateBucketCommand({ Bucket: "life-cycle" })), "BucketAlreadyExists", 409);
      const hb = await c.send(new s3.HeadBucketCommand({ Bucket: "life-cycle" }));
      assert.equal(hb.$metadata.httpStatusCode, 200);
      const lb = await c.send(new s3.ListBucketsCommand({}));
      assert.ok(lb.Buckets!.some((b) => b.Name === "life-cycle"));
      assert.equal(lb.Owner?.ID, "root");
      const other = await f.client({ key: OTHER }).send(new s3.ListBucketsCommand({}));
      assert.equal(other.Buckets?.length ?? 0, 0, "another owner does not see root's buckets");
      await rejectsWith(f.client({ key: OTHER }).send(new s3.HeadObjectCommand({ Bucket: "life-cycle", Key: "x" })), "403", 403);
      const loc = await c.send(new s3.GetBucketLocationCommand({ Bucket: "life-cycle" }));
      assert.equal(loc.LocationConstraint ?? "", "");
      await c.send(new s3.PutObjectCommand({ Bucket: "life-cycle", Key: "k", Body: "x" }));
      await rejectsWith(c.send(new s3.DeleteBucketCommand({ Bucket: "life-cycle" })), "BucketNotEmpty", 409);
      await c.send(new s3.DeleteObjectCommand({ Bucket: "life-cycle", Key: "k" }));
      await c.send(new s3.DeleteBucketCommand({ Bucket: "life-cycle" }));
      await rejectsWith(c.send(new s3.HeadBucketCommand({ Bucket: "life-cycle" })), "NotFound", 404);
      await rejectsWith(c.send(new s3.ListObjectsV2Command({ Bucket: "life-cycle" })), "NoSuchBucket", 404);
      await rejectsWith(c.send(new s3.CreateBucketCommand({ Bucket: "Bad_Name" })), "InvalidBucketName", 400);
      await rejectsWith(c.send(new s3.CreateBucketCommand({ Bucket: "192.168.1.1" })), "InvalidBucketName", 400);
      await rejectsWith(c.send(new s3.CreateBucketCommand({ Bucket: "ab" })), "InvalidBucketName", 400);
      await rejectsWith(c.send(new s3.CreateBucketCommand({ Bucket: "elsewhere", CreateBucketConfiguration: { LocationConstraint: "eu-west-1" } })),
        "IllegalLocationConstraintException", 400);
      await c.send(new s3.CreateBucketCommand({ Bucket: "with-acl", ACL: "private" }));
      const v = await c.send(new s3.GetBucketVersioningCommand({ Bucket: "with-acl" }));
      assert.equal(v.Status, undefined);
    });

    test("PutObject with a buffer sends x-amz-checksum-crc32; with a stream, aws-chunked + CRC32 trailer; both verified and returned", async () => {
      const cc = f.client();
      const modes = recordPayloadModes(cc);
      const body = Buffer.from("hello world");
      const p1 = await cc.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "a.txt", Body: body }));
      assert.equal(p1.ETag, `"${createHash("md5").update(body).digest("hex")}"`);
      assert.equal(p1.ChecksumCRC32, "DUoRhQ==");
      const big = Buffer.alloc(300_000, 7);
      const p2 = await cc.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "b.bin", Body: Readable.from([big.subarray(0, 100_000), big.subarray(100_000)]), ContentLength: big.length }));
      assert.equal(p2.ChecksumCRC32, digestOf("crc32", big));
      assert.ok(modes.some((m) => m.startsWith("STREAMING-UNSIGNED-PAYLOAD-TRAILER|aws-chunked|x-amz-checksum-crc32")), modes.join("\n"));
      const g = await cc.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "b.bin", ChecksumMode: "ENABLED" }));
      assert.equal(g.ChecksumCRC32, digestOf("crc32", big));
      assert.equal(g.ContentLength, big.length);
      assert.deepEqual(Buffer.from(await g.Body!.transformToByteArray()), big);
      assert.equal(g.ContentEncoding, undefined, "aws-chunked is not stored as a content-encoding");
    });

    test("CRC32C, SHA1 and SHA256 checksums are verified, stored and returned; a wrong one is BadDigest", async () => {
      const data = Buffer.from("checksum me please");
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32c(data));
      const cases = [["CRC32C", "ChecksumCRC32C", crc.toString("base64")], ["SHA1", "ChecksumSHA1", createHash("sha1").update(data).digest("base64")],
        ["SHA256", "ChecksumSHA256", createHash("sha256").update(data).digest("base64")]] as const;
      for (const [alg, field, want] of cases) {
        const p = await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: `ck-${alg}`, Body: data, ChecksumAlgorithm: alg }));
        assert.equal(p[field], want, alg);
        const h = await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: `ck-${alg}`, ChecksumMode: "ENABLED" }));
        assert.equal(h[field], want, alg);
      }
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "bad", Body: data, ChecksumSHA256: createHash("sha256").update("other").digest("base64") })), "BadDigest", 400);
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "bad", Body: data, ContentMD5: createHash("md5").update("x").digest("base64") })), "BadDigest", 400);
      const ok = await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "md5", Body: data, ContentMD5: createHash("md5").update(data).digest("base64") }));
      assert.equal(ok.ETag, `"${createHash("md5").update(data).digest("hex")}"`);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "bad" })), "NotFound", 404);
    });

    test("user metadata, standard headers, response-* overrides, x-amz-acl", async () => {
      await c.send(new s3.PutObjectCommand({
        Bucket: "photos", Key: "meta.txt", Body: "m", ContentType: "text/plain", CacheControl: "max-age=60", ContentDisposition: "attachment; filename=m.txt",
        ContentEncoding: "identity", ContentLanguage: "en", Expires: new Date("2030-01-01T00:00:00Z"), Metadata: { Color: "blue", "x-y": "z" }, ACL: "public-read",
      }));
      const h = await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "meta.txt" }));
      assert.equal(h.ContentType, "text/plain");
      assert.equal(h.CacheControl, "max-age=60");
      assert.equal(h.ContentDisposition, "attachment; filename=m.txt");
      assert.equal(h.ContentEncoding, "identity");
      assert.equal(h.ContentLanguage, "en");
      assert.equal(h.Expires?.toISOString(), "2030-01-01T00:00:00.000Z");
      assert.deepEqual(h.Metadata, { color: "blue", "x-y": "z" });
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "meta.txt", ResponseContentType: "application/x-override", ResponseCacheControl: "no-store" }));
      assert.equal(g.ContentType, "application/x-override");
      assert.equal(g.CacheControl, "no-store");
      await g.Body!.transformToString();
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "missing" })), "NoSuchKey", 404);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "meta.txt", VersionId: "abc" })), "InvalidArgument", 400);
      const gv = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "meta.txt", VersionId: "null" }));
      assert.equal(await gv.Body!.transformToString(), "m");
    });

    test("ranges: first bytes, open-ended, suffix, clamped, unsatisfiable → 416 InvalidRange", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "digits", Body: "0123456789" }));
      const get = async (Range: string) => {
        const g = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "digits", Range }));
        return [g.$metadata.httpStatusCode, g.ContentRange, await g.Body!.transformToString()];
      };
      assert.deepEqual(await get("bytes=0-3"), [206, "bytes 0-3/10", "0123"]);
      assert.deepEqual(await get("bytes=7-"), [206, "bytes 7-9/10", "789"]);
      assert.deepEqual(await get("bytes=-3"), [206, "bytes 7-9/10", "789"]);
      assert.deepEqual(await get("bytes=-50"), [206, "bytes 0-9/10", "0123456789"]);
      assert.deepEqual(await get("bytes=5-500"), [206, "bytes 5-9/10", "56789"]);
      assert.deepEqual(await get("bytes=5-2"), [200, undefined, "0123456789"]); // invalid spec is ignored (RFC 7233)
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "digits", Range: "bytes=10-" })), "InvalidRange", 416);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "digits", Range: "bytes=-0" })), "InvalidRange", 416);
    });

    test("conditional GET and PUT: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since", async () => {
      const p = await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "cond", Body: "v1" }));
      const etag = p.ETag!;
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfMatch: etag }));
      assert.equal(await g.Body!.transformToString(), "v1");
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfMatch: '"nope"' })), "PreconditionFailed", 412);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfNoneMatch: etag })), "304", 304);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfModifiedSince: new Date(Date.now() + 60_000) })), "304", 304);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfUnmodifiedSince: new Date(Date.now() - 3_600_000) })), "PreconditionFailed", 412);
      const ok = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cond", IfMatch: etag, IfUnmodifiedSince: new Date(Date.now() - 3_600_000) }));
      assert.equal(ok.$metadata.httpStatusCode, 200, "a true If-Match wins over a false If-Unmodified-Since");
      await ok.Body!.transformToString();
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "cond", IfNoneMatch: etag })), "304", 304);
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "cond", Body: "v2", IfNoneMatch: "*" })), "PreconditionFailed", 412);
      await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "cond-new", Body: "v2", IfNoneMatch: "*" }));
    });

    test("CopyObject: COPY keeps metadata, REPLACE replaces it, conditional copy, copy onto itself refused", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "src key+1", Body: "copy me", ContentType: "text/x-src", Metadata: { a: "1" } }));
      await c.send(new s3.CreateBucketCommand({ Bucket: "copies" }));
      const r1 = await c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst", CopySource: "photos/src%20key%2B1" }));
      assert.equal(r1.CopyObjectResult?.ETag, `"${createHash("md5").update("copy me").digest("hex")}"`);
      const h1 = await c.send(new s3.HeadObjectCommand({ Bucket: "copies", Key: "dst" }));
      assert.equal(h1.ContentType, "text/x-src");
      assert.deepEqual(h1.Metadata, { a: "1" });
      await c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst2", CopySource: "/photos/src%20key%2B1", MetadataDirective: "REPLACE", ContentType: "text/y", Metadata: { b: "2" } }));
      const h2 = await c.send(new s3.HeadObjectCommand({ Bucket: "copies", Key: "dst2" }));
      assert.equal(h2.ContentType, "text/y");
      assert.deepEqual(h2.Metadata, { b: "2" });
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst3", CopySource: "photos/src%20key%2B1", CopySourceIfMatch: '"zzz"' })), "PreconditionFailed", 412);
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst3", CopySource: "photos/src%20key%2B1", CopySourceIfNoneMatch: r1.CopyObjectResult!.ETag })), "PreconditionFailed", 412);
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst", CopySource: "copies/dst" })), "InvalidRequest", 400);
      await c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst", CopySource: "copies/dst", MetadataDirective: "REPLACE", Metadata: { c: "3" } }));
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "copies", Key: "dst4", CopySource: "photos/none" })), "NoSuchKey", 404);
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "copies", Key: "dst" }));
      assert.equal(await g.Body!.transformToString(), "copy me");
    });

    test("DeleteObject and DeleteObjects (verbose and quiet); deleting a missing key succeeds", async () => {
      for (const k of ["d1", "d2", "d3", "d 4&<x>"]) await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: k, Body: k }));
      const r = await c.send(new s3.DeleteObjectsCommand({ Bucket: "photos", Delete: { Objects: [{ Key: "d1" }, { Key: "d 4&<x>" }, { Key: "never" }] } }));
      assert.deepEqual(r.Deleted!.map((d) => d.Key).sort(), ["d 4&<x>", "d1", "never"]);
      assert.equal(r.Errors, undefined);
      const q = await c.send(new s3.DeleteObjectsCommand({ Bucket: "photos", Delete: { Objects: [{ Key: "d2" }], Quiet: true } }));
      assert.equal(q.Deleted, undefined);
      await c.send(new s3.DeleteObjectCommand({ Bucket: "photos", Key: "d3" }));
      await c.send(new s3.DeleteObjectCommand({ Bucket: "photos", Key: "d3" }));
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "d2" })), "NotFound", 404);
    });

    test("ACL and tagging reads answer for the owner; unsupported sub-resources are 501 NotImplemented", async () => {
      const acl = await c.send(new s3.GetObjectAclCommand({ Bucket: "photos", Key: "a.txt" }));
      assert.equal(acl.Grants?.[0]?.Permission, "FULL_CONTROL");
      const bacl = await c.send(new s3.GetBucketAclCommand({ Bucket: "photos" }));
      assert.equal(bacl.Owner?.ID, "root");
      const tags = await c.send(new s3.GetObjectTaggingCommand({ Bucket: "photos", Key: "a.txt" }));
      assert.deepEqual(tags.TagSet ?? [], []);
      await rejectsWith(c.send(new s3.PutBucketWebsiteCommand({ Bucket: "photos", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } })), "NotImplemented", 501);
      await rejectsWith(c.send(new s3.GetBucketPolicyCommand({ Bucket: "photos" })), "NoSuchBucketPolicy", 404);
      await rejectsWith(c.send(new s3.GetObjectRetentionCommand({ Bucket: "photos", Key: "a.txt" })), "NotImplemented", 501);
    });

    test("ListBuckets pages: max-buckets, continuation-token, prefix, bucket-region; bad paging parameters refused", async () => {
      for (const b of ["page-a", "page-b", "page-c", "page-d"]) await c.send(new s3.CreateBucketCommand({ Bucket: b }));
      const p1 = await c.send(new s3.ListBucketsCommand({ Prefix: "page-", MaxBuckets: 3 }));
      assert.deepEqual(p1.Buckets!.map((b) => b.Name), ["page-a", "page-b", "page-c"]);
      assert.equal(p1.Prefix, "page-");
      assert.ok(p1.ContinuationToken, "more remain, so a token is given");
      assert.equal(p1.Buckets![0]!.BucketRegion, "us-east-1");
      const p2 = await c.send(new s3.ListBucketsCommand({ Prefix: "page-", MaxBuckets: 3, ContinuationToken: p1.ContinuationToken }));
      assert.deepEqual(p2.Buckets!.map((b) => b.Name), ["page-d"]);
      assert.equal(p2.ContinuationToken, undefined);
      const all = await c.send(new s3.ListBucketsCommand({}));
      assert.ok(all.Buckets!.length >= 5 && all.ContinuationToken === undefined && all.Prefix === undefined);
      const names: string[] = [];
      let token: string | undefined;
      do {
        const r = await c.send(new s3.ListBucketsCommand({ MaxBuckets: 1, ContinuationToken: token }));
        names.push(...r.Buckets!.map((b) => b.Name!));
        token = r.ContinuationToken;
      } while (token);
      assert.deepEqual(names, all.Buckets!.map((b) => b.Name));
      assert.equal((await c.send(new s3.ListBucketsCommand({ BucketRegion: "eu-west-1" }))).Buckets?.length ?? 0, 0);
      const bad: Record<string, string>[] = [{ "max-buckets": "0" }, { "max-buckets": "10001" }, { "max-buckets": "x" }, { "continuation-token": "garbage" }];
      for (const query of bad) {
        const r = await raw(f, { method: "GET", path: "/", query });
        assert.equal(r.status, 400, JSON.stringify(query));
        assert.match(r.body, /<Code>InvalidArgument<\/Code>/);
      }
      for (const b of ["page-a", "page-b", "page-c", "page-d"]) await c.send(new s3.DeleteBucketCommand({ Bucket: b }));
    });

    test("x-amz-storage-class is kept: returned on GET/HEAD unless STANDARD, listed, carried by multipart; unknown ones refused", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "cold", Body: "c", StorageClass: "STANDARD_IA" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "std", Body: "s", StorageClass: "STANDARD" }));
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "cold" }))).StorageClass, "STANDARD_IA");
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "photos", Key: "cold" }));
      assert.equal(g.StorageClass, "STANDARD_IA");
      await g.Body!.transformToString();
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "std" }))).StorageClass, undefined, "STANDARD is not sent back, as AWS");
      const l2 = await c.send(new s3.ListObjectsV2Command({ Bucket: "photos" }));
      const cls = Object.fromEntries(l2.Contents!.map((o) => [o.Key, o.StorageClass]));
      assert.equal(cls.cold, "STANDARD_IA");
      assert.equal(cls.std, "STANDARD");
      const l1 = await c.send(new s3.ListObjectsCommand({ Bucket: "photos", Prefix: "cold" }));
      assert.equal(l1.Contents![0]!.StorageClass, "STANDARD_IA");
      // A copy takes the class the copy request names, STANDARD when none (as AWS), whatever the directive.
      await c.send(new s3.CopyObjectCommand({ Bucket: "photos", Key: "cold-copy", CopySource: "photos/cold" }));
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "cold-copy" }))).StorageClass, undefined);
      await c.send(new s3.CopyObjectCommand({ Bucket: "photos", Key: "cold-copy", CopySource: "photos/cold", StorageClass: "GLACIER_IR" }));
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "cold-copy" }))).StorageClass, "GLACIER_IR");
      const mp = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "photos", Key: "mp-cold", StorageClass: "ONEZONE_IA" }));
      const part = await c.send(new s3.UploadPartCommand({ Bucket: "photos", Key: "mp-cold", UploadId: mp.UploadId, PartNumber: 1, Body: "part" }));
      assert.equal((await c.send(new s3.ListPartsCommand({ Bucket: "photos", Key: "mp-cold", UploadId: mp.UploadId }))).StorageClass, "ONEZONE_IA");
      const ups = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: "photos", Prefix: "mp-cold" }));
      assert.equal(ups.Uploads![0]!.StorageClass, "ONEZONE_IA");
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "photos", Key: "mp-cold", UploadId: mp.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "mp-cold" }))).StorageClass, "ONEZONE_IA");
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "photos", Key: "bad", Body: "b", StorageClass: "COLDEST" as s3.StorageClass })), "InvalidStorageClass", 400);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "photos", Key: "bad" })), "NotFound", 404);
      await c.send(new s3.DeleteObjectsCommand({ Bucket: "photos", Delete: { Objects: ["cold", "std", "cold-copy", "mp-cold"].map((Key) => ({ Key })) } }));
    });

    test("every response carries x-amz-request-id and x-amz-id-2, errors too; metrics count operations", async () => {
      for (const r of [
        await raw(f, { method: "GET", path: "/photos/a.txt" }),
        await raw(f, { method: "GET", path: "/photos/nope" }),
        await raw(f, { method: "GET", path: "/", anonymous: true }),
      ]) {
        assert.match(String(r.headers["x-amz-request-id"]), /^[0-9A-F]{16}$/);
        assert.ok(r.headers["x-amz-id-2"]);
      }
      const text = await f.registry.metrics();
      assert.match(text, /thoc_s3_requests_total\{operation="PutObject",status="200"\} \d+/);
      assert.match(text, /thoc_s3_requests_total\{operation="GetObject",status="404"\} \d+/);
      assert.match(text, /thoc_s3_errors_total\{code="NoSuchKey"\} \d+/);
      assert.match(text, /thoc_s3_received_bytes_total\{operation="PutObject"\} \d+/);
      assert.match(text, /thoc_s3_sent_bytes_total\{operation="GetObject"\} \d+/);
      assert.match(text, /thoc_s3_request_duration_seconds_bucket\{le="0.005",operation="GetObject"\} \d+/);
    });
  });

  describe("a region other than us-east-1", () => {
    let f: Fixture;
    before(async () => { f = await startS3({ THOC_S3_REGION: "eu-central-1" }, makeStore); });
    after(() => f.close());

    test("re-creating one's own bucket is 409 BucketAlreadyOwnedByYou; location and HeadBucket name the region", async () => {
      const c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: "regional", CreateBucketConfiguration: { LocationConstraint: "eu-central-1" } }));
      await rejectsWith(c.send(new s3.CreateBucketCommand({ Bucket: "regional" })), "BucketAlreadyOwnedByYou", 409);
      assert.equal((await c.send(new s3.GetBucketLocationCommand({ Bucket: "regional" }))).LocationConstraint, "eu-central-1");
      assert.equal((await c.send(new s3.HeadBucketCommand({ Bucket: "regional" }))).BucketRegion, "eu-central-1");
    });
  });
}
