import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { ChunkHasher, chunkBuffersInUse } from "./hash-chunks.js";
import { BodyHasher } from "./hash.js";
import type { ChecksumAlgorithm } from "./types.js";

async function feed(h: ChunkHasher, data: Buffer, piece: number): Promise<void> {
  for (let pos = 0; pos < data.length; pos += piece) {
    h.update(data.subarray(pos, pos + piece));
    const w = h.ready();
    if (w) await w;
    h.check();
  }
}

test("chunks hashed on workers give the same digests as inline hashing, for many bodies at once, and every buffer comes back", async () => {
  // Odd piece sizes: chunks straddle the 1 MiB buffers at every offset.
  const bodies = Array.from({ length: 8 }, (_x, i) => randomBytes(9 * 1024 * 1024 + i * 1001));
  const algSets: ChecksumAlgorithm[][] = [["crc32", "crc32c", "sha1", "sha256"], [], ["crc32c"], ["sha256"]];
  for (const algs of algSets) {
    const results = await Promise.all(bodies.map(async (data, i) => {
      const h = new ChunkHasher(algs, { sha256: i % 2 === 0, crc: true });
      await feed(h, data, 65_536 + 37 * i);
      return h.finish();
    }));
    results.forEach((d, i) => {
      const ref = new BodyHasher(algs);
      ref.update(bodies[i]!);
      const { sha256, ...rest } = d;
      assert.deepEqual(rest, ref.finish(), `body ${i}, algorithms [${algs.join(",")}]`);
      assert.equal(sha256, i % 2 === 0 ? createHash("sha256").update(bodies[i]!).digest("hex") : undefined);
    });
  }
  assert.equal(chunkBuffersInUse(), 0);
});

test("without crc the integrity CRC is 0 and not listed; an empty or tiny body works", async () => {
  const h = new ChunkHasher([], { sha256: true });
  const d = await h.finish();
  assert.deepEqual({ ...d }, { size: 0, md5: createHash("md5").digest("hex"), crc: 0, checksums: {}, sha256: createHash("sha256").digest("hex") });
  const t = new ChunkHasher(["crc32"], {});
  t.update(Buffer.from("abc"));
  const dt = await t.finish();
  assert.equal(dt.checksums.crc32, Buffer.from([0x35, 0x24, 0x41, 0xc2]).toString("base64"));
  assert.equal(chunkBuffersInUse(), 0);
});

test("a body abandoned half way gives its buffers back and the workers go on hashing others", async () => {
  const data = randomBytes(6 << 20);
  const h = new ChunkHasher(["sha1"], { sha256: true });
  h.update(data.subarray(0, 3_500_000));
  h.abandon();
  assert.equal(chunkBuffersInUse(), 0);
  const ok = new ChunkHasher(["sha1"], { sha256: true });
  await feed(ok, data, 1 << 20);
  const d = await ok.finish();
  assert.equal(d.sha256, createHash("sha256").update(data).digest("hex"));
  assert.equal(d.checksums.sha1, createHash("sha1").update(data).digest("base64"));
  assert.equal(chunkBuffersInUse(), 0);
});

test("many bodies at once wait for buffers instead of holding MAX_LAG each", async () => {
  const data = randomBytes(8 << 20);
  let peak = 0;
  await Promise.all(Array.from({ length: 24 }, async () => {
    const h = new ChunkHasher([], { sha256: true });
    for (let pos = 0; pos < data.length; pos += 1 << 20) {
      h.update(data.subarray(pos, pos + (1 << 20)));
      peak = Math.max(peak, chunkBuffersInUse());
      const w = h.ready();
      if (w) await w;
    }
    assert.equal((await h.finish()).sha256, createHash("sha256").update(data).digest("hex"));
  }));
  // Budget 24 plus at most one over it per body (never 24 × MAX_LAG = 96).
  assert.ok(peak <= 48, `peak ${peak} buffers`);
  assert.ok(peak >= 24, `peak ${peak}: the bodies ran one after another`);
  assert.equal(chunkBuffersInUse(), 0);
});
