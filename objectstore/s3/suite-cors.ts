/**
 * CORS and key encoding over the wire: Put/Get/DeleteBucketCors through
 * @aws-sdk/client-s3, preflights and cross-origin requests as a browser
 * sends them (fetch() with Origin, Access-Control-Request-*), a presigned
 * browser upload, and keys S3 allows (spaces, +, unicode, ?, #, %) against
 * percent-escapes it refuses.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, qs, raw, signer, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

const VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";
const APP = "https://app.example.com";

export function corsSuite(makeStore: MakeStore): void {
  describe("S3 CORS and key encoding", () => {
    let f: Fixture;
    let c: s3.S3Client;
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: "web" }));
      await c.send(new s3.CreateBucketCommand({ Bucket: "plain" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "web", Key: "index.html", Body: "<p>hi</p>", ContentType: "text/html" }));
    });
    after(() => f.close());

    const options = (path: string, headers: Record<string, string>) => fetch(`${f.endpoint}${path}`, { method: "OPTIONS", headers });

    test("Put/Get/DeleteBucketCors round-trip; no configuration → 404 NoSuchCORSConfiguration", async () => {
      await assert.rejects(c.send(new s3.GetBucketCorsCommand({ Bucket: "web" })), (e: Error) => e.name === "NoSuchCORSConfiguration");
      const CORSRules: s3.CORSRule[] = [
        { ID: "uploads", AllowedOrigins: [APP, "https://*.app.example.com"], AllowedMethods: ["PUT", "POST", "GET"], AllowedHeaders: ["content-type", "x-amz-*"], ExposeHeaders: ["ETag", "x-amz-request-id"], MaxAgeSeconds: 600 },
        { AllowedOrigins: ["*"], AllowedMethods: ["GET", "HEAD"] },
      ];
      await c.send(new s3.PutBucketCorsCommand({ Bucket: "web", CORSConfiguration: { CORSRules } }));
      const got = await c.send(new s3.GetBucketCorsCommand({ Bucket: "web" }));
      assert.deepEqual(got.CORSRules, [{ ...CORSRules[0] }, { AllowedOrigins: ["*"], AllowedMethods: ["GET", "HEAD"] }]);
      // Replaced as a whole; deleted (twice: 204 either way).
      await c.send(new s3.PutBucketCorsCommand({ Bucket: "plain", CORSConfiguration: { CORSRules: [{ AllowedOrigins: ["*"], AllowedMethods: ["GET"] }] } }));
      await c.send(new s3.DeleteBucketCorsCommand({ Bucket: "plain" }));
      await c.send(new s3.DeleteBucketCorsCommand({ Bucket: "plain" }));
      await assert.rejects(c.send(new s3.GetBucketCorsCommand({ Bucket: "plain" })), (e: Error) => e.name === "NoSuchCORSConfiguration");
      // Another owner's bucket.
      await assert.rejects(f.client({ key: "AKIATESTOTHER000002" }).send(new s3.GetBucketCorsCommand({ Bucket: "web" })), (e: Error) => e.name === "AccessDenied");
    });

    test("PutBucketCors: S3's errors for bad rules, and the configuration stays as it was", async () => {
      const put = (rules: string) => raw(f, { method: "PUT", path: "/web", query: { cors: "" }, body: `<CORSConfiguration>${rules}</CORSConfiguration>` });
      const expect = async (rules: string, status: number, code: string) => {
        const r = await put(rules);
        assert.equal(r.status, status, r.body);
        assert.equal(codeOf(r.body), code, r.body);
      };
      await expect("", 400, "MalformedXML");
      await expect("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>", 400, "MalformedXML");
      await expect("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule>", 400, "InvalidRequest");
      await expect("<CORSRule><AllowedOrigin>*a*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>", 400, "InvalidRequest");
      await expect("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>".repeat(101), 400, "MalformedXML");
      const bad = await raw(f, { method: "PUT", path: "/web", query: { cors: "" }, body: "<CORSConfiguration><CORSRule>" });
      assert.equal(codeOf(bad.body), "MalformedXML");
      const md5 = await raw(f, { method: "PUT", path: "/web", query: { cors: "" }, headers: { "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==" },
        body: "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>" });
      assert.equal(codeOf(md5.body), "BadDigest");
      const nob = await raw(f, { method: "PUT", path: "/no-such-bucket-cors", query: { cors: "" }, body: "<CORSConfiguration/>" });
      assert.equal(codeOf(nob.body), "NoSuchBucket");
      const got = await c.send(new s3.GetBucketCorsCommand({ Bucket: "web" }));
      assert.equal(got.CORSRules?.[0]?.ID, "uploads", "unchanged by the refused PUTs");
    });

    test("preflight OPTIONS: answered from the first matching rule, without credentials", async () => {
      const ok = await options("/web/dir/new.bin", { Origin: APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "Content-Type,X-Amz-Date,x-amz-content-sha256" });
      assert.equal(ok.status, 200, await ok.text());
      assert.equal(ok.headers.get("access-control-allow-origin"), APP);
      assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
      assert.equal(ok.headers.get("access-control-allow-methods"), "PUT, POST, GET");
      assert.equal(ok.headers.get("access-control-allow-headers"), "content-type, x-amz-date, x-amz-content-sha256");
      assert.equal(ok.headers.get("access-control-expose-headers"), "ETag, x-amz-request-id");
      assert.equal(ok.headers.get("access-control-max-age"), "600");
      assert.equal(ok.headers.get("vary"), VARY);
      assert.ok(ok.headers.get("x-amz-request-id"));
      // A sub-domain through the wildcard origin; the * rule for anyone's GET.
      const sub = await options("/web/x", { Origin: "https://eu.app.example.com", "Access-Control-Request-Method": "POST" });
      assert.equal(sub.status, 200);
      assert.equal(sub.headers.get("access-control-allow-origin"), "https://eu.app.example.com");
      const any = await options("/web", { Origin: "http://elsewhere.test", "Access-Control-Request-Method": "HEAD" });
      assert.equal(any.status, 200);
      assert.equal(any.headers.get("access-control-allow-origin"), "*");
      assert.equal(any.headers.get("access-control-allow-credentials"), null);
      assert.equal(any.headers.get("access-control-allow-methods"), "GET, HEAD");
    });

    test("preflight OPTIONS refused as S3 refuses it", async () => {
      const expect = async (path: string, headers: Record<string, string>, status: number, code: string, message?: RegExp) => {
        const r = await options(path, headers);
        const body = await r.text();
        assert.equal(r.status, status, body);
        assert.equal(codeOf(body), code, body);
        if (message) assert.match(body, message);
        assert.equal(r.headers.get("access-control-allow-origin"), null);
      };
      await expect("/web/k", { "Access-Control-Request-Method": "GET" }, 400, "BadRequest", /Origin request header needed/);
      await expect("/web/k", { Origin: APP }, 400, "BadRequest", /Invalid Access-Control-Request-Method: null/);
      await expect("/web/k", { Origin: APP, "Access-Control-Request-Method": "PATCH" }, 400, "BadRequest");
      await expect("/web/k", { Origin: "https://evil.example", "Access-Control-Request-Method": "PUT" }, 403, "AccessForbidden", /<Method>PUT<\/Method><ResourceType>OBJECT<\/ResourceType>/);
      await expect("/web/k", { Origin: APP, "Access-Control-Request-Method": "DELETE" }, 403, "AccessForbidden");
      await expect("/web/k", { Origin: APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization" }, 403, "AccessForbidden");
      await expect("/plain/k", { Origin: APP, "Access-Control-Request-Method": "GET" }, 403, "AccessForbidden", /CORS is not enabled for this bucket/);
      await expect("/no-such-bucket-x/k", { Origin: APP, "Access-Control-Request-Method": "GET" }, 403, "AccessForbidden", /Bucket not found/);
      await expect("/No_Such..Bucket/k", { Origin: APP, "Access-Control-Request-Method": "GET" }, 403, "AccessForbidden", /Bucket not found/);
    });

    test("actual cross-origin requests carry the rule's headers, on success and on errors; without Origin, none", async () => {
      const g = await raw(f, { method: "GET", path: "/web/index.html", headers: { origin: APP } });
      assert.equal(g.status, 200);
      assert.equal(g.headers["access-control-allow-origin"], APP);
      assert.equal(g.headers["access-control-expose-headers"], "ETag, x-amz-request-id");
      assert.equal(g.headers.vary, VARY);
      const missing = await raw(f, { method: "GET", path: "/web/nope", headers: { origin: APP } });
      assert.equal(missing.status, 404);
      assert.equal(missing.headers["access-control-allow-origin"], APP, "a browser must be able to read the 404");
      const badSig = await raw(f, { method: "PUT", path: "/web/k", headers: { origin: APP }, secret: "wrong-secret" });
      assert.equal(codeOf(badSig.body), "SignatureDoesNotMatch");
      assert.equal(badSig.headers["access-control-allow-origin"], APP, "and the 403 of a bad signature");
      const anon = await fetch(`${f.endpoint}/web/index.html`, { headers: { Origin: "http://elsewhere.test" } });
      assert.equal(anon.status, 403);
      assert.equal(anon.headers.get("access-control-allow-origin"), "*");
      const plain = await raw(f, { method: "GET", path: "/web/index.html" });
      assert.equal(plain.headers["access-control-allow-origin"], undefined);
      assert.equal(plain.headers.vary, undefined);
      const badName = await raw(f, { method: "GET", path: "/No_Such..Bucket/k", headers: { origin: APP } });
      assert.ok(badName.status >= 400 && badName.status < 500, badName.body);
      assert.equal(badName.headers["access-control-allow-origin"], undefined);
      const notAllowed = await raw(f, { method: "DELETE", path: "/web/gone", headers: { origin: "http://elsewhere.test" } });
      assert.equal(notAllowed.status, 204, "S3 refuses only preflights");
      assert.equal(notAllowed.headers["access-control-allow-origin"], undefined);
    });

    test("a browser upload: preflight, then a presigned PUT from fetch() with Origin; the ETag is readable", async () => {
      const pre = await options("/web/uploads/photo.jpg", { Origin: APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type" });
      assert.equal(pre.status, 200);
      const p = await signer().presign({
        method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path: "/web/uploads/photo.jpg", query: {},
        headers: { host: `127.0.0.1:${f.port}`, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
      }, { expiresIn: 300 });
      const put = await fetch(`${f.endpoint}${p.path}${qs(p.query as Record<string, string>)}`, { method: "PUT", body: "JPEGDATA", headers: { Origin: APP, "Content-Type": "image/jpeg" } });
      assert.equal(put.status, 200, await put.text());
      assert.equal(put.headers.get("access-control-allow-origin"), APP);
      const exposed = put.headers.get("access-control-expose-headers")!.split(", ").map((s) => s.toLowerCase());
      assert.ok(exposed.includes("etag") && put.headers.get("etag"), "the script can read the ETag it needs for multipart");
      const h = await c.send(new s3.HeadObjectCommand({ Bucket: "web", Key: "uploads/photo.jpg" }));
      assert.equal(h.ContentType, "image/jpeg");
      assert.equal(h.ContentLength, 8);
    });

    test("keys: characters S3 allows round-trip; invalid percent-escapes are 400 InvalidURI", async () => {
      const keys = ["with space", "plus+sign", "ünïcödé/€/日本", "what?x=1&y", "hash#frag", "pct%41%zz", "bad%ff%fe", "semi;colon,comma", "tilde~star*"];
      for (const Key of keys) await c.send(new s3.PutObjectCommand({ Bucket: "plain", Key, Body: Key }));
      for (const Key of keys) {
        const g = await c.send(new s3.GetObjectCommand({ Bucket: "plain", Key }));
        assert.equal(await g.Body!.transformToString(), Key);
      }
      const l = await c.send(new s3.ListObjectsV2Command({ Bucket: "plain" }));
      assert.deepEqual(l.Contents!.map((o) => o.Key).sort(), [...keys].sort());
      for (const path of ["/plain/bad%ff%fe", "/plain/trunc%e2%82", "/plain/x%zz", "/plain/end%2", "/pl%ffain/k"]) {
        for (const method of ["GET", "PUT"]) {
          const r = await raw(f, { method, path, body: method === "PUT" ? "x" : undefined });
          assert.equal(r.status, 400, `${method} ${path}: ${r.body}`);
          assert.equal(codeOf(r.body), "InvalidURI");
        }
      }
      // The literal "%ff%fe" key is the one stored above, and the refused requests wrote nothing.
      const again = await c.send(new s3.ListObjectsV2Command({ Bucket: "plain" }));
      assert.equal(again.KeyCount, keys.length);
    });
  });
}
