/** The reserved bucket VM and container images share, on the --dev store (real LevelDB, real body files). */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { openDevStore, type DevStore } from "../testutil.js";
import { ReservedBucket } from "./reserved.js";

let dev: DevStore;
before(async () => { dev = await openDevStore(); });
after(async () => { await dev.dispose().catch(() => {}); });

interface Rec { name: string; n: number }
async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> { yield b; }
const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

test("records: none before the first write; written, read, listed by name; unlinked; a reader may refuse names", async () => {
  const rb = new ReservedBucket<Rec>(dev.blobs, "thoc-test-reserved", "thoc-system", "test entries");
  assert.deepEqual(await rb.list(), []);
  assert.equal(await rb.read("a"), undefined);
  await rb.write({ name: "b", n: 2 });
  await rb.write({ name: "a", n: 1 });
  assert.equal((await dev.blobs.headBucket("thoc-test-reserved")).owner, "thoc-system");
  assert.deepEqual(await rb.read("a"), { name: "a", n: 1 });
  assert.deepEqual(await rb.list(), [{ name: "a", n: 1 }, { name: "b", n: 2 }]);
  assert.deepEqual(await rb.list((n) => (n === "a" ? Promise.resolve(undefined) : rb.read(n))), [{ name: "b", n: 2 }]);
  await rb.unlink("a");
  assert.equal(await rb.read("a"), undefined);
  assert.deepEqual((await rb.list()).map((r) => r.name), ["b"]);
});

test("put: the size and SHA-256 given are checked before the object exists; the SHA-256 is kept in user metadata", async () => {
  const rb = new ReservedBucket<Rec>(dev.blobs, "thoc-test-put", "thoc-system", "test entries");
  await rb.ensure();
  const body = Buffer.from("hello reserved");
  const sha = createHash("sha256").update(body).digest("hex");
  await rb.put("x/part", once(body), "application/octet-stream", { size: body.length, sha256: sha });
  const head = await dev.blobs.headObject("thoc-test-put", "x/part");
  assert.equal(head.userMeta.sha256, sha);
  assert.equal(head.size, body.length);
  await assert.rejects(rb.put("x/bad", once(body), "application/octet-stream", { sha256: "0".repeat(64) }), code("invalid_argument"));
  await assert.rejects(rb.put("x/short", once(body), "application/octet-stream", { size: body.length + 1 }), code("invalid_argument"));
  await assert.rejects(dev.blobs.headObject("thoc-test-put", "x/bad"), code("not_found"));
  await assert.rejects(dev.blobs.headObject("thoc-test-put", "x/short"), code("not_found"));
  await rb.put("x/plain", once(body), "text/plain");
  assert.deepEqual((await dev.blobs.headObject("thoc-test-put", "x/plain")).userMeta, {});
});

test("a bucket of that name an S3 user took first is refused, naming what it is reserved for; nothing is read from it", async () => {
  await dev.blobs.createBucket("thoc-test-taken", "alice");
  const rb = new ReservedBucket<Rec>(dev.blobs, "thoc-test-taken", "thoc-system", "test entries");
  await assert.rejects(rb.ensure(), code("failed_precondition", /reserved for test entries but belongs to S3 owner alice/));
  await assert.rejects(rb.read("a"), code("failed_precondition"));
  await assert.rejects(rb.list(), code("failed_precondition"));
});
