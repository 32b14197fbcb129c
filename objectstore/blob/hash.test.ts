import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import zlib from "node:zlib";
import { BodyHasher, compositeChecksum, crc32, crc32c, crc32Table, digestOf, hasher, multipartEtag } from "./hash.js";

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

test("CRC32C matches the published check value and RFC 3720 vectors", () => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  const inc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  assert.equal(crc32c(inc), 0x46dd794e);
});

test("table-driven CRC32 matches the check value and zlib's native crc32 on random data, incrementally", () => {
  assert.equal(crc32Table(Buffer.from("123456789")), 0xcbf43926);
  const native = (zlib as unknown as { crc32?: (b: Uint8Array, v?: number) => number }).crc32;
  for (const n of [0, 1, 7, 8, 9, 63, 4096, 100_003]) {
    const b = randomBytes(n);
    const whole = crc32Table(b);
    const split = crc32Table(b.subarray(Math.floor(n / 3)), crc32Table(b.subarray(0, Math.floor(n / 3))));
    assert.equal(split, whole);
    assert.equal(crc32(b), whole);
    if (native) assert.equal(native(b), whole);
  }
});

test("hashers give S3's base64 digests, chunked or not", () => {
  const data = Buffer.from("hello world");
  assert.equal(digestOf("crc32", data), "DUoRhQ==");
  assert.equal(digestOf("crc32c", data), "yZRlqg==");
  assert.equal(digestOf("sha1", data), createHash("sha1").update(data).digest("base64"));
  assert.equal(digestOf("sha256", data), createHash("sha256").update(data).digest("base64"));
  const h = hasher("crc32c");
  h.update(data.subarray(0, 4));
  h.update(data.subarray(4));
  assert.equal(h.digest(), "yZRlqg==");
});
