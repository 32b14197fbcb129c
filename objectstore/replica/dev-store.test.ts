/**
 * The --dev store (a ring of one over the durable replica store) through the
 * BlobStore seam, for what the S3 suites cannot see: files on disk after a
 * failed or refused PUT, a GET that outlives an overwrite, a restart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import type { BlobErrorCode, PutObjectInput } from "../blob/index.js";
import { ReplicatedBlobStore } from "./blob-store.js";
import { openDevStore, type DevStore } from "../testutil.js";
import { filesUnder, readAll } from "./durable-testutil.js";

async function* chunks(...bufs: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const b of bufs) yield b;
}

function putInput(bucket: string, key: string, data: Uint8Array | AsyncIterable<Uint8Array>, extra: Partial<PutObjectInput> = {}): PutObjectInput {
  return { bucket, key, body: data instanceof Uint8Array ? chunks(data) : data, headers: {}, userMeta: {}, expect: {}, ...extra };
}

const isErr = (code: string, blobCode: BlobErrorCode) => (e: { code?: string; details?: { blobCode?: string }; message: string }) => {
  assert.equal(e.code, code, e.message);
  assert.equal(e.details?.blobCode, blobCode, e.message);
  return true;
};

/** The placed body files, once the unlinks of replaced ones have run. */
async function bodyFiles(d: DevStore): Promise<string[]> {
  await d.replicas.settled();
  return (await filesUnder(d.objectsDir)).filter((f) => !f.startsWith("tmp"));
}
const tmpFiles = (d: DevStore) => readdir(path.join(d.objectsDir, "tmp"));

test("dev store: a body that fails half way leaves the previous object byte-exact and no files behind", async () => {
  const d = await openDevStore({ inlineMax: 0 });
  try {
    const s = d.blobs;
    await s.createBucket("b", "root");
    const old = randomBytes(2 << 20);
    await s.putObject(putInput("b", "k", old));
    async function* broken() {
      yield randomBytes(3 << 20);
      yield randomBytes(1 << 20);
      throw new Error("client went away");
    }
    await assert.rejects(s.putObject(putInput("b", "k", broken())), /client went away/);
    assert.ok((await readAll((await s.getObject("b", "k")).body)).equals(old));
    assert.deepEqual(await tmpFiles(d), []);
    assert.equal((await bodyFiles(d)).length, 1);
  } finally {
    await d.dispose();
  }
});

test("dev store: a body that does not match what the client promised is refused and leaves the old object", async () => {
  const d = await openDevStore({ inlineMax: 0 });
  try {
    const s = d.blobs;
    await s.createBucket("b", "root");
    await s.putObject(putInput("b", "k", Buffer.from("old")));
    const data = Buffer.from("new data");
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { md5: Buffer.alloc(16).toString("base64") } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { checksums: { sha256: createHash("sha256").update("x").digest("base64") } } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { checksums: { crc32: "AAAAAA==" } } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { size: 100 } })), isErr("invalid_argument", "IncompleteBody"));
    const ok = await s.putObject(putInput("b", "k2", data, { expect: { checksums: { sha256: createHash("sha256").update(data).digest("base64") } } }));
    assert.equal(ok.checksums.sha256, createHash("sha256").update(data).digest("base64"));
    assert.equal((await readAll((await s.getObject("b", "k")).body)).toString(), "old");
    assert.deepEqual(await tmpFiles(d), []);
    assert.equal((await bodyFiles(d)).length, 2);
  } finally {
    await d.dispose();
  }
});

test("dev store: a GET in progress keeps reading the version it started with while the key is overwritten and deleted", async () => {
  const d = await openDevStore({ inlineMax: 0 });
  try {
    const s = d.blobs;
    await s.createBucket("b", "root");
    const v1 = randomBytes(4 << 20);
    await s.putObject(putInput("b", "k", v1));
    const it = (await s.getObject("b", "k")).body[Symbol.asyncIterator]();
    const first = await it.next();
    await s.putObject(putInput("b", "k", Buffer.from("v2")));
    await s.deleteObject("b", "k");
    const got: Buffer[] = [Buffer.from(first.value as Uint8Array)];
    for (let r = await it.next(); !r.done; r = await it.next()) got.push(Buffer.from(r.value));
    assert.ok(Buffer.concat(got).equals(v1));
    await assert.rejects(s.headObject("b", "k"), isErr("not_found", "NoSuchKey"));
    assert.deepEqual(await bodyFiles(d), []);
  } finally {
    await d.dispose();
  }
});

test("dev store: buckets, objects and multipart uploads in progress survive a restart", async () => {
  let d = await openDevStore({ inlineMax: 0 });
  try {
    await d.blobs.createBucket("b", "root");
    const data = randomBytes(100_000);
    await d.blobs.putObject(putInput("b", "k", data));
    const up = await d.blobs.createMultipartUpload("b", "m", {}, {});
    const part = await d.blobs.uploadPart("b", "m", up.uploadId, 1, chunks(Buffer.from("last part")), {});
    d = await d.reopen();
    assert.deepEqual(d.replicas.recovery, { tmpFiles: 0, orphanFiles: 0 });
    assert.deepEqual((await d.blobs.listBuckets()).map((b) => [b.name, b.owner]), [["b", "root"]]);
    assert.ok((await readAll((await d.blobs.getObject("b", "k")).body)).equals(data));
    const done = await d.blobs.completeMultipartUpload("b", "m", up.uploadId, [{ partNumber: 1, etag: part.etag }]);
    assert.equal(done.size, 9);
    assert.equal((await readAll((await d.blobs.getObject("b", "m")).body)).toString(), "last part");
  } finally {
    await d.dispose();
  }
});

test("dev store: a common prefix with many keys is skipped with one seek, not a scan; paging after it does not repeat it", async () => {
  const d = await openDevStore();
  try {
    const s = d.blobs;
    await s.createBucket("b", "root");
    const N = 300;
    for (let i = 0; i < N; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_x, j) => s.putObject(putInput("b", `big/${String(i + j).padStart(6, "0")}`, Buffer.from("x")))));
    }
    await s.putObject(putInput("b", "after", Buffer.from("y")));
    await s.putObject(putInput("b", "zz/1", Buffer.from("y")));
    // The same store, counting the records its listings read.
    let read = 0;
    const counted = new ReplicatedBlobStore({
      ...s.b,
      async listBucket(bucket, opts) {
        const l = await s.b.listBucket(bucket, opts);
        return { next: async () => { const r = await l.next(); if (r) read++; return r; }, seek: (k) => l.seek(k), close: () => l.close() };
      },
    });
    const r = await counted.listObjects({ bucket: "b", delimiter: "/", maxKeys: 1000 });
    assert.deepEqual(r.commonPrefixes, ["big/", "zz/"]);
    assert.deepEqual(r.objects.map((o) => o.key), ["after"]);
    assert.ok(read <= 4, `a delimited listing of 3 entries read ${read} records`);
    read = 0;
    assert.equal((await counted.listObjects({ bucket: "b", maxKeys: 1000 })).objects.length, N + 2);
    assert.equal(read, N + 2);
    const p1 = await s.listObjects({ bucket: "b", delimiter: "/", maxKeys: 2 });
    assert.deepEqual([...p1.objects.map((o) => o.key), ...p1.commonPrefixes], ["after", "big/"]);
    const p2 = await s.listObjects({ bucket: "b", delimiter: "/", maxKeys: 2, after: p1.nextAfter });
    assert.deepEqual(p2.commonPrefixes, ["zz/"]);
    assert.equal(p2.isTruncated, false);
  } finally {
    await d.dispose();
  }
});
