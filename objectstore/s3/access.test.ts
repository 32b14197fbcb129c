/**
 * Access control on the in-memory store (whose updateObjectMeta exists
 * today): the protocol suite, and PutObjectAcl held to account without the
 * suite's merge-time `todo`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { MemoryBlobStore } from "../blob/index.js";
import { accessSuite } from "./suite-access.js";
import { codeOf, raw, startS3 } from "./test-fixture.js";

accessSuite(async () => {
  const store = new MemoryBlobStore();
  return { store, dispose: () => store.close() };
});

test("PutObjectAcl (memory store): a canned ACL or an equivalent grant list opens one object; private closes it", async () => {
  const f = await startS3();
  try {
    const c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "objacl" }));
    await c.send(new s3.PutObjectCommand({ Bucket: "objacl", Key: "k", Body: "v" }));
    const anonGet = () => raw(f, { method: "GET", path: "/objacl/k", anonymous: true });
    assert.equal((await anonGet()).status, 403);
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", ACL: "public-read" }));
    const r = await anonGet();
    assert.equal(r.status, 200);
    assert.equal(r.body, "v");
    const acl = await c.send(new s3.GetObjectAclCommand({ Bucket: "objacl", Key: "k" }));
    assert.deepEqual(acl.Grants?.map((g) => [g.Grantee?.Type, g.Grantee?.URI ?? g.Grantee?.ID, g.Permission]), [
      ["CanonicalUser", "root", "FULL_CONTROL"], ["Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ"]]);
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", ACL: "private" }));
    assert.equal(codeOf((await anonGet()).body), "AccessDenied");
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", AccessControlPolicy: { Owner: { ID: "root" }, Grants: [
      { Grantee: { Type: "CanonicalUser", ID: "root" }, Permission: "FULL_CONTROL" },
      { Grantee: { Type: "Group", URI: "http://acs.amazonaws.com/groups/global/AuthenticatedUsers" }, Permission: "READ" }] } }));
    assert.equal((await c.send(new s3.GetObjectAclCommand({ Bucket: "objacl", Key: "k" }))).Grants?.[1]?.Grantee?.URI, "http://acs.amazonaws.com/groups/global/AuthenticatedUsers");
    await assert.rejects(c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "absent", ACL: "public-read" })), (e: { name: string }) => e.name === "NoSuchKey");
  } finally {
    await f.close();
  }
});
