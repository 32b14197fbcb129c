import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { open, readdir } from "node:fs/promises";
import path from "node:path";
import { chunks, dataFiles, filesUnder, fixture, isErr, putInput, readAll } from "./testutil.js";

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

test("put, head, get, range, overwrite and delete; old files go once replaced", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b1", "root");
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const m = await s.putObject(putInput("b1", "dir/a.bin", chunks(data.subarray(0, 1000), data.subarray(1000)), {
      headers: { contentType: "application/x-test" }, userMeta: { color: "blue" },
      expect: { size: data.length, md5: Buffer.from(md5(data), "hex").toString("base64"), computeChecksums: ["sha256", "crc32c"] },
    }));
    assert.equal(m.etag, md5(data));
    assert.equal(m.size, data.length);
    assert.equal(m.checksums.sha256, createHash("sha256").update(data).digest("base64"));
    assert.ok(m.checksums.crc32c);
    assert.equal(m.contentType, "application/x-test");
    assert.deepEqual((await s.headObject("b1", "dir/a.bin")).userMeta, { color: "blue" });
    const g = await s.getObject("b1", "dir/a.bin");
    assert.ok(Buffer.from(await readAll(g.body)).equals(data));
    const r = await s.getObject("b1", "dir/a.bin", { range: { start: 1_500_000, end: 2_600_000 } });
    assert.ok((await readAll(r.body)).equals(data.subarray(1_500_000, 2_600_001)));

    const before = await dataFiles(f);
    assert.equal(before.length, 1);
    const v1 = m.version;
    const m2 = await s.putObject(putInput("b1", "dir/a.bin", Buffer.from("small")));
    assert.ok(m2.version > v1, "versions increase");
    const after = await dataFiles(f);
    assert.equal(after.length, 1);
    assert.notEqual(after[0], before[0]);
    assert.equal((await readAll((await s.getObject("b1", "dir/a.bin")).body)).toString(), "small");

    await s.deleteObject("b1", "dir/a.bin");
    await s.deleteObject("b1", "dir/a.bin"); // missing: still fine
    await assert.rejects(s.headObject("b1", "dir/a.bin"), isErr("not_found", "NoSuchKey"));
    await assert.rejects(s.getObject("b1", "dir/a.bin"), isErr("not_found", "NoSuchKey"));
    await assert.rejects(s.getObject("nob", "x"), isErr("not_found", "NoSuchBucket"));
    assert.deepEqual(await dataFiles(f), []);

    const empty = await s.putObject(putInput("b1", "empty", chunks()));
    assert.equal(empty.etag, md5(Buffer.alloc(0)));
    assert.equal((await readAll((await s.getObject("b1", "empty")).body)).length, 0);
  } finally {
    await f.dispose();
  }
});

test("a body that does not match what the client promised is refused and leaves the old object", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    await s.putObject(putInput("b", "k", Buffer.from("old")));
    const data = Buffer.from("new data");
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { md5: Buffer.alloc(16).toString("base64") } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { checksums: { sha256: createHash("sha256").update("x").digest("base64") } } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { checksums: { crc32: "AAAAAA==" } } })), isErr("invalid_argument", "BadDigest"));
    await assert.rejects(s.putObject(putInput("b", "k", data, { expect: { size: 100 } })), isErr("invalid_argument", "IncompleteBody"));
    // The right values pass.
    const ok = await s.putObject(putInput("b", "k2", data, { expect: { checksums: { sha256: createHash("sha256").update(data).digest("base64") } } }));
    assert.equal(ok.checksums.sha256, createHash("sha256").update(data).digest("base64"));
    assert.equal((await readAll((await s.getObject("b", "k")).body)).toString(), "old");
    assert.deepEqual(await readdir(path.join(f.dir, "blobs", "tmp")), []);
    assert.equal((await dataFiles(f)).length, 2);
  } finally {
    await f.dispose();
  }
});

test("torn write: a body that fails half way leaves the previous object byte-exact and no files behind", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const old = randomBytes(2 * 1024 * 1024);
    await s.putObject(putInput("b", "k", old));
    async function* broken() {
      yield randomBytes(3 * 1024 * 1024);
      yield randomBytes(1024 * 1024);
      throw new Error("client went away");
    }
    await assert.rejects(s.putObject(putInput("b", "k", broken())), /client went away/);
    assert.ok((await readAll((await s.getObject("b", "k")).body)).equals(old));
    assert.deepEqual(await readdir(path.join(f.dir, "blobs", "tmp")), []);
    assert.equal((await dataFiles(f)).length, 1);
  } finally {
    await f.dispose();
  }
});

async function flipByte(file: string, at: number): Promise<void> {
  const fh = await open(file, "r+");
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, at);
  b[0] = b[0]! ^ 0x40;
  await fh.write(b, 0, 1, at);
  await fh.close();
}

test("bit rot: a flipped byte makes a whole-object read fail with data_loss, and the damaged bytes are never delivered whole", async () => {
  const f = await fixture({ inlineMax: 0 });
  const seen: string[] = [];
  await f.blobs.close();
  const { LocalBlobStore } = await import("./local.js");
  f.blobs = await LocalBlobStore.open({ store: f.local, inlineMax: 0, onDataLoss: (e) => seen.push(e.message) });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const big = randomBytes(5 * 1024 * 1024 + 3);
    const small = Buffer.from("tiny object");
    await s.putObject(putInput("b", "big", big));
    await s.putObject(putInput("b", "small", small));
    const files = await dataFiles(f);
    for (const rel of files) {
      const size = rel ? (await open(path.join(f.dir, "blobs", "data", rel), "r").then(async (h) => { const st = await h.stat(); await h.close(); return st.size; })) : 0;
      await flipByte(path.join(f.dir, "blobs", "data", rel), Math.floor(size / 2));
    }
    for (const [key, obj] of [["big", big], ["small", small]] as const) {
      let got = 0;
      await assert.rejects((async () => {
        for await (const c of (await s.getObject("b", key)).body) got += c.length;
      })(), isErr("data_loss", "InternalError"));
      assert.ok(got < obj.length, `${key}: only ${got} of ${obj.length} bytes may be delivered`);
    }
    assert.equal(seen.length, 2);
    // A range read does not cover the whole file, so it cannot be checked; it still reads.
    assert.equal((await readAll((await s.getObject("b", "big", { range: { start: 0, end: 99 } })).body)).length, 100);
    // A new PUT replaces the damaged object.
    await s.putObject(putInput("b", "small", small));
    assert.ok((await readAll((await s.getObject("b", "small")).body)).equals(small));
  } finally {
    await f.dispose();
  }
});

test("a truncated or missing file is reported as data_loss", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    await s.putObject(putInput("b", "t", randomBytes(10_000)));
    await s.putObject(putInput("b", "m", randomBytes(10_000)));
    const data = path.join(f.dir, "blobs", "data");
    const [a, b] = await filesUnder(data);
    const h = await open(path.join(data, a!), "r+");
    await h.truncate(5000);
    await h.close();
    const { unlink } = await import("node:fs/promises");
    await unlink(path.join(data, b!));
    for (const k of ["t", "m"]) {
      await assert.rejects(readAll((await s.getObject("b", k)).body), isErr("data_loss"));
    }
  } finally {
    await f.dispose();
  }
});

test("a GET in progress keeps reading the version it started with while the key is overwritten and deleted", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const v1 = randomBytes(4 * 1024 * 1024);
    await s.putObject(putInput("b", "k", v1));
    const g = await s.getObject("b", "k");
    const it = g.body[Symbol.asyncIterator]();
    const first = await it.next();
    await s.putObject(putInput("b", "k", Buffer.from("v2")));
    await s.deleteObject("b", "k");
    const rest: Buffer[] = [Buffer.from(first.value as Uint8Array)];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(Buffer.from(r.value));
    assert.ok(Buffer.concat(rest).equals(v1));
    // Once the reader is done, the retired file is removed.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await dataFiles(f), []);
  } finally {
    await f.dispose();
  }
});

test("buckets: idempotent create for the owner, another owner refused, BucketNotEmpty, sorted list", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    assert.equal((await s.createBucket("zeta", "alice")).created, true);
    assert.equal((await s.createBucket("alpha", "alice")).created, true);
    const again = await s.createBucket("zeta", "alice");
    assert.equal(again.created, false);
    assert.equal(again.bucket.owner, "alice");
    await assert.rejects(s.createBucket("zeta", "bob"), isErr("already_exists", "BucketAlreadyExists"));
    assert.deepEqual((await s.listBuckets()).map((b) => b.name), ["alpha", "zeta"]);
    await s.putObject(putInput("zeta", "x", Buffer.from("1")));
    await assert.rejects(s.deleteBucket("zeta"), isErr("failed_precondition", "BucketNotEmpty"));
    await s.deleteObject("zeta", "x");
    const up = await s.createMultipartUpload("zeta", "y", {}, {});
    await assert.rejects(s.deleteBucket("zeta"), isErr("failed_precondition", "BucketNotEmpty"));
    await s.abortMultipartUpload("zeta", "y", up.uploadId);
    await s.deleteBucket("zeta");
    await assert.rejects(s.headBucket("zeta"), isErr("not_found", "NoSuchBucket"));
    await assert.rejects(s.deleteBucket("zeta"), isErr("not_found", "NoSuchBucket"));
    await assert.rejects(s.putObject(putInput("zeta", "x", Buffer.from("1"))), isErr("not_found", "NoSuchBucket"));
    // A bucket whose name is a prefix of another's does not see its keys.
    await s.createBucket("a", "alice");
    await s.createBucket("a-b", "alice");
    await s.putObject(putInput("a-b", "k", Buffer.from("1")));
    await s.deleteBucket("a");
    assert.deepEqual((await s.listBuckets()).map((b) => b.name), ["a-b", "alpha"]);
  } finally {
    await f.dispose();
  }
});

test("everything survives a restart", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    await f.blobs.createBucket("b", "root");
    const data = randomBytes(100_000);
    await f.blobs.putObject(putInput("b", "k", data));
    await f.reopen();
    assert.ok((await readAll((await f.blobs.getObject("b", "k")).body)).equals(data));
    assert.equal(f.blobs.recovery.orphanFiles, 0);
    assert.deepEqual(f.blobs.recovery.sweptGenerations, []);
  } finally {
    await f.dispose();
  }
});

test("small bodies are kept inline in LevelDB: no file, checked before the first byte, removed with the object", async () => {
  const f = await fixture();
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const small = randomBytes(60_000);
    const m = await s.putObject(putInput("b", "s", chunks(small.subarray(0, 10), small.subarray(10))));
    assert.equal(m.etag, md5(small));
    const big = randomBytes(70_000);
    await s.putObject(putInput("b", "l", big));
    assert.equal((await dataFiles(f)).length, 1, "only the 70 kB body has a file");
    assert.ok((await readAll((await s.getObject("b", "s")).body)).equals(small));
    assert.ok((await readAll((await s.getObject("b", "s", { range: { start: 5, end: 9 } })).body)).equals(small.subarray(5, 10)));
    assert.equal((await s.l.inline.keys().all()).length, 1);
    // Damage the stored bytes: the read fails before anything is delivered.
    const [id] = await s.l.inline.keys().all();
    const bad = Buffer.from(small);
    bad[100] = bad[100]! ^ 1;
    await s.l.inline.put(id!, bad);
    let got = 0;
    await assert.rejects((async () => { for await (const c of (await s.getObject("b", "s")).body) got += c.length; })(), isErr("data_loss", "InternalError"));
    assert.equal(got, 0);
    await s.putObject(putInput("b", "s", Buffer.from("replaced")));
    await s.putObject(putInput("b", "l", Buffer.from("now small")));
    assert.equal((await s.l.inline.keys().all()).length, 2);
    assert.deepEqual(await dataFiles(f), []);
    await s.deleteObject("b", "s");
    await s.deleteObject("b", "l");
    assert.equal((await s.l.inline.keys().all()).length, 0);
  } finally {
    await f.dispose();
  }
});

test("DeleteBucket racing a PUT's commit or a CreateMultipartUpload never leaves an object or an upload in a deleted bucket", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const s = f.blobs;
    const gone = (b: string) => s.headBucket(b).then(() => false, () => true);
    const left = async (b: string) => [
      ...(await s.l.objects.keys({ gte: `${b}/`, lt: `${b}0` }).all()),
      ...(await s.l.uploadIndex.keys({ gte: `${b}/`, lt: `${b}0` }).all()),
    ];
    // 1. DeleteBucket exactly while a PUT commits: the commit has checked the bucket and reads the key's old record.
    await s.createBucket("race", "root");
    const objects = s.l.objects;
    const get = objects.get.bind(objects);
    let del: Promise<string> | undefined;
    objects.get = (async (k: string) => {
      if (k === "race/k" && !del) {
        del = s.deleteBucket("race").then(() => "deleted", (e: { details?: { s3Code?: string } }) => e.details?.s3Code ?? "error");
        // Without the bucket lock the delete finds the bucket empty and completes now; with it, it waits for this commit.
        await Promise.race([del, new Promise((r) => setTimeout(r, 100))]);
      }
      return get(k);
    }) as typeof objects.get;
    const put = await s.putObject(putInput("race", "k", randomBytes(5000))).then(() => "put", (e: { details?: { s3Code?: string } }) => e.details?.s3Code ?? "error");
    objects.get = get;
    const d = await del!;
    assert.deepEqual([put, d], ["put", "BucketNotEmpty"]);
    assert.equal(await gone("race"), false);

    // 2. CreateMultipartUpload and a PUT started around a DeleteBucket, at many interleavings.
    const outcomes = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const b = `race-${i}`;
      await s.createBucket(b, "root");
      const put = s.putObject(putInput(b, "k", randomBytes(1000))).then(() => "put", (e: { details?: { s3Code?: string } }) => e.details?.s3Code ?? "error");
      const mpu = s.createMultipartUpload(b, "m", {}, {}).then(() => "mpu", (e: { details?: { s3Code?: string } }) => e.details?.s3Code ?? "error");
      for (let t = 0; t < i % 8; t++) await new Promise((r) => setImmediate(r));
      const d = await s.deleteBucket(b).then(() => "deleted", (e: { details?: { s3Code?: string } }) => e.details?.s3Code ?? "error");
      const [p, m] = await Promise.all([put, mpu]);
      outcomes.add(`${p}/${m}/${d}`);
      if (await gone(b)) {
        assert.deepEqual(await left(b), [], `iteration ${i}: a record outlived its bucket (${p}/${m}/${d})`);
        assert.ok(p !== "put" && m !== "mpu", `iteration ${i}: a write succeeded into a bucket deleted under it (${p}/${m}/${d})`);
      } else {
        assert.equal(d, "BucketNotEmpty", `iteration ${i}: the bucket is still there, so its delete must have been refused`);
      }
    }
    // Files of PUTs refused at commit are removed: every file left is referenced.
    await s.settled();
    assert.equal((await dataFiles(f)).length, (await s.l.refs.keys().all()).length, [...outcomes].join(", "));
  } finally {
    await f.dispose();
  }
});
