/**
 * POST Object keeps memory bounded: a 512 MiB file in a browser form streams
 * through the multipart reader into the store without being buffered. The
 * store here reads the body and throws the bytes away, so only the S3
 * layer's own buffering can show in the process's memory.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemoryBlobStore, type ObjectMeta, type PutObjectInput } from "../blob/index.js";
import { postForm, signPolicy } from "./suite-post-object.js";
import { startS3, type Fixture } from "./testutil.js";

const MiB = 1024 * 1024;
const TOTAL = 512 * MiB;
const block = Buffer.alloc(MiB, 0x5a);

class DiscardingStore extends MemoryBlobStore {
  override async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    let size = 0;
    const md5 = createHash("md5");
    for await (const c of input.body) { size += c.length; md5.update(c); }
    return { bucket: input.bucket, key: input.key, size, etag: md5.digest("hex"), lastModified: Date.now(), userMeta: {}, checksums: {}, version: "1" };
  }
}

let f: Fixture;
let peak = 0;
let sampler: NodeJS.Timeout;
before(async () => {
  const store = new DiscardingStore();
  await store.createBucket("mem", "root");
  f = await startS3({}, store);
  sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
});
after(async () => { clearInterval(sampler); await f.close(); });

test("a 512 MiB form upload passes through in bounded memory", async () => {
  const base = process.memoryUsage().rss;
  peak = base;
  const md5 = createHash("md5");
  for (let i = 0; i < TOTAL / MiB; i++) md5.update(block);
  const r = await postForm(f.port, "/mem", [["key", "big"], ["success_action_status", "201"], ...signPolicy([{ key: "big" }, { success_action_status: "201" }])],
    { data: async function* () { for (let i = 0; i < TOTAL / MiB; i++) yield block; } });
  assert.equal(r.status, 201, r.body);
  assert.match(r.body, new RegExp(`<ETag>&quot;${md5.digest("hex")}&quot;</ETag>`));
  const grew = (peak - base) / MiB;
  assert.ok(grew < 128, `rss grew by ${grew.toFixed(0)} MiB for a ${TOTAL / MiB} MiB upload`);
});
