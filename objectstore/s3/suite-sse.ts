/** Encryption at rest (SSE-S3, SSE-C, bucket default encryption) through @aws-sdk/client-s3 and raw requests. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; message: string; $metadata: { httpStatusCode?: number } };
async function rejectsWith(p: Promise<unknown>, name: string | undefined, status: number): Promise<void> {
  await assert.rejects(p, (e: SdkErr) => {
    if (name) assert.equal(e.name, name);
    assert.equal(e.$metadata.httpStatusCode, status);
    return true;
  });
}

async function bytesOf(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

const md5hex = (b: Buffer | string) => createHash("md5").update(b).digest("hex");
/** 32 ASCII bytes: the SDK sends them as the key (base64) with their MD5. */
const KEY = "k".repeat(16) + "0123456789abcdef";
const OTHER_KEY = "z".repeat(32);
const ssec = (key = KEY) => ({ SSECustomerAlgorithm: "AES256", SSECustomerKey: key });
const ssecHeaders = (key = KEY, prefix = "x-amz-server-side-encryption-customer-") => ({
  [`${prefix}algorithm`]: "AES256", [`${prefix}key`]: Buffer.from(key).toString("base64"), [`${prefix}key-md5`]: createHash("md5").update(key).digest("base64"),
});

export function sseSuite(makeStore: MakeStore): void {
  describe("S3 encryption at rest (SSE-S3, SSE-C, bucket default encryption)", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const B = "sse";
    const text = async (o: { Body?: unknown }) => Buffer.from(await (o.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());

    before(async () => {
      // The fixture speaks plain HTTP: SSE-C needs the switch (its refusal is tested on a second server below).
      f = await startS3({ THOC_S3_SSE_CUSTOMER_KEYS_OVER_HTTP: "true" }, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    test("SSE-S3: PUT/GET/HEAD say AES256, the ETag is the plaintext's MD5, ranges decrypt, and the store holds ciphertext", async () => {
      const data = Buffer.from("SSE-S3 plaintext marker. ".repeat(2000));
      const put = await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "s3/a", Body: data, ServerSideEncryption: "AES256" }));
      assert.equal(put.ServerSideEncryption, "AES256");
      assert.equal(put.ETag, `"${md5hex(data)}"`);
      const got = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "s3/a" }));
      assert.equal(got.ServerSideEncryption, "AES256");
      assert.equal(got.ETag, `"${md5hex(data)}"`);
      assert.deepEqual(await text(got), data);
      const head = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "s3/a" }));
      assert.equal(head.ServerSideEncryption, "AES256");
      assert.equal(head.ContentLength, data.length);
      for (const [s, e] of [[0, 0], [1, 17], [15, 16], [1000, 33333], [data.length - 5, data.length - 1]]) {
        const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "s3/a", Range: `bytes=${s}-${e}` }));
        assert.deepEqual(await text(r), data.subarray(s!, e! + 1), `range ${s}-${e}`);
      }
      const list = await c.send(new s3.ListObjectsV2Command({ Bucket: B, Prefix: "s3/" }));
      assert.equal(list.Contents?.[0]?.ETag, `"${md5hex(data)}"`);
      // Conditional requests compare with the ETag clients see.
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: B, Key: "s3/a", IfNoneMatch: `"${md5hex(data)}"` })), undefined, 304);
      // What the store keeps: ciphertext of the same length, a wrapped key, no plaintext.
      const stored = await f.store.getObject(B, "s3/a");
      const bytes = await bytesOf(stored.body);
      assert.equal(bytes.length, data.length);
      assert.ok(!bytes.includes("plaintext marker"), "the stored bytes are not the plaintext");
      assert.equal(stored.meta.sse?.mode, "SSE-S3");
      assert.ok(typeof stored.meta.sse?.wk === "string" && typeof stored.meta.sse?.kid === "string");
      // An empty object, either mode.
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "s3/empty", Body: "", ServerSideEncryption: "AES256" }));
      const empty = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "s3/empty" }));
      assert.equal(empty.ETag, `"${md5hex("")}"`);
      assert.equal((await text(empty)).length, 0);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "c/empty", Body: "", ...ssec() }));
      assert.equal((await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "c/empty", ...ssec() })))).length, 0);
    });

    test("SSE-S3: Content-MD5 and x-amz-checksum-* are checked on the plaintext; a mismatch stores nothing", async () => {
      const data = Buffer.from("checksummed");
      const put = await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "s3/ck", Body: data, ServerSideEncryption: "AES256", ChecksumAlgorithm: "SHA256" }));
      assert.equal(put.ChecksumSHA256, createHash("sha256").update(data).digest("base64"));
      const got = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "s3/ck", ChecksumMode: "ENABLED" }));
      assert.equal(got.ChecksumSHA256, createHash("sha256").update(data).digest("base64"));
      assert.deepEqual(await text(got), data);
      const bad = await raw(f, { method: "PUT", path: `/${B}/s3/bad`, body: "abc", headers: { "x-amz-server-side-encryption": "AES256", "content-md5": createHash("md5").update("abd").digest("base64") } });
      assert.equal(bad.status, 400);
      assert.equal(codeOf(bad.body), "BadDigest");
      const badCk = await raw(f, { method: "PUT", path: `/${B}/s3/bad`, body: "abc", headers: { "x-amz-server-side-encryption": "AES256", "x-amz-checksum-crc32": "AAAAAA==" } });
      assert.equal(codeOf(badCk.body), "BadDigest");
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "s3/bad" })), "NotFound", 404);
    });

    test("SSE-C: round trip with the key; no key → 400 InvalidRequest, wrong key → 403, a key for an unencrypted object → 400", async () => {
      const data = randomBytes(70_000);
      const put = await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "c/a", Body: data, ...ssec() }));
      assert.equal(put.SSECustomerAlgorithm, "AES256");
      assert.equal(put.SSECustomerKeyMD5, createHash("md5").update(KEY).digest("base64"));
      assert.notEqual(put.ETag, `"${md5hex(data)}"`, "an SSE-C ETag is not the plaintext's MD5");
      const got = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "c/a", ...ssec() }));
      assert.deepEqual(await text(got), data);
      assert.equal(got.SSECustomerAlgorithm, "AES256");
      assert.equal(got.ETag, put.ETag);
      const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "c/a", Range: "bytes=12345-54321", ...ssec() }));
      assert.deepEqual(await text(r), data.subarray(12345, 54322));
      const head = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "c/a", ...ssec() }));
      assert.equal(head.ContentLength, data.length);
      const noKey = await raw(f, { method: "GET", path: `/${B}/c/a` });
      assert.equal(noKey.status, 400);
      assert.equal(codeOf(noKey.body), "InvalidRequest");
      assert.match(noKey.body, /stored using a form of Server Side Encryption/);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "c/a" })), undefined, 400);
      const wrong = await raw(f, { method: "GET", path: `/${B}/c/a`, headers: ssecHeaders(OTHER_KEY) });
      assert.equal(wrong.status, 403);
      assert.equal(codeOf(wrong.body), "AccessDenied");
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "c/a", ...ssec(OTHER_KEY) })), undefined, 403);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "c/plain", Body: "plain" }));
      const notApplicable = await raw(f, { method: "GET", path: `/${B}/c/plain`, headers: ssecHeaders() });
      assert.equal(notApplicable.status, 400);
      assert.equal(codeOf(notApplicable.body), "InvalidRequest");
    });

    test("SSE-C: bad key headers get S3's errors and store nothing", async () => {
      const h = ssecHeaders();
      const cases: [Record<string, string>, string][] = [
        [{ ...h, "x-amz-server-side-encryption-customer-key-md5": createHash("md5").update("nope").digest("base64") }, "InvalidArgument"],
        [{ ...h, "x-amz-server-side-encryption-customer-algorithm": "AES128" }, "InvalidEncryptionAlgorithmError"],
        [{ ...h, "x-amz-server-side-encryption-customer-key": randomBytes(16).toString("base64") }, "InvalidArgument"],
        [{ "x-amz-server-side-encryption-customer-algorithm": "AES256" }, "InvalidArgument"],
        [{ ...h, "x-amz-server-side-encryption": "AES256" }, "InvalidArgument"],
        [{ "x-amz-server-side-encryption": "AES512" }, "InvalidArgument"],
      ];
      for (const [headers, code] of cases) {
        const r = await raw(f, { method: "PUT", path: `/${B}/c/badkey`, body: "x", headers });
        assert.equal(r.status, 400, JSON.stringify(headers));
        assert.equal(codeOf(r.body), code, JSON.stringify(headers));
        assert.ok(!r.body.includes(h["x-amz-server-side-encryption-customer-key"]!), "the key is never echoed");
      }
      const kms = await raw(f, { method: "PUT", path: `/${B}/c/badkey`, body: "x", headers: { "x-amz-server-side-encryption": "aws:kms" } });
      assert.equal(kms.status, 501);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "c/badkey" })), "NotFound", 404);
    });

    for (const mode of ["SSE-S3", "SSE-C"] as const) {
      test(`${mode} multipart: parts under the upload's key, GETs and ranges across part boundaries, ?partNumber=`, async () => {
        const enc = mode === "SSE-S3" ? { ServerSideEncryption: "AES256" as const } : ssec();
        const getEnc = mode === "SSE-S3" ? {} : ssec();
        const key = `mp/${mode}`;
        const p1 = randomBytes(5 << 20), p2 = randomBytes(1234);
        const all = Buffer.concat([p1, p2]);
        const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: key, ...enc }));
        if (mode === "SSE-S3") assert.equal(up.ServerSideEncryption, "AES256");
        else assert.equal(up.SSECustomerAlgorithm, "AES256");
        if (mode === "SSE-C") {
          // Every part must carry the upload's key.
          const q = { uploadId: up.UploadId!, partNumber: "1" };
          const none = await raw(f, { method: "PUT", path: `/${B}/${key}`, query: q, body: "x" });
          assert.equal(none.status, 400);
          assert.equal(codeOf(none.body), "InvalidRequest");
          const wrong = await raw(f, { method: "PUT", path: `/${B}/${key}`, query: q, body: "x", headers: ssecHeaders(OTHER_KEY) });
          assert.equal(wrong.status, 403);
        }
        const e1 = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: key, UploadId: up.UploadId, PartNumber: 1, Body: p1, ...getEnc }));
        const e2 = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: key, UploadId: up.UploadId, PartNumber: 2, Body: p2, ...getEnc }));
        const done = await c.send(new s3.CompleteMultipartUploadCommand({
          Bucket: B, Key: key, UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1.ETag }, { PartNumber: 2, ETag: e2.ETag }] },
        }));
        assert.match(done.ETag!, /-2"$/);
        if (mode === "SSE-S3") {
          assert.equal(done.ServerSideEncryption, "AES256");
          // As S3: an SSE-S3 part's ETag is its plaintext's MD5, and the object's the MD5 of those, -N.
          assert.equal(e1.ETag, `"${md5hex(p1)}"`);
          const parts = Buffer.concat([p1, p2].map((p) => createHash("md5").update(p).digest()));
          assert.equal(done.ETag, `"${createHash("md5").update(parts).digest("hex")}-2"`);
        } else {
          assert.notEqual(e1.ETag, `"${md5hex(p1)}"`, "an SSE-C part's ETag is not the plaintext's MD5");
        }
        assert.deepEqual(await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, ...getEnc }))), all);
        for (const [s, e] of [[(5 << 20) - 7, (5 << 20) + 9], [(5 << 20) - 1, (5 << 20)], [5 << 20, all.length - 1], [3, all.length - 3]]) {
          const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, Range: `bytes=${s}-${e}`, ...getEnc }));
          assert.deepEqual(await text(r), all.subarray(s!, e! + 1), `range ${s}-${e}`);
        }
        const part2 = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, PartNumber: 2, ...getEnc }));
        assert.deepEqual(await text(part2), p2);
        if (mode === "SSE-C") await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: B, Key: key })), "InvalidRequest", 400);
        const stored = await f.store.getObject(B, key, { range: { start: 0, end: 4095 } });
        const bytes = await bytesOf(stored.body);
        assert.notDeepEqual(bytes, p1.subarray(0, 4096), "the store holds ciphertext");
      });
    }

    test("CopyObject and UploadPartCopy: the source decrypted with its key, the copy encrypted as the request (or bucket) says", async () => {
      const data = Buffer.from("copy me, I am secret. ".repeat(500));
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "cp/src", Body: data, ...ssec() }));
      // Without the source's key: 400.
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "cp/dst", CopySource: `${B}/cp/src` })), "InvalidRequest", 400);
      await rejectsWith(c.send(new s3.CopyObjectCommand({
        Bucket: B, Key: "cp/dst", CopySource: `${B}/cp/src`, CopySourceSSECustomerAlgorithm: "AES256", CopySourceSSECustomerKey: OTHER_KEY,
      })), "AccessDenied", 403);
      // SSE-C → SSE-S3.
      const toS3 = await c.send(new s3.CopyObjectCommand({
        Bucket: B, Key: "cp/s3", CopySource: `${B}/cp/src`, CopySourceSSECustomerAlgorithm: "AES256", CopySourceSSECustomerKey: KEY, ServerSideEncryption: "AES256",
      }));
      assert.equal(toS3.ServerSideEncryption, "AES256");
      assert.equal(toS3.CopyObjectResult?.ETag, `"${md5hex(data)}"`);
      assert.deepEqual(await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "cp/s3" }))), data);
      // SSE-S3 → SSE-C under another key; SSE-S3 → plain.
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "cp/c2", CopySource: `${B}/cp/s3`, ...ssec(OTHER_KEY) }));
      assert.deepEqual(await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "cp/c2", ...ssec(OTHER_KEY) }))), data);
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "cp/plain", CopySource: `${B}/cp/s3` }));
      const plain = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "cp/plain" }));
      assert.equal(plain.ServerSideEncryption, undefined);
      assert.deepEqual(await text(plain), data);
      // Copying an object onto itself is allowed when it changes the encryption.
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "cp/plain", CopySource: `${B}/cp/plain`, ServerSideEncryption: "AES256" }));
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "cp/plain" }))).ServerSideEncryption, "AES256");
      // UploadPartCopy: a range of the SSE-C source into an SSE-S3 upload.
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "cp/mp", ServerSideEncryption: "AES256" }));
      const pc = await c.send(new s3.UploadPartCopyCommand({
        Bucket: B, Key: "cp/mp", UploadId: up.UploadId, PartNumber: 1, CopySource: `${B}/cp/src`, CopySourceRange: "bytes=5-1004",
        CopySourceSSECustomerAlgorithm: "AES256", CopySourceSSECustomerKey: KEY,
      }));
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "cp/mp", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: pc.CopyPartResult?.ETag }] } }));
      assert.deepEqual(await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "cp/mp" }))), data.subarray(5, 1005));
    });

    test("bucket default encryption: Put/Get/DeleteBucketEncryption; applied to writes without their own SSE headers", async () => {
      const D = "sse-default";
      await c.send(new s3.CreateBucketCommand({ Bucket: D }));
      await rejectsWith(c.send(new s3.GetBucketEncryptionCommand({ Bucket: D })), "ServerSideEncryptionConfigurationNotFoundError", 404);
      await c.send(new s3.PutBucketEncryptionCommand({ Bucket: D, ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }] } }));
      const g = await c.send(new s3.GetBucketEncryptionCommand({ Bucket: D }));
      assert.equal(g.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm, "AES256");
      const put = await c.send(new s3.PutObjectCommand({ Bucket: D, Key: "k", Body: "defaulted" }));
      assert.equal(put.ServerSideEncryption, "AES256");
      assert.equal((await f.store.headObject(D, "k")).sse?.mode, "SSE-S3");
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: D, Key: "mp" }));
      assert.equal(up.ServerSideEncryption, "AES256");
      await c.send(new s3.AbortMultipartUploadCommand({ Bucket: D, Key: "mp", UploadId: up.UploadId }));
      // An explicit SSE-C request wins over the default.
      await c.send(new s3.PutObjectCommand({ Bucket: D, Key: "c", Body: "mine", ...ssec() }));
      assert.equal((await f.store.headObject(D, "c")).sse?.mode, "SSE-C");
      await rejectsWith(c.send(new s3.PutBucketEncryptionCommand({ Bucket: D, ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "aws:kms" } }] } })), "NotImplemented", 501);
      const malformed = await raw(f, { method: "PUT", path: `/${D}`, query: { encryption: "" }, body: "<ServerSideEncryptionConfiguration><Rule></Rule></ServerSideEncryptionConfiguration>" });
      assert.equal(codeOf(malformed.body), "MalformedXML");
      await c.send(new s3.DeleteBucketEncryptionCommand({ Bucket: D }));
      await rejectsWith(c.send(new s3.GetBucketEncryptionCommand({ Bucket: D })), "ServerSideEncryptionConfigurationNotFoundError", 404);
      const after = await c.send(new s3.PutObjectCommand({ Bucket: D, Key: "k2", Body: "plain" }));
      assert.equal(after.ServerSideEncryption, undefined);
    });

    test("master key rotation: a new first cluster key wraps new objects, the old one still unwraps; once removed, its objects answer 500", async () => {
      const [k1, k2] = [randomBytes(32).toString("base64"), randomBytes(32).toString("base64")];
      const over = (keys: string) => startS3({ THOC_CLUSTER_KEYS: keys }, async () => ({ store: f.store, dispose: async () => {} }));
      const [old, rotated, gone] = [await over(k1), await over(`${k2},${k1}`), await over(k2)];
      try {
        await old.client().send(new s3.PutObjectCommand({ Bucket: B, Key: "rot/old", Body: "wrapped with k1", ServerSideEncryption: "AES256" }));
        const rc = rotated.client();
        await rc.send(new s3.PutObjectCommand({ Bucket: B, Key: "rot/new", Body: "wrapped with k2", ServerSideEncryption: "AES256" }));
        assert.equal(await (await rc.send(new s3.GetObjectCommand({ Bucket: B, Key: "rot/old" }))).Body!.transformToString(), "wrapped with k1");
        const kidOld = (await f.store.headObject(B, "rot/old")).sse?.kid, kidNew = (await f.store.headObject(B, "rot/new")).sse?.kid;
        assert.ok(kidOld && kidNew && kidOld !== kidNew, "new objects are wrapped with the new first key");
        const gc = gone.client();
        assert.equal(await (await gc.send(new s3.GetObjectCommand({ Bucket: B, Key: "rot/new" }))).Body!.transformToString(), "wrapped with k2");
        const r = await raw(gone, { method: "GET", path: `/${B}/rot/old` });
        assert.equal(r.status, 500);
        assert.ok(!r.body.includes(k1) && !r.body.includes(k2), "no key in the answer");
      } finally {
        for (const x of [old, rotated, gone]) await x.close();
      }
    });

    test("SSE-C over plain HTTP is refused unless s3.sseCustomerKeysOverHttp", async () => {
      const strict = await startS3({}, async () => ({ store: f.store, dispose: async () => {} }));
      try {
        const r = await raw(strict, { method: "PUT", path: `/${B}/http/x`, body: "x", headers: ssecHeaders() });
        assert.equal(r.status, 400);
        assert.equal(codeOf(r.body), "InvalidRequest");
        assert.match(r.body, /must be made over a secure connection/);
        const g = await raw(strict, { method: "GET", path: `/${B}/c/a`, headers: ssecHeaders() });
        assert.equal(codeOf(g.body), "InvalidRequest");
        // SSE-S3 involves no client key: plain HTTP is fine.
        const s = await raw(strict, { method: "PUT", path: `/${B}/http/s3`, body: "x", headers: { "x-amz-server-side-encryption": "AES256" } });
        assert.equal(s.status, 200);
        await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "http/x" })), "NotFound", 404);
      } finally {
        await strict.close();
      }
    });
  });
}
