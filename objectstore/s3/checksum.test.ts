import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import zlib from "node:zlib";
import { crc32, crc32c, crc32Table, digestOf, hasher } from "./checksum.js";

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
