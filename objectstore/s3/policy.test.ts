/** Bucket policy parsing, validation and evaluation: each case proves one rule. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { evaluatePolicy, normaliseIp, parsePolicy, type PolicyRequest } from "./policy.js";
import { aclGrants, actionOf } from "./access.js";

const B = "data";
const doc = (...statements: object[]) => JSON.stringify({ Version: "2012-10-17", Statement: statements });
const allow = (extra: object = {}) => ({ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/*`, ...extra });
const req = (r: Partial<PolicyRequest> = {}): PolicyRequest => ({ action: "s3:GetObject", bucket: B, key: "k", sourceIp: "10.1.2.3", secure: false, ...r });
const ev = (text: string, r: Partial<PolicyRequest> = {}, opts: { ownerOnly?: boolean } = {}) => evaluatePolicy(parsePolicy(text, B), req(r), { bucketOwner: "root", ...opts });
const malformed = (text: string, re: RegExp) => assert.throws(() => parsePolicy(text, B), (e: { code: string; message: string }) => {
  assert.equal(e.code, "MalformedPolicy");
  assert.match(e.message, re);
  return true;
});
const alice = { owner: "alice", accessKeyId: "AKIAALICE" };

test("an anonymous Allow on bucket/* lets anyone GET any key, and nothing else", () => {
  const p = doc(allow());
  assert.equal(ev(p), "allow");
  assert.equal(ev(p, { caller: alice }), "allow");
  assert.equal(ev(p, { action: "s3:PutObject" }), "none");
  assert.equal(ev(p, { action: "s3:ListBucket", key: undefined }), "none", "bucket/* does not name the bucket itself");
});

test("resource patterns: prefix* and ? wildcards, exact keys", () => {
  const p = doc(allow({ Resource: [`arn:aws:s3:::${B}/public/*`, `arn:aws:s3:::${B}/file?.txt`] }));
  assert.equal(ev(p, { key: "public/a/b" }), "allow");
  assert.equal(ev(p, { key: "private/a" }), "none");
  assert.equal(ev(p, { key: "file1.txt" }), "allow");
  assert.equal(ev(p, { key: "file12.txt" }), "none");
  assert.equal(ev(p, { key: "publicity" }), "none");
});

test("an explicit Deny beats any Allow, the bucket owner's included", () => {
  const p = doc(allow(), { Effect: "Deny", Principal: "*", Action: "s3:*", Resource: `arn:aws:s3:::${B}/secret/*` });
  assert.equal(ev(p, { key: "secret/x" }), "deny");
  assert.equal(ev(p, { key: "secret/x", caller: { owner: "root", accessKeyId: "AKIAROOT" } }), "deny");
  assert.equal(ev(p, { key: "open/x" }), "allow");
});

test("principals: owner id, account root ARN, user ARN (one access key), AWS:*; anonymous only matches *", () => {
  const p = doc(allow({ Principal: { AWS: ["alice", "arn:aws:iam::bob:root", "arn:aws:iam::carol:user/AKIACAROL1"] } }));
  assert.equal(ev(p, { caller: alice }), "allow");
  assert.equal(ev(p, { caller: { owner: "bob", accessKeyId: "AKIAANY" } }), "allow");
  assert.equal(ev(p, { caller: { owner: "carol", accessKeyId: "AKIACAROL1" } }), "allow");
  assert.equal(ev(p, { caller: { owner: "carol", accessKeyId: "AKIACAROL2" } }), "none");
  assert.equal(ev(p), "none", "anonymous is no named principal");
  assert.equal(ev(doc(allow({ Principal: { AWS: "*" } }))), "allow");
  assert.equal(ev(doc(allow({ Principal: { AWS: "alice" } })), { caller: { owner: "mallory", accessKeyId: "AKIAALICE" } }), "none");
});

test("action wildcards expand over the enforced actions, case-insensitively", () => {
  const p = doc({ Effect: "Allow", Principal: "*", Action: ["s3:Get*", "S3:list*"], Resource: [`arn:aws:s3:::${B}`, `arn:aws:s3:::${B}/*`] });
  assert.equal(ev(p), "allow");
  assert.equal(ev(p, { action: "s3:ListBucket", key: undefined, prefix: "" }), "allow");
  assert.equal(ev(p, { action: "s3:ListMultipartUploadParts" }), "allow");
  assert.equal(ev(p, { action: "s3:PutObject" }), "none");
  assert.equal(ev(doc(allow({ Action: "s3:*" })), { action: "s3:DeleteObject" }), "allow");
  assert.equal(ev(doc(allow({ Action: "*" })), { action: "s3:PutObject" }), "allow");
});

test("configuration, tagging and version actions: granted by name or wildcard; each operation names its action, ?versionId= its version action", () => {
  const p = doc({ Effect: "Allow", Principal: "*", Action: ["s3:*Tagging", "s3:GetBucketVersioning"], Resource: [`arn:aws:s3:::${B}`, `arn:aws:s3:::${B}/*`] });
  for (const a of ["s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectVersionTagging"] as const) assert.equal(ev(p, { action: a }), "allow", a);
  for (const a of ["s3:GetBucketTagging", "s3:PutBucketTagging", "s3:GetBucketVersioning"] as const) assert.equal(ev(p, { action: a, key: undefined }), "allow", a);
  assert.equal(ev(p, { action: "s3:PutBucketVersioning", key: undefined }), "none");
  assert.equal(ev(p, { action: "s3:GetObject" }), "none");
  const q = (v?: string) => new Map(v ? [["versionId", v]] : []);
  assert.equal(actionOf("GetObject", q()), "s3:GetObject");
  assert.equal(actionOf("GetObject", q("v1")), "s3:GetObjectVersion");
  assert.equal(actionOf("DeleteObject", q("v1")), "s3:DeleteObjectVersion");
  assert.equal(actionOf("PutObject", q("v1")), "s3:PutObject");
  assert.equal(actionOf("DeleteBucketCors", q()), "s3:PutBucketCORS");
  assert.equal(actionOf("DeleteBucketLifecycle", q()), "s3:PutLifecycleConfiguration");
  assert.equal(actionOf("PutBucketPolicy", q()), undefined, "the policy stays the owner's");
});

test("aws:SourceIp: IpAddress / NotIpAddress with v4 and v6 CIDRs; IPv4-mapped peers compare as IPv4", () => {
  const p = doc(allow({ Condition: { IpAddress: { "aws:SourceIp": ["10.1.0.0/16", "2001:db8::/32"] } } }));
  assert.equal(ev(p, { sourceIp: "10.1.200.7" }), "allow");
  assert.equal(ev(p, { sourceIp: "10.2.0.1" }), "none");
  assert.equal(ev(p, { sourceIp: "2001:db8:1::5" }), "allow");
  assert.equal(ev(p, { sourceIp: "2001:db9::5" }), "none");
  assert.equal(ev(p, { sourceIp: normaliseIp("::ffff:10.1.2.3") }), "allow");
  const deny = doc(allow(), { Effect: "Deny", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/*`, Condition: { NotIpAddress: { "aws:SourceIp": "127.0.0.1" } } });
  assert.equal(ev(deny, { sourceIp: "127.0.0.1" }), "allow");
  assert.equal(ev(deny, { sourceIp: "127.0.0.2" }), "deny");
});

test("s3:prefix on ListBucket: StringEquals / StringLike / negations; absent key fails positive, satisfies negated", () => {
  const list = (Condition: object) => doc({ Effect: "Allow", Principal: "*", Action: "s3:ListBucket", Resource: `arn:aws:s3:::${B}`, Condition });
  const l = (prefix?: string) => ({ action: "s3:ListBucket" as const, key: undefined, prefix });
  assert.equal(ev(list({ StringEquals: { "s3:prefix": ["", "home/"] } }), l("home/")), "allow");
  assert.equal(ev(list({ StringEquals: { "s3:prefix": ["", "home/"] } }), l("home/x")), "none");
  assert.equal(ev(list({ StringLike: { "s3:prefix": "home/*" } }), l("home/x/y")), "allow");
  assert.equal(ev(list({ StringNotLike: { "s3:prefix": "secret*" } }), l("secrets")), "none");
  assert.equal(ev(list({ StringNotEquals: { "s3:prefix": "secret/" } }), l("open/")), "allow");
  assert.equal(ev(list({ StringEquals: { "s3:prefix": "" } }), l(undefined)), "none");
  assert.equal(ev(list({ StringNotEquals: { "s3:prefix": "x" } }), l(undefined)), "allow");
});

test("aws:SecureTransport: Bool true/false (strings or booleans)", () => {
  const deny = doc(allow(), { Effect: "Deny", Principal: "*", Action: "s3:*", Resource: `arn:aws:s3:::${B}/*`, Condition: { Bool: { "aws:SecureTransport": "false" } } });
  assert.equal(ev(deny, { secure: false }), "deny");
  assert.equal(ev(deny, { secure: true }), "allow");
  assert.equal(ev(doc(allow({ Condition: { Bool: { "aws:SecureTransport": true } } })), { secure: true }), "allow");
});

test("several conditions must all hold", () => {
  const p = doc(allow({ Condition: { IpAddress: { "aws:SourceIp": "10.0.0.0/8" }, Bool: { "aws:SecureTransport": "true" } } }));
  assert.equal(ev(p, { secure: true }), "allow");
  assert.equal(ev(p, { secure: false }), "none");
  assert.equal(ev(p, { secure: true, sourceIp: "192.168.0.1" }), "none");
});

test("RestrictPublicBuckets (ownerOnly): Allows count only for the owner; Deny still applies", () => {
  const p = doc(allow());
  assert.equal(ev(p, {}, { ownerOnly: true }), "none");
  assert.equal(ev(p, { caller: alice }, { ownerOnly: true }), "none");
  assert.equal(ev(p, { caller: { owner: "root", accessKeyId: "AKIAROOT" } }, { ownerOnly: true }), "allow");
});

test("public: an Allow to * unless narrowed by aws:SourceIp; named principals and Denies are not public", () => {
  assert.equal(parsePolicy(doc(allow()), B).isPublic, true);
  assert.equal(parsePolicy(doc(allow({ Condition: { Bool: { "aws:SecureTransport": "true" } } })), B).isPublic, true);
  assert.equal(parsePolicy(doc(allow({ Condition: { IpAddress: { "aws:SourceIp": "10.0.0.0/8" } } })), B).isPublic, false);
  assert.equal(parsePolicy(doc(allow({ Principal: { AWS: "alice" } })), B).isPublic, false);
  assert.equal(parsePolicy(doc({ ...allow(), Effect: "Deny" }), B).isPublic, false);
  assert.equal(parsePolicy(JSON.stringify({ Version: "2008-10-17", Statement: allow({ Sid: "one" }) }), B).isPublic, true, "a single Statement object");
});

test("refused: not JSON, unknown elements, Not* elements, bad effect, missing fields, duplicate Sids, bad version", () => {
  malformed("not json", /valid JSON/);
  malformed("[]", /valid JSON/);
  malformed(JSON.stringify({ Version: "2012-10-17", Statement: [allow()], Extra: 1 }), /invalid element: Extra/);
  malformed(JSON.stringify({ Version: "2012-10-17", Statement: [] }), /Statement is empty/);
  malformed(JSON.stringify({ Version: "2012-10-17" }), /Missing required field Statement/);
  malformed(JSON.stringify({ Version: "2020-01-01", Statement: [allow()] }), /version/);
  malformed(doc({ ...allow(), Action: undefined, NotAction: "s3:GetObject" }), /NotAction is not supported/);
  malformed(doc({ ...allow(), NotPrincipal: "*" }), /NotPrincipal is not supported/);
  malformed(doc({ ...allow(), Effect: "Maybe" }), /Invalid effect/);
  malformed(doc({ ...allow(), Principal: undefined }), /Missing required field Principal/);
  malformed(doc({ ...allow(), Resource: undefined }), /Missing required field Resource/);
  malformed(doc(allow({ Sid: "a" }), allow({ Sid: "a" })), /unique/);
  malformed("x".repeat(21 * 1024), /20 KB/);
});

test("refused: actions this store does not enforce, and actions that fit none of the statement's resources", () => {
  malformed(doc(allow({ Action: "s3:PutObjectRetention" })), /Unsupported Action: s3:PutObjectRetention/);
  // The policy, Block Public Access and DeleteBucket stay the owner's: a policy cannot grant them.
  malformed(doc(allow({ Action: "s3:PutBucketPolicy" })), /Unsupported Action/);
  malformed(doc(allow({ Action: "s3:PutBucketPublicAccessBlock" })), /Unsupported Action/);
  malformed(doc(allow({ Action: "s3:DeleteBucket" })), /Unsupported Action/);
  // Bucket-level actions on an object resource (and object-level ones on the bucket) fit nothing.
  malformed(doc(allow({ Action: "s3:PutBucketVersioning" })), /does not apply to any resource/);
  malformed(doc(allow({ Action: "s3:GetObjectTagging", Resource: `arn:aws:s3:::${B}` })), /does not apply to any resource/);
  malformed(doc(allow({ Action: "ec2:RunInstances" })), /invalid action/);
  malformed(doc(allow({ Action: "s3:ListBucket" })), /does not apply to any resource/);
  malformed(doc(allow({ Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}` })), /does not apply to any resource/);
});

test("refused: resources outside this bucket, and principals this store cannot name", () => {
  malformed(doc(allow({ Resource: "arn:aws:s3:::other/*" })), /invalid resource: arn:aws:s3:::other/);
  malformed(doc(allow({ Resource: "arn:aws:s3:::data*" })), /invalid resource/);
  malformed(doc(allow({ Resource: "*" })), /invalid resource/);
  malformed(doc(allow({ Principal: { Service: "s3.amazonaws.com" } })), /Invalid principal.*Service/);
  malformed(doc(allow({ Principal: { AWS: "arn:aws:iam::alice:role/x" } })), /Invalid principal/);
  malformed(doc(allow({ Principal: "alice" })), /Invalid principal/);
});

test("refused: condition keys, operators and values it cannot enforce", () => {
  malformed(doc(allow({ Condition: { StringEquals: { "aws:Referer": "x" } } })), /invalid condition key: aws:Referer/);
  malformed(doc(allow({ Condition: { IpAddress: { "s3:prefix": "x" } } })), /invalid condition key/);
  malformed(doc(allow({ Condition: { DateGreaterThan: { "aws:CurrentTime": "2020-01-01" } } })), /condition operator: DateGreaterThan/);
  malformed(doc(allow({ Condition: { StringEqualsIfExists: { "s3:prefix": "x" } } })), /condition operator/);
  malformed(doc(allow({ Condition: { IpAddress: { "aws:SourceIp": "10.0.0.0/33" } } })), /CIDR/);
  malformed(doc(allow({ Condition: { IpAddress: { "aws:SourceIp": "not-an-ip" } } })), /CIDR/);
  malformed(doc(allow({ Condition: { Bool: { "aws:SecureTransport": "yes" } } })), /true or false/);
});

test("canned ACL grants to non-owners: AllUsers / AuthenticatedUsers, and IgnorePublicAcls", () => {
  assert.deepEqual(aclGrants("public-read", true, false), { read: true, write: false });
  assert.deepEqual(aclGrants("public-read-write", true, false), { read: true, write: true });
  assert.deepEqual(aclGrants("authenticated-read", true, false), { read: false, write: false });
  assert.deepEqual(aclGrants("authenticated-read", false, false), { read: true, write: false });
  assert.deepEqual(aclGrants("public-read-write", true, true), { read: false, write: false });
  assert.deepEqual(aclGrants("bucket-owner-full-control", false, false), { read: false, write: false });
  assert.deepEqual(aclGrants(undefined, false, false), { read: false, write: false });
});
