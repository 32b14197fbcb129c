/** Put/Get/DeleteBucketLifecycleConfiguration through @aws-sdk/client-s3: round trips and the refusals S3 makes. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, OTHER, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
const rejectsWith = (p: Promise<unknown>, name: string, status: number) =>
  assert.rejects(p, (e: SdkErr) => { assert.equal(e.name, name); assert.equal(e.$metadata.httpStatusCode, status); return true; });

export function lifecycleSuite(makeStore: MakeStore): void {
  describe("S3 lifecycle configuration", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const B = "rules";
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    test("put, get (every filter form and action), delete", async () => {
      await rejectsWith(c.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B })), "NoSuchLifecycleConfiguration", 404);
      const Rules: s3.LifecycleRule[] = [
        { ID: "logs", Status: "Enabled", Filter: { Prefix: "logs/" }, Expiration: { Days: 30 } },
        { ID: "tagged", Status: "Enabled", Filter: { Tag: { Key: "class", Value: "tmp" } }, Expiration: { Date: new Date("2027-01-01T00:00:00Z") } },
        { ID: "and", Status: "Disabled", Filter: { And: { Prefix: "a/", Tags: [{ Key: "x", Value: "1" }, { Key: "y", Value: "2" }], ObjectSizeGreaterThan: 10 } }, NoncurrentVersionExpiration: { NoncurrentDays: 7, NewerNoncurrentVersions: 3 } },
        { ID: "uploads", Status: "Enabled", Filter: {}, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 }, Expiration: { ExpiredObjectDeleteMarker: true } },
      ];
      await c.send(new s3.PutBucketLifecycleConfigurationCommand({ Bucket: B, LifecycleConfiguration: { Rules } }));
      const got = await c.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B }));
      assert.deepEqual(got.Rules!.map((r) => r.ID), ["logs", "tagged", "and", "uploads"]);
      assert.equal(got.Rules![0]!.Expiration!.Days, 30);
      assert.equal(got.Rules![0]!.Filter!.Prefix, "logs/");
      assert.deepEqual(got.Rules![1]!.Filter!.Tag, { Key: "class", Value: "tmp" });
      assert.equal(got.Rules![1]!.Expiration!.Date!.toISOString(), "2027-01-01T00:00:00.000Z");
      assert.equal(got.Rules![2]!.Status, "Disabled");
      assert.equal(got.Rules![2]!.Filter!.And!.Tags!.length, 2);
      assert.equal(got.Rules![2]!.Filter!.And!.ObjectSizeGreaterThan, 10);
      assert.deepEqual(got.Rules![2]!.NoncurrentVersionExpiration, { NoncurrentDays: 7, NewerNoncurrentVersions: 3 });
      assert.equal(got.Rules![3]!.AbortIncompleteMultipartUpload!.DaysAfterInitiation, 2);
      assert.equal(got.Rules![3]!.Expiration!.ExpiredObjectDeleteMarker, true);
      await c.send(new s3.DeleteBucketLifecycleCommand({ Bucket: B }));
      await rejectsWith(c.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B })), "NoSuchLifecycleConfiguration", 404);
    });

    test("refusals: no action, bad status, date not at midnight, duplicate IDs, tags with AbortIncompleteMultipartUpload, transitions; nothing stored", async () => {
      const put = (Rules: s3.LifecycleRule[]) => c.send(new s3.PutBucketLifecycleConfigurationCommand({ Bucket: B, LifecycleConfiguration: { Rules } }));
      await put([{ ID: "keep", Status: "Enabled", Filter: { Prefix: "k/" }, Expiration: { Days: 1 } }]);
      await rejectsWith(put([{ ID: "none", Status: "Enabled", Filter: {} }]), "MalformedXML", 400);
      await rejectsWith(put([{ ID: "d", Status: "Enabled", Filter: {}, Expiration: { Date: new Date("2027-01-01T12:00:00Z") } }]), "InvalidArgument", 400);
      await rejectsWith(put([{ ID: "z", Status: "Enabled", Filter: {}, Expiration: { Days: 0 } }]), "InvalidArgument", 400);
      await rejectsWith(put([{ ID: "same", Status: "Enabled", Filter: {}, Expiration: { Days: 1 } }, { ID: "same", Status: "Enabled", Filter: {}, Expiration: { Days: 2 } }]), "InvalidArgument", 400);
      await rejectsWith(put([{ ID: "t", Status: "Enabled", Filter: { Tag: { Key: "a", Value: "b" } }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }]), "InvalidRequest", 400);
      await rejectsWith(put([{ ID: "tr", Status: "Enabled", Filter: {}, Transitions: [{ Days: 30, StorageClass: "GLACIER" }] }]), "NotImplemented", 501);
      const r = await raw(f, { method: "PUT", path: `/${B}`, query: { lifecycle: "" }, body: "<LifecycleConfiguration><Rule><ID>s</ID><Filter/><Status>Maybe</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>" });
      assert.equal(r.status, 400);
      assert.equal(codeOf(r.body), "MalformedXML");
      const got = await c.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B }));
      assert.deepEqual(got.Rules!.map((x) => x.ID), ["keep"], "a refused configuration leaves the previous one");
      const other = f.client({ key: OTHER });
      await rejectsWith(other.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: B })), "AccessDenied", 403);
    });
  });
}
