import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemoryReplicaStore, compareKeys, knownWrite, once, subArc, subRange, tombstoneRecord, type ReplicaRecord } from "./replica-store.js";
import { HlcClock } from "../../cluster/index.js";
import { ThocError } from "../../errors/index.js";
import { RING_SIZE, placementKey, ringHash } from "./ring.js";
import { FakeClock, seededRandom as prng } from "../../core/index.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const hlc = new HlcClock("n1", { clock: new FakeClock(1_000_000) });

function record(bucket: string, key: string, body: Buffer, version = hlc.now()): ReplicaRecord {
  return { bucket, key, version, tombstone: false, size: body.length, sha256: sha(body), meta: JSON.stringify({ etag: "x" }) };
}

async function text(store: MemoryReplicaStore, b: string, k: string): Promise<string | undefined> {
  const got = await store.get(b, k);
  if (!got) return undefined;
  const parts: Buffer[] = [];
  for await (const c of got.body) parts.push(Buffer.from(c));
  return got.record.tombstone ? "<tombstone>" : Buffer.concat(parts).toString();
}

test("last writer wins by HLC: an older write never overwrites a newer one; a newer tombstone beats an older put", async () => {
  const s = new MemoryReplicaStore();
  const v1 = record("b", "k", Buffer.from("one"));
  const v2 = record("b", "k", Buffer.from("two"));
  assert.deepEqual(await s.put(knownWrite(v2, once(Buffer.from("two")))), { applied: true, current: v2.version });
  assert.deepEqual(await s.put(knownWrite(v1, once(Buffer.from("one")))), { applied: false, current: v2.version });
  assert.equal(await text(s, "b", "k"), "two");
  assert.equal((await s.put(knownWrite(v2, once(Buffer.from("two"))))).applied, false, "same version again is a no-op");
  const oldTomb = tombstoneRecord("b", "k", v1.version);
  assert.equal((await s.put(knownWrite(oldTomb, once()))).applied, false, "an older tombstone loses to a newer put");
  const tomb = tombstoneRecord("b", "k", hlc.now());
  assert.equal((await s.put(knownWrite(tomb, once()))).applied, true);
  assert.equal(await text(s, "b", "k"), "<tombstone>");
  assert.equal((await s.put(knownWrite(v2, once(Buffer.from("two"))))).applied, false, "a put older than the tombstone cannot resurrect");
  const v3 = record("b", "k", Buffer.from("three"));
  assert.equal((await s.put(knownWrite(v3, once(Buffer.from("three"))))).applied, true, "a put newer than the tombstone wins");
  assert.equal(await text(s, "b", "k"), "three");
});

test("a short, long or corrupt body is rejected with data_loss and nothing is stored", async () => {
  const s = new MemoryReplicaStore();
  const body = Buffer.from("hello world");
  const rec = record("b", "k", body);
  const bad = [
    once(body.subarray(0, 5)),
    once(body, Buffer.from("!")),
    once(Buffer.from("hello_world")),
  ];
  for (const b of bad) await assert.rejects(s.put(knownWrite(rec, b)), (e: ThocError) => e.code === "data_loss" && /nothing stored/.test(e.message));
  // A stream that fails midway stores nothing either.
  await assert.rejects(s.put(knownWrite(rec, (async function* () { yield body.subarray(0, 3); throw new Error("connection reset"); })())));
  assert.equal(await s.head("b", "k"), undefined);
  await assert.rejects(s.put(knownWrite({ ...rec, sha256: "zz" }, once(body))), (e: ThocError) => e.code === "invalid_argument");
  // Header without size/sha256: the trailer decides, and a missing trailer stores nothing.
  const { size: _s, sha256: _h, ...header } = rec;
  await assert.rejects(s.put({ header, body: once(body), expected: () => { throw new ThocError("data_loss", "stream ended before the trailer; nothing stored"); } }), (e: ThocError) => e.code === "data_loss");
  await assert.rejects(s.put({ header, body: once(body), expected: () => ({ size: rec.size, sha256: "0".repeat(64) }) }), (e: ThocError) => e.code === "data_loss");
  assert.equal(await s.head("b", "k"), undefined);
  assert.equal((await s.put(knownWrite(rec, once(body.subarray(0, 4), body.subarray(4))))).applied, true);
});

test("list and digest walk ring arcs in position order; sub-arcs tile a range exactly", async () => {
  const s = new MemoryReplicaStore();
  for (let i = 0; i < 200; i++) { const b = Buffer.from(`v${i}`); await s.put(knownWrite(record("bkt", `k${i}`, b), once(b))); }
  const all = s.records();
  assert.equal(all.length, 200);
  const pos = all.map((r) => ringHash(placementKey(r.bucket, r.key)));
  assert.deepEqual(pos, [...pos].sort((a, b) => a - b));
  const rnd = prng(3);
  for (let t = 0; t < 50; t++) {
    const range = { start: Math.floor(rnd() * RING_SIZE), end: Math.floor(rnd() * RING_SIZE) };
    const parts = 1 + Math.floor(rnd() * 16);
    const digests = await s.digest(range, parts);
    let inRange = 0;
    for (let i = 0; i < parts; i++) {
      const listed: ReplicaRecord[] = [];
      for await (const r of s.list(subRange(range, parts, i))) listed.push(r);
      assert.equal(listed.length, digests[i]!.count, "a sub-arc lists exactly what its digest counted");
      inRange += listed.length;
    }
    assert.equal(inRange, pos.filter((p) => subArc(range, 1, p) === 0).length);
  }
  // Paging with `after`.
  const whole = { start: 0, end: 0, whole: true };
  const first: ReplicaRecord[] = [];
  for await (const r of s.list(whole, { limit: 50 })) first.push(r);
  const last = first.at(-1)!;
  const rest: ReplicaRecord[] = [];
  for await (const r of s.list(whole, { after: { pos: ringHash(placementKey(last.bucket, last.key)), pkey: placementKey(last.bucket, last.key) } })) rest.push(r);
  assert.equal(first.length + rest.length, 200);
  // Digests change with any version change.
  const before = (await s.digest(whole, 1))[0]!.hash;
  const r0 = all[0]!;
  await s.put(knownWrite(tombstoneRecord(r0.bucket, r0.key, hlc.now()), once()));
  assert.notEqual((await s.digest(whole, 1))[0]!.hash, before);
  assert.equal(await s.drop(r0.bucket, r0.key, r0.version), false, "drop only removes the version it names");
});

test("compareKeys orders keys as their UTF-8 bytes, astral characters and prefixes included", () => {
  const rnd = prng(15);
  // Units chosen to straddle the cases: ASCII, the internal prefix, just below and above the surrogates, and astral characters.
  const alphabet = ["a", "b", "/", "\u0000", "\u0001", "\u00e9", "\ud7ff", "\ue000", "\uffff", "\u{10000}", "\u{1f600}", "\u{10ffff}"];
  const key = () => Array.from({ length: Math.floor(rnd() * 5) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join("");
  const bytes = (a: string, b: string) => Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
  for (let i = 0; i < 20_000; i++) {
    const a = key(), b = rnd() < 0.3 ? a + key() : key();
    assert.equal(Math.sign(compareKeys(a, b)), bytes(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    assert.equal(Math.sign(compareKeys(b, a)), bytes(b, a), `${JSON.stringify(b)} vs ${JSON.stringify(a)}`);
  }
  // The case a UTF-16 comparison gets wrong: U+FFFF is below U+10000 in UTF-8, above its first surrogate in UTF-16.
  assert.ok(compareKeys("\uffff", "\u{10000}") < 0);
  assert.ok("\uffff" > "\u{10000}");
});
