/**
 * Access control over the wire: canned ACLs, anonymous requests (raw,
 * unsigned), a second owner's key, bucket policies and Block Public Access,
 * against whichever store the suite is handed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, OTHER, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
async function rejectsWith(p: Promise<unknown>, name: string, status: number): Promise<void> {
  await assert.rejects(p, (e: SdkErr) => {
    assert.equal(e.name, name);
    assert.equal(e.$metadata.httpStatusCode, status);
    return true;
  });
}

export function accessSuite(makeStore: MakeStore): void {
  describe("S3 access control: canned ACLs, anonymous access, bucket policies, Block Public Access", () => {
    let f: Fixture;
    let c: s3.S3Client, other: s3.S3Client;
    const anon = (method: string, path: string, extra: { body?: string; query?: Record<string, string>; headers?: Record<string, string> } = {}) =>
      raw(f, { method, path, anonymous: true, ...extra });
    const expect = async (p: ReturnType<typeof anon>, status: number, code?: string) => {
      const r = await p;
      assert.equal(r.status, status, r.body);
      if (code) assert.equal(codeOf(r.body), code);
      return r;
    };
    const policy = (Bucket: string, statements: object[]) => c.send(new s3.PutBucketPolicyCommand({ Bucket, Policy: JSON.stringify({ Version: "2012-10-17", Statement: statements }) }));
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      other = f.client({ key: OTHER });
    });
    after(() => f.close());

    test("private by default: anonymous and another owner's key are refused everything; missing keys answer 403, not 404", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-private" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-private", Key: "a", Body: "a" }));
      await expect(anon("GET", "/acl-private/a"), 403, "AccessDenied");
      await expect(anon("GET", "/acl-private/missing"), 403, "AccessDenied");
      await expect(anon("GET", "/acl-private"), 403, "AccessDenied");
      await expect(anon("PUT", "/acl-private/b", { body: "b" }), 403, "AccessDenied");
      await expect(anon("GET", "/"), 403, "AccessDenied");
      await expect(anon("PUT", "/anon-made-bucket"), 403, "AccessDenied");
      await expect(anon("GET", "/no-such-bucket-here/x"), 404, "NoSuchBucket");
      await rejectsWith(other.send(new s3.GetObjectCommand({ Bucket: "acl-private", Key: "a" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.ListObjectsV2Command({ Bucket: "acl-private" })), "AccessDenied", 403);
      const acl = await c.send(new s3.GetBucketAclCommand({ Bucket: "acl-private" }));
      assert.deepEqual(acl.Grants?.map((g) => [g.Grantee?.Type, g.Grantee?.ID, g.Permission]), [["CanonicalUser", "root", "FULL_CONTROL"]]);
    });

    test("bucket public-read: anyone lists, but reading an object needs the object's own ACL (S3's rules)", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-pubread", ACL: "public-read" }));
      const acl = await c.send(new s3.GetBucketAclCommand({ Bucket: "acl-pubread" }));
      assert.deepEqual(acl.Grants?.map((g) => [g.Grantee?.Type, g.Grantee?.URI ?? g.Grantee?.ID, g.Permission]), [
        ["CanonicalUser", "root", "FULL_CONTROL"], ["Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ"]]);
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-pubread", Key: "private.txt", Body: "p" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-pubread", Key: "public.txt", Body: "hello", ACL: "public-read" }));
      const list = await expect(anon("GET", "/acl-pubread", { query: { "list-type": "2" } }), 200);
      assert.match(list.body, /<Key>private.txt<\/Key>/);
      await expect(anon("GET", "/acl-pubread"), 200);
      assert.equal((await expect(anon("GET", "/acl-pubread/public.txt"), 200)).body, "hello");
      await expect(anon("HEAD", "/acl-pubread/public.txt"), 200);
      await expect(anon("GET", "/acl-pubread/public.txt", { query: { "response-content-type": "text/html" } }), 400, "InvalidRequest");
      await expect(anon("GET", "/acl-pubread/private.txt"), 403, "AccessDenied");
      await expect(anon("GET", "/acl-pubread/missing"), 404, "NoSuchKey");
      await expect(anon("PUT", "/acl-pubread/x", { body: "x" }), 403, "AccessDenied");
      await expect(anon("DELETE", "/acl-pubread/public.txt"), 403, "AccessDenied");
      const oacl = await c.send(new s3.GetObjectAclCommand({ Bucket: "acl-pubread", Key: "public.txt" }));
      assert.deepEqual(oacl.Grants?.map((g) => g.Grantee?.URI ?? g.Grantee?.ID), ["root", "http://acs.amazonaws.com/groups/global/AllUsers"]);
      // Another owner gets what AllUsers gets, and no bucket configuration.
      assert.equal(await (await other.send(new s3.GetObjectCommand({ Bucket: "acl-pubread", Key: "public.txt" }))).Body!.transformToString(), "hello");
      await rejectsWith(other.send(new s3.GetBucketAclCommand({ Bucket: "acl-pubread" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.PutBucketAclCommand({ Bucket: "acl-pubread", ACL: "public-read-write" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.DeleteBucketCommand({ Bucket: "acl-pubread" })), "AccessDenied", 403);
      // Back to private: the listing closes again.
      await c.send(new s3.PutBucketAclCommand({ Bucket: "acl-pubread", ACL: "private" }));
      await expect(anon("GET", "/acl-pubread"), 403, "AccessDenied");
    });

    test("bucket public-read-write: anyone puts and deletes; what they put is private to the owner", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-pubrw" }));
      await c.send(new s3.PutBucketAclCommand({ Bucket: "acl-pubrw", ACL: "public-read-write" }));
      await expect(anon("PUT", "/acl-pubrw/drop.txt", { body: "dropped" }), 200);
      const got = await c.send(new s3.GetObjectCommand({ Bucket: "acl-pubrw", Key: "drop.txt" }));
      assert.equal(await got.Body!.transformToString(), "dropped");
      await expect(anon("GET", "/acl-pubrw/drop.txt"), 403, "AccessDenied");
      await expect(anon("PUT", "/acl-pubrw/open.txt", { body: "o", headers: { "x-amz-acl": "public-read" } }), 200);
      await expect(anon("GET", "/acl-pubrw/open.txt"), 200);
      await expect(anon("DELETE", "/acl-pubrw/drop.txt"), 204);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "acl-pubrw", Key: "drop.txt" })), "NotFound", 404);
      await other.send(new s3.PutObjectCommand({ Bucket: "acl-pubrw", Key: "by-other", Body: "o" }));
      await other.send(new s3.DeleteObjectsCommand({ Bucket: "acl-pubrw", Delete: { Objects: [{ Key: "by-other" }] } }));
    });

    test("authenticated-read: any key of this store reads and lists, anonymous does not", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-authread", ACL: "authenticated-read" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-authread", Key: "k", Body: "v", ACL: "authenticated-read" }));
      const l = await other.send(new s3.ListObjectsV2Command({ Bucket: "acl-authread" }));
      assert.deepEqual(l.Contents?.map((o) => o.Key), ["k"]);
      assert.equal(await (await other.send(new s3.GetObjectCommand({ Bucket: "acl-authread", Key: "k" }))).Body!.transformToString(), "v");
      await rejectsWith(other.send(new s3.PutObjectCommand({ Bucket: "acl-authread", Key: "k2", Body: "x" })), "AccessDenied", 403);
      await expect(anon("GET", "/acl-authread/k"), 403, "AccessDenied");
      await expect(anon("GET", "/acl-authread"), 403, "AccessDenied");
      const acl = await c.send(new s3.GetObjectAclCommand({ Bucket: "acl-authread", Key: "k" }));
      assert.equal(acl.Grants?.[1]?.Grantee?.URI, "http://acs.amazonaws.com/groups/global/AuthenticatedUsers");
    });

    test("copies and multipart uploads carry the request's ACL; a copy's source needs read access", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-copy" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-copy", Key: "src", Body: "s", ACL: "public-read" }));
      await c.send(new s3.CopyObjectCommand({ Bucket: "acl-copy", Key: "dst", CopySource: "acl-copy/src" }));
      await expect(anon("GET", "/acl-copy/dst"), 403, "AccessDenied");
      await c.send(new s3.CopyObjectCommand({ Bucket: "acl-copy", Key: "dst2", CopySource: "acl-copy/src", ACL: "public-read" }));
      await expect(anon("GET", "/acl-copy/dst2"), 200);
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "acl-copy", Key: "mp", ACL: "public-read" }));
      const p = await c.send(new s3.UploadPartCommand({ Bucket: "acl-copy", Key: "mp", UploadId: up.UploadId, PartNumber: 1, Body: "part" }));
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "acl-copy", Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p.ETag }] } }));
      assert.equal((await expect(anon("GET", "/acl-copy/mp"), 200)).body, "part");
      // Another owner copies a public object into its own bucket, but not a private one.
      await other.send(new s3.CreateBucketCommand({ Bucket: "acl-copy-other" }));
      await other.send(new s3.CopyObjectCommand({ Bucket: "acl-copy-other", Key: "mine", CopySource: "acl-copy/src" }));
      await rejectsWith(other.send(new s3.CopyObjectCommand({ Bucket: "acl-copy-other", Key: "nope", CopySource: "acl-copy/dst" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.CopyObjectCommand({ Bucket: "acl-copy-other", Key: "nope", CopySource: "acl-copy/absent" })), "AccessDenied", 403);
    });

    test("ACL requests this store cannot honour are refused: grant headers, named grantees, unknown canned ACLs", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-bad" }));
      await rejectsWith(c.send(new s3.PutBucketAclCommand({ Bucket: "acl-bad", GrantRead: "id=someone" })), "NotImplemented", 501);
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "acl-bad", Key: "k", Body: "b", GrantRead: "uri=http://acs.amazonaws.com/groups/global/AllUsers" })), "NotImplemented", 501);
      await rejectsWith(c.send(new s3.PutBucketAclCommand({ Bucket: "acl-bad", ACL: "everyone" as s3.BucketCannedACL })), "InvalidArgument", 400);
      const owner = { ID: "root", DisplayName: "root" };
      const full = { Grantee: { Type: "CanonicalUser" as const, ID: "root" }, Permission: "FULL_CONTROL" as const };
      await rejectsWith(c.send(new s3.PutBucketAclCommand({ Bucket: "acl-bad", AccessControlPolicy: { Owner: owner, Grants: [full, { Grantee: { Type: "CanonicalUser", ID: "other" }, Permission: "READ" }] } })), "NotImplemented", 501);
      // A grant list that is a canned ACL is accepted as that ACL.
      await c.send(new s3.PutBucketAclCommand({ Bucket: "acl-bad", AccessControlPolicy: { Owner: owner, Grants: [full, { Grantee: { Type: "Group", URI: "http://acs.amazonaws.com/groups/global/AllUsers" }, Permission: "READ" }] } }));
      await expect(anon("GET", "/acl-bad"), 200);
      const r = await raw(f, { method: "PUT", path: "/acl-bad", query: { acl: "" }, body: "<AccessControlPolicy><Owner><ID>root</ID></Owner>" });
      assert.equal(codeOf(r.body), "MalformedXML");
      await expect(anon("GET", "/acl-bad"), 200, undefined);
    });

    test("PutObjectAcl with a canned ACL opens one object", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "acl-objput" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "acl-objput", Key: "k", Body: "v" }));
      await expect(anon("GET", "/acl-objput/k"), 403, "AccessDenied");
      await c.send(new s3.PutObjectAclCommand({ Bucket: "acl-objput", Key: "k", ACL: "public-read" }));
      assert.equal((await expect(anon("GET", "/acl-objput/k"), 200)).body, "v");
      const acl = await c.send(new s3.GetObjectAclCommand({ Bucket: "acl-objput", Key: "k" }));
      assert.equal(acl.Grants?.[1]?.Permission, "READ");
      await c.send(new s3.PutObjectAclCommand({ Bucket: "acl-objput", Key: "k", ACL: "private" }));
      await expect(anon("GET", "/acl-objput/k"), 403, "AccessDenied");
      await rejectsWith(c.send(new s3.PutObjectAclCommand({ Bucket: "acl-objput", Key: "absent", ACL: "public-read" })), "NoSuchKey", 404);
    });

    test("bucket policy: Put/Get/Delete, PolicyStatus, anonymous reads of one prefix, Deny beats the owner, owner keeps config", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "pol" }));
      for (const k of ["public/a", "secret/b", "other/c"]) await c.send(new s3.PutObjectCommand({ Bucket: "pol", Key: k, Body: k }));
      await rejectsWith(c.send(new s3.GetBucketPolicyStatusCommand({ Bucket: "pol" })), "NoSuchBucketPolicy", 404);
      const text = JSON.stringify({ Version: "2012-10-17", Statement: [
        { Sid: "PublicRead", Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::pol/public/*" },
        { Sid: "NoSecrets", Effect: "Deny", Principal: { AWS: "*" }, Action: "s3:*", Resource: "arn:aws:s3:::pol/secret/*" },
        { Sid: "OtherLists", Effect: "Allow", Principal: { AWS: "arn:aws:iam::other:root" }, Action: "s3:ListBucket", Resource: "arn:aws:s3:::pol", Condition: { StringLike: { "s3:prefix": "public/*" } } },
      ] });
      await c.send(new s3.PutBucketPolicyCommand({ Bucket: "pol", Policy: text }));
      assert.equal((await c.send(new s3.GetBucketPolicyCommand({ Bucket: "pol" }))).Policy, text);
      assert.equal((await c.send(new s3.GetBucketPolicyStatusCommand({ Bucket: "pol" }))).PolicyStatus?.IsPublic, true);
      assert.equal((await expect(anon("GET", "/pol/public/a"), 200)).body, "public/a");
      await expect(anon("GET", "/pol/other/c"), 403, "AccessDenied");
      await expect(anon("GET", "/pol/public/missing"), 403, "AccessDenied");
      await expect(anon("GET", "/pol/secret/b"), 403, "AccessDenied");
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "pol", Key: "secret/b" })), "AccessDenied", 403);
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: "pol", Key: "secret/new", Body: "x" })), "AccessDenied", 403);
      await c.send(new s3.GetObjectCommand({ Bucket: "pol", Key: "other/c" }));
      const l = await other.send(new s3.ListObjectsV2Command({ Bucket: "pol", Prefix: "public/" }));
      assert.deepEqual(l.Contents?.map((o) => o.Key), ["public/a"]);
      await rejectsWith(other.send(new s3.ListObjectsV2Command({ Bucket: "pol", Prefix: "secret/" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.ListObjectsV2Command({ Bucket: "pol" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.GetBucketPolicyCommand({ Bucket: "pol" })), "AccessDenied", 403);
      // The owner may always manage the policy that denies it.
      await c.send(new s3.DeleteBucketPolicyCommand({ Bucket: "pol" }));
      await rejectsWith(c.send(new s3.GetBucketPolicyCommand({ Bucket: "pol" })), "NoSuchBucketPolicy", 404);
      await c.send(new s3.GetObjectCommand({ Bucket: "pol", Key: "secret/b" }));
      await expect(anon("GET", "/pol/public/a"), 403, "AccessDenied");
    });

    test("bucket policy conditions: aws:SourceIp is the TCP peer, aws:SecureTransport is false on plaintext", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "pol-cond" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "pol-cond", Key: "k", Body: "v" }));
      await policy("pol-cond", [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::pol-cond/*", Condition: { IpAddress: { "aws:SourceIp": ["127.0.0.0/8", "::1/128"] } } }]);
      assert.equal((await c.send(new s3.GetBucketPolicyStatusCommand({ Bucket: "pol-cond" }))).PolicyStatus?.IsPublic, false, "narrowed to a set of CIDRs");
      await expect(anon("GET", "/pol-cond/k"), 200);
      await policy("pol-cond", [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::pol-cond/*", Condition: { IpAddress: { "aws:SourceIp": "10.0.0.0/8" } } }]);
      await expect(anon("GET", "/pol-cond/k"), 403, "AccessDenied");
      await policy("pol-cond", [{ Effect: "Deny", Principal: "*", Action: "s3:*", Resource: ["arn:aws:s3:::pol-cond", "arn:aws:s3:::pol-cond/*"], Condition: { Bool: { "aws:SecureTransport": "false" } } }]);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "pol-cond", Key: "k" })), "AccessDenied", 403);
      await rejectsWith(c.send(new s3.ListObjectsV2Command({ Bucket: "pol-cond" })), "AccessDenied", 403);
      await c.send(new s3.DeleteBucketPolicyCommand({ Bucket: "pol-cond" }));
      await c.send(new s3.GetObjectCommand({ Bucket: "pol-cond", Key: "k" }));
    });

    test("a policy lets another owner delete some keys and not others (DeleteObjects key by key)", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "pol-del" }));
      for (const k of ["tmp/1", "keep/1"]) await c.send(new s3.PutObjectCommand({ Bucket: "pol-del", Key: k, Body: k }));
      await policy("pol-del", [{ Effect: "Allow", Principal: { AWS: "other" }, Action: ["s3:DeleteObject", "s3:PutObject"], Resource: "arn:aws:s3:::pol-del/tmp/*" }]);
      const r = await other.send(new s3.DeleteObjectsCommand({ Bucket: "pol-del", Delete: { Objects: [{ Key: "tmp/1" }, { Key: "keep/1" }] } }));
      assert.deepEqual(r.Deleted?.map((d) => d.Key), ["tmp/1"]);
      assert.deepEqual(r.Errors?.map((e) => [e.Key, e.Code]), [["keep/1", "AccessDenied"]]);
      await other.send(new s3.PutObjectCommand({ Bucket: "pol-del", Key: "tmp/2", Body: "x" }));
      await rejectsWith(other.send(new s3.PutObjectCommand({ Bucket: "pol-del", Key: "keep/2", Body: "x" })), "AccessDenied", 403);
      await c.send(new s3.HeadObjectCommand({ Bucket: "pol-del", Key: "keep/1" }));
    });

    test("policies this store cannot enforce are refused with MalformedPolicy and change nothing", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "pol-bad" }));
      const st = { Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::pol-bad/*" };
      for (const bad of [
        { ...st, Action: "s3:PutObjectRetention" }, { ...st, Action: "s3:PutBucketPolicy" }, { ...st, Resource: "arn:aws:s3:::elsewhere/*" },
        { ...st, Condition: { StringEquals: { "aws:Referer": "x" } } }, { ...st, NotAction: "s3:PutObject" },
      ]) await rejectsWith(policy("pol-bad", [bad]), "MalformedPolicy", 400);
      await rejectsWith(c.send(new s3.PutBucketPolicyCommand({ Bucket: "pol-bad", Policy: "{not json" })), "MalformedPolicy", 400);
      await rejectsWith(c.send(new s3.GetBucketPolicyCommand({ Bucket: "pol-bad" })), "NoSuchBucketPolicy", 404);
      await rejectsWith(other.send(new s3.PutBucketPolicyCommand({ Bucket: "pol-bad", Policy: JSON.stringify({ Statement: [st] }) })), "AccessDenied", 403);
    });

    test("Block Public Access: BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets", async () => {
      const B = "pab";
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
      await rejectsWith(c.send(new s3.GetPublicAccessBlockCommand({ Bucket: B })), "NoSuchPublicAccessBlockConfiguration", 404);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "pub", Body: "p", ACL: "public-read" }));
      await policy(B, [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/open/*` }]);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "open/x", Body: "o" }));
      await expect(anon("GET", `/${B}/pub`), 200);
      await expect(anon("GET", `/${B}/open/x`), 200);
      const set = (cfg: s3.PublicAccessBlockConfiguration) => c.send(new s3.PutPublicAccessBlockCommand({ Bucket: B, PublicAccessBlockConfiguration: cfg }));

      await set({ BlockPublicAcls: true });
      assert.deepEqual((await c.send(new s3.GetPublicAccessBlockCommand({ Bucket: B }))).PublicAccessBlockConfiguration,
        { BlockPublicAcls: true, IgnorePublicAcls: false, BlockPublicPolicy: false, RestrictPublicBuckets: false });
      await rejectsWith(c.send(new s3.PutObjectCommand({ Bucket: B, Key: "p2", Body: "p", ACL: "public-read" })), "AccessDenied", 403);
      await rejectsWith(c.send(new s3.PutBucketAclCommand({ Bucket: B, ACL: "public-read" })), "AccessDenied", 403);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "p2" })), "NotFound", 404);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "p3", Body: "p", ACL: "private" }));
      await expect(anon("GET", `/${B}/pub`), 200, undefined);

      await set({ IgnorePublicAcls: true });
      await expect(anon("GET", `/${B}/pub`), 403, "AccessDenied");
      await expect(anon("GET", `/${B}/open/x`), 200);

      await set({ BlockPublicPolicy: true });
      await rejectsWith(policy(B, [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/*` }]), "AccessDenied", 403);
      await policy(B, [{ Effect: "Allow", Principal: { AWS: "other" }, Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/*` }]);
      await c.send(new s3.DeletePublicAccessBlockCommand({ Bucket: B }));
      await policy(B, [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/open/*` }]);

      await set({ RestrictPublicBuckets: true });
      assert.equal((await c.send(new s3.GetBucketPolicyStatusCommand({ Bucket: B }))).PolicyStatus?.IsPublic, false);
      await expect(anon("GET", `/${B}/open/x`), 403, "AccessDenied");
      await rejectsWith(other.send(new s3.GetObjectCommand({ Bucket: B, Key: "open/x" })), "AccessDenied", 403);
      await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "open/x" }));

      await c.send(new s3.DeletePublicAccessBlockCommand({ Bucket: B }));
      await rejectsWith(c.send(new s3.GetPublicAccessBlockCommand({ Bucket: B })), "NoSuchPublicAccessBlockConfiguration", 404);
      assert.equal((await c.send(new s3.GetBucketPolicyStatusCommand({ Bucket: B }))).PolicyStatus?.IsPublic, true);
      await expect(anon("GET", `/${B}/open/x`), 200);
      const bad = await raw(f, { method: "PUT", path: `/${B}`, query: { publicAccessBlock: "" }, body: "<PublicAccessBlockConfiguration><BlockPublicAcls>maybe</BlockPublicAcls></PublicAccessBlockConfiguration>" });
      assert.equal(codeOf(bad.body), "MalformedXML");
      await rejectsWith(other.send(new s3.PutPublicAccessBlockCommand({ Bucket: B, PublicAccessBlockConfiguration: { BlockPublicAcls: false } })), "AccessDenied", 403);
    });
  });
}
