import { test } from "node:test";
import assert from "node:assert/strict";
import type { CorsRule } from "../blob/index.js";
import { S3Error } from "./errors.js";
import { corsHeaders, matchRule, parseCorsXml, requestedHeaders, wildcardMatch } from "./cors.js";

const rule = (r: Partial<CorsRule>): CorsRule => ({ allowedOrigins: [], allowedMethods: [], allowedHeaders: [], exposeHeaders: [], ...r });

test("wildcardMatch: one * matches any run (the empty one too), anchored at both ends, literal otherwise", () => {
  assert.ok(wildcardMatch("*", ""));
  assert.ok(wildcardMatch("*", "http://x"));
  assert.ok(wildcardMatch("http://*.example.com", "http://a.b.example.com"));
  assert.ok(!wildcardMatch("http://*.example.com", "https://a.example.com"));
  assert.ok(!wildcardMatch("http://*.example.com", "http://a.example.com.evil"));
  // s3-tests: *suffix, start*end, prefix*
  assert.ok(wildcardMatch("*suffix", "foo.suffix") && !wildcardMatch("*suffix", "foo.suffix.get"));
  assert.ok(wildcardMatch("start*end", "startend") && wildcardMatch("start*end", "start12end") && !wildcardMatch("start*end", "0start12end"));
  assert.ok(wildcardMatch("prefix*", "prefix") && !wildcardMatch("prefix*", "bla.prefix"));
  assert.ok(!wildcardMatch("ab*ba", "aba"), "prefix and suffix must not overlap");
  assert.ok(wildcardMatch("a.b", "a.b") && !wildcardMatch("a.b", "axb"), "no regex semantics");
  assert.ok(wildcardMatch("a*b*c", "a-b-c") && !wildcardMatch("a*b*c", "a-c"));
});

test("matchRule: first rule whose origin, method and every requested header match", () => {
  const rules = [
    rule({ id: "put", allowedOrigins: ["https://app.example"], allowedMethods: ["PUT"], allowedHeaders: ["content-type", "x-amz-*"] }),
    rule({ id: "any-get", allowedOrigins: ["*"], allowedMethods: ["GET", "HEAD"] }),
  ];
  assert.equal(matchRule(rules, { origin: "https://app.example", method: "PUT", headers: ["content-type", "x-amz-date"] })?.id, "put");
  assert.equal(matchRule(rules, { origin: "https://app.example", method: "PUT", headers: ["authorization"] }), undefined, "a header no AllowedHeader covers");
  assert.equal(matchRule(rules, { origin: "https://other.example", method: "PUT", headers: [] }), undefined);
  assert.equal(matchRule(rules, { origin: "https://other.example", method: "GET", headers: [] })?.id, "any-get");
  assert.equal(matchRule(rules, { origin: "https://other.example", method: "GET", headers: ["x-custom"] }), undefined, "no AllowedHeader allows no requested header");
  assert.equal(matchRule(rules, { origin: "https://app.example", method: "DELETE", headers: [] }), undefined);
  // Header names compare without regard to case.
  assert.equal(matchRule([rule({ allowedOrigins: ["*"], allowedMethods: ["GET"], allowedHeaders: ["X-AMZ-Date"] })], { origin: "o", method: "GET", headers: ["x-amz-date"] })?.allowedMethods[0], "GET");
});

test("requestedHeaders: comma list, trimmed, lower-case, empties dropped, order kept", () => {
  assert.deepEqual(requestedHeaders("X-Amz-Date, content-type,,  Authorization "), ["x-amz-date", "content-type", "authorization"]);
  assert.deepEqual(requestedHeaders(undefined), []);
});

test("corsHeaders: a * rule answers * without credentials; others echo the origin with credentials", () => {
  const star = corsHeaders(rule({ allowedOrigins: ["*"], allowedMethods: ["GET", "PUT"], exposeHeaders: ["ETag", "x-amz-request-id"], maxAgeSeconds: 3000 }), { origin: "https://a", method: "GET", headers: ["content-type"] });
  assert.deepEqual(star, {
    "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, PUT", "Access-Control-Allow-Headers": "content-type",
    "Access-Control-Expose-Headers": "ETag, x-amz-request-id", "Access-Control-Max-Age": "3000",
    Vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
  });
  const exact = corsHeaders(rule({ allowedOrigins: ["https://*.a"], allowedMethods: ["PUT"] }), { origin: "https://x.a", method: "PUT", headers: [] });
  assert.equal(exact["Access-Control-Allow-Origin"], "https://x.a");
  assert.equal(exact["Access-Control-Allow-Credentials"], "true");
  assert.equal(exact["Access-Control-Allow-Headers"], undefined);
  assert.equal(exact["Access-Control-Max-Age"], undefined);
});

const code = (fn: () => unknown) => { try { fn(); } catch (e) { return (e as S3Error).code + ": " + (e as S3Error).message; } return "ok"; };
const doc = (rules: string) => `<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${rules}</CORSConfiguration>`;

test("parseCorsXml: a full rule round-trips; repeated and single elements alike", () => {
  const rules = parseCorsXml(doc(`<CORSRule><ID>r1</ID><AllowedOrigin>https://a</AllowedOrigin><AllowedOrigin>http://*.b</AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader>
    <MaxAgeSeconds>600</MaxAgeSeconds></CORSRule><CORSRule><AllowedOrigin></AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>`));
  assert.deepEqual(rules, [
    { id: "r1", allowedOrigins: ["https://a", "http://*.b"], allowedMethods: ["GET", "PUT"], allowedHeaders: ["*"], exposeHeaders: ["ETag"], maxAgeSeconds: 600 },
    { allowedOrigins: [""], allowedMethods: ["HEAD"], allowedHeaders: [], exposeHeaders: [] },
  ]);
});

test("parseCorsXml: S3's errors for bad documents", () => {
  const ok = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>";
  assert.match(code(() => parseCorsXml(doc(""))), /^MalformedXML/, "no rules");
  assert.match(code(() => parseCorsXml("<Other/>")), /^MalformedXML/);
  assert.match(code(() => parseCorsXml(doc("<CORSRule/>"))), /^MalformedXML/);
  assert.match(code(() => parseCorsXml(doc("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"))), /^MalformedXML/, "no origin");
  assert.match(code(() => parseCorsXml(doc("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"))), /^MalformedXML/, "no method");
  assert.equal(code(() => parseCorsXml(doc(`<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>OPTIONS</AllowedMethod></CORSRule>`))),
    "InvalidRequest: Found unsupported HTTP method in CORS config. Unsupported method is OPTIONS");
  assert.match(code(() => parseCorsXml(doc(`<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>get</AllowedMethod></CORSRule>`))), /^InvalidRequest/, "methods are upper-case");
  assert.equal(code(() => parseCorsXml(doc(`<CORSRule><AllowedOrigin>*example*.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`))),
    `InvalidRequest: AllowedOrigin "*example*.com" can not have more than one wildcard.`);
  assert.match(code(() => parseCorsXml(doc(`<CORSRule>${ok}<AllowedHeader>x-*-*</AllowedHeader></CORSRule>`))), /^InvalidRequest: AllowedHeader/);
  assert.match(code(() => parseCorsXml(doc(`<CORSRule>${ok}<ExposeHeader>*</ExposeHeader></CORSRule>`))), /^InvalidRequest: ExposeHeader/);
  assert.match(code(() => parseCorsXml(doc(`<CORSRule>${ok}<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule>`))), /^MalformedXML/);
  assert.match(code(() => parseCorsXml(doc(`<CORSRule>${ok}<ID>${"i".repeat(256)}</ID></CORSRule>`))), /^InvalidArgument/);
  assert.equal(code(() => parseCorsXml(doc(`<CORSRule>${ok}</CORSRule>`.repeat(100)))), "ok");
  assert.match(code(() => parseCorsXml(doc(`<CORSRule>${ok}</CORSRule>`.repeat(101)))), /^MalformedXML/, "at most 100 rules");
});
