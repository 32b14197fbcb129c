/**
 * Bad input: each gets its S3 error (status, code, request id) and the server
 * stays up and keeps serving: malformed XML, bad ranges, invalid bucket
 * names, oversize headers, truncated and stalled bodies, broken aws-chunked
 * framing, garbage HTTP, unsupported methods.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import net from "node:net";
import { ROOT, codeOf, raw, signer, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

/** Writes bytes on a raw socket; resolves with everything the server sent until it closed or `waitMs` passed. */
function rawSocket(port: number, chunks: (string | Buffer)[], opts: { endWrite?: boolean; destroyAfterMs?: number; waitMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    const done = () => { clearTimeout(t); s.destroy(); resolve(got); };
    const t = setTimeout(done, opts.waitMs ?? 3000);
    s.on("data", (d) => { got += d.toString("latin1"); });
    s.on("close", done);
    s.on("error", done);
    s.on("connect", () => {
      for (const c of chunks) s.write(c);
      if (opts.endWrite) s.end();
      if (opts.destroyAfterMs !== undefined) setTimeout(() => s.destroy(), opts.destroyAfterMs);
    });
  });
}

export function badInputSuite(makeStore: MakeStore): void {
  describe("bad input gets its S3 error and the server stays up", () => {
    let f: Fixture;
    before(async () => {
      f = await startS3({ THOC_S3_IDLE_TIMEOUT: "400ms", THOC_S3_MAX_HEADER_BYTES: "4096" }, makeStore);
      assert.equal((await raw(f, { method: "PUT", path: "/bad-input" })).status, 200);
    });
    after(async () => {
      // After everything below, the server still answers.
      const r = await raw(f, { method: "GET", path: "/" });
      assert.equal(r.status, 200);
      await f.close();
    });

    const expectError = (r: { status: number; body: string; headers: Record<string, unknown> }, status: number, code: string) => {
      assert.equal(r.status, status, r.body);
      assert.equal(codeOf(r.body), code, r.body);
      assert.ok(r.headers["x-amz-request-id"]);
      assert.match(r.body, /<RequestId>[0-9A-F]+<\/RequestId>/);
    };

    test("malformed XML → 400 MalformedXML (Delete, CompleteMultipartUpload, CreateBucketConfiguration), and over-large XML", async () => {
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: "<Delete><Object><Key>a</Key></Delete>" }), 400, "MalformedXML");
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: "not xml at all" }), 400, "MalformedXML");
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: "<Other/>" }), 400, "MalformedXML");
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: "<Delete></Delete>" }), 400, "MalformedXML");
      expectError(await raw(f, { method: "PUT", path: "/new-bucket-x", body: "<CreateBucketConfiguration><LocationConstraint>" }), 400, "MalformedXML");
      const many = "<Delete>" + Array.from({ length: 1001 }, (_, i) => `<Object><Key>k${i}</Key></Object>`).join("") + "</Delete>";
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: many }), 400, "MalformedXML");
      const huge = "<Delete>" + "<!-- pad -->".repeat(300_000) + "</Delete>";
      expectError(await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: huge }), 400, "MalformedXML");
      // An unclosed-tag flood with a valid Content-MD5: a short answer that does not echo the parser's state, quickly.
      const flood = "<a>".repeat(30_000);
      const t0 = Date.now();
      const fr = await raw(f, { method: "POST", path: "/bad-input", query: { delete: "" }, body: flood, headers: { "content-md5": createHash("md5").update(flood).digest("base64") } });
      const floodMs = Date.now() - t0;
      expectError(fr, 400, "MalformedXML");
      assert.ok(fr.body.length < 1024, `MalformedXML answer of ${fr.body.length} bytes`);
      assert.ok(floodMs < 500, `answered in ${floodMs} ms`);
      const mp = await raw(f, { method: "POST", path: "/bad-input/obj", query: { uploads: "" } });
      const id = /<UploadId>([^<]+)<\/UploadId>/.exec(mp.body)![1]!;
      expectError(await raw(f, { method: "POST", path: "/bad-input/obj", query: { uploadId: id }, body: "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>1</ETag></Part></CompleteMultipartUpload>" }), 400, "MalformedXML");
    });

    test("bad ranges: unsatisfiable → 416 InvalidRange with Content-Range */size; bad copy-source range → 400", async () => {
      assert.equal((await raw(f, { method: "PUT", path: "/bad-input/ten", body: "0123456789" })).status, 200);
      const r = await raw(f, { method: "GET", path: "/bad-input/ten", headers: { range: "bytes=20-30" } });
      expectError(r, 416, "InvalidRange");
      assert.equal(r.headers["content-range"], "bytes */10");
      assert.equal((await raw(f, { method: "GET", path: "/bad-input/ten", headers: { range: "lines=1-2" } })).status, 200, "an unknown unit is ignored");
      assert.equal((await raw(f, { method: "GET", path: "/bad-input/ten", headers: { range: "bytes=0-1,4-5" } })).status, 200, "several ranges: whole object");
      expectError(await raw(f, { method: "GET", path: "/bad-input/ten", query: { partNumber: "0" } }), 400, "InvalidArgument");
      expectError(await raw(f, { method: "GET", path: "/bad-input/ten", query: { partNumber: "2" } }), 416, "InvalidPartNumber");
    });

    test("invalid bucket names → 400 InvalidBucketName; unknown buckets → 404 NoSuchBucket; key too long → 400", async () => {
      for (const name of ["UPPER", "a_b", "-lead", "trail-", "a..b", "10.0.0.1", "xn--abc", "x".repeat(64)]) {
        expectError(await raw(f, { method: "PUT", path: `/${name}` }), 400, "InvalidBucketName");
      }
      expectError(await raw(f, { method: "GET", path: "/no-such-bucket/key" }), 404, "NoSuchBucket");
      expectError(await raw(f, { method: "PUT", path: `/bad-input/${"k".repeat(1025)}`, body: "x" }), 400, "KeyTooLongError");
    });

    test("oversize request headers → 431 RequestHeaderSectionTooLarge with an S3 XML body", async () => {
      const resp = await rawSocket(f.port, [`GET /bad-input HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(8000)}\r\n\r\n`]);
      assert.match(resp, /^HTTP\/1\.1 431 /);
      assert.match(resp, /x-amz-request-id: [0-9A-F]+/i);
      assert.match(resp, /<Code>RequestHeaderSectionTooLarge<\/Code>/);
      const meta = await raw(f, { method: "PUT", path: "/bad-input/meta", body: "x", headers: { "x-amz-meta-big": "v".repeat(2100) } });
      expectError(meta, 400, "MetadataTooLarge");
    });

    test("a body that stalls → 400 RequestTimeout after s3.idleTimeout; nothing is stored", async () => {
      const head = await signedPutHead(f, "/bad-input/stalled", 1000);
      const resp = await rawSocket(f.port, [head, Buffer.alloc(100, 1)], { waitMs: 5000 });
      assert.match(resp, /^HTTP\/1\.1 400 /);
      assert.match(resp, /<Code>RequestTimeout<\/Code>/);
      assert.match(resp, /Connection: close/i);
      assert.equal((await raw(f, { method: "HEAD", path: "/bad-input/stalled" })).status, 404);
    });

    test("a body cut off by the client closing the connection stores nothing; the server keeps serving", async () => {
      const head = await signedPutHead(f, "/bad-input/cut", 1000);
      await rawSocket(f.port, [head, Buffer.alloc(100, 1)], { destroyAfterMs: 50, waitMs: 500 });
      await rawSocket(f.port, [head, Buffer.alloc(100, 1)], { endWrite: true, waitMs: 500 });
      assert.equal((await raw(f, { method: "HEAD", path: "/bad-input/cut" })).status, 404);
      assert.equal((await raw(f, { method: "GET", path: "/bad-input", query: { "list-type": "2" } })).status, 200);
    });

    test("aws-chunked: truncated frame → 400 IncompleteBody; garbage size line → 400; decoded length mismatch → 400", async () => {
      const unsigned = { "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32" };
      const cut = await raw(f, { method: "PUT", path: "/bad-input/chunked-cut", payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers: { ...unsigned, "x-amz-decoded-content-length": "100" }, body: "64\r\n" + "a".repeat(50) });
      expectError(cut, 400, "IncompleteBody");
      const garbage = await raw(f, { method: "PUT", path: "/bad-input/chunked-bad", payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers: { ...unsigned, "x-amz-decoded-content-length": "3" }, body: "zz\r\nabc\r\n0\r\n\r\n" });
      expectError(garbage, 400, "InvalidRequest");
      const short = await raw(f, { method: "PUT", path: "/bad-input/chunked-short", payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers: { ...unsigned, "x-amz-decoded-content-length": "10" }, body: "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n" });
      expectError(short, 400, "IncompleteBody");
      const good = await raw(f, { method: "PUT", path: "/bad-input/chunked-ok", payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers: { ...unsigned, "x-amz-decoded-content-length": "3" }, body: "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n" });
      assert.equal(good.status, 200, good.body);
      const wrongCrc = await raw(f, { method: "PUT", path: "/bad-input/chunked-crc", payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers: { ...unsigned, "x-amz-decoded-content-length": "3" }, body: "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n" });
      expectError(wrongCrc, 400, "BadDigest");
      for (const k of ["chunked-cut", "chunked-bad", "chunked-short", "chunked-crc"]) assert.equal((await raw(f, { method: "HEAD", path: `/bad-input/${k}` })).status, 404);
    });

    test("Expect: 100-continue: the body is asked for only after authentication", async () => {
      const bad = await rawSocket(f.port, [await signedPutHead(f, "/bad-input/continue", 5, { expect: "100-continue" }, "wrong-secret")], { waitMs: 1500 });
      assert.match(bad, /^HTTP\/1\.1 403 /);
      assert.doesNotMatch(bad, /100 Continue/);
      assert.match(bad, /<Code>SignatureDoesNotMatch<\/Code>/);
      const good = await new Promise<string>((resolve) => {
        const s = net.connect(f.port, "127.0.0.1");
        let got = "";
        s.on("data", (d) => {
          got += d.toString("latin1");
          if (got.startsWith("HTTP/1.1 100 Continue\r\n\r\n") && !got.includes("200")) s.write("hello");
          if (/HTTP\/1\.1 200/.test(got)) { s.destroy(); resolve(got); }
        });
        s.on("close", () => resolve(got));
        signedPutHead(f, "/bad-input/continue", 5, { expect: "100-continue" }).then((h) => s.write(h));
      });
      assert.match(good, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      assert.equal((await raw(f, { method: "GET", path: "/bad-input/continue" })).body, "hello");
    });

    test("bad checksum and digest headers, unsupported features, garbage HTTP, wrong methods", async () => {
      expectError(await raw(f, { method: "PUT", path: "/bad-input/c1", body: "x", headers: { "x-amz-checksum-crc32": "not base64!" } }), 400, "InvalidRequest");
      expectError(await raw(f, { method: "PUT", path: "/bad-input/c2", body: "x", headers: { "content-md5": "short" } }), 400, "InvalidDigest");
      expectError(await raw(f, { method: "PUT", path: "/bad-input/c3", body: "x", headers: { "x-amz-acl": "everyone" } }), 400, "InvalidArgument");
      expectError(await raw(f, { method: "PUT", path: "/bad-input/c4", body: "x", headers: { "x-amz-server-side-encryption": "aws:kms" } }), 501, "NotImplemented");
      expectError(await raw(f, { method: "PUT", path: "/bad-input/c5", body: "x", headers: { "x-amz-checksum-crc64nvme": "AAAAAAAAAAA=" } }), 501, "NotImplemented");
      expectError(await raw(f, { method: "GET", path: "/bad-input", query: { website: "" } }), 501, "NotImplemented");
      expectError(await raw(f, { method: "PATCH", path: "/bad-input/x" }), 405, "MethodNotAllowed");
      expectError(await raw(f, { method: "POST", path: "/" }), 405, "MethodNotAllowed");
      expectError(await raw(f, { method: "PUT", path: "/bad-input/p", query: { partNumber: "1", uploadId: "nope" }, body: "x" }), 404, "NoSuchUpload");
      const resp = await rawSocket(f.port, ["THIS IS NOT HTTP\r\n\r\n"]);
      assert.match(resp, /^HTTP\/1\.1 400 /);
      assert.match(resp, /<Code>InvalidRequest<\/Code>/);
    });
  });
}

/** The request line and headers of a signed UNSIGNED-PAYLOAD PUT declaring `length` bytes. */
async function signedPutHead(f: Fixture, path: string, length: number, extra: Record<string, string> = {}, secret?: string): Promise<string> {
  const headers: Record<string, string> = { host: `127.0.0.1:${f.port}`, "content-length": String(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD", ...extra };
  const s = await signer(ROOT, secret).sign({ method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path, query: {}, headers });
  return `PUT ${path} HTTP/1.1\r\n` + Object.entries(s.headers).map(([k, v]) => `${k}: ${v}`).join("\r\n") + "\r\n\r\n";
}
