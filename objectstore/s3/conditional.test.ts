import { test } from "node:test";
import assert from "node:assert/strict";
import { isBlobError, LocalKeyLocker, MemoryBlobStore, type ObjectMeta } from "../blob/index.js";
import { checkWriteCondition, guardBody, writeConditionOf } from "./conditional.js";
import { toS3Error, type S3Error } from "./errors.js";
import { checkConditions } from "./http.js";

const meta = { etag: "abc", lastModified: Date.UTC(2026, 0, 10, 12, 0, 0, 500) } as ObjectMeta;
const outcome = (h: Record<string, string>, prefix?: string, as412?: boolean) => {
  try { checkConditions(h, meta, prefix, as412); return "ok"; } catch (e) { const x = e as S3Error; return `${x.status} ${x.extra.Condition ?? x.code}`; }
};
const before = "Fri, 09 Jan 2026 00:00:00 GMT", at = "Sat, 10 Jan 2026 12:00:00 GMT", after = "Sun, 11 Jan 2026 00:00:00 GMT";

test("checkConditions: RFC 7232 precedence as S3 applies it, at one-second resolution", () => {
  assert.equal(outcome({ "if-match": '"abc"' }), "ok");
  assert.equal(outcome({ "if-match": 'W/"abc"' }), "ok");
  assert.equal(outcome({ "if-match": '"x", "abc"' }), "ok");
  assert.equal(outcome({ "if-match": '"x"' }), "412 If-Match");
  assert.equal(outcome({ "if-match": '"abc"', "if-unmodified-since": before }), "ok", "true If-Match wins over false If-Unmodified-Since");
  assert.equal(outcome({ "if-unmodified-since": before }), "412 If-Unmodified-Since");
  assert.equal(outcome({ "if-unmodified-since": at }), "ok", "modified in that very second: not after it");
  assert.equal(outcome({ "if-none-match": '"abc"' }), "304 NotModified");
  assert.equal(outcome({ "if-none-match": "*" }), "304 NotModified");
  assert.equal(outcome({ "if-none-match": '"abc"', "if-modified-since": before }), "304 NotModified", "false If-None-Match + true If-Modified-Since → 304");
  assert.equal(outcome({ "if-none-match": '"x"', "if-modified-since": after }), "ok", "If-Modified-Since ignored beside If-None-Match");
  assert.equal(outcome({ "if-modified-since": at }), "304 NotModified");
  assert.equal(outcome({ "if-modified-since": before }), "ok");
  assert.equal(outcome({ "if-modified-since": "yesterday-ish" }), "ok", "unparsable dates are ignored");
  assert.equal(outcome({ "if-match": '"x"', "if-none-match": '"abc"' }), "412 If-Match", "412 before 304");
});

test("checkConditions for a copy source: every failure is a 412 naming the x-amz-copy-source header", () => {
  const p = "x-amz-copy-source-if-";
  assert.equal(outcome({ [`${p}none-match`]: '"abc"' }, p, true), "412 x-amz-copy-source-If-None-Match");
  assert.equal(outcome({ [`${p}modified-since`]: after }, p, true), "412 x-amz-copy-source-If-Modified-Since");
  assert.equal(outcome({ [`${p}match`]: '"abc"', [`${p}unmodified-since`]: before }, p, true), "ok");
  assert.equal(outcome({ "if-match": '"x"' }, p, true), "ok", "plain If-Match is not a copy-source condition");
});

test("writeConditionOf: If-None-Match takes only *, If-Match needs a value", () => {
  assert.equal(writeConditionOf({}), undefined);
  assert.deepEqual(writeConditionOf({ "if-none-match": "*" }), { ifNoneMatch: true, ifMatch: undefined });
  assert.deepEqual(writeConditionOf({ "if-match": '"e"' }), { ifNoneMatch: false, ifMatch: '"e"' });
  assert.throws(() => writeConditionOf({ "if-none-match": '"e"' }), (e: S3Error) => e.code === "NotImplemented");
  assert.throws(() => writeConditionOf({ "if-match": " " }), (e: S3Error) => e.code === "InvalidArgument");
});

test("checkWriteCondition and guardBody over a store: a failed check at the end of the body commits nothing", async () => {
  const store = new MemoryBlobStore();
  await store.createBucket("b", "o");
  const put = (key: string, data: string, check?: () => Promise<void>) => {
    const src = (async function* () { yield Buffer.from(data); })();
    return store.putObject({ bucket: "b", key, body: check ? guardBody(src, check) : src, headers: {}, userMeta: {}, expect: {} });
  };
  const first = await put("k", "one", () => checkWriteCondition(store, "b", "k", { ifNoneMatch: true }));
  await assert.rejects(put("k", "two", () => checkWriteCondition(store, "b", "k", { ifNoneMatch: true })), (e: S3Error) => e.status === 412);
  await assert.rejects(put("k", "two", () => checkWriteCondition(store, "b", "k", { ifNoneMatch: false, ifMatch: '"nope"' })), (e: S3Error) => e.status === 412);
  await assert.rejects(put("n", "x", () => checkWriteCondition(store, "b", "n", { ifNoneMatch: false, ifMatch: '"nope"' })), (e: S3Error) => e.code === "NoSuchKey");
  assert.equal((await store.headObject("b", "k")).etag, first.etag, "unchanged");
  await assert.rejects(store.headObject("b", "n"), (e) => isBlobError(e, "NoSuchKey"));
  await put("k", "three", () => checkWriteCondition(store, "b", "k", { ifNoneMatch: false, ifMatch: `"${first.etag}"` }));
  let checkedAfter = -1, seen = 0;
  const src = (async function* () { for (const c of ["a", "b", "c"]) { seen++; yield Buffer.from(c); } })();
  await store.putObject({ bucket: "b", key: "order", body: guardBody(src, async () => { checkedAfter = seen; }), headers: {}, userMeta: {}, expect: {} });
  assert.equal(checkedAfter, 3, "the check runs once every chunk has been read");
  await store.close();
});

test("LocalKeyLocker: one holder per key at a time, in arrival order; other keys do not wait; a wait past its limit is a 409 that frees its turn", async () => {
  const locks = new LocalKeyLocker();
  const W = 30_000;
  const order: string[] = [];
  const r1 = await locks.acquire("b", "k", W);
  const p2 = locks.acquire("b", "k", W).then((r) => { order.push("2"); return r; });
  const p3 = locks.acquire("b", "k", W).then((r) => { order.push("3"); return r; });
  const other = await locks.acquire("b", "other", W);
  other();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(order, [], "nobody else holds k while its first holder does");
  r1();
  const r2 = await p2;
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(order, ["2"]);
  // A fourth waits at most 20 ms: 409, and the queue behind it is not stuck on it.
  await assert.rejects(locks.acquire("b", "k", 20), (e) => {
    const { error } = toS3Error(e);
    return isBlobError(e, "ConditionalRequestConflict") && error.code === "ConditionalRequestConflict" && error.status === 409;
  });
  const p5 = locks.acquire("b", "k", W);
  r2();
  (await p3)();
  (await p5)();
  assert.deepEqual(order, ["2", "3"]);
  assert.equal(locks.size, 0, "idle keys keep no entry");
});
