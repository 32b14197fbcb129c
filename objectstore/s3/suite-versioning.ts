/**
 * Bucket versioning via @aws-sdk/client-s3: Put/GetBucketVersioning, version
 * ids on writes, ?versionId= reads and deletes, null versions, delete
 * markers, ListObjectVersions and its paging, DeleteObjects with versions,
 * copies from a version, multipart in a versioned bucket, DeleteBucket.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

type SdkErr = { name: string; $metadata: { httpStatusCode?: number } };
async function rejectsWith(p: Promise<unknown>, name: string, status: number): Promise<void> {
  await assert.rejects(p, (e: SdkErr) => {
    if (name) assert.equal(e.name, name);
    assert.equal(e.$metadata.httpStatusCode, status);
    return true;
  });
}

const VERSIONING = (status: string, mfa = "") =>
  `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>${status}</Status>${mfa}</VersioningConfiguration>`;

export function versioningSuite(makeStore: MakeStore): void {
  describe("S3 bucket versioning via @aws-sdk/client-s3", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const text = async (b: string, k: string, versionId?: string) =>
      (await c.send(new s3.GetObjectCommand({ Bucket: b, Key: k, VersionId: versionId }))).Body!.transformToString();
    const put = async (b: string, k: string, body: string) => (await c.send(new s3.PutObjectCommand({ Bucket: b, Key: k, Body: body }))).VersionId;
    const enable = (b: string, Status: "Enabled" | "Suspended" = "Enabled") => c.send(new s3.PutBucketVersioningCommand({ Bucket: b, VersioningConfiguration: { Status } }));
    const versions = async (b: string, extra: Partial<s3.ListObjectVersionsCommandInput> = {}) => c.send(new s3.ListObjectVersionsCommand({ Bucket: b, ...extra }));

    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
    });
    after(() => f.close());

    test("PutBucketVersioning enables and suspends; bad configurations change nothing", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vconf" }));
      assert.equal((await c.send(new s3.GetBucketVersioningCommand({ Bucket: "vconf" }))).Status, undefined);
      // A never-versioned bucket's PUT answers no version id.
      assert.equal(await put("vconf", "plain", "x"), undefined);
      await enable("vconf");
      assert.equal((await c.send(new s3.GetBucketVersioningCommand({ Bucket: "vconf" }))).Status, "Enabled");
      await enable("vconf", "Suspended");
      assert.equal((await c.send(new s3.GetBucketVersioningCommand({ Bucket: "vconf" }))).Status, "Suspended");
      for (const [bodyXml, code, status] of [
        [VERSIONING("Sometimes"), "IllegalVersioningConfigurationException", 400],
        [VERSIONING("Enabled", "<MfaDelete>Enabled</MfaDelete>"), "NotImplemented", 501],
        ["<VersioningConfiguration><Status>Enabled", "MalformedXML", 400],
      ] as const) {
        const r = await raw(f, { method: "PUT", path: "/vconf", query: { versioning: "" }, body: bodyXml });
        assert.equal(r.status, status, r.body);
        assert.equal(codeOf(r.body), code);
      }
      const other = await raw(f, { method: "PUT", path: "/vconf", query: { versioning: "" }, body: VERSIONING("Enabled"), key: "AKIATESTOTHER000002" });
      assert.equal(other.status, 403);
      assert.equal((await c.send(new s3.GetBucketVersioningCommand({ Bucket: "vconf" }))).Status, "Suspended");
    });

    test("versions get ids; GET/HEAD/DELETE ?versionId= reach each; unknown and malformed ids are refused", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vids" }));
      await enable("vids");
      const ids = [await put("vids", "k", "one"), await put("vids", "k", "two"), await put("vids", "k", "three")];
      for (const id of ids) assert.match(id!, /^[0-9a-f]{20,}$/);
      assert.equal(new Set(ids).size, 3);
      assert.equal(await text("vids", "k"), "three");
      assert.equal(await text("vids", "k", ids[0]), "one");
      const g = await c.send(new s3.GetObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[1] }));
      assert.equal(g.VersionId, ids[1]);
      assert.equal(await g.Body!.transformToString(), "two");
      const h = await c.send(new s3.HeadObjectCommand({ Bucket: "vids", Key: "k" }));
      assert.equal(h.VersionId, ids[2]);
      assert.equal(h.ContentLength, 5);
      assert.equal((await c.send(new s3.HeadObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[0] }))).ContentLength, 3);
      const unknown = ids[0]!.replace(/^(.)/, (d) => (d === "0" ? "1" : "0"));
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "vids", Key: "k", VersionId: unknown })), "NoSuchVersion", 404);
      await rejectsWith(c.send(new s3.HeadObjectCommand({ Bucket: "vids", Key: "k", VersionId: unknown })), "", 404);
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "vids", Key: "k", VersionId: "not-a-version" })), "InvalidArgument", 400);
      await rejectsWith(c.send(new s3.DeleteObjectCommand({ Bucket: "vids", Key: "k", VersionId: "not-a-version" })), "InvalidArgument", 400);
      // Deleting the latest version by id brings the previous one back.
      const d = await c.send(new s3.DeleteObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[2] }));
      assert.equal(d.VersionId, ids[2]);
      assert.equal(d.DeleteMarker, undefined);
      assert.equal(await text("vids", "k"), "two");
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[2] })), "NoSuchVersion", 404);
      // A version not there any more is nothing to delete (204, as S3).
      assert.equal((await c.send(new s3.DeleteObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[2] }))).$metadata.httpStatusCode, 204);
      // Deleting an old version leaves the latest alone.
      await c.send(new s3.DeleteObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[0] }));
      assert.equal(await text("vids", "k"), "two");
      assert.deepEqual((await versions("vids")).Versions!.map((v) => [v.VersionId, v.IsLatest]), [[ids[1], true]]);
      // The last version deleted: the key is gone.
      await c.send(new s3.DeleteObjectCommand({ Bucket: "vids", Key: "k", VersionId: ids[1] }));
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "vids", Key: "k" })), "NoSuchKey", 404);
      assert.equal((await versions("vids")).Versions, undefined);
      await c.send(new s3.DeleteBucketCommand({ Bucket: "vids" }));
    });

    test("objects written before versioning are null versions; Suspended writes replace the null version only", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vnull" }));
      await put("vnull", "k", "old");
      await put("vnull", "solo", "alone");
      await enable("vnull");
      // A pre-versioning object lists as its key's null version, and reads by that id.
      let l = await versions("vnull");
      assert.deepEqual(l.Versions!.map((v) => [v.Key, v.VersionId, v.IsLatest]), [["k", "null", true], ["solo", "null", true]]);
      assert.equal(await text("vnull", "k", "null"), "old");
      const v1 = await put("vnull", "k", "new");
      l = await versions("vnull", { Prefix: "k" });
      assert.deepEqual(l.Versions!.map((v) => [v.VersionId, v.IsLatest, v.Size]), [[v1, true, 3], ["null", false, 3]]);
      assert.equal(await text("vnull", "k", "null"), "old");
      assert.equal(await text("vnull", "k"), "new");
      await enable("vnull", "Suspended");
      const s1 = await c.send(new s3.PutObjectCommand({ Bucket: "vnull", Key: "k", Body: "suspended" }));
      assert.equal(s1.VersionId, "null");
      l = await versions("vnull", { Prefix: "k" });
      assert.deepEqual(l.Versions!.map((v) => [v.VersionId, v.IsLatest]), [["null", true], [v1, false]]);
      assert.equal(await text("vnull", "k", "null"), "suspended");
      assert.equal(await text("vnull", "k", v1), "new");
      // DELETE in a Suspended bucket writes a null delete marker in place of the null version.
      const d = await c.send(new s3.DeleteObjectCommand({ Bucket: "vnull", Key: "k" }));
      assert.equal(d.DeleteMarker, true);
      assert.equal(d.VersionId, "null");
      l = await versions("vnull", { Prefix: "k" });
      assert.deepEqual(l.DeleteMarkers!.map((v) => [v.VersionId, v.IsLatest]), [["null", true]]);
      assert.deepEqual(l.Versions!.map((v) => [v.VersionId, v.IsLatest]), [[v1, false]]);
      // A pre-versioning object deleted by id "null" goes without a marker.
      await c.send(new s3.DeleteObjectCommand({ Bucket: "vnull", Key: "solo", VersionId: "null" }));
      assert.equal((await versions("vnull", { Prefix: "solo" })).Versions, undefined);
    });

    test("delete markers hide the key (404 with x-amz-delete-marker), answer 405 by id, and go away by id", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vmark" }));
      await enable("vmark");
      const v1 = await put("vmark", "doc", "content");
      await put("vmark", "other", "x");
      const d = await c.send(new s3.DeleteObjectCommand({ Bucket: "vmark", Key: "doc" }));
      assert.equal(d.DeleteMarker, true);
      assert.ok(d.VersionId && d.VersionId !== v1);
      const g = await raw(f, { method: "GET", path: "/vmark/doc" });
      assert.equal(g.status, 404);
      assert.equal(codeOf(g.body), "NoSuchKey");
      assert.equal(g.headers["x-amz-delete-marker"], "true");
      assert.equal(g.headers["x-amz-version-id"], d.VersionId);
      const h = await raw(f, { method: "HEAD", path: "/vmark/doc" });
      assert.equal(h.status, 404);
      assert.equal(h.headers["x-amz-delete-marker"], "true");
      const byId = await raw(f, { method: "GET", path: "/vmark/doc", query: { versionId: d.VersionId! } });
      assert.equal(byId.status, 405);
      assert.equal(codeOf(byId.body), "MethodNotAllowed");
      assert.equal(byId.headers["x-amz-delete-marker"], "true");
      assert.equal(await text("vmark", "doc", v1), "content");
      // Listings leave the hidden key out; ListObjectVersions shows the marker as latest.
      const l2 = await c.send(new s3.ListObjectsV2Command({ Bucket: "vmark" }));
      assert.deepEqual(l2.Contents!.map((o) => o.Key), ["other"]);
      const l1 = await c.send(new s3.ListObjectsCommand({ Bucket: "vmark" }));
      assert.deepEqual(l1.Contents!.map((o) => o.Key), ["other"]);
      const lv = await versions("vmark", { Prefix: "doc" });
      assert.deepEqual(lv.DeleteMarkers!.map((m) => [m.Key, m.VersionId, m.IsLatest]), [["doc", d.VersionId, true]]);
      assert.deepEqual(lv.Versions!.map((m) => [m.VersionId, m.IsLatest]), [[v1, false]]);
      // Deleting the marker by id brings the object back.
      const undo = await c.send(new s3.DeleteObjectCommand({ Bucket: "vmark", Key: "doc", VersionId: d.VersionId }));
      assert.equal(undo.DeleteMarker, true);
      assert.equal(await text("vmark", "doc"), "content");
      assert.deepEqual((await c.send(new s3.ListObjectsV2Command({ Bucket: "vmark" }))).Contents!.map((o) => o.Key), ["doc", "other"]);
    });

    test("ListObjectVersions: prefix, delimiter, markers, max-keys, and paging through more than 1000 versions", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vlist" }));
      await enable("vlist");
      const expected: [string, string][] = [];
      const keys = ["a/1", "a/2", "b", "c/x/y"];
      for (const k of keys) {
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) ids.push((await put("vlist", k, `${k}#${i}`))!);
        for (const id of ids.reverse()) expected.push([k, id]);
      }
      const all = await versions("vlist");
      assert.deepEqual(all.Versions!.map((v) => [v.Key, v.VersionId]), expected);
      assert.deepEqual(all.Versions!.map((v) => v.IsLatest), expected.map((_, i) => i % 3 === 0));
      const del = await versions("vlist", { Delimiter: "/" });
      assert.deepEqual(del.CommonPrefixes!.map((p) => p.Prefix), ["a/", "c/"]);
      assert.deepEqual(del.Versions!.map((v) => v.Key), ["b", "b", "b"]);
      const pre = await versions("vlist", { Prefix: "a/", Delimiter: "/" });
      assert.deepEqual(pre.Versions!.map((v) => v.Key), ["a/1", "a/1", "a/1", "a/2", "a/2", "a/2"]);
      // key-marker alone: after every version of that key.
      const km = await versions("vlist", { KeyMarker: "a/2" });
      assert.deepEqual(km.Versions!.map((v) => [v.Key, v.VersionId]), expected.slice(6));
      // with version-id-marker: after that version.
      const vm = await versions("vlist", { KeyMarker: "a/2", VersionIdMarker: expected[4]![1] });
      assert.deepEqual(vm.Versions!.map((v) => [v.Key, v.VersionId]), expected.slice(5));
      await rejectsWith(versions("vlist", { VersionIdMarker: expected[4]![1] }), "InvalidArgument", 400);
      // Paging with max-keys, rolled-up prefixes included.
      for (const [max, delimiter] of [[1, undefined], [4, undefined], [2, "/"]] as const) {
        const seen: string[] = [];
        let keyMarker: string | undefined, versionIdMarker: string | undefined;
        for (let n = 0; n < 50; n++) {
          const p = await versions("vlist", { MaxKeys: max, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker, Delimiter: delimiter });
          assert.ok((p.Versions?.length ?? 0) + (p.CommonPrefixes?.length ?? 0) <= max);
          seen.push(...(p.Versions ?? []).map((v) => `${v.Key}@${v.VersionId}`), ...(p.CommonPrefixes ?? []).map((x) => `${x.Prefix}`));
          if (!p.IsTruncated) break;
          keyMarker = p.NextKeyMarker;
          versionIdMarker = p.NextVersionIdMarker;
        }
        const want = delimiter ? ["a/", ...expected.filter(([k]) => k === "b").map(([k, v]) => `${k}@${v}`), "c/"] : expected.map(([k, v]) => `${k}@${v}`);
        assert.deepEqual(seen.sort(), want.sort(), `max-keys ${max} delimiter ${delimiter}`);
      }
      // More than a page of 1000: NextKeyMarker/NextVersionIdMarker walk them all, newest first.
      await c.send(new s3.CreateBucketCommand({ Bucket: "vmany" }));
      await enable("vmany");
      const many: string[] = [];
      for (let i = 0; i < 1010; i += 10) {
        const batch = await Promise.all(Array.from({ length: 10 }, (_, j) => put("vmany", `k${(i + j) % 2}`, String(i + j))));
        many.push(...(batch as string[]));
      }
      let pages = 0;
      const got: string[] = [];
      let next: { KeyMarker?: string; VersionIdMarker?: string } = {};
      for (;;) {
        const p = await versions("vmany", next);
        pages++;
        got.push(...(p.Versions ?? []).map((v) => v.VersionId!));
        if (!p.IsTruncated) break;
        assert.equal(p.Versions!.length, 1000);
        next = { KeyMarker: p.NextKeyMarker, VersionIdMarker: p.NextVersionIdMarker };
      }
      assert.equal(pages, 2);
      assert.equal(got.length, 1010);
      // encoding-type=url encodes keys (and markers) as in the other listings.
      await put("vmany", "sp ace/é", "x");
      const enc = await raw(f, { method: "GET", path: "/vmany", query: { versions: "", "encoding-type": "url", prefix: "sp ", "max-keys": "1" } });
      assert.equal(enc.status, 200, enc.body);
      assert.match(enc.body, /<EncodingType>url<\/EncodingType>/);
      assert.match(enc.body, /<Key>sp\+ace\/%C3%A9<\/Key>/);
      assert.match(enc.body, /<Prefix>sp\+<\/Prefix>/);
      assert.deepEqual([...got].sort(), [...many].sort());
    });

    test("DeleteObjects with version ids; copy from a version; multipart in a versioned bucket; ListObjectsV2 stays on latest", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vmix" }));
      await enable("vmix");
      const a1 = await put("vmix", "a", "a-one");
      const a2 = await put("vmix", "a", "a-two");
      const b1 = await put("vmix", "b", "b-one");
      const r = await c.send(new s3.DeleteObjectsCommand({
        Bucket: "vmix", Delete: { Objects: [{ Key: "a", VersionId: a1 }, { Key: "b" }, { Key: "c", VersionId: "bogus!" }] },
      }));
      const byKey = new Map(r.Deleted!.map((d) => [d.Key, d]));
      assert.equal(byKey.get("a")!.VersionId, a1);
      assert.equal(byKey.get("b")!.DeleteMarker, true);
      assert.ok(byKey.get("b")!.DeleteMarkerVersionId);
      assert.deepEqual(r.Errors!.map((e) => [e.Key, e.Code]), [["c", "InvalidArgument"]]);
      assert.equal(await text("vmix", "a"), "a-two");
      await rejectsWith(c.send(new s3.GetObjectCommand({ Bucket: "vmix", Key: "a", VersionId: a1 })), "NoSuchVersion", 404);
      // Copy an old version: onto another key, and onto itself (restoring it).
      const cp = await c.send(new s3.CopyObjectCommand({ Bucket: "vmix", Key: "restored", CopySource: `vmix/b?versionId=${b1}` }));
      assert.equal(cp.CopySourceVersionId, b1);
      assert.ok(cp.VersionId);
      assert.equal(await text("vmix", "restored"), "b-one");
      const self = await c.send(new s3.PutObjectCommand({ Bucket: "vmix", Key: "a", Body: "a-three" }));
      const back = await c.send(new s3.CopyObjectCommand({ Bucket: "vmix", Key: "a", CopySource: `vmix/a?versionId=${a2}` }));
      assert.notEqual(back.VersionId, self.VersionId);
      assert.equal(await text("vmix", "a"), "a-two");
      await rejectsWith(c.send(new s3.CopyObjectCommand({ Bucket: "vmix", Key: "x", CopySource: `vmix/b?versionId=${a1}` })), "NoSuchVersion", 404);
      // Multipart: Complete makes a version; the earlier one stays readable.
      const before = await put("vmix", "mp", "small");
      const up = await c.send(new s3.CreateMultipartUploadCommand({ Bucket: "vmix", Key: "mp" }));
      const p1 = await c.send(new s3.UploadPartCommand({ Bucket: "vmix", Key: "mp", UploadId: up.UploadId, PartNumber: 1, Body: "multi-part body" }));
      const done = await c.send(new s3.CompleteMultipartUploadCommand({ Bucket: "vmix", Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }] } }));
      assert.ok(done.VersionId);
      assert.equal(await text("vmix", "mp"), "multi-part body");
      assert.equal(await text("vmix", "mp", done.VersionId), "multi-part body");
      assert.equal(await text("vmix", "mp", before), "small");
      const h = await c.send(new s3.HeadObjectCommand({ Bucket: "vmix", Key: "mp", PartNumber: 1 }));
      assert.equal(h.PartsCount, 1);
      assert.equal(h.VersionId, done.VersionId);
      // ListObjectsV2 lists each key's latest live version once.
      const l = await c.send(new s3.ListObjectsV2Command({ Bucket: "vmix" }));
      assert.deepEqual(l.Contents!.map((o) => [o.Key, o.Size]), [["a", 5], ["mp", 15], ["restored", 5]]);
    });

    test("a version keeps its headers, user metadata and checksums when newer versions come", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vmeta" }));
      await enable("vmeta");
      const v1 = await c.send(new s3.PutObjectCommand({
        Bucket: "vmeta", Key: "k", Body: "first body", ContentType: "text/x-first", Metadata: { who: "one" }, ChecksumAlgorithm: "SHA256", CacheControl: "max-age=5",
      }));
      await c.send(new s3.PutObjectCommand({ Bucket: "vmeta", Key: "k", Body: "second", ContentType: "text/x-second", Metadata: { who: "two" } }));
      const old = await c.send(new s3.GetObjectCommand({ Bucket: "vmeta", Key: "k", VersionId: v1.VersionId, ChecksumMode: "ENABLED" }));
      assert.equal(await old.Body!.transformToString(), "first body");
      assert.equal(old.ContentType, "text/x-first");
      assert.equal(old.CacheControl, "max-age=5");
      assert.deepEqual(old.Metadata, { who: "one" });
      assert.equal(old.ChecksumSHA256, v1.ChecksumSHA256);
      assert.equal(old.ETag, v1.ETag);
      const cur = await c.send(new s3.HeadObjectCommand({ Bucket: "vmeta", Key: "k" }));
      assert.equal(cur.ContentType, "text/x-second");
      assert.deepEqual(cur.Metadata, { who: "two" });
    });

    test("DeleteBucket is refused while versions or delete markers remain", async () => {
      await c.send(new s3.CreateBucketCommand({ Bucket: "vgone" }));
      await enable("vgone");
      const v = await put("vgone", "k", "x");
      const m = (await c.send(new s3.DeleteObjectCommand({ Bucket: "vgone", Key: "k" }))).VersionId;
      await rejectsWith(c.send(new s3.DeleteBucketCommand({ Bucket: "vgone" })), "BucketNotEmpty", 409);
      await c.send(new s3.DeleteObjectCommand({ Bucket: "vgone", Key: "k", VersionId: v }));
      await rejectsWith(c.send(new s3.DeleteBucketCommand({ Bucket: "vgone" })), "BucketNotEmpty", 409);
      await c.send(new s3.DeleteObjectCommand({ Bucket: "vgone", Key: "k", VersionId: m }));
      await c.send(new s3.DeleteBucketCommand({ Bucket: "vgone" }));
    });
  });
}
