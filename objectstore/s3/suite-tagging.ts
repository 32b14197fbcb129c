/**
 * Object and bucket tagging through @aws-sdk/client-s3 (and raw requests for
 * what the SDK will not send): every operation, S3's limits and error
 * answers, CopyObject's tagging directive, multipart uploads, the
 * x-amz-tagging-count header, and PutObjectTagging leaving the object (ETag,
 * Last-Modified, body) as it was.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { OTHER, codeOf, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; message: string; $metadata: { httpStatusCode?: number } };
async function rejectsWith(p: Promise<unknown>, name: string, status: number, message?: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: SdkErr) => {
    assert.equal(e.name, name);
    assert.equal(e.$metadata.httpStatusCode, status);
    if (typeof message === "string") assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tagSet = (tags: Record<string, string>) => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
const asMap = (set: s3.Tag[] | undefined) => Object.fromEntries((set ?? []).map((t) => [t.Key!, t.Value!]));
const numbered = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, `v${i}`]));
const query = (tags: Record<string, string>) => new URLSearchParams(tags).toString();

export function taggingSuite(makeStore: MakeStore): void {
  describe("S3 object and bucket tagging via @aws-sdk/client-s3", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const B = "tagged";
    const getTags = async (Key: string, Bucket = B) => asMap((await c.send(new s3.GetObjectTaggingCommand({ Bucket, Key }))).TagSet);
    const putTags = (Key: string, tags: Record<string, string>, extra: Partial<s3.PutObjectTaggingCommandInput> = {}) =>
      c.send(new s3.PutObjectTaggingCommand({ Bucket: B, Key, Tagging: { TagSet: tagSet(tags) }, ...extra }));
    const headCount = async (Key: string) => (await raw(f, { method: "HEAD", path: `/${B}/${encodeURIComponent(Key)}` })).headers["x-amz-tagging-count"];
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    test("PutObject's x-amz-tagging: GetObjectTagging lists the tags, GET and HEAD count them", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "p", Body: "body", Tagging: "team=infra&note=two%20words&plus=a+b&empty=" }));
      assert.deepEqual(await getTags("p"), { team: "infra", note: "two words", plus: "a b", empty: "" });
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "p" }));
      assert.equal(g.TagCount, 4);
      assert.equal(await g.Body!.transformToString(), "body");
      assert.equal(await headCount("p"), "4");
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "plain", Body: "x" }));
      assert.deepEqual(await getTags("plain"), {});
      assert.equal((await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "plain" }))).TagCount, undefined);
      assert.equal(await headCount("plain"), undefined, "no header when the object has no tags");
      // An empty header is no tags.
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "empty-header", Body: "x", Tagging: "" }));
      assert.deepEqual(await getTags("empty-header"), {});
    });

    test("PutObjectTagging replaces the tags and DeleteObjectTagging removes them; ETag, Last-Modified and body stay", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "t", Body: "the body", Tagging: "a=1" }));
      const h0 = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "t" }));
      await sleep(1100); // Last-Modified has one-second resolution: a rewrite now would show
      await putTags("t", { b: "2", c: "3" });
      assert.deepEqual(await getTags("t"), { b: "2", c: "3" });
      const h1 = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "t" }));
      assert.equal(h1.ETag, h0.ETag);
      assert.equal(h1.LastModified?.getTime(), h0.LastModified?.getTime());
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "t" }));
      assert.equal(g.TagCount, 2);
      assert.equal(await g.Body!.transformToString(), "the body");
      assert.equal(await headCount("t"), "2");
      // versionId "null" names the object of an unversioned bucket; another id is refused.
      await putTags("t", { v: "null" }, { VersionId: "null" });
      assert.deepEqual(asMap((await c.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "t", VersionId: "null" }))).TagSet), { v: "null" });
      await rejectsWith(putTags("t", { x: "y" }, { VersionId: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY" }), "InvalidArgument", 400, "Invalid version id specified");
      await rejectsWith(c.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "t", VersionId: "nope" })), "InvalidArgument", 400);
      // An empty TagSet removes them, as DeleteObjectTagging does.
      await putTags("t", {});
      assert.deepEqual(await getTags("t"), {});
      await putTags("t", { again: "1" });
      const del = await c.send(new s3.DeleteObjectTaggingCommand({ Bucket: B, Key: "t" }));
      assert.equal(del.$metadata.httpStatusCode, 204);
      assert.deepEqual(await getTags("t"), {});
      assert.equal(await headCount("t"), undefined);
      const h2 = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "t" }));
      assert.equal(h2.ETag, h0.ETag);
      assert.equal(h2.LastModified?.getTime(), h0.LastModified?.getTime());
      // Missing object, missing bucket, someone else's bucket.
      await rejectsWith(putTags("missing", { a: "b" }), "NoSuchKey", 404);
      await rejectsWith(c.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "missing" })), "NoSuchKey", 404);
      await rejectsWith(c.send(new s3.DeleteObjectTaggingCommand({ Bucket: B, Key: "missing" })), "NoSuchKey", 404);
      await rejectsWith(c.send(new s3.GetObjectTaggingCommand({ Bucket: "no-such-bucket-here", Key: "t" })), "NoSuchBucket", 404);
      const other = f.client({ key: OTHER });
      await rejectsWith(other.send(new s3.PutObjectTaggingCommand({ Bucket: B, Key: "t", Tagging: { TagSet: [{ Key: "a", Value: "b" }] } })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "t" })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.DeleteObjectTaggingCommand({ Bucket: B, Key: "t" })), "AccessDenied", 403);
      assert.deepEqual(await getTags("t"), {});
    });

    test("tags belong to the object written: an overwrite starts with its own, a delete takes them; listings never show them", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "o", Body: "v1" }));
      await putTags("o", { old: "1" });
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "o", Body: "v2" }));
      assert.deepEqual(await getTags("o"), {}, "the new object does not inherit the old one's tags");
      await putTags("o", { old: "2" });
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "o", Body: "v3", Tagging: "own=3" }));
      assert.deepEqual(await getTags("o"), { own: "3" });
      await putTags("o", { gone: "soon" });
      await c.send(new s3.DeleteObjectCommand({ Bucket: B, Key: "o" }));
      await rejectsWith(c.send(new s3.GetObjectTaggingCommand({ Bucket: B, Key: "o" })), "NoSuchKey", 404);
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "o", Body: "v4" }));
      assert.deepEqual(await getTags("o"), {}, "deleted, then written again: clean");
      const keys = (await c.send(new s3.ListObjectsV2Command({ Bucket: B }))).Contents!.map((o) => o.Key);
      assert.ok(keys.every((k) => k && !k.startsWith("\u0001")), `only objects listed: ${JSON.stringify(keys)}`);
      assert.ok(keys.includes("o") && keys.includes("t"));
      assert.equal((await c.send(new s3.ListMultipartUploadsCommand({ Bucket: B }))).Uploads, undefined);
      assert.equal((await c.send(new s3.ListObjectsV2Command({ Bucket: B, Prefix: "\u0001" }))).KeyCount, 0);
    });

    test("S3's limits and errors: 10 tags per object, key 1–128 and value 0–256 UTF-16 units, no duplicates, no aws: prefix, valid characters", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "lim", Body: "x", Tagging: "keep=me" }));
      await putTags("lim", numbered(10));
      assert.equal(Object.keys(await getTags("lim")).length, 10);
      await putTags("lim", { ["é".repeat(128)]: "v".repeat(256), "a b+-=._:/@": "ü 1" });
      const ok = await getTags("lim");
      await rejectsWith(putTags("lim", numbered(11)), "BadRequest", 400, "Object tags cannot be greater than 10");
      await rejectsWith(putTags("lim", { ["é".repeat(129)]: "v" }), "InvalidTag", 400, "The TagKey you have provided is invalid");
      await rejectsWith(putTags("lim", { "": "v" }), "InvalidTag", 400, "The TagKey you have provided is invalid");
      await rejectsWith(putTags("lim", { k: "v".repeat(257) }), "InvalidTag", 400, "The TagValue you have provided is invalid");
      await rejectsWith(putTags("lim", { "k#": "v" }), "InvalidTag", 400, "The TagKey you have provided is invalid");
      await rejectsWith(putTags("lim", { k: "v?" }), "InvalidTag", 400, "The TagValue you have provided is invalid");
      await rejectsWith(putTags("lim", { "aws:cost": "v" }), "InvalidTag", 400, "Your TagKey cannot be prefixed with aws:");
      await rejectsWith(c.send(new s3.PutObjectTaggingCommand({ Bucket: B, Key: "lim", Tagging: { TagSet: [{ Key: "d", Value: "1" }, { Key: "d", Value: "2" }] } })),
        "InvalidTag", 400, "Cannot provide multiple Tags with the same key");
      // Documents the SDK will not send.
      const doc = async (xml: string) => raw(f, { method: "PUT", path: `/${B}/lim`, query: { tagging: "" }, body: xml });
      for (const bad of ["<Tagging><TagSet>", "not xml", "", "<Tagging></Tagging>", "<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
        "<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>", "<Other><TagSet/></Other>"]) {
        const r = await doc(bad);
        assert.equal(r.status, 400, bad);
        assert.equal(codeOf(r.body), "MalformedXML", bad);
      }
      assert.deepEqual(await getTags("lim"), ok, "no refused request changed the tags");
      const empty = await doc('<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>x</Key><Value></Value></Tag></TagSet></Tagging>');
      assert.equal(empty.status, 200, empty.body);
      assert.deepEqual(await getTags("lim"), { x: "" });

      // The same rules for the header; a refused PUT stores nothing.
      const putWith = (Key: string, Tagging: string) => c.send(new s3.PutObjectCommand({ Bucket: B, Key, Body: "x", Tagging }));
      await putWith("hdr-10", query(numbered(10)));
      assert.equal(Object.keys(await getTags("hdr-10")).length, 10);
      await rejectsWith(putWith("hdr-bad", query(numbered(11))), "BadRequest", 400, "Object tags cannot be greater than 10");
      await rejectsWith(putWith("hdr-bad", "a=1&a=2"), "InvalidArgument", 400, /x-amz-tagging/);
      await rejectsWith(putWith("hdr-bad", "=v"), "InvalidArgument", 400, /x-amz-tagging/);
      await rejectsWith(putWith("hdr-bad", "k=%zz"), "InvalidArgument", 400, /x-amz-tagging/);
      await rejectsWith(putWith("hdr-bad", `${"k".repeat(129)}=v`), "InvalidTag", 400, "The TagKey you have provided is invalid");
      await rejectsWith(putWith("hdr-bad", `k=${"v".repeat(257)}`), "InvalidTag", 400, "The TagValue you have provided is invalid");
      await rejectsWith(putWith("hdr-bad", "aws%3Aname=v"), "InvalidTag", 400);
      await rejectsWith(putWith("hdr-bad", "k%26=v"), "InvalidTag", 400);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "hdr-bad" })), "NotFound", 404);
    });

    test("CopyObject: x-amz-tagging-directive COPY (the default) keeps the source's tags, REPLACE takes the request's", async () => {
      await c.send(new s3.PutObjectCommand({ Bucket: B, Key: "src", Body: "copy me", Tagging: "from=put" }));
      await putTags("src", { from: "tagging", n: "2" });
      const CopySource = `${B}/src`;
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "c-default", CopySource }));
      assert.deepEqual(await getTags("c-default"), { from: "tagging", n: "2" }, "the source's current tags, set after its PUT");
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "c-copy", CopySource, TaggingDirective: "COPY", Tagging: "ignored=yes" }));
      assert.deepEqual(await getTags("c-copy"), { from: "tagging", n: "2" });
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "c-replace", CopySource, TaggingDirective: "REPLACE", Tagging: "new=1" }));
      assert.deepEqual(await getTags("c-replace"), { new: "1" });
      await c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "c-none", CopySource, TaggingDirective: "REPLACE" }));
      assert.deepEqual(await getTags("c-none"), {});
      const bogus = await raw(f, { method: "PUT", path: `/${B}/c-bogus`, headers: { "x-amz-copy-source": `/${B}/src`, "x-amz-tagging-directive": "MERGE" } });
      assert.equal(bogus.status, 400);
      assert.equal(codeOf(bogus.body), "InvalidArgument");
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: B, Key: "c-bad", CopySource, TaggingDirective: "REPLACE", Tagging: query(numbered(11)) })), "BadRequest", 400);
      for (const k of ["c-bogus", "c-bad"]) await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: k })), "NotFound", 404);
      assert.equal((await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "c-default" }))).TagCount, 2);
    });

    test("multipart: CreateMultipartUpload's x-amz-tagging lands on the completed object; a bad one creates no upload", async () => {
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "mp", Tagging: "stage=multi&n=1" }));
      const p1 = await c.send(new s3.UploadPartCommand({ Bucket: B, Key: "mp", UploadId: up.UploadId, PartNumber: 1, Body: "part one" }));
      await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }] } }));
      assert.deepEqual(await getTags("mp"), { stage: "multi", n: "1" });
      assert.equal(await headCount("mp"), "2");
      // Tags changed later on a multipart object, which keeps its -N ETag.
      const e0 = (await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "mp" }))).ETag;
      await putTags("mp", { changed: "yes" });
      assert.deepEqual(await getTags("mp"), { changed: "yes" });
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "mp" }))).ETag, e0);
      assert.match(e0!, /-1"$/);
      await rejectsWith(c.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "mp-bad", Tagging: "aws:x=1" })), "InvalidTag", 400);
      const ups = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: B }));
      assert.equal(ups.Uploads, undefined);
    });

    test("bucket tagging: Put, Get, Delete; none is NoSuchTagSet; 50 tags at most; no aws: prefix; gone with the bucket", async () => {
      const T = "tagged-bucket";
      await c.send(new s3.CreateBucketCommand({ Bucket: T }));
      await rejectsWith(c.send(new s3.GetBucketTaggingCommand({ Bucket: T })), "NoSuchTagSet", 404);
      const put = await c.send(new s3.PutBucketTaggingCommand({ Bucket: T, Tagging: { TagSet: tagSet({ team: "infra", cost: "42" }) } }));
      assert.equal(put.$metadata.httpStatusCode, 204);
      assert.deepEqual(asMap((await c.send(new s3.GetBucketTaggingCommand({ Bucket: T }))).TagSet), { team: "infra", cost: "42" });
      await c.send(new s3.PutBucketTaggingCommand({ Bucket: T, Tagging: { TagSet: tagSet(numbered(50)) } }));
      assert.equal((await c.send(new s3.GetBucketTaggingCommand({ Bucket: T }))).TagSet?.length, 50);
      const putB = (tags: s3.Tag[]) => c.send(new s3.PutBucketTaggingCommand({ Bucket: T, Tagging: { TagSet: tags } }));
      await rejectsWith(putB(tagSet(numbered(51))), "BadRequest", 400, "Bucket tag count cannot be greater than 50");
      await rejectsWith(putB([{ Key: "aws:x", Value: "1" }]), "InvalidTag", 400, "System tags cannot be added/updated by requester");
      await rejectsWith(putB([{ Key: "k".repeat(129), Value: "1" }]), "InvalidTag", 400, "The TagKey you have provided is invalid");
      await rejectsWith(putB([{ Key: "k", Value: "1" }, { Key: "k", Value: "2" }]), "InvalidTag", 400);
      const bad = await raw(f, { method: "PUT", path: `/${T}`, query: { tagging: "" }, body: "<Tagging><TagSet>" });
      assert.equal(codeOf(bad.body), "MalformedXML");
      assert.equal((await c.send(new s3.GetBucketTaggingCommand({ Bucket: T }))).TagSet?.length, 50, "refused requests changed nothing");
      const other = f.client({ key: OTHER });
      await rejectsWith(other.send(new s3.GetBucketTaggingCommand({ Bucket: T })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.PutBucketTaggingCommand({ Bucket: T, Tagging: { TagSet: [{ Key: "a", Value: "b" }] } })), "AccessDenied", 403);
      await rejectsWith(other.send(new s3.DeleteBucketTaggingCommand({ Bucket: T })), "AccessDenied", 403);
      const del = await c.send(new s3.DeleteBucketTaggingCommand({ Bucket: T }));
      assert.equal(del.$metadata.httpStatusCode, 204);
      await rejectsWith(c.send(new s3.GetBucketTaggingCommand({ Bucket: T })), "NoSuchTagSet", 404);
      await c.send(new s3.DeleteBucketTaggingCommand({ Bucket: T })); // none: still 204
      await rejectsWith(c.send(new s3.GetBucketTaggingCommand({ Bucket: "no-such-bucket-here" })), "NoSuchBucket", 404);
      // An empty TagSet leaves none.
      await putB([{ Key: "a", Value: "b" }]);
      await putB([]);
      await rejectsWith(c.send(new s3.GetBucketTaggingCommand({ Bucket: T })), "NoSuchTagSet", 404);
      // A bucket whose objects had their tags changed deletes once empty, and comes back clean.
      await putB([{ Key: "a", Value: "b" }]);
      await c.send(new s3.PutObjectCommand({ Bucket: T, Key: "x", Body: "x" }));
      await c.send(new s3.PutObjectTaggingCommand({ Bucket: T, Key: "x", Tagging: { TagSet: [{ Key: "o", Value: "1" }] } }));
      await rejectsWith(c.send(new s3.DeleteBucketCommand({ Bucket: T })), "BucketNotEmpty", 409);
      await c.send(new s3.DeleteObjectCommand({ Bucket: T, Key: "x" }));
      await c.send(new s3.DeleteBucketCommand({ Bucket: T }));
      await c.send(new s3.CreateBucketCommand({ Bucket: T }));
      await rejectsWith(c.send(new s3.GetBucketTaggingCommand({ Bucket: T })), "NoSuchTagSet", 404);
      await c.send(new s3.PutObjectCommand({ Bucket: T, Key: "x", Body: "x" }));
      assert.deepEqual(asMap((await c.send(new s3.GetObjectTaggingCommand({ Bucket: T, Key: "x" }))).TagSet), {});
    });
  });
}
