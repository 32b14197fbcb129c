/**
 * SigV4: AWS's published examples replayed byte for byte (header auth,
 * signed aws-chunked, presigned), the SDK's own signer and presigner, wrong
 * secrets, unknown keys, skewed clocks, expired URLs and anonymous requests.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import { MemoryBlobStore } from "../blob/index.js";
import { codeOf, OTHER, qs, raw, send, signer, startS3, type Fixture } from "./testutil.js";

const AWS_EXAMPLE_TIME = Date.UTC(2013, 4, 24, 0, 0, 0);
type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
const rejectsWith = (p: Promise<unknown>, name: string, status: number) =>
  assert.rejects(p, (e: SdkErr) => { assert.equal(e.name, name); assert.equal(e.$metadata.httpStatusCode, status); return true; });

describe("SigV4: AWS's published examples (clock set to 2013-05-24)", () => {
  let f: Fixture;
  before(async () => {
    const store = new MemoryBlobStore();
    await store.createBucket("examplebucket", "root");
    f = await startS3({ THOC_S3_DOMAIN: "s3.amazonaws.com" }, store, () => AWS_EXAMPLE_TIME + 1000);
    await store.putObject({ bucket: "examplebucket", key: "test.txt", body: (async function* () { yield Buffer.from("0123456789abcdef"); })(), headers: {}, userMeta: {}, expect: {} });
  });
  after(() => f.close());

  test("GET Object with Range, virtual-host style (signature f0e8bdb8...)", async () => {
    const r = await send(f.port, "GET", "/test.txt", {
      host: "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z", range: "bytes=0-9",
      "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      authorization: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    }, Buffer.alloc(0));
    assert.equal(r.status, 206, r.body);
    assert.equal(r.body, "0123456789");
  });

  test("presigned GET (signature aeeed9bb...), and the same URL after its 86400 s are up", async () => {
    const q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    const r = await send(f.port, "GET", "/test.txt?" + q, { host: "examplebucket.s3.amazonaws.com" }, Buffer.alloc(0));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, "0123456789abcdef");
    const bad = await send(f.port, "GET", "/test.txt?" + q.replace("X-Amz-Signature=a", "X-Amz-Signature=b"), { host: "examplebucket.s3.amazonaws.com" }, Buffer.alloc(0));
    assert.equal(codeOf(bad.body), "SignatureDoesNotMatch");
  });

  test("PUT with signed aws-chunked payload (seed 4f232c43..., chunks ad80c730..., 0055627c..., b6c6ea8a...)", async () => {
    const a64k = Buffer.alloc(65536, "a"), a1k = Buffer.alloc(1024, "a");
    const body = Buffer.concat([
      Buffer.from("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"), a64k, Buffer.from("\r\n"),
      Buffer.from("400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"), a1k, Buffer.from("\r\n"),
      Buffer.from("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"),
    ]);
    assert.equal(body.length, 66824);
    const headers = {
      host: "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
      authorization: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "66560", "content-length": "66824",
    };
    const r = await send(f.port, "PUT", "/examplebucket/chunkObject.txt", headers, body);
    assert.equal(r.status, 200, r.body);
    const meta = await f.store.headObject("examplebucket", "chunkObject.txt");
    assert.equal(meta.size, 66560);
    assert.equal(meta.etag, createHash("md5").update(Buffer.alloc(66560, "a")).digest("hex"));
    assert.equal(meta.contentEncoding, undefined);

    // One byte changed in the second chunk: its signature no longer matches, and nothing is stored.
    const tampered = Buffer.from(body);
    tampered[88 + 65538 + 86 + 10] = 0x62;
    const t = await send(f.port, "PUT", "/examplebucket/tampered.txt", headers, tampered);
    assert.equal(t.status, 403);
    assert.equal(codeOf(t.body), "SignatureDoesNotMatch");
    await assert.rejects(f.store.headObject("examplebucket", "tampered.txt"));
  });
});

/** An independent aws-chunked signer (AWS's documented algorithm), for the trailer variant. */
function signedChunkedBody(data: Buffer[], seed: string, date: string, scope: string, key: Buffer, trailer?: [string, string]): Buffer {
  const hex = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
  const empty = hex("");
  let prev = seed;
  const out: Buffer[] = [];
  for (const chunk of [...data, Buffer.alloc(0)]) {
    const sig = createHmac("sha256", key).update(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, empty, hex(chunk)].join("\n")).digest("hex");
    out.push(Buffer.from(`${chunk.length.toString(16)};chunk-signature=${sig}\r\n`), chunk);
    if (chunk.length) out.push(Buffer.from("\r\n"));
    prev = sig;
  }
  if (trailer) {
    const canon = `${trailer[0]}:${trailer[1]}\n`;
    const tsig = createHmac("sha256", key).update(["AWS4-HMAC-SHA256-TRAILER", date, scope, prev, hex(canon)].join("\n")).digest("hex");
    out.push(Buffer.from(`${trailer[0]}:${trailer[1]}\r\nx-amz-trailer-signature:${tsig}\r\n\r\n`));
  } else out.push(Buffer.from("\r\n"));
  return Buffer.concat(out);
}

describe("SigV4 with real clients and the real clock", () => {
  let f: Fixture;
  let c: s3.S3Client;
  before(async () => {
    f = await startS3();
    c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "secure" }));
    await c.send(new s3.PutObjectCommand({ Bucket: "secure", Key: "doc.txt", Body: "secret stuff" }));
  });
  after(() => f.close());

  test("wrong secret → 403 SignatureDoesNotMatch; unknown key → 403 InvalidAccessKeyId; skewed clock → 403 RequestTimeTooSkewed", async () => {
    await rejectsWith(f.client({ secret: "not-the-secret" }).send(new s3.GetObjectCommand({ Bucket: "secure", Key: "doc.txt" })), "SignatureDoesNotMatch", 403);
    await rejectsWith(f.client({ key: "AKIANOSUCHKEY0000000" }).send(new s3.ListBucketsCommand({})), "InvalidAccessKeyId", 403);
    await rejectsWith(f.client({ systemClockOffset: -20 * 60_000 }).send(new s3.ListBucketsCommand({})), "RequestTimeTooSkewed", 403);
    await rejectsWith(f.client({ systemClockOffset: 20 * 60_000 }).send(new s3.ListBucketsCommand({})), "RequestTimeTooSkewed", 403);
    await rejectsWith(f.client({ region: "eu-west-1" }).send(new s3.ListBucketsCommand({})), "AuthorizationHeaderMalformed", 400);
    await rejectsWith(f.client({ key: OTHER }).send(new s3.GetObjectCommand({ Bucket: "secure", Key: "doc.txt" })), "AccessDenied", 403);
  });

  test("anonymous requests are refused with 403 AccessDenied", async () => {
    for (const [method, path] of [["GET", "/"], ["GET", "/secure/doc.txt"], ["PUT", "/secure/x"], ["DELETE", "/secure"]] as const) {
      const r = await raw(f, { method, path, anonymous: true, body: method === "PUT" ? "x" : undefined });
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.equal(codeOf(r.body), "AccessDenied");
    }
    // SigV2 is served (sigv2.test.ts): a V2 header without a Date is refused as S3 refuses it.
    const v2 = await raw(f, { method: "GET", path: "/", anonymous: true, headers: { authorization: "AWS AKIATESTROOT0000001:abc=" } });
    assert.equal(codeOf(v2.body), "AccessDenied");
    assert.match(v2.body, /requires a valid Date or x-amz-date/);
  });

  test("presigned URLs from the SDK's signer: GET and PUT work; expired → 403; > 7 days → 400", async () => {
    const sg = signer();
    const base = { method: "GET", protocol: "http:", hostname: "127.0.0.1", port: f.port, path: "/secure/doc.txt", query: {},
      // as @aws-sdk/s3-request-presigner does: S3 presigned URLs sign UNSIGNED-PAYLOAD (hoisted into the query)
      headers: { host: `127.0.0.1:${f.port}`, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" } };
    const url = async (req: typeof base, opts: { expiresIn: number; signingDate?: Date }) => {
      const p = await sg.presign(req, opts);
      return `${f.endpoint}${p.path}${qs(p.query as Record<string, string>)}`;
    };
    const ok = await fetch(await url(base, { expiresIn: 60 }));
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "secret stuff");
    assert.ok(ok.headers.get("x-amz-request-id"));

    const put = await fetch(await url({ ...base, method: "PUT", path: "/secure/uploaded.txt" }, { expiresIn: 60 }), { method: "PUT", body: "via presigned put" });
    assert.equal(put.status, 200, await put.text());
    const g = await c.send(new s3.GetObjectCommand({ Bucket: "secure", Key: "uploaded.txt" }));
    assert.equal(await g.Body!.transformToString(), "via presigned put");

    const expired = await fetch(await url(base, { expiresIn: 60, signingDate: new Date(Date.now() - 3_600_000) }));
    assert.equal(expired.status, 403);
    const eb = await expired.text();
    assert.equal(codeOf(eb), "AccessDenied");
    assert.match(eb, /Request has expired/);

    const oneSecond = await url(base, { expiresIn: 1 });
    assert.equal((await fetch(oneSecond)).status, 200);
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal((await fetch(oneSecond)).status, 403);

    const week = (await url(base, { expiresIn: 3600 })).replace("X-Amz-Expires=3600", "X-Amz-Expires=604801");
    const tooLong = await fetch(week);
    assert.equal(tooLong.status, 400);
    assert.equal(codeOf(await tooLong.text()), "AuthorizationQueryParametersError");
    // A bare SigV4 presign signs the empty body's hash: accepted for GET, and holds a PUT to an empty body.
    const { "x-amz-content-sha256": _drop, ...bareHeaders } = base.headers;
    const bare = await sg.presign({ ...base, headers: bareHeaders as typeof base.headers }, { expiresIn: 60 });
    const bareGet = await fetch(`${f.endpoint}${bare.path}${qs(bare.query as Record<string, string>)}`);
    assert.equal(bareGet.status, 200);
    const barePut = await sg.presign({ ...base, method: "PUT", path: "/secure/bare.txt", headers: bareHeaders as typeof base.headers }, { expiresIn: 60 });
    const bp = await fetch(`${f.endpoint}${barePut.path}${qs(barePut.query as Record<string, string>)}`, { method: "PUT", body: "not empty" });
    assert.equal(bp.status, 400);
    assert.equal(codeOf(await bp.text()), "XAmzContentSHA256Mismatch");
    const wrong = await fetch((await url(base, { expiresIn: 60 })).replace("doc.txt", "other.txt"));
    assert.equal(wrong.status, 403);
    assert.equal(codeOf(await wrong.text()), "SignatureDoesNotMatch");
  });

  test("aws-cli's presigned URL works", { skip: !process.env.PATH?.includes("/usr/bin") }, async () => {
    const { stdout } = await promisify(execFile)("/usr/bin/aws", ["s3", "presign", "s3://secure/doc.txt", "--endpoint-url", f.endpoint, "--expires-in", "120"], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: "AKIATESTROOT0000001", AWS_SECRET_ACCESS_KEY: "rootsecret/abcdefghijklmnopqrstuvwxyz012", AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null" },
    });
    const r = await fetch(stdout.trim());
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "secret stuff");
  });

  test("signed aws-chunked with a signed CRC32 trailer; a wrong trailer value is BadDigest and stores nothing", async () => {
    const parts = [Buffer.alloc(70_000, 1), Buffer.alloc(123, 2)];
    const whole = Buffer.concat(parts);
    const { digestOf } = await import("../blob/index.js");
    const put = async (key: string, crc: string, tamperTrailerSig = false) => {
      const date = new Date();
      const headers: Record<string, string> = {
        host: `127.0.0.1:${f.port}`, "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(whole.length), "x-amz-trailer": "x-amz-checksum-crc32",
      };
      const signed = await signer().sign({ method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path: `/secure/${key}`, query: {}, headers }, { signingDate: date });
      const auth = String(signed.headers.authorization);
      const seed = /Signature=([0-9a-f]+)/.exec(auth)![1]!;
      const amzDate = String(signed.headers["x-amz-date"]);
      const scope = `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`;
      const hm = (k: string | Buffer, d: string) => createHmac("sha256", k).update(d).digest();
      const skey = hm(hm(hm(hm("AWS4rootsecret/abcdefghijklmnopqrstuvwxyz012", amzDate.slice(0, 8)), "us-east-1"), "s3"), "aws4_request");
      let body = signedChunkedBody(parts, seed, amzDate, scope, skey, ["x-amz-checksum-crc32", crc]);
      if (tamperTrailerSig) body = Buffer.from(body.toString("latin1").replace(/x-amz-trailer-signature:(.)/, (_m, ch: string) => `x-amz-trailer-signature:${ch === "0" ? "1" : "0"}`), "latin1");
      return send(f.port, "PUT", `/secure/${key}`, { ...signed.headers as Record<string, string>, "content-length": String(body.length) }, body);
    };
    const ok = await put("trailer-ok", digestOf("crc32", whole));
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers["x-amz-checksum-crc32"], digestOf("crc32", whole));
    const h = await c.send(new s3.HeadObjectCommand({ Bucket: "secure", Key: "trailer-ok", ChecksumMode: "ENABLED" }));
    assert.equal(h.ContentLength, whole.length);
    assert.equal(h.ChecksumCRC32, digestOf("crc32", whole));
    const bad = await put("trailer-bad", digestOf("crc32", Buffer.from("other")));
    assert.equal(bad.status, 400);
    assert.equal(codeOf(bad.body), "BadDigest");
    const badSig = await put("trailer-badsig", digestOf("crc32", whole), true);
    assert.equal(badSig.status, 403);
    assert.equal(codeOf(badSig.body), "SignatureDoesNotMatch");
    for (const k of ["trailer-bad", "trailer-badsig"]) await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "secure", Key: k })), "NotFound", 404);
  });

  test("UNSIGNED-PAYLOAD and a plain signed payload; a payload that does not match its x-amz-content-sha256 is refused", async () => {
    const u = await raw(f, { method: "PUT", path: "/secure/unsigned", body: "free text", payload: "UNSIGNED-PAYLOAD" });
    assert.equal(u.status, 200, u.body);
    const s = await raw(f, { method: "PUT", path: "/secure/signed", body: "exact text" });
    assert.equal(s.status, 200, s.body);
    const m = await raw(f, { method: "PUT", path: "/secure/mismatch", body: "exact text", payload: createHash("sha256").update("something else").digest("hex") });
    assert.equal(m.status, 400);
    assert.equal(codeOf(m.body), "XAmzContentSHA256Mismatch");
    await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "secure", Key: "mismatch" })), "NotFound", 404);
  });

  test("a signed payload with a SHA-256 checksum asked for is hashed once and still checked against x-amz-content-sha256", async () => {
    const body = "hashed once";
    const b64 = createHash("sha256").update(body).digest("base64");
    const other = createHash("sha256").update("something else").digest("hex");
    // The checksum header carries the signed digest: the store checks both at once.
    const ok = await raw(f, { method: "PUT", path: "/secure/once", body, headers: { "x-amz-checksum-sha256": b64 } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers["x-amz-checksum-sha256"], b64);
    const ok2 = await raw(f, { method: "PUT", path: "/secure/once2", body, headers: { "x-amz-sdk-checksum-algorithm": "SHA256" } });
    assert.equal(ok2.status, 200, ok2.body);
    assert.equal(ok2.headers["x-amz-checksum-sha256"], b64);
    // A body that matches neither: still XAmzContentSHA256Mismatch, nothing stored.
    for (const [key, headers] of [["bad1", { "x-amz-checksum-sha256": Buffer.from(other, "hex").toString("base64") }], ["bad2", { "x-amz-sdk-checksum-algorithm": "SHA256" }]] as const) {
      const r = await raw(f, { method: "PUT", path: `/secure/${key}`, body, payload: other, headers });
      assert.equal(r.status, 400, key);
      assert.equal(codeOf(r.body), "XAmzContentSHA256Mismatch", key);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "secure", Key: key })), "NotFound", 404);
    }
    // Signed digest and checksum header disagreeing: one of them is wrong, refused either way.
    const split = await raw(f, { method: "PUT", path: "/secure/split", body, headers: { "x-amz-checksum-sha256": Buffer.from(other, "hex").toString("base64") } });
    assert.equal(split.status, 400);
    assert.equal(codeOf(split.body), "BadDigest");
  });
});

describe("virtual-host-style addressing (s3.domain set)", () => {
  let f: Fixture;
  before(async () => { f = await startS3({ THOC_S3_DOMAIN: "s3.thoc.test" }); });
  after(() => f.close());

  test("bucket from the Host header, key from the path; path style keeps working; signatures cover the Host", async () => {
    const vh = (bucket: string) => ({ host: `${bucket}.s3.thoc.test:${f.port}` });
    assert.equal((await raw(f, { method: "PUT", path: "/", headers: vh("vhost-bucket") })).status, 200);
    const put = await raw(f, { method: "PUT", path: "/dir/key%20one.txt", headers: vh("vhost-bucket"), body: "virtual" });
    assert.equal(put.status, 200, put.body);
    const viaPath = await raw(f, { method: "GET", path: "/vhost-bucket/dir/key%20one.txt" });
    assert.equal(viaPath.body, "virtual");
    const list = await raw(f, { method: "GET", path: "/", query: { "list-type": "2" }, headers: vh("vhost-bucket") });
    assert.match(list.body, /<Name>vhost-bucket<\/Name>.*<Key>dir\/key one\.txt<\/Key>/s);
    const buckets = await raw(f, { method: "GET", path: "/", headers: { host: `s3.thoc.test:${f.port}` } });
    assert.match(buckets.body, /<Name>vhost-bucket<\/Name>/);
    const missing = await raw(f, { method: "GET", path: "/dir/key%20one.txt", headers: vh("other-bucket") });
    assert.equal(missing.status, 404);
    assert.equal(codeOf(missing.body), "NoSuchBucket");
  });
});
