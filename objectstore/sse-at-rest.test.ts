/**
 * "A stolen disk yields ciphertext": objects written with SSE-S3 and SSE-C
 * through the S3 API on the --dev store (durable: real files, real LevelDB)
 * leave no plaintext, and no customer key, in any file of the data dir; the
 * same objects written without SSE do (the control that shows the scan sees
 * what it looks for).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import { startS3 } from "./s3/testutil.js";
import { openDevStore } from "./testutil.js";

const MARKER = "THOC-PLAINTEXT-MARKER-7f3a";
const CUSTOMER_KEY = "customer-key-0123456789abcdefghi"; // 32 bytes

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The files of the data dir holding any of `needles`. */
async function filesHolding(dir: string, needles: Buffer[]): Promise<string[]> {
  const hits: string[] = [];
  for (const f of await filesUnder(dir)) {
    const data = await readFile(f);
    if (needles.some((n) => data.includes(n))) hits.push(path.relative(dir, f));
  }
  return hits;
}

async function writeAll(sse: Partial<s3.PutObjectCommandInput>, mpSse: Partial<s3.CreateMultipartUploadCommandInput>, partSse: Partial<s3.UploadPartCommandInput>): Promise<{ hits: string[]; keyHits: string[] }> {
  const d = await openDevStore();
  const f = await startS3({ THOC_S3_SSE_CUSTOMER_KEYS_OVER_HTTP: "true" }, async () => ({ store: d.blobs, dispose: async () => {} }));
  try {
    const c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "disk" }));
    // Small (may be kept inline in the metadata store) and large (a body file), and a multipart object (part records).
    await c.send(new s3.PutObjectCommand({ Bucket: "disk", Key: "small", Body: MARKER.repeat(3), ...sse }));
    await c.send(new s3.PutObjectCommand({ Bucket: "disk", Key: "large", Body: MARKER.repeat(20_000), ...sse }));
    const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "disk", Key: "mp", ...mpSse }));
    const p1 = await c.send(new s3.UploadPartCommand({ Bucket: "disk", Key: "mp", UploadId: up.UploadId, PartNumber: 1, Body: Buffer.from(MARKER.repeat(210_000)), ...partSse }));
    const p2 = await c.send(new s3.UploadPartCommand({ Bucket: "disk", Key: "mp", UploadId: up.UploadId, PartNumber: 2, Body: MARKER, ...partSse }));
    await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "disk", Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } }));
    const got = await c.send(new s3.GetObjectCommand({ Bucket: "disk", Key: "large", ...(sse.SSECustomerKey ? { SSECustomerAlgorithm: "AES256", SSECustomerKey: CUSTOMER_KEY } : {}) }));
    assert.equal(await got.Body!.transformToString(), MARKER.repeat(20_000), "the object reads back");
  } finally {
    await f.close();
    await d.close();
  }
  const key = Buffer.from(CUSTOMER_KEY);
  const result = {
    hits: await filesHolding(d.dataDir, [Buffer.from(MARKER)]),
    keyHits: await filesHolding(d.dataDir, [key, Buffer.from(key.toString("base64")), createHash("md5").update(key).digest(), Buffer.from(createHash("md5").update(key).digest("base64"))]),
  };
  await rm(d.dir, { recursive: true, force: true });
  return result;
}

test("without SSE the plaintext is on disk (the scan finds what it looks for)", async () => {
  const r = await writeAll({}, {}, {});
  assert.ok(r.hits.length > 0, "the marker is found in the data dir");
});

test("SSE-S3: no file of the data dir holds the plaintext", async () => {
  const r = await writeAll({ ServerSideEncryption: "AES256" }, { ServerSideEncryption: "AES256" }, {});
  assert.deepEqual(r.hits, []);
});

test("SSE-C: no file of the data dir holds the plaintext, the customer key or its MD5", async () => {
  const k = { SSECustomerAlgorithm: "AES256", SSECustomerKey: CUSTOMER_KEY };
  const r = await writeAll(k, k, k);
  assert.deepEqual(r.hits, []);
  assert.deepEqual(r.keyHits, []);
});
