import { test } from "node:test";
import assert from "node:assert/strict";
import { fixture, putInput } from "./testutil.js";
import type { LocalBlobStore } from "./local.js";
import type { ListObjectsInput } from "./types.js";

/** Walks every page and returns keys and prefixes in order, plus the page count. */
async function listAll(s: LocalBlobStore, input: Omit<ListObjectsInput, "after">) {
  const keys: string[] = [];
  const prefixes: string[] = [];
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const r = await s.listObjects({ ...input, after });
    pages++;
    keys.push(...r.objects.map((o) => o.key));
    prefixes.push(...r.commonPrefixes);
    assert.ok(r.objects.length + r.commonPrefixes.length <= input.maxKeys);
    if (!r.isTruncated) break;
    assert.ok(r.nextAfter);
    after = r.nextAfter;
    if (pages > 10_000) throw new Error("listing does not end");
  }
  return { keys, prefixes, pages };
}

test("listing is in UTF-8 byte order with prefix, delimiter and pagination", async () => {
  const f = await fixture();
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    await s.createBucket("b2", "root");
    const keys = [
      "a", "a/1", "a/2", "a/b/c", "ab", "b/x", "b/y/z", "c", "photos/2024/jan.jpg", "photos/2024/feb.jpg",
      "photos/2025/mar.jpg", "photos/index.html", "z\uffff", "z\u{10000}", "é", "a-", "a.", "a0",
    ];
    for (const k of keys) await s.putObject(putInput("b", k, Buffer.from(k)));
    await s.putObject(putInput("b2", "a", Buffer.from("other bucket")));
    const byteOrder = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    for (const maxKeys of [1, 2, 3, 1000]) {
      const all = await listAll(s, { bucket: "b", maxKeys });
      assert.deepEqual(all.keys, byteOrder, `maxKeys ${maxKeys}`);
      assert.deepEqual(all.prefixes, []);
    }
    // UTF-16 order would put U+10000 before U+FFFF; S3 (and LevelDB) use UTF-8 bytes.
    assert.ok(byteOrder.indexOf("z\uffff") < byteOrder.indexOf("z\u{10000}"));

    for (const maxKeys of [1, 2, 1000]) {
      const top = await listAll(s, { bucket: "b", delimiter: "/", maxKeys });
      assert.deepEqual(top.prefixes, ["a/", "b/", "photos/"]);
      assert.deepEqual(top.keys, byteOrder.filter((k) => !k.includes("/")));
      const photos = await listAll(s, { bucket: "b", prefix: "photos/", delimiter: "/", maxKeys });
      assert.deepEqual(photos.prefixes, ["photos/2024/", "photos/2025/"]);
      assert.deepEqual(photos.keys, ["photos/index.html"]);
      const a = await listAll(s, { bucket: "b", prefix: "a/", delimiter: "/", maxKeys });
      assert.deepEqual(a.keys, ["a/1", "a/2"]);
      assert.deepEqual(a.prefixes, ["a/b/"]);
    }
    // Prefix without delimiter, and a prefix that matches nothing.
    assert.deepEqual((await listAll(s, { bucket: "b", prefix: "a", maxKeys: 100 })).keys, ["a", "a-", "a.", "a/1", "a/2", "a/b/c", "a0", "ab"]);
    assert.deepEqual((await listAll(s, { bucket: "b", prefix: "nothing", maxKeys: 100 })).keys, []);
    // A multi-character delimiter.
    const mc = await listAll(s, { bucket: "b", prefix: "photos/", delimiter: "/j", maxKeys: 100 });
    assert.deepEqual(mc.prefixes, ["photos/2024/j"]);
    // start-after (marker) between keys.
    const r = await s.listObjects({ bucket: "b", after: "b/x", maxKeys: 3 });
    assert.deepEqual(r.objects.map((o) => o.key), ["b/y/z", "c", "photos/2024/feb.jpg"]);
    assert.equal(r.isTruncated, true);
    assert.equal(r.nextAfter, "photos/2024/feb.jpg");
    const empty = await s.listObjects({ bucket: "b", after: "é", maxKeys: 10 });
    assert.equal(empty.objects.length + empty.commonPrefixes.length, 0);
    assert.equal(empty.isTruncated, false);
  } finally {
    await f.dispose();
  }
});

test("a common prefix with many keys is skipped with one seek, not a scan", async () => {
  const f = await fixture();
  try {
    const s = f.blobs;
    await s.createBucket("b", "root");
    const N = 5000;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_x, j) => s.putObject(putInput("b", `big/${String(i + j).padStart(6, "0")}`, Buffer.from("x")))));
    }
    await s.putObject(putInput("b", "after", Buffer.from("y")));
    await s.putObject(putInput("b", "zz/1", Buffer.from("y")));
    // Time one delimited listing against one full listing of the same bucket:
    // skipping must not cost anything like reading 5000 entries.
    const t0 = process.hrtime.bigint();
    const r = await s.listObjects({ bucket: "b", delimiter: "/", maxKeys: 1000 });
    const skipNs = Number(process.hrtime.bigint() - t0);
    assert.deepEqual(r.commonPrefixes, ["big/", "zz/"]);
    assert.deepEqual(r.objects.map((o) => o.key), ["after"]);
    const t1 = process.hrtime.bigint();
    let n = 0;
    for (let after: string | undefined; ;) {
      const p = await s.listObjects({ bucket: "b", after, maxKeys: 1000 });
      n += p.objects.length;
      if (!p.isTruncated) break;
      after = p.nextAfter;
    }
    const scanNs = Number(process.hrtime.bigint() - t1);
    assert.equal(n, N + 2);
    assert.ok(skipNs * 20 < scanNs, `delimited listing took ${skipNs / 1e6} ms, full scan ${scanNs / 1e6} ms`);
    // Continuing after a common prefix does not repeat it.
    const p1 = await s.listObjects({ bucket: "b", delimiter: "/", maxKeys: 2 });
    assert.deepEqual([...p1.objects.map((o) => o.key), ...p1.commonPrefixes], ["after", "big/"]);
    const p2 = await s.listObjects({ bucket: "b", delimiter: "/", maxKeys: 2, after: p1.nextAfter });
    assert.deepEqual(p2.commonPrefixes, ["zz/"]);
    assert.equal(p2.isTruncated, false);
  } finally {
    await f.dispose();
  }
});
