/**
 * prepareBody's decisions over real HTTP requests: framing (Content-Length,
 * aws-chunked, unsigned trailer), the declared length, the signed payload
 * hash (checked while streaming, or handed to the store), trailer checksums.
 * The S3 tests cover the common paths end to end; these are the refusals.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { prepareBody, readSmall } from "./body.js";
import { digestOf } from "../blob/index.js";
import { STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER, type AuthResult } from "./sigv4.js";

const HELLO = Buffer.from("hello");
const SHA = createHash("sha256").update(HELLO).digest("hex");
const auth = (payload: string): AuthResult => ({ accessKeyId: "AK", owner: "o", payload, chain: { key: Buffer.alloc(32), amzDate: "", scope: "", seed: "" } });

let server: http.Server;
let port = 0;
before(async () => {
  // The request's payload mode rides in a test header (auth is not what is under test); the answer is what prepareBody and reading made of it.
  server = http.createServer(async (req, res) => {
    let out: string;
    try {
      const p = prepareBody(req, auth(String(req.headers["x-test-payload"])), 2000, () => {});
      const data = await readSmall(p, 1 << 20);
      out = `ok ${data.toString()} size=${p.expect.size} expect=${JSON.stringify(p.expect.checksums)} compute=${p.expect.computeChecksums!.join(",")} echo=${p.echo.join(",")}`;
    } catch (err) {
      out = `${(err as { code: string }).code}: ${(err as Error).message}`;
    }
    res.writeHead(200, { Connection: "close", "Content-Length": Buffer.byteLength(out) }).end(out);
    req.resume();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as net.AddressInfo).port;
});
after(() => { server.closeAllConnections(); server.close(); });

/** Sends a raw HTTP request and returns the answer's body. */
function send(headers: Record<string, string | number>, body: string | Buffer = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.write(`PUT /b/k HTTP/1.1\r\nHost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`);
      s.write(body);
    });
    const got: Buffer[] = [];
    s.on("data", (c) => got.push(c));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(got).toString().split("\r\n\r\n").slice(1).join("\r\n\r\n")));
  });
}

const chunked = (trailers = "") => `5\r\nhello\r\n0\r\n${trailers}\r\n`;

test("framing and declared length", async () => {
  const cases: [string, Record<string, string | number>, string, RegExp][] = [
    ["Content-Length", { "x-test-payload": "UNSIGNED-PAYLOAD", "content-length": 5 }, "hello", /^ok hello size=5 /],
    ["chunked transfer: length unknown", { "x-test-payload": "UNSIGNED-PAYLOAD", "transfer-encoding": "chunked" }, "5\r\nhello\r\n0\r\n\r\n", /^ok hello size=undefined /],
    ["neither: an empty body", { "x-test-payload": "UNSIGNED-PAYLOAD" }, "", /^ok  size=0 /],
    ["aws-chunked without the decoded length", { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "content-length": chunked().length }, chunked(), /^MissingContentLength: aws-chunked bodies need x-amz-decoded-content-length/],
    ["aws-chunked, decoded length agrees", { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "x-amz-decoded-content-length": 5, "content-length": chunked().length }, chunked(), /^ok hello size=5 /],
    ["aws-chunked, more data than declared", { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "x-amz-decoded-content-length": 4, "content-length": chunked().length }, chunked(), /^InvalidRequest: The body is longer than its declared length/],
    ["aws-chunked, less data than declared", { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "x-amz-decoded-content-length": 6, "content-length": chunked().length }, chunked(), /^IncompleteBody: Declared 6 bytes, received 5/],
    ["over 5 GiB in one PUT", { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "x-amz-decoded-content-length": 5 * 1024 ** 3 + 1, "content-length": chunked().length }, chunked(), /^EntityTooLarge: /],
  ];
  for (const [what, headers, body, re] of cases) assert.match(await send(headers, body), re, what);
});

test("signed payload hash: checked as the body streams, or by the store when it computes SHA-256 anyway", async () => {
  const b64 = Buffer.from(SHA, "hex").toString("base64");
  assert.match(await send({ "x-test-payload": SHA, "content-length": 5 }, "hello"), /^ok hello size=5 expect=\{\} /);
  assert.match(await send({ "x-test-payload": SHA, "content-length": 5 }, "hellO"), /^XAmzContentSHA256Mismatch: /);
  // A SHA-256 checksum asked for: the signed hash becomes the store's expected value (readSmall plays the store here).
  assert.match(await send({ "x-test-payload": SHA, "content-length": 5, "x-amz-sdk-checksum-algorithm": "SHA256" }, "hello"), new RegExp(`^ok hello size=5 expect=\\{"sha256":"${b64.replace(/[+/]/g, "\\$&")}"\\} compute=sha256 echo=sha256$`));
  assert.match(await send({ "x-test-payload": SHA, "content-length": 5, "x-amz-sdk-checksum-algorithm": "SHA256" }, "hellO"), /^XAmzContentSHA256Mismatch: /, "the store's BadDigest is the client's hash mismatch");
  // A header SHA-256 that disagrees with the signed hash stays the header's: both are checked, and the header's fails as BadDigest.
  assert.match(await send({ "x-test-payload": SHA, "content-length": 5, "x-amz-checksum-sha256": digestOf("sha256", Buffer.from("other")) }, "hello"), /^BadDigest: /);
});

test("trailer checksums: announced, sent, well-formed, and only on framings that carry trailers", async () => {
  const crc = digestOf("crc32", HELLO);
  const base = { "x-test-payload": STREAMING_UNSIGNED_TRAILER, "x-amz-decoded-content-length": 5, "x-amz-trailer": "x-amz-checksum-crc32" };
  const withTrailer = (v: string) => chunked(`x-amz-checksum-crc32:${v}\r\n`);
  assert.match(await send({ ...base, "content-length": withTrailer(crc).length }, withTrailer(crc)), new RegExp(`^ok hello size=5 expect=\\{"crc32":"${crc.replace(/[+/]/g, "\\$&")}"\\} compute=crc32 echo=crc32$`));
  assert.match(await send({ ...base, "content-length": chunked().length }, chunked()), /^InvalidRequest: The trailer x-amz-checksum-crc32 was declared but not sent/);
  const wrong = digestOf("crc32", Buffer.from("other"));
  assert.match(await send({ ...base, "content-length": withTrailer(wrong).length }, withTrailer(wrong)), /^BadDigest: The CRC32 you specified/, "a wrong value is caught by the store");
  assert.match(await send({ ...base, "content-length": withTrailer("nope").length }, withTrailer("nope")), /^BadDigest: The CRC32 you specified/, "a malformed value is caught here");
  assert.match(await send({ ...base, "x-amz-trailer": "x-amz-checksum-crc64nvme", "content-length": 0 }), /^NotImplemented: CRC64NVME/);
  assert.match(await send({ ...base, "x-amz-trailer": "x-amz-meta-a", "content-length": 0 }), /^InvalidRequest: The trailer x-amz-meta-a is not supported/);
  assert.match(await send({ "x-test-payload": STREAMING_SIGNED, "x-amz-decoded-content-length": 5, "x-amz-trailer": "x-amz-checksum-crc32", "content-length": 0 }), /^InvalidRequest: x-amz-trailer needs /);
  assert.match(await send({ "x-test-payload": SHA, "x-amz-trailer": "x-amz-checksum-crc32", "content-length": 0 }), /^InvalidRequest: x-amz-trailer needs /);
});
