/** ListObjects v1/v2 and ListObjectVersions: prefix, delimiter, max-keys, continuation-token, start-after, encoding-type=url. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { codeOf, raw, startS3, type Fixture, type MakeStore } from "./test-fixture.js";

const KEYS = [
  ...Array.from({ length: 12 }, (_, i) => `logs/2024/${String(i).padStart(2, "0")}.log`),
  ...Array.from({ length: 5 }, (_, i) => `logs/2025/${i}.log`),
  "logs/readme", "photos/a b.jpg", "photos/é.jpg", "photos/x+y.jpg", "top", "zeta/",
];

export function listSuite(makeStore: MakeStore): void {
  describe("S3 listings via @aws-sdk/client-s3", () => {
    let f: Fixture;
    let c: s3.S3Client;
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: "listing" }));
      for (const k of KEYS) await c.send(new s3.PutObjectCommand({ Bucket: "listing", Key: k, Body: k }));
    });
    after(() => f.close());

    test("v2 pages through everything with max-keys and continuation tokens, in key order", async () => {
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const r = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", MaxKeys: 7, ContinuationToken: token }));
        pages++;
        assert.equal(r.KeyCount, r.Contents?.length ?? 0);
        assert.equal(r.MaxKeys, 7);
        seen.push(...(r.Contents ?? []).map((o) => o.Key!));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
        if (r.IsTruncated) assert.ok(token);
      } while (token);
      assert.equal(pages, Math.ceil(KEYS.length / 7));
      assert.deepEqual(seen, [...KEYS].sort());
      const first = (await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", MaxKeys: 1 }))).Contents![0]!;
      assert.equal(first.Size, Buffer.byteLength(first.Key!));
      assert.match(first.ETag!, /^"[0-9a-f]{32}"$/);
      assert.equal(first.StorageClass, "STANDARD");
    });

    test("v2 with delimiter and prefix rolls keys up into common prefixes, also across pages", async () => {
      const r = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", Delimiter: "/" }));
      assert.deepEqual(r.CommonPrefixes!.map((p) => p.Prefix), ["logs/", "photos/", "zeta/"]);
      assert.deepEqual(r.Contents!.map((o) => o.Key), ["top"]);
      const r2 = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", Prefix: "logs/", Delimiter: "/" }));
      assert.deepEqual(r2.CommonPrefixes!.map((p) => p.Prefix), ["logs/2024/", "logs/2025/"]);
      assert.deepEqual(r2.Contents!.map((o) => o.Key), ["logs/readme"]);
      const all: string[] = [];
      let token: string | undefined;
      do {
        const p = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", Prefix: "logs/", Delimiter: "/", MaxKeys: 1, ContinuationToken: token }));
        all.push(...(p.CommonPrefixes ?? []).map((x) => x.Prefix!), ...(p.Contents ?? []).map((x) => x.Key!));
        token = p.NextContinuationToken;
      } while (token);
      assert.deepEqual(all, ["logs/2024/", "logs/2025/", "logs/readme"]);
    });

    test("v2 start-after, fetch-owner, max-keys=0, bad max-keys and bad token", async () => {
      const r = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", StartAfter: "photos/", FetchOwner: true }));
      assert.equal(r.Contents![0]!.Key, "photos/a b.jpg");
      assert.equal(r.StartAfter, "photos/");
      assert.equal(r.Contents![0]!.Owner?.ID, "root");
      const z = await c.send(new s3.ListObjectsV2Command({ Bucket: "listing", MaxKeys: 0 }));
      assert.equal(z.KeyCount, 0);
      const bad = await raw(f, { method: "GET", path: "/listing", query: { "list-type": "2", "max-keys": "-1" } });
      assert.equal(bad.status, 400);
      assert.equal(codeOf(bad.body), "InvalidArgument");
      const badTok = await raw(f, { method: "GET", path: "/listing", query: { "list-type": "2", "continuation-token": "garbage" } });
      assert.equal(codeOf(badTok.body), "InvalidArgument");
      const badEnc = await raw(f, { method: "GET", path: "/listing", query: { "list-type": "2", "encoding-type": "base64" } });
      assert.equal(codeOf(badEnc.body), "InvalidArgument");
    });

    test("encoding-type=url percent-encodes keys and prefixes (space as +)", async () => {
      const r = await raw(f, { method: "GET", path: "/listing", query: { "list-type": "2", prefix: "photos/", "encoding-type": "url" } });
      assert.equal(r.status, 200);
      assert.match(r.body, /<Key>photos\/a\+b\.jpg<\/Key>/);
      assert.match(r.body, /<Key>photos\/%C3%A9\.jpg<\/Key>/);
      assert.match(r.body, /<Key>photos\/x%2By\.jpg<\/Key>/);
      assert.match(r.body, /<EncodingType>url<\/EncodingType>/);
      // The SDK asks for url encoding by default for v1 and decodes it.
      const v1 = await c.send(new s3.ListObjectsCommand({ Bucket: "listing", Prefix: "photos/", EncodingType: "url" }));
      assert.deepEqual(v1.Contents!.map((o) => decodeURIComponent(o.Key!.replace(/\+/g, " "))), ["photos/a b.jpg", "photos/x+y.jpg", "photos/é.jpg"]); // UTF-8 byte order
    });

    test("v1 pages with marker / NextMarker", async () => {
      const seen: string[] = [];
      let marker: string | undefined;
      for (;;) {
        const r = await c.send(new s3.ListObjectsCommand({ Bucket: "listing", MaxKeys: 5, Marker: marker }));
        seen.push(...(r.Contents ?? []).map((o) => o.Key!));
        if (!r.IsTruncated) break;
        marker = r.NextMarker ?? r.Contents![r.Contents!.length - 1]!.Key;
      }
      assert.deepEqual(seen, [...KEYS].sort());
      const d = await c.send(new s3.ListObjectsCommand({ Bucket: "listing", Delimiter: "/", MaxKeys: 2 }));
      assert.equal(d.IsTruncated, true);
      assert.deepEqual(d.CommonPrefixes!.map((p) => p.Prefix), ["logs/", "photos/"]);
      assert.equal(d.NextMarker, "photos/");
    });

    test("ListObjectVersions answers for an unversioned bucket with VersionId null", async () => {
      const r = await c.send(new s3.ListObjectVersionsCommand({ Bucket: "listing", Prefix: "logs/2025/", MaxKeys: 3 }));
      assert.equal(r.Versions!.length, 3);
      assert.ok(r.Versions!.every((v) => v.VersionId === "null" && v.IsLatest === true));
      assert.equal(r.IsTruncated, true);
      assert.equal(r.NextKeyMarker, "logs/2025/2.log");
      const r2 = await c.send(new s3.ListObjectVersionsCommand({ Bucket: "listing", Prefix: "logs/2025/", KeyMarker: r.NextKeyMarker, VersionIdMarker: r.NextVersionIdMarker }));
      assert.deepEqual(r2.Versions!.map((v) => v.Key), ["logs/2025/3.log", "logs/2025/4.log"]);
    });
  });
}
