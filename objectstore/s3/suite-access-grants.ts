/**
 * What a bucket policy can grant a second key beyond reading, writing and
 * listing: tagging, ACL, versioning, CORS, lifecycle and versioned-object
 * calls under S3's IAM action names (access.ts OPS), each refused without
 * its grant; and POST Object, authorized as the PutObject it is (a policy
 * Allow, a public-read-write ACL, an explicit Deny, Block Public Access).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { postForm, signPolicy } from "./suite-post-object.js";
import { codeOf, OTHER, ROOT, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
const denied = (p: Promise<unknown>, what: string) => assert.rejects(p, (e: SdkErr) => {
  assert.equal(e.$metadata.httpStatusCode, 403, what);
  assert.equal(e.name, "AccessDenied", what);
  return true;
}, what);

export function accessGrantsSuite(makeStore: MakeStore): void {
  describe("S3 access control: policy grants for configuration, tagging, versions and POST Object", () => {
    let f: Fixture;
    let c: s3.S3Client, other: s3.S3Client;
    const policy = (Bucket: string, statements: object[]) => c.send(new s3.PutBucketPolicyCommand({ Bucket, Policy: JSON.stringify({ Version: "2012-10-17", Statement: statements }) }));
    const toOther = (Action: string[], Resource: string | string[], Effect = "Allow") => ({ Effect, Principal: { AWS: "arn:aws:iam::other:root" }, Action, Resource });
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      other = f.client({ key: OTHER });
    });
    after(() => f.close());

    test("each tagging, versioning, CORS, lifecycle and ACL call is the other key's only with its own action granted", async () => {
      const B = "grants";
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "t/a", Body: "a" }));
      const cors = { CORSRules: [{ AllowedMethods: ["GET"], AllowedOrigins: ["https://app.example"] }] };
      const lifecycle = { Rules: [{ ID: "r", Status: "Enabled" as const, Filter: { Prefix: "tmp/" }, Expiration: { Days: 3 } }] };
      // [IAM action, the call by the other key]: bucket-level actions on the bucket, object-level ones on t/*.
      const calls: [string, () => Promise<unknown>][] = [
        ["s3:PutObjectTagging", () => other.send(new s3.PutObjectTaggingCommand({ Bucket: B, Key: "t/a", Tagging: { TagSet: [{ Key: "k", Value: "v" }] } }))],
        ["s3:GetObjectTagging", () => other.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "t/a" }))],
        ["s3:DeleteObjectTagging", () => other.send(new s3.DeleteObjectTaggingCommand({ Bucket: B, Key: "t/a" }))],
        ["s3:GetObjectAcl", () => other.send(new s3.GetObjectAclCommand({ Bucket: B, Key: "t/a" }))],
        ["s3:PutObjectAcl", () => other.send(new s3.PutObjectAclCommand({ Bucket: B, Key: "t/a", ACL: "private" }))],
        ["s3:PutBucketTagging", () => other.send(new s3.PutBucketTaggingCommand({ Bucket: B, Tagging: { TagSet: [{ Key: "team", Value: "x" }] } }))],
        ["s3:GetBucketTagging", () => other.send(new s3.GetBucketTaggingCommand({ Bucket: B }))],
        ["s3:PutBucketVersioning", () => other.send(new s3.PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: "Enabled" } }))],
        ["s3:GetBucketVersioning", () => other.send(new s3.GetBucketVersioningCommand({ Bucket: B }))],
        ["s3:PutBucketCORS", () => other.send(new s3.PutBucketCorsCommand({ Bucket: B, CORSConfiguration: cors }))],
        ["s3:GetBucketCORS", () => other.send(new s3.GetBucketCorsCommand({ Bucket: B }))],
        ["s3:PutLifecycleConfiguration", () => other.send(new s3.PutBucketLifecycleConfigurationCommand({ Bucket: B, LifecycleConfiguration: lifecycle }))],
        ["s3:GetLifecycleConfiguration", () => other.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B }))],
        ["s3:GetBucketAcl", () => other.send(new s3.GetBucketAclCommand({ Bucket: B }))],
      ];
      for (const [action, call] of calls) await denied(call(), `${action} without a policy`);
      // Granting every action but one: that one stays refused (an action is granted by its own name, not by its neighbours').
      for (const [skip] of calls) {
        const granted = calls.map(([a]) => a).filter((a) => a !== skip);
        await policy(B, [toOther(granted.filter((a) => /Object/.test(a)), `arn:aws:s3:::${B}/t/*`), toOther(granted.filter((a) => !/Object/.test(a)), `arn:aws:s3:::${B}`)]);
        await denied(calls.find(([a]) => a === skip)![1](), `${skip} not granted`);
      }
      await policy(B, [toOther(calls.map(([a]) => a).filter((a) => /Object/.test(a)), `arn:aws:s3:::${B}/t/*`), toOther(calls.map(([a]) => a).filter((a) => !/Object/.test(a)), `arn:aws:s3:::${B}`)]);
      for (const [action, call] of calls) await call().catch((e: unknown) => assert.fail(`${action} granted, yet: ${String(e)}`));
      assert.equal((await c.send(new s3.GetBucketVersioningCommand({ Bucket: B }))).Status, "Enabled", "the other key's PutBucketVersioning took effect");
      assert.equal((await c.send(new s3.GetBucketTaggingCommand({ Bucket: B }))).TagSet?.[0]?.Key, "team");
      // Object-level grants are confined to their resource.
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "u/b", Body: "b" }));
      await denied(other.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "u/b" })), "GetObjectTagging outside t/*");
      // An explicit Deny of a configuration action beats the owner too; the owner still manages the policy.
      await policy(B, [toOther(["s3:GetBucketVersioning"], `arn:aws:s3:::${B}`), { Effect: "Deny", Principal: "*", Action: "s3:PutBucketVersioning", Resource: `arn:aws:s3:::${B}` }]);
      await denied(c.send(new s3.PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: "Suspended" } })), "owner denied PutBucketVersioning");
      await c.send(new s3.DeleteBucketPolicyCommand({ Bucket: B }));
      await c.send(new s3.PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: "Suspended" } }));
    });

    test("?versionId= needs s3:GetObjectVersion / s3:DeleteObjectVersion: s3:GetObject and s3:DeleteObject do not grant them", async () => {
      const B = "grants-versions";
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
      await c.send(new s3.PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: "Enabled" } }));
      const v1 = (await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "k", Body: "one" }))).VersionId!;
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "k", Body: "two" }));
      await policy(B, [toOther(["s3:GetObject", "s3:DeleteObject"], `arn:aws:s3:::${B}/*`)]);
      assert.equal(await (await other.send(new s3.GetObjectCommand({ Bucket: B, Key: "k" }))).Body!.transformToString(), "two");
      await denied(other.send(new s3.GetObjectCommand({ Bucket: B, Key: "k", VersionId: v1 })), "GET ?versionId= with s3:GetObject only");
      // A HEAD's 403 has no body to name its code.
      await assert.rejects(other.send(new s3.HeadObjectCommand({ Bucket: B, Key: "k", VersionId: v1 })), (e: SdkErr) => e.$metadata.httpStatusCode === 403, "HEAD ?versionId=");
      await denied(other.send(new s3.DeleteObjectCommand({ Bucket: B, Key: "k", VersionId: v1 })), "DELETE ?versionId= with s3:DeleteObject only");
      const multi = await other.send(new s3.DeleteObjectsCommand({ Bucket: B, Delete: { Objects: [{ Key: "k", VersionId: v1 }] } }));
      assert.equal(multi.Errors?.[0]?.Code, "AccessDenied", "DeleteObjects with a VersionId is s3:DeleteObjectVersion too");
      await denied(other.send(new s3.CopyObjectCommand({ Bucket: B, Key: "copy", CopySource: `${B}/k?versionId=${v1}` })), "a copy of a version");
      await policy(B, [toOther(["s3:GetObjectVersion", "s3:DeleteObjectVersion"], `arn:aws:s3:::${B}/*`)]);
      assert.equal(await (await other.send(new s3.GetObjectCommand({ Bucket: B, Key: "k", VersionId: v1 }))).Body!.transformToString(), "one");
      await other.send(new s3.DeleteObjectCommand({ Bucket: B, Key: "k", VersionId: v1 }));
      await assert.rejects(c.send(new s3.GetObjectCommand({ Bucket: B, Key: "k", VersionId: v1 })), (e: SdkErr) => e.$metadata.httpStatusCode === 404);
    });

    test("POST Object is a PutObject: another key's form needs a policy Allow (and no Deny); anonymous forms need the bucket open to them", async () => {
      const B = "grants-forms";
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
      const post = (key: string, o: { key?: string; anonymous?: boolean; acl?: string } = {}) => postForm(f.port, `/${B}`, [
        ["key", key], ...(o.acl ? [["acl", o.acl] as [string, string]] : []),
        ...(o.anonymous ? [] : signPolicy([{ bucket: B }, { key }, ...(o.acl ? [{ acl: o.acl }] : [])], { key: o.key ?? OTHER })),
      ], { data: Buffer.from(`body of ${key}`) });
      const status = async (p: ReturnType<typeof post>) => { const r = await p; return r.status === 204 ? "ok" : codeOf(r.body); };
      assert.equal(await status(post("up/1")), "AccessDenied", "the other key, no policy");
      assert.equal(await status(post("up/1", { anonymous: true })), "AccessDenied", "anonymous, private bucket");
      await policy(B, [toOther(["s3:PutObject"], `arn:aws:s3:::${B}/up/*`), { Effect: "Deny", Principal: "*", Action: "s3:PutObject", Resource: `arn:aws:s3:::${B}/up/locked/*` }]);
      assert.equal(await status(post("up/1")), "ok", "the other key, allowed on up/*");
      assert.equal(await status(post("down/1")), "AccessDenied", "the other key, outside up/*");
      assert.equal(await status(post("up/locked/1")), "AccessDenied", "an explicit Deny");
      assert.equal((await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "up/1" })).then((g) => g.Body!.transformToString())), "body of up/1");
      // Anonymous forms: a public-read-write bucket takes them, a Block Public Access setting refuses a public acl field.
      await c.send(new s3.DeleteBucketPolicyCommand({ Bucket: B }));
      await c.send(new s3.PutBucketAclCommand({ Bucket: B, ACL: "public-read-write" }));
      assert.equal(await status(post("anon/1", { anonymous: true })), "ok", "anonymous, public-read-write bucket");
      await c.send(new s3.PutPublicAccessBlockCommand({ Bucket: B, PublicAccessBlockConfiguration: { BlockPublicAcls: true } }));
      assert.equal(await status(post("own/1", { key: ROOT, acl: "public-read" })), "AccessDenied", "BlockPublicAcls refuses the acl field");
      assert.equal(await status(post("own/2", { key: ROOT, acl: "private" })), "ok");
    });
  });
}
