/** Images in the object store's reserved bucket with a per-node cache: the --dev store (real LevelDB, real body files), real S3 client. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import { openDevStore, type DevStore } from "../objectstore/testutil.js";
import { startS3 } from "../objectstore/s3/testutil.js";
import { IMAGE_BUCKET, IMAGE_OWNER, ObjectImageStore } from "./images-objectstore.js";

let dir: string;
let dev: DevStore;
let blobs: DevStore["blobs"];
let store: ObjectImageStore;
let cacheDir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-imgos-"));
  // inlineMax 0: every object body is a file under replicas/objects, so a test can damage one.
  dev = await openDevStore({ dir, inlineMax: 0 });
  blobs = dev.blobs;
  cacheDir = path.join(dir, "data", "images");
  store = new ObjectImageStore(blobs, cacheDir);
});
after(async () => {
  await dev.dispose().catch(() => {});
});

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};
async function readObject(key: string): Promise<Buffer> {
  const bufs: Buffer[] = [];
  for await (const c of (await blobs.getObject(IMAGE_BUCKET, key)).body) bufs.push(Buffer.from(c));
  return Buffer.concat(bufs);
}
async function* once(b: Buffer): AsyncGenerator<Uint8Array> { yield b; }
/** Every file under d, recursively. */
async function filesUnder(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(d, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile()) out.push(path.join(e.parentPath ?? (e as { path: string }).path, e.name));
  return out;
}

let qcow: Buffer;
test("import: every part and the record land in the reserved bucket, with the SHA-256 in user metadata", async () => {
  const f = path.join(dir, "x.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", f, "64M"]);
  qcow = await readFile(f);
  const w = await store.begin("debian-12", { sha256: { disk: sha(qcow) } });
  for (let i = 0; i < qcow.length; i += 4096) await w.write("disk", qcow.subarray(i, i + 4096));
  const rec = await w.commit();
  assert.equal(rec.files[0]?.format, "qcow2");
  const b = await blobs.headBucket(IMAGE_BUCKET);
  assert.equal(b.owner, IMAGE_OWNER);
  const m = await blobs.headObject(IMAGE_BUCKET, "debian-12/disk");
  assert.equal(m.userMeta.sha256, sha(qcow));
  assert.equal(m.size, qcow.length);
  assert.ok((await readObject("debian-12/disk")).equals(qcow));
  assert.deepEqual(JSON.parse((await readObject("debian-12/record.json")).toString()), rec);

  const w2 = await store.begin("kern", { cmdline: "console=ttyS0" });
  await w2.write("kernel", Buffer.from("kernel-bytes"));
  await w2.write("initrd", Buffer.from("initrd-bytes"));
  await w2.commit();
  assert.equal((await blobs.headObject(IMAGE_BUCKET, "kern/initrd")).userMeta.sha256, sha(Buffer.from("initrd-bytes")));
  assert.deepEqual((await store.list()).map((r) => r.name), ["debian-12", "kern"]);
  await assert.rejects(store.begin("kern"), code("already_exists", /--replace/));
  assert.equal((await store.verify("debian-12")).name, "debian-12");
});

test("a wiped cache is fetched back from the bucket and verified; so is another node's empty cache", async () => {
  await rm(cacheDir, { recursive: true, force: true });
  const rec = await store.verify("debian-12");
  assert.ok((await readFile(store.pathOf("debian-12", "disk"))).equals(qcow));
  assert.deepEqual(JSON.parse(await readFile(path.join(cacheDir, "debian-12", "image.json"), "utf8")), rec);
  // A second node (own cache dir, same store): nothing cached, the bucket has it.
  const other = new ObjectImageStore(blobs, path.join(dir, "node2", "images"));
  await other.verify("kern");
  assert.equal((await readFile(other.pathOf("kern", "kernel"))).toString(), "kernel-bytes");
  assert.equal((await readFile(other.pathOf("kern", "initrd"))).toString(), "initrd-bytes");
  assert.deepEqual((await readdir(path.join(dir, "node2", "images"))).sort(), ["kern"], "no temp files left");
});

test("a corrupted cached file is refetched, not booted", async () => {
  const p = store.pathOf("debian-12", "disk");
  const before = await stat(p);
  const bad = Buffer.from(qcow);
  bad[100] = bad[100]! ^ 0xff;
  await writeFile(p, bad);
  await store.verify("debian-12");
  assert.ok((await readFile(p)).equals(qcow));
  assert.equal((await stat(p)).size, before.size);
  // Truncated too.
  await store.verify("kern");
  await writeFile(store.pathOf("kern", "kernel"), "kern");
  await store.verify("kern");
  assert.equal((await readFile(store.pathOf("kern", "kernel"))).toString(), "kernel-bytes");
});

test("a damaged bucket copy fails with DATA_LOSS and leaves no bad disk in the cache", async () => {
  // Bit rot in the blob file: the blob store's own CRC catches it.
  const before = new Set(await filesUnder(dev.objectsDir));
  const w = await store.begin("rot");
  await w.write("disk", Buffer.alloc(1 << 20, 3));
  await w.commit();
  const added = (await filesUnder(dev.objectsDir)).filter((f) => !before.has(f));
  const disk = await (async () => { for (const f of added) if ((await stat(f)).size === 1 << 20) return f; })();
  assert.ok(disk, `the disk's blob file among ${added.join(", ")}`);
  const fh = await open(disk, "r+");
  await fh.write(Buffer.from([0x42]), 0, 1, 5000);
  await fh.close();
  await rm(path.join(cacheDir, "rot"), { recursive: true, force: true });
  await assert.rejects(store.verify("rot"), code("data_loss", /image rot: the object store's copy of its disk is damaged.*import the image again/));
  await assert.rejects(stat(store.pathOf("rot", "disk")), { code: "ENOENT" });

  // An object whose bytes no longer match the image record (CRC fine, SHA-256 not).
  await blobs.putObject({ bucket: IMAGE_BUCKET, key: "kern/kernel", body: once(Buffer.from("evil-kernel!")), headers: {}, userMeta: { sha256: sha(Buffer.from("kernel-bytes")) }, expect: {} });
  await rm(path.join(cacheDir, "kern"), { recursive: true, force: true });
  await assert.rejects(store.verify("kern"), code("data_loss", /image kern: .*kernel is damaged \(fetched 12 bytes with SHA-256/));
  await assert.rejects(stat(store.pathOf("kern", "kernel")), { code: "ENOENT" });
});

test("delete removes the image from the bucket and the cache; another node can no longer use it", async () => {
  const other = new ObjectImageStore(blobs, path.join(dir, "node2", "images"));
  await store.verify("debian-12");
  await other.verify("debian-12");
  await store.delete("debian-12");
  await assert.rejects(blobs.headObject(IMAGE_BUCKET, "debian-12/disk"), code("not_found"));
  await assert.rejects(blobs.headObject(IMAGE_BUCKET, "debian-12/record.json"), code("not_found"));
  await assert.rejects(stat(path.join(cacheDir, "debian-12")), { code: "ENOENT" });
  assert.equal(await store.get("debian-12"), undefined);
  assert.deepEqual((await store.list()).map((r) => r.name), ["kern", "rot"]);
  await assert.rejects(store.delete("debian-12"), code("not_found"));
  await assert.rejects(other.verify("debian-12"), code("not_found", /thoc-node image import debian-12 FILE/));
});

test("S3 users (root key included) neither list nor delete the reserved bucket; a name taken first is refused clearly", async () => {
  // The store stays open for after(): the fixture's close() must not close it.
  const f = await startS3({}, new Proxy(blobs, { get: (t, k) => (k === "close" ? async () => {} : Reflect.get(t, k, t)) }));
  try {
    const c = f.client();
    const lb = await c.send(new s3.ListBucketsCommand({}));
    assert.ok(!(lb.Buckets ?? []).some((b) => b.Name === IMAGE_BUCKET), "thoc-images is not listed to root");
    await assert.rejects(c.send(new s3.DeleteBucketCommand({ Bucket: IMAGE_BUCKET })), (e: { $metadata: { httpStatusCode?: number } }) => e.$metadata.httpStatusCode === 403);
    await assert.rejects(c.send(new s3.ListObjectsV2Command({ Bucket: IMAGE_BUCKET })), (e: { $metadata: { httpStatusCode?: number } }) => e.$metadata.httpStatusCode === 403);
    await assert.rejects(c.send(new s3.GetObjectCommand({ Bucket: IMAGE_BUCKET, Key: "kern/record.json" })), (e: { $metadata: { httpStatusCode?: number } }) => e.$metadata.httpStatusCode === 403);
    // An S3 user who created the bucket name first does not get to feed images to VMs.
    await c.send(new s3.CreateBucketCommand({ Bucket: "taken-images" }));
    const squatted = new ObjectImageStore(blobs, path.join(dir, "node3", "images"), { bucket: "taken-images" });
    await assert.rejects(squatted.begin("x"), code("failed_precondition", /reserved for VM images but belongs to S3 owner root/));
    await assert.rejects(squatted.get("x"), code("failed_precondition"));
  } finally {
    await f.close();
  }
});
