/**
 * Conditional requests over the wire: GET/HEAD preconditions (RFC 7232
 * precedence as S3 applies it, the Condition element of a 412), conditional
 * writes (PutObject, CopyObject, CompleteMultipartUpload with If-None-Match: *
 * and If-Match, checked once the body has arrived), copy-source conditions,
 * response-* overrides, and GetObjectAttributes.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, raw, signer, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
const rejectsWith = (p: Promise<unknown>, name: string, status: number) => assert.rejects(p, (e: SdkErr) => {
  if (!/^\d+$/.test(name)) assert.equal(e.name, name);
  assert.equal(e.$metadata.httpStatusCode, status);
  return true;
});

export function conditionalSuite(makeStore: MakeStore): void {
  describe("S3 conditional requests, response overrides, GetObjectAttributes", () => {
    let f: Fixture;
    let c: s3.S3Client;
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: "cond" }));
    });
    after(() => f.close());

    test("GET/HEAD: precedence of If-Match over If-Unmodified-Since and of If-None-Match over If-Modified-Since; the 412 names its condition", async () => {
      const { ETag } = await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "g", Body: "v1" }));
      const past = new Date(Date.now() - 3_600_000).toUTCString(), future = new Date(Date.now() + 3_600_000).toUTCString();
      const get = (headers: Record<string, string>, method = "GET") => raw(f, { method, path: "/cond/g", headers });
      assert.equal((await get({ "if-match": ETag!, "if-unmodified-since": past })).status, 200);
      assert.equal((await get({ "if-none-match": ETag!, "if-modified-since": past })).status, 304, "a false If-None-Match wins over a true If-Modified-Since");
      assert.equal((await get({ "if-none-match": '"other"', "if-modified-since": future })).status, 200, "If-Modified-Since counts only without If-None-Match");
      assert.equal((await get({ "if-modified-since": future })).status, 304);
      assert.equal((await get({ "if-modified-since": "not a date" })).status, 200, "a date that does not parse is ignored");
      const nm = await get({ "if-none-match": ETag! });
      assert.equal(nm.headers.etag, ETag);
      assert.equal(nm.body, "");
      const im = await get({ "if-match": '"other"' });
      assert.equal(im.status, 412);
      assert.match(im.body, /<Code>PreconditionFailed<\/Code>.*<Condition>If-Match<\/Condition>/s);
      const ius = await get({ "if-unmodified-since": past });
      assert.match(ius.body, /<Condition>If-Unmodified-Since<\/Condition>/);
      assert.equal((await get({ "if-match": "*" })).status, 200);
      assert.equal((await get({ "if-match": '"other"' }, "HEAD")).status, 412);
      assert.equal((await get({ "if-none-match": `"x", ${ETag}` }, "HEAD")).status, 304, "a list of ETags");
    });

    test("PutObject If-None-Match: * creates only; If-Match writes only over that ETag (412), NoSuchKey without an object", async () => {
      const first = await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "p", Body: "one", IfNoneMatch: "*" }));
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "p", Body: "two", IfNoneMatch: "*" })), "PreconditionFailed", 412);
      const second = await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "p", Body: "two", IfMatch: first.ETag }));
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "p", Body: "three", IfMatch: first.ETag })), "PreconditionFailed", 412);
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "absent", Body: "x", IfMatch: first.ETag })), "NoSuchKey", 404);
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "cond", Key: "p" }));
      assert.equal(await g.Body!.transformToString(), "two");
      assert.equal(g.ETag, second.ETag);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "cond", Key: "absent" })), "NotFound", 404);
      const etagValue = await raw(f, { method: "PUT", path: "/cond/p", headers: { "if-none-match": first.ETag! }, body: "x" });
      assert.equal(codeOf(etagValue.body), "NotImplemented", "If-None-Match on a write takes only *");
    });

    test("the write condition is checked once the body has arrived: a key created during the upload fails it", async () => {
      const path = "/cond/race";
      const signed = await signer().sign({
        method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path, query: {},
        headers: { host: `127.0.0.1:${f.port}`, "content-length": "6", "if-none-match": "*", "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
      });
      const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: f.port, method: "PUT", path, headers: signed.headers, agent: false }, (res) => {
          let body = "";
          res.on("data", (d: Buffer) => { body += d.toString(); });
          res.on("end", () => resolve({ status: res.statusCode!, body }));
        });
        req.on("error", reject);
        req.write("abc");
        // While the body is under way, someone else creates the key; then the body ends.
        setTimeout(() => {
          void c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "race", Body: "winner" })).then(() => req.end("def"), reject);
        }, 200);
      });
      const r = await done;
      assert.equal(r.status, 412, r.body);
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "cond", Key: "race" }));
      assert.equal(await g.Body!.transformToString(), "winner", "the refused upload wrote nothing");
    });

    test("a large conditional PUT is refused before its body is sent", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "big-exists", Body: "x" }));
      const path = "/cond/big-exists";
      const signed = await signer().sign({
        method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path, query: {},
        headers: { host: `127.0.0.1:${f.port}`, "content-length": String(8 << 20), "if-none-match": "*", "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
      });
      let req: http.ClientRequest | undefined;
      const status = await Promise.race([
        new Promise<number>((resolve, reject) => {
          req = http.request({ host: "127.0.0.1", port: f.port, method: "PUT", path, headers: signed.headers, agent: false }, (res) => { res.resume(); resolve(res.statusCode!); });
          req.on("error", reject);
          req.flushHeaders(); // headers only: not one byte of the 8 MiB
        }),
        new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000).unref()),
      ]);
      req?.destroy();
      assert.equal(status, 412);
    });

    test("CompleteMultipartUpload and CopyObject honour If-None-Match / If-Match; copy-source conditions are 412s", async () => {
      const mpu = async (key: string, cond: { IfNoneMatch?: string; IfMatch?: string }) => {
        const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "cond", Key: key }));
        const p = await c.send(new s3.UploadPartCommand({ Bucket: "cond", Key: key, UploadId, PartNumber: 1, Body: "part" }));
        return c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "cond", Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p.ETag }] }, ...cond }));
      };
      const made = await mpu("m", { IfNoneMatch: "*" });
      await rejectsWith(mpu("m", { IfNoneMatch: "*" }), "PreconditionFailed", 412);
      await rejectsWith(mpu("m", { IfMatch: '"0123"' }), "PreconditionFailed", 412);
      await mpu("m", { IfMatch: made.ETag });
      await rejectsWith(mpu("m-absent", { IfMatch: made.ETag }), "NoSuchKey", 404);

      await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "src", Body: "source" }));
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "cond", Key: "m", CopySource: "cond/src", IfNoneMatch: "*" })), "PreconditionFailed", 412);
      await c.send(new s3.CopyObjectCommand({ Bucket: "cond", Key: "copy-new", CopySource: "cond/src", IfNoneMatch: "*" }));
      const past = new Date(Date.now() - 3_600_000), future = new Date(Date.now() + 3_600_000);
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "cond", Key: "c2", CopySource: "cond/src", CopySourceIfModifiedSince: future })), "PreconditionFailed", 412);
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "cond", Key: "c2", CopySource: "cond/src", CopySourceIfUnmodifiedSince: past })), "PreconditionFailed", 412);
      const src = await c.send(new s3.HeadObjectCommand({ Bucket: "cond", Key: "src" }));
      await c.send(new s3.CopyObjectCommand({ Bucket: "cond", Key: "c2", CopySource: "cond/src", CopySourceIfMatch: src.ETag, CopySourceIfUnmodifiedSince: past }));
      const r = await raw(f, { method: "PUT", path: "/cond/c3", headers: { "x-amz-copy-source": "/cond/src", "x-amz-copy-source-if-none-match": src.ETag! } });
      assert.match(r.body, /<Condition>x-amz-copy-source-If-None-Match<\/Condition>/);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "cond", Key: "c3" })), "NotFound", 404);
    });

    test("concurrent conditional writes of one key: exactly one of N If-None-Match: * PUTs (and of N If-Match PUTs, and of N completions) wins", async () => {
      // Settled results: the winners' bodies, and every loser's status (412 once it sees the winner's object, 409 if it waited too long).
      const race = async (sends: (() => Promise<unknown>)[]) => {
        const r = await Promise.allSettled(sends.map((s) => s()));
        const lost = r.filter((x): x is PromiseRejectedResult => x.status === "rejected").map((x) => (x.reason as SdkErr).$metadata?.httpStatusCode ?? String(x.reason));
        for (const s of lost) assert.ok(s === 412 || s === 409, `a loser answered ${s}`);
        return r.map((x, i) => (x.status === "fulfilled" ? i : -1)).filter((i) => i >= 0);
      };
      const N = 8;
      const bodies = Array.from({ length: N }, (_, i) => Buffer.alloc(48 << 10, 97 + i));
      for (let round = 0; round < 3; round++) {
        const key = `many/${round}`;
        const won = await race(bodies.map((b) => () => c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: key, Body: b, IfNoneMatch: "*" }))));
        assert.equal(won.length, 1, `round ${round}: ${won.length} of ${N} create-only PUTs succeeded`);
        const g = await c.send(new s3.GetObjectCommand({ Bucket: "cond", Key: key }));
        assert.ok(Buffer.from(await g.Body!.transformToByteArray()).equals(bodies[won[0]!]!), "the object is the winner's");

        // Everyone read the same ETag and overwrites it: one succeeds, the rest see a new ETag.
        const etag = g.ETag!;
        const swapped = await race(bodies.map((b) => () => c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: key, Body: Buffer.concat([b, b]), IfMatch: etag }))));
        assert.equal(swapped.length, 1, `round ${round}: ${swapped.length} of ${N} If-Match PUTs succeeded`);
      }
      const uploads = await Promise.all(Array.from({ length: 4 }, async () => {
        const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "cond", Key: "many/mpu" }));
        const p = await c.send(new s3.UploadPartCommand({ Bucket: "cond", Key: "many/mpu", UploadId, PartNumber: 1, Body: "part" }));
        return { UploadId, ETag: p.ETag };
      }));
      const completed = await race(uploads.map((u) => () => c.send(new s3.CompleteMultipartUploadCommand({
        Bucket: "cond", Key: "many/mpu", UploadId: u.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: u.ETag }] }, IfNoneMatch: "*",
      }))));
      assert.equal(completed.length, 1, `${completed.length} of 4 create-only completions succeeded`);
    });

    test("response-* query parameters override the stored headers on GET", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "doc", Body: "data", ContentType: "text/plain" }));
      const g = await c.send(new s3.GetObjectCommand({
        Bucket: "cond", Key: "doc", ResponseContentType: "application/json", ResponseContentDisposition: 'attachment; filename="d.json"',
        ResponseCacheControl: "no-store", ResponseContentLanguage: "de", ResponseContentEncoding: "identity", ResponseExpires: new Date("2030-01-01T00:00:00Z"),
      }));
      await g.Body!.transformToString();
      assert.equal(g.ContentType, "application/json");
      assert.equal(g.ContentDisposition, 'attachment; filename="d.json"');
      assert.equal(g.CacheControl, "no-store");
      assert.equal(g.ContentLanguage, "de");
      assert.equal(g.ContentEncoding, "identity");
    });

    test("GetObjectAttributes: ETag, ObjectSize, StorageClass, Checksum, ObjectParts with paging; bad attribute names refused", async () => {
      const put = await c.send(new s3.PutObjectCommand({ Bucket: "cond", Key: "attrs", Body: "hello", ChecksumAlgorithm: "CRC32" }));
      const a = await c.send(new s3.GetObjectAttributesCommand({ Bucket: "cond", Key: "attrs", ObjectAttributes: ["ETag", "ObjectSize", "StorageClass", "Checksum"] }));
      assert.equal(`"${a.ETag}"`, put.ETag);
      assert.equal(a.ObjectSize, 5);
      assert.equal(a.StorageClass, "STANDARD");
      assert.equal(a.Checksum?.ChecksumCRC32, put.ChecksumCRC32);
      assert.ok(a.LastModified instanceof Date);
      assert.equal(a.ObjectParts, undefined);

      const big = Buffer.alloc(5 * 1024 * 1024, 7);
      const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "cond", Key: "parts" }));
      const p1 = await c.send(new s3.UploadPartCommand({ Bucket: "cond", Key: "parts", UploadId, PartNumber: 1, Body: big }));
      const p2 = await c.send(new s3.UploadPartCommand({ Bucket: "cond", Key: "parts", UploadId, PartNumber: 2, Body: "tail" }));
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "cond", Key: "parts", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } }));
      const page1 = await c.send(new s3.GetObjectAttributesCommand({ Bucket: "cond", Key: "parts", ObjectAttributes: ["ObjectParts", "ObjectSize"], MaxParts: 1 }));
      assert.equal(page1.ObjectSize, big.length + 4);
      assert.equal(page1.ObjectParts?.TotalPartsCount, 2);
      assert.equal(page1.ObjectParts?.IsTruncated, true);
      assert.equal(page1.ObjectParts?.NextPartNumberMarker, "1");
      assert.deepEqual(page1.ObjectParts?.Parts?.map((p) => [p.PartNumber, p.Size]), [[1, big.length]]);
      const page2 = await c.send(new s3.GetObjectAttributesCommand({ Bucket: "cond", Key: "parts", ObjectAttributes: ["ObjectParts"], PartNumberMarker: "1" }));
      assert.equal(page2.ObjectParts?.IsTruncated, false);
      assert.deepEqual(page2.ObjectParts?.Parts?.map((p) => [p.PartNumber, p.Size]), [[2, 4]]);

      const bad = await raw(f, { method: "GET", path: "/cond/attrs", query: { attributes: "" }, headers: { "x-amz-object-attributes": "ETag,Colour" } });
      assert.equal(bad.status, 400);
      assert.equal(codeOf(bad.body), "InvalidArgument");
      const none = await raw(f, { method: "GET", path: "/cond/attrs", query: { attributes: "" } });
      assert.equal(codeOf(none.body), "InvalidArgument");
      await rejectsWith(c.send(new s3.GetObjectAttributesCommand({ Bucket: "cond", Key: "nope", ObjectAttributes: ["ETag"] })), "NoSuchKey", 404);
    });
  });
}
