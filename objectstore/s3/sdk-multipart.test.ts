/**
 * The S3 layer's keepalive of a slow CompleteMultipartUpload, over an
 * in-memory store whose Complete is made slow (and made to fail). The
 * multipart protocol itself is in suite-multipart.ts (s3Suite).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
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
