/**
 * SigV2: the string-to-sign and signatures of AWS's published examples (S3
 * developer guide, "Signing and authenticating REST requests": their
 * signatures were computed for the bucket `johnsmith`, later renamed in the
 * text), replayed against the server with its clock set to 2007; header and
 * presigned round trips, tampering, clock skew, expiry, unknown keys, and
 * s3.sigV2=false refusing V2 with a message that says to use SigV4.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemoryBlobStore } from "../blob/index.js";
import { canonicalResource, hmacSha1, stringToSign } from "./sigv2.js";
import { postForm, signPolicy } from "./suite-post-object.js";
import { codeOf, KEYS, OTHER, ROOT, send, startS3, type Fixture } from "./testutil.js";

const EX_KEY = "AKIAIOSFODNN7EXAMPLE";
const EX_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const put = (store: MemoryBlobStore, bucket: string, key: string, data: string) =>
  store.putObject({ bucket, key, body: (async function* () { yield Buffer.from(data); })(), headers: {}, userMeta: {}, expect: {} });
const h = (o: Record<string, string[]>) => Object.entries(o);

describe("SigV2 string to sign: AWS's published examples", () => {
  const cases: [string, Parameters<typeof stringToSign>[0], string][] = [
    ["Object GET", { method: "GET", date: "Tue, 27 Mar 2007 19:36:42 +0000", amzHeaders: [], resource: canonicalResource("/photos/puppy.jpg", "", "johnsmith") }, "bWq2s1WEIj+Ydj0vQ697zp+IXMU="],
    ["Object PUT", { method: "PUT", contentType: "image/jpeg", date: "Tue, 27 Mar 2007 21:15:45 +0000", amzHeaders: [], resource: canonicalResource("/photos/puppy.jpg", "", "johnsmith") }, "MyyxeRY7whkBe+bq8fHCL/2kKUg="],
    ["List", { method: "GET", date: "Tue, 27 Mar 2007 19:42:41 +0000", amzHeaders: [], resource: canonicalResource("/", "prefix=photos&max-keys=50&marker=puppy", "johnsmith") }, "htDYFYduRNen8P9ZfE/s9SuKy0U="],
    ["Fetch ?acl", { method: "GET", date: "Tue, 27 Mar 2007 19:44:46 +0000", amzHeaders: [], resource: canonicalResource("/", "acl", "johnsmith") }, "c2WLPFtWHVgbEmeEG93a4cG37dM="],
    ["Delete (x-amz-date in the Date line)", { method: "DELETE", date: "Tue, 27 Mar 2007 21:20:26 +0000", amzHeaders: [], resource: canonicalResource("/johnsmith/photos/puppy.jpg", "") }, "lx3byBScXR6KzyMaifNkardMwNk="],
    ["Upload (x-amz-* sorted, lower-cased, joined)", {
      method: "PUT", contentMd5: "4gJE4saaMU4BqNR0kLY+lw==", contentType: "application/x-download", date: "Tue, 27 Mar 2007 21:06:08 +0000",
      amzHeaders: h({ "x-amz-acl": ["public-read"], "X-Amz-Meta-ReviewedBy": ["joe@johnsmith.net", "jane@johnsmith.net"], "X-Amz-Meta-FileChecksum": ["0x02661779"], "X-Amz-Meta-ChecksumAlgorithm": ["crc32"], "content-type": ["application/x-download"] }),
      resource: canonicalResource("/db-backup.dat.gz", "", "static.johnsmith.net"),
    }, "ilyl83RwaSoYIEdixDQcA4OnAnc="],
    ["List all my buckets", { method: "GET", date: "Wed, 28 Mar 2007 01:29:59 +0000", amzHeaders: [], resource: canonicalResource("/", "") }, "qGdzdERIC03wnaRNKh6OqZehG9s="],
    ["Unicode keys (path signed as sent)", { method: "GET", date: "Wed, 28 Mar 2007 01:49:49 +0000", amzHeaders: [], resource: canonicalResource("/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "") }, "DNEZGsoieTZ92F3bUfSPQcbGmlM="],
    ["Query string authentication", { method: "GET", date: "1175139620", amzHeaders: [], resource: canonicalResource("/photos/puppy.jpg", "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=x&Expires=1175139620", "johnsmith") }, "NpgCjnDzrM+WFzoENXmpNDUsSn8="],
  ];
  for (const [name, input, sig] of cases) {
    test(`${name} → ${sig}`, () => assert.equal(hmacSha1(EX_SECRET, stringToSign(input)), sig));
  }

  test("the Upload example's string to sign, byte for byte", () => {
    assert.equal(stringToSign(cases[5]![1]), "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n"
      + "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n"
      + "x-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n/static.johnsmith.net/db-backup.dat.gz");
  });

  test("sub-resources: sorted, values decoded, other parameters left out; folded header whitespace", () => {
    assert.equal(canonicalResource("/b/k", "versionId=v%201&uploadId=u&response-content-type=text%2Fplain&prefix=x&acl"), "/b/k?acl&response-content-type=text/plain&uploadId=u&versionId=v 1");
    assert.equal(canonicalResource("/b", "uploads=&delete"), "/b?delete&uploads");
    assert.equal(stringToSign({ method: "GET", date: "", amzHeaders: h({ "x-amz-meta-a": ["  one\r\n   two  "] }), resource: "/" }), "GET\n\n\n\nx-amz-meta-a:one two\n/");
  });
});

describe("SigV2 against the server (AWS's examples replayed with the clock set to 2007)", () => {
  let f: Fixture;
  let clock = 0;
  before(async () => {
    const store = new MemoryBlobStore();
    for (const b of ["johnsmith", "dictionary"]) await store.createBucket(b, "root");
    await put(store, "johnsmith", "photos/puppy.jpg", "woof");
    await put(store, "dictionary", "français/préfère", "le mot");
    f = await startS3({ THOC_S3_DOMAIN: "s3.amazonaws.com" }, store, () => clock);
  });
  after(() => f.close());
  const at = (d: string) => { clock = Date.parse(d) + 1000; };

  test("Object GET, virtual-host style", async () => {
    at("Tue, 27 Mar 2007 19:36:42 +0000");
    const r = await send(f.port, "GET", "/photos/puppy.jpg", { host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:36:42 +0000", authorization: `AWS ${EX_KEY}:bWq2s1WEIj+Ydj0vQ697zp+IXMU=` }, Buffer.alloc(0));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, "woof");
  });

  test("Object PUT with its Content-Type, then List, Fetch ?acl", async () => {
    at("Tue, 27 Mar 2007 21:15:45 +0000");
    const body = Buffer.alloc(94328, 7);
    const p = await send(f.port, "PUT", "/photos/puppy.jpg", { host: "johnsmith.s3.amazonaws.com", "content-type": "image/jpeg", "content-length": "94328", date: "Tue, 27 Mar 2007 21:15:45 +0000", authorization: `AWS ${EX_KEY}:MyyxeRY7whkBe+bq8fHCL/2kKUg=` }, body);
    assert.equal(p.status, 200, p.body);
    assert.equal(p.headers.etag, `"${createHash("md5").update(body).digest("hex")}"`);
    at("Tue, 27 Mar 2007 19:42:41 +0000");
    const l = await send(f.port, "GET", "/?prefix=photos&max-keys=50&marker=puppy", { host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:42:41 +0000", authorization: `AWS ${EX_KEY}:htDYFYduRNen8P9ZfE/s9SuKy0U=` }, Buffer.alloc(0));
    assert.equal(l.status, 200, l.body);
    assert.match(l.body, /<Name>johnsmith<\/Name><Prefix>photos<\/Prefix><Marker>puppy<\/Marker><MaxKeys>50<\/MaxKeys>/); // "puppy" sorts after every photos/ key
    at("Tue, 27 Mar 2007 19:44:46 +0000");
    const a = await send(f.port, "GET", "/?acl", { host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:44:46 +0000", authorization: `AWS ${EX_KEY}:c2WLPFtWHVgbEmeEG93a4cG37dM=` }, Buffer.alloc(0));
    assert.equal(a.status, 200, a.body);
    assert.match(a.body, /AccessControlPolicy/);
  });

  test("List all my buckets; Unicode key path-style", async () => {
    at("Wed, 28 Mar 2007 01:29:59 +0000");
    const r = await send(f.port, "GET", "/", { host: "s3.amazonaws.com", date: "Wed, 28 Mar 2007 01:29:59 +0000", authorization: `AWS ${EX_KEY}:qGdzdERIC03wnaRNKh6OqZehG9s=` }, Buffer.alloc(0));
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /<Name>dictionary<\/Name>/);
    at("Wed, 28 Mar 2007 01:49:49 +0000");
    const u = await send(f.port, "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", { host: "s3.amazonaws.com", date: "Wed, 28 Mar 2007 01:49:49 +0000", authorization: `AWS ${EX_KEY}:DNEZGsoieTZ92F3bUfSPQcbGmlM=` }, Buffer.alloc(0));
    assert.equal(u.status, 200, u.body);
    assert.equal(u.body, "le mot");
  });

  test("presigned GET (Expires=1175139620) before and after it expires; a changed signature", async () => {
    const q = `AWSAccessKeyId=${EX_KEY}&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620`;
    at("Tue, 27 Mar 2007 19:36:42 +0000");
    const r = await send(f.port, "GET", "/photos/puppy.jpg?" + q, { host: "johnsmith.s3.amazonaws.com" }, Buffer.alloc(0));
    assert.equal(r.status, 200, r.body);
    const bad = await send(f.port, "GET", "/photos/puppy.jpg?" + q.replace("Signature=N", "Signature=M"), { host: "johnsmith.s3.amazonaws.com" }, Buffer.alloc(0));
    assert.equal(codeOf(bad.body), "SignatureDoesNotMatch");
    assert.match(bad.body, /<StringToSign>GET&#xA;&#xA;&#xA;1175139620&#xA;\/johnsmith\/photos\/puppy.jpg<\/StringToSign>/);
    clock = 1175139621_000;
    const late = await send(f.port, "GET", "/photos/puppy.jpg?" + q, { host: "johnsmith.s3.amazonaws.com" }, Buffer.alloc(0));
    assert.equal(late.status, 403);
    assert.equal(codeOf(late.body), "AccessDenied");
    assert.match(late.body, /Request has expired/);
  });

  test("Delete path-style with x-amz-date (AWS's example signs its value in the Date line)", async () => {
    at("Tue, 27 Mar 2007 21:20:26 +0000");
    const r = await send(f.port, "DELETE", "/johnsmith/photos/puppy.jpg", { host: "s3.amazonaws.com", date: "Tue, 27 Mar 2007 21:20:27 +0000", "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000", authorization: `AWS ${EX_KEY}:lx3byBScXR6KzyMaifNkardMwNk=` }, Buffer.alloc(0));
    assert.equal(r.status, 204, r.body);
    at("Tue, 27 Mar 2007 21:50:26 +0000");
    const skewed = await send(f.port, "DELETE", "/johnsmith/photos/puppy.jpg", { host: "s3.amazonaws.com", "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000", authorization: `AWS ${EX_KEY}:lx3byBScXR6KzyMaifNkardMwNk=` }, Buffer.alloc(0));
    assert.equal(skewed.status, 403);
    assert.equal(codeOf(skewed.body), "RequestTimeTooSkewed");
  });
});

/** Signs a request with V2 the way a client does (header or presigned), for round trips. */
function v2(port: number, r: { method: string; path: string; query?: string; headers?: Record<string, string>; body?: Buffer; key?: string; secret?: string; presignExpires?: number; date?: string }) {
  const key = r.key ?? ROOT, secret = r.secret ?? KEYS[key]?.secretKey ?? "x";
  const headers: Record<string, string> = { host: `127.0.0.1:${port}`, ...(r.headers ?? {}) };
  const amz = Object.entries(headers).map(([k, v]) => [k, [v]] as [string, string[]]);
  const res = canonicalResource(r.path, r.query ?? "");
  const body = r.body ?? Buffer.alloc(0);
  if (r.presignExpires !== undefined) {
    const sig = hmacSha1(secret, stringToSign({ method: r.method, contentMd5: headers["content-md5"], contentType: headers["content-type"], date: String(r.presignExpires), amzHeaders: amz, resource: res }));
    const q = `${r.query ? r.query + "&" : ""}AWSAccessKeyId=${key}&Expires=${r.presignExpires}&Signature=${encodeURIComponent(sig)}`;
    return send(port, r.method, `${r.path}?${q}`, headers, body);
  }
  const date = r.date ?? new Date().toUTCString();
  headers.date = date;
  const sig = hmacSha1(secret, stringToSign({ method: r.method, contentMd5: headers["content-md5"], contentType: headers["content-type"], date: headers["x-amz-date"] ? "" : date, amzHeaders: amz, resource: res }));
  headers.authorization = `AWS ${key}:${sig}`;
  return send(port, r.method, r.path + (r.query ? "?" + r.query : ""), headers, body);
}

describe("SigV2 round trips, tampering, skew, expiry and keys", () => {
  let f: Fixture;
  before(async () => {
    f = await startS3();
    const r = await v2(f.port, { method: "PUT", path: "/v2bucket" });
    assert.equal(r.status, 200, r.body);
  });
  after(() => f.close());

  test("PUT with Content-MD5, Content-Type and x-amz-meta-*, then GET with a response-* override, presigned GET", async () => {
    const body = Buffer.from("hello v2");
    const md5 = createHash("md5").update(body).digest("base64");
    const p = await v2(f.port, { method: "PUT", path: "/v2bucket/a%20b.txt", body, headers: { "content-md5": md5, "content-type": "text/plain", "x-amz-meta-who": "me", "x-amz-date": new Date().toUTCString() } });
    assert.equal(p.status, 200, p.body);
    const g = await v2(f.port, { method: "GET", path: "/v2bucket/a%20b.txt", query: "response-content-type=application%2Fjson" });
    assert.equal(g.status, 200, g.body);
    assert.equal(g.body, "hello v2");
    assert.equal(g.headers["x-amz-meta-who"], "me");
    assert.equal(g.headers["content-type"], "application/json");
    const ps = await v2(f.port, { method: "GET", path: "/v2bucket/a%20b.txt", presignExpires: Math.floor(Date.now() / 1000) + 60 });
    assert.equal(ps.status, 200, ps.body);
    const old = await v2(f.port, { method: "GET", path: "/v2bucket/a%20b.txt", presignExpires: Math.floor(Date.now() / 1000) - 1 });
    assert.equal(codeOf(old.body), "AccessDenied");
    assert.match(old.body, /Request has expired/);
  });

  test("a header changed after signing, a wrong secret, an unknown key, a stale Date, malformed headers and query", async () => {
    assert.equal((await v2(f.port, { method: "PUT", path: "/v2bucket/t", body: Buffer.from("x"), headers: { "x-amz-meta-a": "1" } })).status, 200);
    const date = new Date().toUTCString();
    const sig = hmacSha1(KEYS[ROOT]!.secretKey, stringToSign({ method: "PUT", date, amzHeaders: h({ "x-amz-meta-a": ["1"] }), resource: "/v2bucket/t" }));
    const r = await send(f.port, "PUT", "/v2bucket/t", { host: `127.0.0.1:${f.port}`, date, "x-amz-meta-a": "2", authorization: `AWS ${ROOT}:${sig}`, "content-length": "1" }, Buffer.from("y"));
    assert.equal(r.status, 403);
    assert.equal(codeOf(r.body), "SignatureDoesNotMatch");
    assert.match(r.body, /<StringToSign>PUT&#xA;&#xA;&#xA;[^<]*x-amz-meta-a:2&#xA;\/v2bucket\/t<\/StringToSign>/);
    assert.match(r.body, /<SignatureProvided>/);
    const g = await v2(f.port, { method: "GET", path: "/v2bucket/t" });
    assert.equal(g.body, "x", "the refused PUT changed nothing");
    assert.equal(codeOf((await v2(f.port, { method: "GET", path: "/v2bucket/t", secret: "wrong" })).body), "SignatureDoesNotMatch");
    assert.equal(codeOf((await v2(f.port, { method: "GET", path: "/v2bucket/t", key: "AKIANOSUCHKEY0000000" })).body), "InvalidAccessKeyId");
    const stale = await v2(f.port, { method: "GET", path: "/v2bucket/t", date: new Date(Date.now() - 20 * 60_000).toUTCString() });
    assert.equal(stale.status, 403);
    assert.equal(codeOf(stale.body), "RequestTimeTooSkewed");
    const noDate = await send(f.port, "GET", "/v2bucket/t", { host: "x", authorization: `AWS ${ROOT}:abc=` }, Buffer.alloc(0));
    assert.equal(codeOf(noDate.body), "AccessDenied");
    const malformed = await send(f.port, "GET", "/v2bucket/t", { host: "x", date, authorization: "AWS nocolon" }, Buffer.alloc(0));
    assert.equal(codeOf(malformed.body), "InvalidArgument");
    const partial = await send(f.port, "GET", `/v2bucket/t?AWSAccessKeyId=${ROOT}&Signature=abc`, { host: "x" }, Buffer.alloc(0));
    assert.equal(codeOf(partial.body), "AccessDenied");
    assert.match(partial.body, /requires the Signature, Expires and AWSAccessKeyId/);
    const other = await v2(f.port, { method: "GET", path: "/v2bucket/t", key: OTHER });
    assert.equal(codeOf(other.body), "AccessDenied", "another owner's V2 key is still only that owner");
  });
});

describe("s3.sigV2=false", () => {
  let f: Fixture;
  before(async () => { f = await startS3({ THOC_S3_SIG_V2: "false" }); });
  after(() => f.close());

  test("header and presigned V2 are refused with a message that says to use SigV4; SigV4 still works", async () => {
    for (const r of [await v2(f.port, { method: "GET", path: "/" }), await v2(f.port, { method: "GET", path: "/", presignExpires: Math.floor(Date.now() / 1000) + 60 })]) {
      assert.equal(r.status, 400, r.body);
      assert.equal(codeOf(r.body), "InvalidRequest");
      assert.match(r.body, /Signature Version 2 is turned off on this endpoint.*Signature Version 4/);
    }
    const sdk = await import("@aws-sdk/client-s3");
    await f.client().send(new sdk.CreateBucketCommand({ Bucket: "v2off" }));
    const form = await postForm(f.port, "/v2off", [["key", "k"], ...signPolicy([{ key: "k" }], { v2: true })], { data: Buffer.from("x") });
    assert.equal(codeOf(form.body), "InvalidRequest", "a V2-signed form upload is refused too");
    assert.match(form.body, /Signature Version 2 is turned off/);
    const v4form = await postForm(f.port, "/v2off", [["key", "k"], ...signPolicy([{ key: "k" }])], { data: Buffer.from("x") });
    assert.equal(v4form.status, 204, v4form.body);
  });
});
