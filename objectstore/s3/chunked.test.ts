/** The aws-chunked decoder fed in every kind of split: frames, CRLFs and signatures cut across socket reads. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChunkedDecoder } from "./chunked.js";
import { signingKey } from "./sigv4.js";

async function* pieces(buf: Buffer, sizes: () => number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length;) {
    const n = Math.max(1, Math.min(buf.length - i, sizes()));
    yield buf.subarray(i, i + n);
    i += n;
  }
}

async function drain(d: ChunkedDecoder): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of d) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

const AWS_BODY = Buffer.concat([
  Buffer.from("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"), Buffer.alloc(65536, "a"), Buffer.from("\r\n"),
  Buffer.from("400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"), Buffer.alloc(1024, "a"), Buffer.from("\r\n"),
  Buffer.from("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"),
]);
const chain = {
  key: signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3"),
  amzDate: "20130524T000000Z", scope: "20130524/us-east-1/s3/aws4_request",
  seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
};

test("signed chunks (AWS's example) decode and verify however the bytes are split", async () => {
  for (const sizes of [() => 1, () => 7, () => 65536, () => 1 + Math.floor(Math.random() * 5000), () => 1 << 20]) {
    const out = await drain(new ChunkedDecoder(pieces(AWS_BODY, sizes), { chain, trailer: false }));
    assert.equal(out.length, 66560);
    assert.ok(out.equals(Buffer.alloc(66560, "a")));
  }
});

test("a wrong seed (another request's signature) fails the first chunk", async () => {
  await assert.rejects(drain(new ChunkedDecoder(pieces(AWS_BODY, () => 999), { chain: { ...chain, seed: "0".repeat(64) }, trailer: false })),
    (e: { code: string }) => e.code === "SignatureDoesNotMatch");
});

test("unsigned chunks with a trailer, split at every position", async () => {
  const body = Buffer.from("5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n");
  for (let cut = 1; cut < body.length; cut++) {
    let first = true;
    const d = new ChunkedDecoder(pieces(body, () => (first ? ((first = false), cut) : body.length)), { trailer: true });
    assert.equal((await drain(d)).toString(), "hello world");
    assert.equal(d.trailers.get("x-amz-checksum-crc32"), "DUoRhQ==");
  }
});

test("truncation anywhere before the final chunk is IncompleteBody; a bad frame is InvalidRequest", async () => {
  const body = Buffer.from("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  for (const end of [2, 4, 8, 10, 14, 20]) {
    await assert.rejects(drain(new ChunkedDecoder(pieces(body.subarray(0, end), () => 3), { trailer: true })), (e: { code: string }) => e.code === "IncompleteBody", `cut at ${end}`);
  }
  await assert.rejects(drain(new ChunkedDecoder(pieces(Buffer.from("5\r\nhelloXX6\r\n"), () => 100), { trailer: false })), (e: { code: string }) => e.code === "InvalidRequest");
  await assert.rejects(drain(new ChunkedDecoder(pieces(Buffer.from("x".repeat(5000)), () => 100), { trailer: false })), (e: { code: string }) => e.code === "InvalidRequest");
});
