/**
 * The S3 layer's keepalive of a slow CompleteMultipartUpload, over an
 * in-memory store whose Complete is made slow (and made to fail). The
 * multipart protocol itself is in suite-multipart.ts (s3Suite).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { blobError, MemoryBlobStore } from "../blob/index.js";
import { completeTiming } from "./ops-multipart.js";
import { raw, startS3, type Fixture } from "./testutil.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };

describe("a slow CompleteMultipartUpload answers 200 early and keeps the connection alive", () => {
  let f: Fixture;
  let c: s3.S3Client;
  let failNext = false;
  before(async () => {
    completeTiming.keepaliveMs = 100;
    const store = new MemoryBlobStore();
    const complete = store.completeMultipartUpload.bind(store);
    store.completeMultipartUpload = async (...args) => {
      await new Promise((r) => setTimeout(r, 450));
      if (failNext) throw blobError("InvalidPart");
      return complete(...args);
    };
    f = await startS3({}, store);
    c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "slow" }));
  });
  after(async () => { completeTiming.keepaliveMs = 2000; await f.close(); });

  test("success: whitespace first, then the result; an error after the 200 is in the body and the SDK raises it", async () => {
    const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "slow", Key: "k" }));
    const p = await c.send(new s3.UploadPartCommand({ Bucket: "slow", Key: "k", UploadId, PartNumber: 1, Body: "only part" }));
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${p.ETag}</ETag></Part></CompleteMultipartUpload>`;
    const r = await raw(f, { method: "POST", path: "/slow/k", query: { uploadId: UploadId! }, body });
    assert.equal(r.status, 200);
    assert.match(r.body, /^<\?xml[^>]*>\n {2,}<CompleteMultipartUploadResult/);
    const { UploadId: id2 } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "slow", Key: "k2" }));
    const p2 = await c.send(new s3.UploadPartCommand({ Bucket: "slow", Key: "k2", UploadId: id2, PartNumber: 1, Body: "x" }));
    failNext = true;
    await assert.rejects(c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "slow", Key: "k2", UploadId: id2, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p2.ETag }] } })),
      (e: SdkErr) => e.name === "InvalidPart");
  });
});

describe("a slow CompleteMultipartUpload in a versioned bucket: the early 200 carries x-amz-version-id", () => {
  let f: Fixture;
  let c: s3.S3Client;
  // When (ms after the completion starts) the store names the version id, and when it returns.
  let namedAt = 0, doneAt = 0;
  before(async () => {
    completeTiming.keepaliveMs = 100;
    completeTiming.versionWaitMs = 1000;
    const store = new MemoryBlobStore();
    const complete = store.completeMultipartUpload.bind(store);
    const getConfig = store.getBucketConfig.bind(store);
    // The in-memory store keeps no versions: it plays a versioned bucket whose store names version "v-1" at namedAt.
    store.getBucketConfig = (async (bucket: string, section: string) => (section === "versioning" ? "Enabled" : getConfig(bucket, section as "acl"))) as typeof store.getBucketConfig;
    store.completeMultipartUpload = async (bucket, key, uploadId, parts, opts) => {
      const t0 = Date.now();
      const sleep = (until: number) => new Promise((r) => setTimeout(r, Math.max(0, until - (Date.now() - t0))));
      if (namedAt >= 0) {
        await sleep(namedAt);
        opts?.onVersionId?.("v-1");
      }
      await sleep(doneAt);
      return { ...(await complete(bucket, key, uploadId, parts)), versionId: "v-1" };
    };
    f = await startS3({}, store);
    c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "slowv" }));
  });
  after(async () => { completeTiming.keepaliveMs = 2000; completeTiming.versionWaitMs = 15_000; await f.close(); });

  const completeRaw = async (key: string) => {
    const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "slowv", Key: key }));
    const p = await c.send(new s3.UploadPartCommand({ Bucket: "slowv", Key: key, UploadId, PartNumber: 1, Body: "only part" }));
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${p.ETag}</ETag></Part></CompleteMultipartUpload>`;
    return raw(f, { method: "POST", path: `/slowv/${key}`, query: { uploadId: UploadId! }, body });
  };

  test("named before the keep-alive is due, or after it (the headers wait for it), the version id is in the early headers", async () => {
    for (const [named, done] of [[0, 450], [350, 700]]) {
      [namedAt, doneAt] = [named!, done!];
      const r = await completeRaw(`k-${named}`);
      assert.equal(r.status, 200);
      assert.match(r.body, /^<\?xml[^>]*>\n {2,}<CompleteMultipartUploadResult/, "the keep-alive path was taken");
      assert.equal(r.headers["x-amz-version-id"], "v-1", `named at ${named} ms`);
    }
    [namedAt, doneAt] = [0, 450];
    const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "slowv", Key: "sdk" }));
    const p = await c.send(new s3.UploadPartCommand({ Bucket: "slowv", Key: "sdk", UploadId, PartNumber: 1, Body: "x" }));
    const done = await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "slowv", Key: "sdk", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p.ETag }] } }));
    assert.equal(done.VersionId, "v-1", "the SDK reads it");
  });

  test("a version id not named within versionWaitMs: the keep-alive starts without it", async () => {
    [namedAt, doneAt] = [-1, 1400];
    const r = await completeRaw("late");
    assert.equal(r.status, 200);
    assert.match(r.body, /<CompleteMultipartUploadResult/);
    assert.equal(r.headers["x-amz-version-id"], undefined);
  });
});

describe("a slow CompleteMultipartUpload of an encrypted upload: the early 200 carries the SSE headers", () => {
  let f: Fixture;
  let c: s3.S3Client;
  const KEY = "0123456789abcdef0123456789abcdef";
  const keyHeaders = {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": Buffer.from(KEY).toString("base64"),
    "x-amz-server-side-encryption-customer-key-md5": createHash("md5").update(KEY).digest("base64"),
  };
  before(async () => {
    completeTiming.keepaliveMs = 100;
    const store = new MemoryBlobStore();
    const complete = store.completeMultipartUpload.bind(store);
    store.completeMultipartUpload = async (...args) => {
      await new Promise((r) => setTimeout(r, 450));
      return complete(...args);
    };
    f = await startS3({ THOC_S3_SSE_CUSTOMER_KEYS_OVER_HTTP: "true" }, store);
    c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "slowe" }));
  });
  after(async () => { completeTiming.keepaliveMs = 2000; await f.close(); });

  const completeRaw = async (key: string, mode: "SSE-S3" | "SSE-C", headers: Record<string, string> = {}) => {
    const enc = mode === "SSE-S3" ? { ServerSideEncryption: "AES256" as const } : { SSECustomerAlgorithm: "AES256", SSECustomerKey: KEY };
    const { UploadId } = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "slowe", Key: key, ...enc }));
    const p = await c.send(new s3.UploadPartCommand({ Bucket: "slowe", Key: key, UploadId, PartNumber: 1, Body: "only part", ...(mode === "SSE-C" ? enc : {}) }));
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${p.ETag}</ETag></Part></CompleteMultipartUpload>`;
    const r = await raw(f, { method: "POST", path: `/slowe/${key}`, query: { uploadId: UploadId! }, body, headers });
    assert.equal(r.status, 200);
    assert.match(r.body, /^<\?xml[^>]*>\n {2,}<CompleteMultipartUploadResult/, "the keep-alive path was taken");
    return r.headers;
  };

  test("SSE-S3: x-amz-server-side-encryption; SSE-C: the algorithm, and the key's MD5 when the request carries the key", async () => {
    assert.equal((await completeRaw("s3", "SSE-S3"))["x-amz-server-side-encryption"], "AES256");
    const withKey = await completeRaw("c-key", "SSE-C", keyHeaders);
    assert.equal(withKey["x-amz-server-side-encryption-customer-algorithm"], "AES256");
    assert.equal(withKey["x-amz-server-side-encryption-customer-key-md5"], keyHeaders["x-amz-server-side-encryption-customer-key-md5"]);
    assert.equal(withKey["x-amz-server-side-encryption"], undefined);
    const noKey = await completeRaw("c-nokey", "SSE-C");
    assert.equal(noKey["x-amz-server-side-encryption-customer-algorithm"], "AES256");
    assert.equal(noKey["x-amz-server-side-encryption-customer-key-md5"], undefined);
    const got = await c.send(new s3.GetObjectCommand({ Bucket: "slowe", Key: "c-key", SSECustomerAlgorithm: "AES256", SSECustomerKey: KEY }));
    assert.equal(await got.Body!.transformToString(), "only part");
  });
});
