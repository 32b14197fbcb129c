import { test } from "node:test";
import assert from "node:assert/strict";
import { afterDays, currentExpiry, noncurrentDue, uploadAbortAt } from "./lifecycle.js";
import type { LifecycleRule } from "./bucket-config.js";

const DAY = 86_400_000;

test("afterDays rounds creation + days up to the next midnight UTC, as S3 does", () => {
  const t = Date.UTC(2026, 0, 1, 15, 0);
  assert.equal(afterDays(t, 1), Date.UTC(2026, 0, 3));
  assert.equal(afterDays(Date.UTC(2026, 0, 1), 1), Date.UTC(2026, 0, 2), "exactly midnight stays");
});

test("currentExpiry: earliest matching enabled rule; prefix, tags and size filters", () => {
  const rules: LifecycleRule[] = [
    { enabled: true, filter: { prefix: "a/" }, expiration: { days: 10 } },
    { enabled: true, filter: { prefix: "a/", tags: { t: "1" } }, expiration: { days: 2 } },
    { enabled: false, filter: {}, expiration: { days: 1 } },
    { enabled: true, filter: { objectSizeGreaterThan: 100 }, expiration: { date: Date.UTC(2030, 0, 1) } },
  ];
  const at = Date.UTC(2026, 0, 1);
  assert.equal(currentExpiry(rules, { key: "a/x", size: 1, lastModified: at }), at + 10 * DAY);
  assert.equal(currentExpiry(rules, { key: "a/x", size: 1, lastModified: at, tags: { t: "1" } }), at + 2 * DAY);
  assert.equal(currentExpiry(rules, { key: "b/x", size: 1, lastModified: at }), undefined);
  assert.equal(currentExpiry(rules, { key: "b/x", size: 101, lastModified: at }), Date.UTC(2030, 0, 1));
});

test("uploadAbortAt ignores tag rules' absence of tags and applies prefix", () => {
  const rules: LifecycleRule[] = [{ enabled: true, filter: { prefix: "up/" }, abortIncompleteMultipartUpload: { daysAfterInitiation: 3 } }];
  assert.equal(uploadAbortAt(rules, "up/x", Date.UTC(2026, 0, 1)), Date.UTC(2026, 0, 4));
  assert.equal(uploadAbortAt(rules, "other", Date.UTC(2026, 0, 1)), undefined);
});

test("noncurrentDue keeps the NewerNoncurrentVersions newest and removes older ones past NoncurrentDays", () => {
  const rules: LifecycleRule[] = [{ enabled: true, filter: {}, noncurrentVersionExpiration: { noncurrentDays: 1, newerNoncurrentVersions: 2 } }];
  const since = Date.UTC(2026, 0, 1);
  const vs = ["v4", "v3", "v2", "v1"].map((versionId, i) => ({ versionId, key: "k", size: 1, noncurrentSince: since - i * DAY }));
  assert.deepEqual(noncurrentDue(rules, vs, since + DAY).map((v) => v.versionId), ["v2", "v1"]);
  assert.deepEqual(noncurrentDue(rules, vs, since - 10 * DAY).map((v) => v.versionId), []);
});
