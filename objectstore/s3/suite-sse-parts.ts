/**
 * Encryption at rest, multipart: a part uploaded twice under one part number
 * gets a keystream of its own each time (never the same AES-CTR counter
 * block twice under one key), both bodies decrypt, and the completed object
 * reads back whole and by ranges across part boundaries (sse.ts).
 *
 * The store is wrapped to record what uploadPart is given (the ciphertext
 * and the part's IV field), because the replaced part is gone from the
 * store's metadata by the time the test looks.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import type { BlobStore, BodyExpectations } from "../blob/index.js";
import { ctrAt } from "./sse.js";
import { customerDataKey, SseKeyRing } from "./sse-keys.js";
import { startS3, type Fixture, type MakeStore } from "./test-fixture.js";

/** 32 ASCII bytes: the SDK sends them as the SSE-C key (base64) with their MD5. */
const KEY = "p".repeat(16) + "fedcba9876543210";

interface Recorded { partNumber: number; cipher: Buffer; iv?: string }

/** The store with every uploadPart body (what the S3 layer gives it: ciphertext) and IV field recorded in `log`. */
function recording(store: BlobStore, log: Recorded[]): BlobStore {
  const uploadPart: BlobStore["uploadPart"] = (bucket, key, uploadId, n, body, expect: BodyExpectations) => {
    const chunks: Buffer[] = [];
    const tee = (async function* () {
      for await (const c of body) {
        chunks.push(Buffer.from(c));
        yield c;
      }
    })();
    return store.uploadPart(bucket, key, uploadId, n, tee, expect).then((p) => {
      log.push({ partNumber: n, cipher: Buffer.concat(chunks), ...(expect.sse !== undefined ? { iv: expect.sse } : {}) });
      return p;
    });
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "uploadPart") return uploadPart;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

export function ssePartsSuite(makeStore: MakeStore): void {
  describe("S3 encryption at rest: every part body its own keystream", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const log: Recorded[] = [];
    const B = "sse-parts";
    const text = async (o: { Body?: unknown }) => Buffer.from(await (o.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());

    before(async () => {
      const wrapped: MakeStore = async () => {
        const m = await makeStore();
        return { store: recording(m.store, log), dispose: () => m.dispose() };
      };
      f = await startS3({ THOC_S3_SSE_CUSTOMER_KEYS_OVER_HTTP: "true" }, wrapped);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    for (const mode of ["SSE-S3", "SSE-C"] as const) {
      test(`${mode}: two uploads of one part number never share a keystream; both decrypt; the completed object reads back across part boundaries`, async () => {
        const enc = mode === "SSE-S3" ? { ServerSideEncryption: "AES256" as const } : { SSECustomerAlgorithm: "AES256", SSECustomerKey: KEY };
        const partEnc = mode === "SSE-S3" ? {} : { SSECustomerAlgorithm: "AES256", SSECustomerKey: KEY };
        const key = `re/${mode}`;
        const a = randomBytes(5 << 20), tail = randomBytes(3000);
        const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: key, ...enc }));
        const send = (n: number, body: Buffer) => c.send(new s3.UploadPartCommand({ Bucket: B, Key: key, UploadId: up.UploadId, PartNumber: n, Body: body, ...partEnc }));
        log.length = 0;
        // The same plaintext twice: under one keystream the two ciphertexts would be equal (their XOR is the plaintexts' XOR).
        await send(1, a);
        const e1 = await send(1, a);
        const e2 = await send(2, tail);
        const [first, second] = log.filter((r) => r.partNumber === 1);
        assert.ok(first && second, "both uploads of part 1 reached the store");
        assert.equal(first.cipher.length, a.length);
        assert.ok(first.iv && second.iv && first.iv !== second.iv, "each upload of part 1 carries its own IV");
        assert.notDeepEqual(first.cipher.subarray(0, 4096), second.cipher.subarray(0, 4096), "two uploads of part 1 were encrypted with one keystream");
        assert.ok(!first.cipher.subarray(0, 4096).equals(a.subarray(0, 4096)), "the store is given ciphertext");

        // Both bodies decrypt, each with its own IV, under the upload's data key.
        const parts = await f.store.listParts(B, key, up.UploadId!, { maxParts: 10 });
        const sse = parts.upload.extras?.sse;
        assert.ok(sse, "the upload keeps its encryption record");
        const dataKey = mode === "SSE-S3" ? new SseKeyRing(f.config.cluster.keys).unwrap(String(sse.kid), String(sse.wk))
          : customerDataKey(Buffer.from(KEY), Buffer.from(String(sse.salt), "base64"));
        for (const r of [first, second]) assert.ok(ctrAt(dataKey, Buffer.from(r.iv!, "base64"), 0).update(r.cipher).equals(a), "an upload of part 1 decrypts to its plaintext");
        assert.equal(parts.parts.find((p) => p.partNumber === 1)?.sse, second.iv, "the part keeps the IV of its latest body");

        await c.send(new s3.CompleteMultipartUploadCommand({
          Bucket: B, Key: key, UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1.ETag }, { PartNumber: 2, ETag: e2.ETag }] },
        }));
        const all = Buffer.concat([a, tail]);
        assert.ok((await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, ...partEnc })))).equals(all), "the completed object decrypts");
        for (const [s, e] of [[(5 << 20) - 20, (5 << 20) + 20], [(5 << 20) - 1, 5 << 20], [17, all.length - 2]] as const) {
          const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, Range: `bytes=${s}-${e}`, ...partEnc }));
          assert.ok((await text(r)).equals(all.subarray(s, e + 1)), `range ${s}-${e}`);
        }
        assert.ok((await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key, PartNumber: 2, ...partEnc })))).equals(tail));
      });
    }

    test("UploadPartCopy into one part number twice: two IVs, and the object reads back", async () => {
      const src = randomBytes(40_000);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "cp/src", Body: src }));
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "cp/dst", ServerSideEncryption: "AES256" }));
      log.length = 0;
      const copy = () => c.send(new s3.UploadPartCopyCommand({ Bucket: B, Key: "cp/dst", UploadId: up.UploadId, PartNumber: 1, CopySource: `${B}/cp/src` }));
      await copy();
      const pc = await copy();
      const [x, y] = log;
      assert.ok(x?.iv && y?.iv && x.iv !== y.iv);
      assert.ok(!x.cipher.equals(y.cipher), "two copies into part 1 were encrypted with one keystream");
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "cp/dst", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: pc.CopyPartResult?.ETag }] } }));
      assert.ok((await text(await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "cp/dst", Range: "bytes=100-20000" })))).equals(src.subarray(100, 20001)));
    });
  });
}
