/** The SSE cipher (ranges, part boundaries), master key wrap/unwrap with rotation, SSE-C key checks, plaintext digests. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { ObjectEncryption } from "../blob/index.js";
import { S3Error } from "./errors.js";
import { ctrAt, cryptStream, partIv, seal, segmentsOf } from "./sse.js";
import { customerDataKey, keyCheck, keyMatches, parseCustomerKey, SSE_C_PREFIX, SseKeyRing } from "./sse-keys.js";

const key = randomBytes(32);

function whole(k: Buffer, iv: Buffer, data: Buffer): Buffer {
  const c = createCipheriv("aes-256-ctr", k, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function* chunked(b: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

test("ctrAt: the keystream at any offset is the whole stream's, also across a 128-bit counter carry", () => {
  const data = randomBytes(1000);
  for (const iv of [randomBytes(16), Buffer.alloc(16, 0xff), Buffer.from("00000000000000000000ffffffffffff", "hex")]) {
    const ct = whole(key, iv, data);
    for (const off of [0, 1, 15, 16, 17, 31, 32, 333, 999]) {
      assert.deepEqual(ctrAt(key, iv, off).update(data.subarray(off)), ct.subarray(off), `offset ${off}`);
    }
  }
});

test("cryptStream: single-segment ranges at odd offsets and chunk sizes decrypt to the plaintext", async () => {
  const data = randomBytes(5000), iv = randomBytes(16);
  const ct = whole(key, iv, data);
  const segs = segmentsOf({ size: data.length }, iv);
  for (const [start, end] of [[0, 4999], [1, 1], [15, 16], [17, 4000], [4095, 4999], [4999, 4999]] as const) {
    for (const chunk of [1, 7, 16, 1000, 1 << 20]) {
      const got = await collect(cryptStream(chunked(ct.subarray(start, end + 1), chunk), key, segs, start));
      assert.deepEqual(got, data.subarray(start, end + 1), `${start}-${end} by ${chunk}`);
    }
  }
});

test("cryptStream: a multipart object decrypts across part boundaries (each part its own IV; empty and non-contiguous parts)", async () => {
  const uploadIv = randomBytes(16);
  const parts = [{ partNumber: 1, size: 100 }, { partNumber: 3, size: 37 }, { partNumber: 4, size: 0 }, { partNumber: 9, size: 250 }];
  const plain = parts.map((p) => randomBytes(p.size));
  const cipher = Buffer.concat(parts.map((p, i) => whole(key, partIv(uploadIv, p.partNumber), plain[i]!)));
  const all = Buffer.concat(plain);
  const meta = { size: all.length, parts: parts.map((p) => ({ ...p, etag: "x" })), sse: { mode: "SSE-S3" as const, mp: true } };
  const segs = segmentsOf(meta, uploadIv);
  for (const [start, end] of [[0, all.length - 1], [99, 100], [100, 136], [136, 137], [50, 300], [137, 137], [386, 386]] as const) {
    for (const chunk of [3, 64, 4096]) {
      const got = await collect(cryptStream(chunked(cipher.subarray(start, end + 1), chunk), key, segs, start));
      assert.deepEqual(got, all.subarray(start, end + 1), `${start}-${end} by ${chunk}`);
    }
  }
  assert.notDeepEqual(partIv(uploadIv, 1), partIv(uploadIv, 3));
  // Parts with their own IV (PartInfo.sse), beside v1 parts of an upload begun before parts had one: each read with its own.
  const own = [randomBytes(16), undefined, randomBytes(16), undefined];
  const mixed = parts.map((p, i) => ({ ...p, etag: "x", ...(own[i] ? { sse: own[i]!.toString("base64") } : {}) }));
  const mixedCipher = Buffer.concat(parts.map((p, i) => whole(key, own[i] ?? partIv(uploadIv, p.partNumber), plain[i]!)));
  const mixedSegs = segmentsOf({ ...meta, parts: mixed }, uploadIv);
  for (const [start, end] of [[0, all.length - 1], [99, 100], [136, 137], [50, 300]] as const) {
    assert.deepEqual(await collect(cryptStream(chunked(mixedCipher.subarray(start, end + 1), 17), key, mixedSegs, start)), all.subarray(start, end + 1), `mixed ${start}-${end}`);
  }
  assert.throws(() => segmentsOf({ ...meta, parts: [{ partNumber: 1, size: 1, etag: "x", sse: "AAAA" }] }, uploadIv), /malformed IV/);
  // More stored bytes than the metadata says is refused, not decrypted with a wrong keystream.
  await assert.rejects(collect(cryptStream(chunked(Buffer.concat([cipher, Buffer.alloc(1)]), 64), key, segs, 0)), /longer than its metadata/);
});

test("SseKeyRing: the first key wraps, every key unwraps; a removed key or damaged wrap fails without leaking key bytes", () => {
  const [k1, k2] = [randomBytes(32).toString("base64"), randomBytes(32).toString("base64")];
  const old = new SseKeyRing([k1]);
  const dataKey = randomBytes(32);
  const w1 = old.wrap(dataKey);
  assert.equal(w1.kid, old.currentId);
  assert.ok(!w1.wk.includes(dataKey.toString("base64")));
  // Rotation: the new key goes first; objects wrapped with the old one still open.
  const rotated = new SseKeyRing([k2, k1]);
  assert.deepEqual(rotated.unwrap(w1.kid, w1.wk), dataKey);
  const w2 = rotated.wrap(dataKey);
  assert.notEqual(w2.kid, w1.kid);
  assert.deepEqual(new SseKeyRing([k2]).unwrap(w2.kid, w2.wk), dataKey);
  // The old key removed: its objects no longer open, and the error names the key id only.
  assert.throws(() => new SseKeyRing([k2]).unwrap(w1.kid, w1.wk), (e: Error) => {
    assert.match(e.message, new RegExp(w1.kid));
    for (const secret of [k1, k2, dataKey.toString("base64")]) assert.ok(!e.message.includes(secret));
    return true;
  });
  const bad = Buffer.from(w1.wk, "base64");
  bad[20]! ^= 1;
  assert.throws(() => old.unwrap(w1.kid, bad.toString("base64")), /does not open/);
  // The master key is derived, not the cluster key itself: its id is not a hash of the cluster key.
  assert.notEqual(old.currentId, createHash("sha256").update(Buffer.from(k1, "base64")).digest("hex").slice(0, 16));
  assert.throws(() => new SseKeyRing(["c2hvcnQ="]), /32 bytes/);
});

const hdrs = (h: Record<string, string>) => h as IncomingMessage["headers"];

test("parseCustomerKey: S3's checks of algorithm, key and key MD5; the key never appears in an error", () => {
  const k = randomBytes(32), b64 = k.toString("base64"), md5 = createHash("md5").update(k).digest("base64");
  const p = SSE_C_PREFIX;
  assert.equal(parseCustomerKey(hdrs({}), p), undefined);
  const ok = parseCustomerKey(hdrs({ [`${p}algorithm`]: "AES256", [`${p}key`]: b64, [`${p}key-md5`]: md5 }), p)!;
  assert.deepEqual(ok.key, k);
  assert.equal(ok.md5, md5);
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ [`${p}key`]: b64, [`${p}key-md5`]: md5 }, "InvalidArgument", /valid encryption algorithm/],
    [{ [`${p}algorithm`]: "AES128", [`${p}key`]: b64, [`${p}key-md5`]: md5 }, "InvalidEncryptionAlgorithmError", /AES256/],
    [{ [`${p}algorithm`]: "AES256", [`${p}key-md5`]: md5 }, "InvalidArgument", /secret key/],
    [{ [`${p}algorithm`]: "AES256", [`${p}key`]: randomBytes(16).toString("base64"), [`${p}key-md5`]: md5 }, "InvalidArgument", /secret key was invalid/],
    [{ [`${p}algorithm`]: "AES256", [`${p}key`]: b64 }, "InvalidArgument", /MD5 of the secret key/],
    [{ [`${p}algorithm`]: "AES256", [`${p}key`]: b64, [`${p}key-md5`]: createHash("md5").update("x").digest("base64") }, "InvalidArgument", /did not match/],
  ];
  for (const [h, code, msg] of cases) {
    assert.throws(() => parseCustomerKey(hdrs(h), p), (e: S3Error) => {
      assert.equal(e.code, code);
      assert.match(e.message, msg);
      assert.ok(!e.message.includes(b64) && !Object.values(e.extra).some((v) => v.includes(b64)));
      return true;
    });
  }
});

test("SSE-C key check value: salted and keyed; the right key matches, another does not; data keys differ per salt", () => {
  const k = randomBytes(32), salt = randomBytes(16);
  const kcv = keyCheck(k, salt);
  assert.ok(keyMatches(k, salt, kcv));
  assert.ok(!keyMatches(randomBytes(32), salt, kcv));
  assert.notEqual(keyCheck(k, randomBytes(16)), kcv);
  assert.notEqual(kcv, createHash("md5").update(k).digest("base64"));
  assert.notDeepEqual(customerDataKey(k, salt), customerDataKey(k, randomBytes(16)));
  assert.notDeepEqual(customerDataKey(k, salt), k);
});

test("seal: ciphertext as long as the plaintext; ETag and checksums of the plaintext recorded; a wrong Content-MD5 fails before the end", async () => {
  const data = Buffer.from("hello, encrypted world ".repeat(100)), iv = randomBytes(16);
  const md5 = createHash("md5").update(data).digest();
  const record: ObjectEncryption = { mode: "SSE-S3" };
  const s = seal(chunked(data, 100), key, iv, { size: data.length, md5: md5.toString("base64"), computeChecksums: ["sha256"] }, record);
  assert.deepEqual(s.expect, { size: data.length });
  const ct = await collect(s.body);
  assert.equal(ct.length, data.length);
  assert.deepEqual(ct, whole(key, iv, data));
  assert.equal(record.etag, md5.toString("hex"));
  assert.equal(record["ck-sha256"], createHash("sha256").update(data).digest("base64"));
  assert.equal(s.digests().etag, md5.toString("hex"));
  const bad = seal(chunked(data, 100), key, iv, { md5: createHash("md5").update("x").digest("base64") });
  await assert.rejects(collect(bad.body), (e: S3Error) => e.code === "BadDigest");
  const badSha = seal(chunked(data, 100), key, iv, { checksums: { sha256: createHash("sha256").update("x").digest("base64") } });
  await assert.rejects(collect(badSha.body), (e: S3Error) => e.code === "BadDigest" && /SHA256/.test(e.message));
});
