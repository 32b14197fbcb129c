import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { BodyHasher, compositeChecksum, crc32, crc32c, multipartEtag } from "./hash.js";

test("CRC-32 and CRC-32C match their published check values, also when fed in pieces", () => {
  const nine = Buffer.from("123456789");
  assert.equal(crc32(nine), 0xcbf43926);
  assert.equal(crc32c(nine), 0xe3069283);
  const big = randomBytes(100_003);
  let c = 0;
  for (let i = 0; i < big.length; i += 777) c = crc32c(big.subarray(i, i + 777), c);
  assert.equal(c, crc32c(big));
  // RFC 3720 B.4: 32 bytes of zeros.
  assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa);
});

test("BodyHasher gives MD5, the integrity CRC and base64 S3 checksums", () => {
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const h = new BodyHasher(["crc32", "crc32c", "sha1", "sha256"]);
  for (let i = 0; i < data.length; i += 65536) h.update(data.subarray(i, i + 65536));
  const d = h.finish();
  assert.equal(d.size, data.length);
  assert.equal(d.md5, createHash("md5").update(data).digest("hex"));
  assert.equal(d.crc, crc32(data));
  const be = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b.toString("base64"); };
  assert.equal(d.checksums.crc32, be(crc32(data)));
  assert.equal(d.checksums.crc32c, be(crc32c(data)));
  assert.equal(d.checksums.sha1, createHash("sha1").update(data).digest("base64"));
  assert.equal(d.checksums.sha256, createHash("sha256").update(data).digest("base64"));
  assert.deepEqual(new BodyHasher([]).finish().checksums, {});
});

test("multipart ETag and composite checksum follow S3's rule (digest of digests, -N)", () => {
  const a = createHash("md5").update("a").digest("hex");
  const b = createHash("md5").update("b").digest("hex");
  const want = createHash("md5").update(Buffer.concat([Buffer.from(a, "hex"), Buffer.from(b, "hex")])).digest("hex");
  assert.equal(multipartEtag([a, b]), `${want}-2`);
  const s1 = createHash("sha256").update("x").digest("base64");
  const s2 = createHash("sha256").update("y").digest("base64");
  const comp = createHash("sha256").update(Buffer.concat([Buffer.from(s1, "base64"), Buffer.from(s2, "base64")])).digest("base64");
  assert.equal(compositeChecksum("sha256", [s1, s2]), `${comp}-2`);
});

test("hashing on worker threads (read back from the file) gives the same digests as inline hashing, for many bodies at once", async () => {
  const { OffloadHasher } = await import("./hash-pool.js");
  const { mkdtemp, open, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const path = await import("node:path");
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-hash-"));
  try {
    const bodies = Array.from({ length: 6 }, (_x, i) => randomBytes(9 * 1024 * 1024 + i * 1001));
    const algSets: ("crc32" | "crc32c" | "sha1" | "sha256")[][] = [["crc32", "crc32c", "sha1", "sha256"], []];
    for (const algs of algSets) {
      const results = await Promise.all(bodies.map(async (data, i) => {
        const fh = await open(path.join(dir, `b${i}-${algs.length}`), "w+");
        const h = new OffloadHasher(algs, fh.fd);
        for (let pos = 0; pos < data.length; pos += 300_000) {
          const piece = data.subarray(pos, pos + 300_000);
          await fh.write(piece, 0, piece.length, pos);
          h.written(pos, piece.length);
          await h.ready();
        }
        const d = await h.finish(data.length, crc32(data));
        await fh.close();
        return d;
      }));
      results.forEach((d, i) => {
        const ref = new BodyHasher(algs);
        ref.update(bodies[i]!);
        assert.deepEqual(d, ref.finish());
      });
    }
    // Abandoned half way: resolves once no worker reads the descriptor, and the pool keeps working.
    const fh = await open(path.join(dir, "abandoned"), "w+");
    const h = new OffloadHasher(["sha256"], fh.fd);
    await fh.write(bodies[0]!, 0, 2 << 20, 0);
    h.written(0, 2 << 20);
    await h.abandon();
    await fh.close();
    // A range the file does not hold fails the body instead of hashing garbage.
    const short = await open(path.join(dir, "short"), "w+");
    const hs = new OffloadHasher([], short.fd);
    hs.written(0, 1000);
    await assert.rejects(hs.finish(1000, 0), /short of a written range/);
    await short.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
